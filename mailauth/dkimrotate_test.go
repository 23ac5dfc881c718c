package mailauth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// addTimedKey stores a key created at created that signs from signFrom
// (zero: from its creation) and publishes its record in z.
func addTimedKey(t *testing.T, st mailstore.Store, z *dkimZone, domain, sel, alg string, created, signFrom time.Time) {
	t.Helper()
	k, err := GenerateDKIMKey(domain, sel, alg)
	if err != nil {
		t.Fatal(err)
	}
	k.CreatedAt, k.SignFrom = created, signFrom
	if err := st.AddDKIMKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	z.add(t, k)
}

// selectorsSigning signs signTestMsg for domains at the signer's current
// time, verifies every signature against z and returns the selectors
// that signed, in order.
func selectorsSigning(t *testing.T, s *DKIMSigner, z *dkimZone, domains ...string) []string {
	t.Helper()
	sig, err := s.Sign(context.Background(), domains, strings.NewReader(signTestMsg))
	if err != nil {
		t.Fatal(err)
	}
	verify(t, z, append(sig, signTestMsg...))
	var out []string
	for _, f := range sigFields(sig) {
		m := regexp.MustCompile(`[;\s]s=([^;\s]+);`).FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("no selector in %q", f)
		}
		out = append(out, m[1])
	}
	return out
}

// TestDKIMRotationSwitch: after a rotation the old pair signs until the
// new pair's sign-from time, exactly (the cache does not delay the
// switch), then the new pair, and the superseded pair never again, on a
// node that cached the keys before the switch and on one that did not.
func TestDKIMRotationSwitch(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	if err := st.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	var z dkimZone
	t0 := time.Now().UTC().Truncate(time.Second)
	from := t0.Add(72 * time.Hour)
	addTimedKey(t, st, &z, "example.org", "e1", "ed25519", t0.Add(-30*24*time.Hour), time.Time{})
	addTimedKey(t, st, &z, "example.org", "r1", "rsa", t0.Add(-30*24*time.Hour), time.Time{})
	addTimedKey(t, st, &z, "example.org", "e2", "ed25519", t0, from)
	addTimedKey(t, st, &z, "example.org", "r2", "rsa", t0, from)

	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }
	var logs bytes.Buffer
	var lmu sync.Mutex
	s := NewDKIMSigner(st, DKIMSignerOptions{KeyTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil))})
	s.now = clock

	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{t0, "[e1 r1]"},
		{t0.Add(time.Hour), "[e1 r1]"},
		{from.Add(-time.Second), "[e1 r1]"}, // keys cached here for a minute
		{from, "[e2 r2]"},                   // from the cache: the switch is on time
		{from.Add(time.Second), "[e2 r2]"},
		{from.Add(8 * 24 * time.Hour), "[e2 r2]"},
		{from.Add(400 * 24 * time.Hour), "[e2 r2]"},
	} {
		set(c.at)
		if got := fmt.Sprint(selectorsSigning(t, s, &z, "example.org")); got != c.want {
			t.Errorf("at from%+v: signed by %s, want %s", c.at.Sub(from), got, c.want)
		}
	}
	// A node whose cache is fresh after the switch.
	fresh := NewDKIMSigner(st, DKIMSignerOptions{Logger: slog.New(slog.DiscardHandler)})
	fresh.now = func() time.Time { return from.Add(time.Minute) }
	if got := fmt.Sprint(selectorsSigning(t, fresh, &z, "example.org")); got != "[e2 r2]" {
		t.Errorf("fresh signer after the switch: %s", got)
	}
	fresh2 := NewDKIMSigner(st, DKIMSignerOptions{Logger: slog.New(slog.DiscardHandler)})
	fresh2.now = func() time.Time { return from.Add(-time.Minute) }
	if got := fmt.Sprint(selectorsSigning(t, fresh2, &z, "example.org")); got != "[e1 r1]" {
		t.Errorf("fresh signer before the switch: %s", got)
	}
	if logs.Len() != 0 {
		t.Errorf("warnings during a rotation:\n%s", logs.String())
	}
}

