package imapd

import (
	"slices"
	"testing"
)

// FuzzPageRange parses arbitrary PARTIAL ranges (RFC 9394 §4): no panic;
// a range that parses prints as a range that parses to the same, and
// pages any result list within its bounds.
func FuzzPageRange(f *testing.F) {
	for _, s := range []string{"1:100", "-1:-100", "100:1", "-5:-2", "1", "1:*", "*:1", "0:5", "-1:5", "1:-5", "--1:-2",
		"1:4294967295", "1:4294967296", "-4294967295:-1", "01:2", "1:2:3", ":", "-:-", "1:2x", "1:2)"} {
		f.Add(s)
	}
	results := []uint32{10, 20, 30, 40, 50}
	f.Fuzz(func(t *testing.T, in string) {
		p := parser{line: []byte(in)}
		r, err := p.pageRange()
		if err != nil {
			return
		}
		if r.lo == 0 || r.lo > r.hi {
			t.Fatalf("%q: bad range %+v", in, r)
		}
		q := parser{line: []byte(r.String())}
		r2, err := q.pageRange()
		if err != nil || r2 != r {
			t.Fatalf("%q: %q reparses as %+v, %v", in, r.String(), r2, err)
		}
		page := r.slice(results)
		if len(page) > int(min(uint64(r.hi-r.lo)+1, uint64(len(results)))) {
			t.Fatalf("%q: page %v too long", in, page)
		}
		if len(page) > 0 && !slices.Contains(results, page[0]) {
			t.Fatalf("%q: page %v", in, page)
		}
	})
}

// TestPageRange checks the pages of a result list.
func TestPageRange(t *testing.T) {
	results := []uint32{10, 20, 30, 40, 50}
	for _, tc := range []struct {
		in   string
		want []uint32
	}{
		{"1:2", []uint32{10, 20}}, {"2:1", []uint32{10, 20}}, {"4:9", []uint32{40, 50}}, {"6:9", nil},
		{"-1:-1", []uint32{50}}, {"-2:-4", []uint32{20, 30, 40}}, {"-5:-9", []uint32{10}}, {"-6:-9", nil},
		{"1:4294967295", results}, {"-1:-4294967295", results},
	} {
		p := parser{line: []byte(tc.in)}
		r, err := p.pageRange()
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := r.slice(results); !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
		}
	}
}
