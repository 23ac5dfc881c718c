package postgres

import (
	"slices"
	"testing"
)

func TestNotifyPayloadRoundTrip(t *testing.T) {
	var ids []int64
	for i := int64(0); i < 3000; i++ {
		ids = append(ids, i*7919+1<<40) // 14 digits each: several payloads
	}
	ids = append(ids, 1<<62)
	ps := notifyPayloads(ids)
	if len(ps) < 2 {
		t.Fatalf("%d payloads for %d ids", len(ps), len(ids))
	}
	var got []int64
	for _, p := range ps {
		if len(p) > maxNotifyPayload {
			t.Fatalf("payload of %d bytes", len(p))
		}
		if !parseNotifyPayload(p, func(id int64) { got = append(got, id) }) {
			t.Fatalf("payload %q rejected", p)
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("round trip lost ids: %d of %d", len(got), len(ids))
	}
	if notifyPayloads(nil) != nil {
		t.Fatal("payloads for no ids")
	}
	got = nil
	if !parseNotifyPayload("42", func(id int64) { got = append(got, id) }) || !slices.Equal(got, []int64{42}) {
		t.Fatalf("single id: %v", got)
	}
	if parseNotifyPayload("1,x", func(int64) {}) || parseNotifyPayload("1,", func(int64) {}) || parseNotifyPayload("", func(int64) {}) {
		t.Fatal("malformed payload accepted")
	}
}