// TestDKIMOnlyFutureKey: a domain whose only key of an algorithm signs
// later gets no signature of that algorithm until then (its record is not
// published yet, by its admin's word), with a warning when nothing signs;
// the other algorithm's key signs meanwhile.
func TestDKIMOnlyFutureKey(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	for _, d := range []string{"future.example", "mixed.example"} {
		if err := st.CreateDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var z dkimZone
	t0 := time.Now().UTC().Truncate(time.Second)
	addTimedKey(t, st, &z, "future.example", "f1", "ed25519", t0, t0.Add(time.Hour))
	addTimedKey(t, st, &z, "mixed.example", "m-rsa", "rsa", t0.Add(-time.Hour), time.Time{})
	addTimedKey(t, st, &z, "mixed.example", "m-ed", "ed25519", t0, t0.Add(time.Hour))

	var logs bytes.Buffer
	var lmu sync.Mutex
	s := NewDKIMSigner(st, DKIMSignerOptions{KeyTTL: time.Hour, WarnInterval: 24 * time.Hour,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil))})
	now := t0
	s.now = func() time.Time { return now }
	for range 2 {
		if got := selectorsSigning(t, s, &z, "future.example"); len(got) != 0 {
			t.Fatalf("a key before its time signed: %v", got)
		}
	}
	if got := fmt.Sprint(selectorsSigning(t, s, &z, "mixed.example")); got != "[m-rsa]" {
		t.Errorf("mixed domain before the Ed25519 key's time: %s", got)
	}
	lmu.Lock()
	l := logs.String()
	lmu.Unlock()
	if n := strings.Count(l, "signs yet"); n != 1 || !strings.Contains(l, "domain=future.example") ||
		!strings.Contains(l, "signs_from="+t0.Add(time.Hour).Format(time.RFC3339)) {
		t.Errorf("want one warning naming future.example and its time:\n%s", l)
	}
	now = t0.Add(time.Hour)
	if got := fmt.Sprint(selectorsSigning(t, s, &z, "future.example")); got != "[f1]" {
		t.Errorf("at its time: %s", got)
	}
	if got := fmt.Sprint(selectorsSigning(t, s, &z, "mixed.example")); got != "[m-ed m-rsa]" {
		t.Errorf("mixed domain at the Ed25519 key's time: %s", got)
	}
}

