package dkimkeys

import (
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

func TestParseSignAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "0s": 0, "48h": 48 * time.Hour, "90m": 90 * time.Minute, "3d": 72 * time.Hour, "0d": 0, "90d": MaxSignAfter,
	} {
		if got, err := ParseSignAfter(in); err != nil || got != want {
			t.Errorf("ParseSignAfter(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1h", "-0d", "d", "3 d", "91d", "2161h", "1w", "3.5d", "9999d", "72"} {
		if got, err := ParseSignAfter(bad); err == nil {
			t.Errorf("ParseSignAfter(%q) = %v, want an error", bad, got)
		}
	}
}

// The words `dkim list` and `postrider dns` use for each state, with the
// dates from which to remove.
func TestDescribe(t *testing.T) {
	day := func(n int) time.Time { return time.Date(2026, 12, 7, 10, 30, 0, 0, time.UTC).AddDate(0, 0, n) }
	key := func(sel string, created, from, retired time.Time) mailstore.DKIMKey {
		return mailstore.DKIMKey{Domain: "example.org", Selector: sel, Algorithm: "ed25519", CreatedAt: created, SignFrom: from, RetiredAt: retired}
	}
	var zero time.Time
	keys := []mailstore.DKIMKey{
		key("pending", day(10), day(13), zero),
		key("signing", day(5), day(5), zero),
		key("superseded", day(1), zero, zero),
		key("never", day(4), day(6), zero),
		key("retired", day(0), zero, day(2)),
		key("cancelled", day(9), day(12), day(9)),
	}
	want := map[string]struct {
		text      string
		removable bool
	}{
		"pending":    {"published, signs from 2026-12-20 10:30 UTC", false},
		"signing":    {"signing since 2026-12-12 10:30 UTC, until 2026-12-20 10:30 UTC", false},
		"superseded": {"superseded since 2026-12-12 10:30 UTC, remove after 2026-12-19 10:30 UTC", true},
		"never":      {"superseded before it signed, remove any time", true},
		"retired":    {"retired 2026-12-09 10:30 UTC, remove after 2026-12-15 10:30 UTC", true}, // stopped when "superseded" took over
		"cancelled":  {"retired 2026-12-16 10:30 UTC before it signed, remove any time", true},
	}
	for _, s := range States(keys, day(11)) {
		w := want[s.Key.Selector]
		if got := s.Describe(); got != w.text || s.Removable() != w.removable {
			t.Errorf("%s: %q, removable %v; want %q, %v", s.Key.Selector, got, s.Removable(), w.text, w.removable)
		}
	}
}