// TestDKIMKeyStates: the rule on its own, at chosen moments.
func TestDKIMKeyStates(t *testing.T) {
	t.Parallel()
	day := func(n int) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n) }
	key := func(sel, alg string, created, from, retired time.Time) mailstore.DKIMKey {
		return mailstore.DKIMKey{Domain: "example.org", Selector: sel, Algorithm: alg, CreatedAt: created, SignFrom: from, RetiredAt: retired}
	}
	var zero time.Time
	type want struct {
		status  DKIMKeyStatus
		until   time.Time
		stopped time.Time
	}
	for _, c := range []struct {
		name string
		keys []mailstore.DKIMKey
		at   time.Time
		want map[string]want
	}{
		{"one key, signing from its creation", []mailstore.DKIMKey{key("a", "ed25519", day(0), zero, zero)}, day(1),
			map[string]want{"a": {DKIMSigning, zero, zero}}},
		{"rotation pending", []mailstore.DKIMKey{
			key("new", "ed25519", day(10), day(13), zero), key("old", "ed25519", day(0), zero, zero),
			key("rsa", "rsa", day(0), zero, zero)}, day(11),
			map[string]want{"new": {DKIMPending, zero, zero}, "old": {DKIMSigning, day(13), zero}, "rsa": {DKIMSigning, zero, zero}}},
		{"rotation done", []mailstore.DKIMKey{
			key("new", "ed25519", day(10), day(13), zero), key("old", "ed25519", day(0), zero, zero)}, day(13),
			map[string]want{"new": {DKIMSigning, zero, zero}, "old": {DKIMSuperseded, zero, day(13)}}},
		{"order given is kept; newest by creation", []mailstore.DKIMKey{
			key("old", "ed25519", day(0), zero, zero), key("new", "ed25519", day(10), day(10), zero)}, day(20),
			map[string]want{"new": {DKIMSigning, zero, zero}, "old": {DKIMSuperseded, zero, day(10)}}},
		{"a later rotation with an earlier time replaces a pending one", []mailstore.DKIMKey{
			key("third", "ed25519", day(11), day(11), zero), key("second", "ed25519", day(10), day(13), zero),
			key("first", "ed25519", day(0), zero, zero)}, day(12),
			map[string]want{"third": {DKIMSigning, zero, zero}, "second": {DKIMSuperseded, zero, zero}, "first": {DKIMSuperseded, zero, day(11)}}},
		{"... and before its own time too", []mailstore.DKIMKey{
			key("third", "ed25519", day(11), day(12), zero), key("second", "ed25519", day(10), day(13), zero),
			key("first", "ed25519", day(0), zero, zero)}, day(11),
			map[string]want{"third": {DKIMPending, zero, zero}, "second": {DKIMSuperseded, zero, zero}, "first": {DKIMSigning, day(12), zero}}},
		{"two pending rotations in turn", []mailstore.DKIMKey{
			key("third", "ed25519", day(11), day(20), zero), key("second", "ed25519", day(10), day(13), zero),
			key("first", "ed25519", day(0), zero, zero)}, day(12),
			map[string]want{"third": {DKIMPending, zero, zero}, "second": {DKIMPending, day(20), zero}, "first": {DKIMSigning, day(13), zero}}},
		{"a retired newer key takes over from nothing", []mailstore.DKIMKey{
			key("gone", "ed25519", day(10), day(13), day(11)), key("old", "ed25519", day(0), zero, zero)}, day(14),
			map[string]want{"gone": {DKIMRetired, zero, zero}, "old": {DKIMSigning, zero, zero}}},
		{"retired after signing (a rotation before sign-from times)", []mailstore.DKIMKey{
			key("new", "rsa", day(5), zero, zero), key("old", "rsa", day(0), zero, day(5))}, day(6),
			map[string]want{"new": {DKIMSigning, zero, zero}, "old": {DKIMRetired, zero, day(5)}}},
		{"retired after being superseded: stopped at the takeover", []mailstore.DKIMKey{
			key("new", "rsa", day(5), day(6), zero), key("old", "rsa", day(0), zero, day(9))}, day(10),
			map[string]want{"new": {DKIMSigning, zero, zero}, "old": {DKIMRetired, zero, day(6)}}},
		{"only key in the future", []mailstore.DKIMKey{key("f", "ed25519", day(0), day(3), zero)}, day(1),
			map[string]want{"f": {DKIMPending, zero, zero}}},
		{"algorithms apart", []mailstore.DKIMKey{
			key("ed-new", "ed25519", day(10), day(10), zero), key("rsa-old", "rsa", day(0), zero, zero),
			key("ed-old", "ed25519", day(0), zero, zero)}, day(10),
			map[string]want{"ed-new": {DKIMSigning, zero, zero}, "rsa-old": {DKIMSigning, zero, zero}, "ed-old": {DKIMSuperseded, zero, day(10)}}},
	} {
		got := DKIMKeyStates(c.keys, c.at)
		if len(got) != len(c.keys) {
			t.Fatalf("%s: %d states for %d keys", c.name, len(got), len(c.keys))
		}
		for i, s := range got {
			if s.Key.Selector != c.keys[i].Selector {
				t.Errorf("%s: state %d is of %s, want %s", c.name, i, s.Key.Selector, c.keys[i].Selector)
			}
			w := c.want[s.Key.Selector]
			if s.Status != w.status || !s.Until.Equal(w.until) || !s.Stopped.Equal(w.stopped) {
				t.Errorf("%s: %s is %v until %v stopped %v; want %v until %v stopped %v", c.name, s.Key.Selector,
					s.Status, s.Until, s.Stopped, w.status, w.until, w.stopped)
			}
		}
		// Exactly one key per algorithm signs whenever any has started.
		n := map[string]int{}
		for _, s := range got {
			if s.Status == DKIMSigning {
				n[s.Key.Algorithm]++
			}
		}
		for alg, k := range n {
			if k != 1 {
				t.Errorf("%s: %d %s keys sign", c.name, k, alg)
			}
		}
	}
}
