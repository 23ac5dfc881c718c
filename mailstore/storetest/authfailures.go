package storetest

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// reserve calls ReserveAuthFailure and fails the test on an error.
func (fx *fixture) reserve(keys []string, limits []int, since, at time.Time) mailstore.AuthReservation {
	fx.t.Helper()
	r, err := fx.st.ReserveAuthFailure(fx.ctx, keys, limits, since, at)
	must(fx.t, err, "ReserveAuthFailure")
	return r
}

// failures counts the failures of keys since, and fails the test if they
// differ from want (keys absent from want: 0).
func (fx *fixture) failures(keys []string, since time.Time, want map[string]int, what string) {
	fx.t.Helper()
	got, err := fx.st.AuthFailures(fx.ctx, keys, since)
	must(fx.t, err, "AuthFailures")
	for _, k := range keys {
		if got[k] != want[k] {
			fx.t.Errorf("%s: AuthFailures[%s] = %d, want %d (all: %v)", what, k, got[k], want[k], got)
		}
	}
}

func testAuthFailures(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	ip, user, other := "ip:192.0.2.1", "user:alice@example.org", "ip:198.51.100.7"
	keys := []string{ip, user, other}
	now := time.Now().Truncate(time.Second)
	noLimits := []int{0, 0}
	a.reserve([]string{ip, user}, noLimits, now.Add(-time.Hour), now.Add(-10*time.Minute))
	a.reserve([]string{ip, user}, noLimits, now.Add(-time.Hour), now.Add(-5*time.Minute))
	b.reserve([]string{ip}, []int{0}, now.Add(-time.Hour), now.Add(-time.Minute))
	if r := b.reserve(nil, nil, now, now); !r.Reserved || r.ID != 0 || len(r.Counts) != 0 {
		t.Errorf("ReserveAuthFailure with no keys = %+v; want reserved, nothing recorded", r)
	}

	b.failures(keys, now.Add(-time.Hour), map[string]int{ip: 3, user: 2}, "last hour, other handle")
	a.failures(keys, now.Add(-7*time.Minute), map[string]int{ip: 2, user: 1}, "last 7 minutes")
	a.failures(keys, now.Add(-5*time.Minute), map[string]int{ip: 2, user: 1}, "since exactly a failure's time (at or after)")
	b.failures(keys, now.Add(time.Minute), map[string]int{}, "in the future")
	if m, err := a.st.AuthFailures(a.ctx, nil, now.Add(-time.Hour)); err != nil || len(m) != 0 {
		t.Errorf("AuthFailures with no keys = %v, %v; want empty", m, err)
	}

	// The counts a reservation returns are those before it, per key.
	r := a.reserve(keys, []int{0, 0, 0}, now.Add(-7*time.Minute), now)
	if want := map[string]int{ip: 2, user: 1, other: 0}; !r.Reserved || r.ID == 0 || !maps.Equal(r.Counts, want) {
		t.Errorf("reservation = %+v; want reserved with counts %v", r, want)
	}
	b.failures(keys, now.Add(-time.Hour), map[string]int{ip: 4, user: 3, other: 1}, "after a reservation")
	// Forgetting a key on the other handle removes all its failures.
	must(t, b.st.ReleaseAuthFailure(b.ctx, mailstore.AuthReservation{}, []string{user}), "ReleaseAuthFailure forgetting a key")
	a.failures(keys, now.Add(-time.Hour), map[string]int{ip: 4, other: 1}, "after forgetting the user key on the other handle")
	// Releasing the reservation removes its rows only.
	must(t, b.st.ReleaseAuthFailure(b.ctx, r, nil), "ReleaseAuthFailure")
	a.failures(keys, now.Add(-time.Hour), map[string]int{ip: 3}, "after releasing the reservation")
	must(t, a.st.ReleaseAuthFailure(a.ctx, r, nil), "ReleaseAuthFailure again")
	a.failures(keys, now.Add(-time.Hour), map[string]int{ip: 3}, "after releasing the reservation twice")

	// Concurrent records from both handles all count.
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		fx := a
		if i%2 == 1 {
			fx = b
		}
		wg.Go(func() {
			for j := 0; j < 5; j++ {
				if _, err := fx.st.ReserveAuthFailure(fx.ctx, []string{other}, []int{0}, now.Add(-time.Hour), now.Add(-2*time.Minute)); err != nil {
					t.Errorf("concurrent ReserveAuthFailure: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.failures(keys, now.Add(-time.Hour), map[string]int{ip: 3, other: 50}, "after 50 concurrent records")
}

// testAuthReservations checks the limits of ReserveAuthFailure, one call at
// a time.
func testAuthReservations(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	ip, pair, user := "ip:203.0.113.9", "userip:bob@example.org|203.0.113.9", "user:bob@example.org"
	keys, limits := []string{ip, pair, user}, []int{50, 3, 0}
	now := time.Now().Truncate(time.Second)
	since := now.Add(-15 * time.Minute)

	var held []mailstore.AuthReservation
	for i := range 3 {
		fx := []*fixture{a, b}[i%2]
		r := fx.reserve(keys, limits, since, now)
		if !r.Reserved || r.Counts[pair] != i {
			t.Fatalf("reservation %d = %+v; want reserved with %d failures of the pair before it", i+1, r, i)
		}
		held = append(held, r)
	}
	// The pair key is at its limit: refused, and nothing recorded.
	r := b.reserve(keys, limits, since, now)
	if r.Reserved || r.ID != 0 || r.Counts[pair] != 3 || r.Counts[user] != 3 {
		t.Fatalf("reservation over the limit = %+v; want refused with counts 3", r)
	}
	a.failures(keys, since, map[string]int{ip: 3, pair: 3, user: 3}, "after a refusal")
	// A key without limit never refuses; failures before since do not count.
	for range 5 {
		if r := a.reserve([]string{user}, []int{0}, since, now); !r.Reserved {
			t.Fatalf("key without limit refused: %+v", r)
		}
	}
	if r := a.reserve(keys, limits, now.Add(time.Second), now); !r.Reserved || r.Counts[pair] != 0 {
		t.Fatalf("reservation with only older failures = %+v; want reserved", r)
	} else {
		must(t, a.st.ReleaseAuthFailure(a.ctx, r, nil), "ReleaseAuthFailure")
	}

	// A released reservation frees its place on every handle.
	must(t, a.st.ReleaseAuthFailure(a.ctx, held[1], nil), "ReleaseAuthFailure")
	b.failures(keys, since, map[string]int{ip: 2, pair: 2, user: 7}, "after a release")
	if r := b.reserve(keys, limits, since, now); !r.Reserved || r.Counts[pair] != 2 {
		t.Fatalf("reservation after a release = %+v; want reserved", r)
	}
	// Releasing with forget keys drops the reservation and the keys'
	// failures, in one call.
	must(t, b.st.ReleaseAuthFailure(b.ctx, held[0], []string{ip, pair}), "ReleaseAuthFailure with forget")
	a.failures(keys, since, map[string]int{user: 7}, "after a release forgetting the address keys")

	// Bad input changes nothing.
	for _, c := range []struct {
		keys   []string
		limits []int
	}{
		{keys, []int{1, 2}},
		{keys, nil},
		{[]string{ip}, []int{-1}},
		{[]string{""}, []int{0}},
	} {
		if _, err := a.st.ReserveAuthFailure(a.ctx, c.keys, c.limits, since, now); !errors.Is(err, mailstore.ErrInvalidArgument) {
			t.Errorf("ReserveAuthFailure(%q, %v) = %v; want ErrInvalidArgument", c.keys, c.limits, err)
		}
	}
	a.failures(keys, since, map[string]int{user: 7}, "after bad input")
}

// testAuthReservationsRace: reservations racing on both handles never take
// more than a key's limit, and each sees a different count.
func testAuthReservationsRace(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	ip, pair, user := "ip:203.0.113.7", "userip:carol@example.org|203.0.113.7", "user:carol@example.org"
	keys, limits := []string{ip, pair, user}, []int{50, 10, 0}
	now := time.Now().Truncate(time.Second)
	since := now.Add(-15 * time.Minute)

	const racers = 40
	var mu sync.Mutex
	var seen []int
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		fx := []*fixture{a, b}[i%2]
		wg.Go(func() {
			<-start
			r, err := fx.st.ReserveAuthFailure(fx.ctx, keys, limits, since, now)
			if err != nil {
				t.Errorf("racing ReserveAuthFailure: %v", err)
				return
			}
			if r.Reserved {
				mu.Lock()
				seen = append(seen, r.Counts[pair])
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(seen)
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(seen, want) {
		t.Errorf("%d racing reservations with limit 10: reserved with pair counts %v, want %v", racers, seen, want)
	}
	a.failures(keys, since, map[string]int{ip: 10, pair: 10, user: 10}, "after the race")
}

// confirm calls ConfirmAuthFailure and fails the test on an error.
func (fx *fixture) confirm(r mailstore.AuthReservation) {
	fx.t.Helper()
	must(fx.t, fx.st.ConfirmAuthFailure(fx.ctx, r), "ConfirmAuthFailure")
}

// testAuthConfirm: reservations are in flight until confirmed; the limits
// count them all, the decided counts only confirmed ones, on every handle.
func testAuthConfirm(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	ip, pair, user := "ip:203.0.113.5", "userip:dave@example.org|203.0.113.5", "user:dave@example.org"
	keys, limits := []string{ip, pair, user}, []int{50, 3, 0}
	now := time.Now().Truncate(time.Second)
	since := now.Add(-15 * time.Minute)
	check := func(what string, r mailstore.AuthReservation, reserved bool, counts, decided map[string]int) {
		t.Helper()
		if r.Reserved != reserved || !maps.Equal(r.Counts, counts) || !maps.Equal(r.Decided, decided) {
			t.Errorf("%s: reservation = %+v; want reserved %v, counts %v, decided %v", what, r, reserved, counts, decided)
		}
	}
	zero := map[string]int{ip: 0, pair: 0, user: 0}

	r1 := a.reserve(keys, limits, since, now)
	check("first", r1, true, zero, zero)
	r2 := b.reserve(keys, limits, since, now)
	check("second, first in flight", r2, true, map[string]int{ip: 1, pair: 1, user: 1}, zero)
	// Confirmed on the other handle, r1 is decided for both handles.
	b.confirm(r1)
	r3 := a.reserve(keys, limits, since, now)
	check("third, first decided", r3, true, map[string]int{ip: 2, pair: 2, user: 2}, map[string]int{ip: 1, pair: 1, user: 1})
	// Confirming twice, or an empty or refused reservation, changes nothing.
	a.confirm(r1)
	a.confirm(mailstore.AuthReservation{})
	a.confirm(b.reserve(nil, nil, since, now))
	b.confirm(r3)
	// The limit counts the reservation still in flight (r2): refused.
	r4 := b.reserve(keys, limits, since, now)
	check("at the limit, one in flight", r4, false, map[string]int{ip: 3, pair: 3, user: 3}, map[string]int{ip: 2, pair: 2, user: 2})
	a.confirm(r4)
	a.failures(keys, since, map[string]int{ip: 3, pair: 3, user: 3}, "after confirming a refused reservation")

	// Releasing the one in flight frees its place; a release after a
	// confirm deletes the decided rows as well.
	must(t, a.st.ReleaseAuthFailure(a.ctx, r2, nil), "ReleaseAuthFailure in flight")
	r5 := b.reserve(keys, limits, since, now)
	check("after releasing the one in flight", r5, true, map[string]int{ip: 2, pair: 2, user: 2}, map[string]int{ip: 2, pair: 2, user: 2})
	must(t, b.st.ReleaseAuthFailure(b.ctx, r3, nil), "ReleaseAuthFailure decided")
	// A confirm after the release brings nothing back.
	a.confirm(r2)
	b.failures(keys, since, map[string]int{ip: 2, pair: 2, user: 2}, "after releasing a decided reservation and confirming a released one")

	// Forgetting a key drops its rows in flight (r5) and decided (r1); a
	// later confirm of r5 marks only what is left of it (its user row).
	must(t, a.st.ReleaseAuthFailure(a.ctx, mailstore.AuthReservation{}, []string{ip, pair}), "ReleaseAuthFailure forget")
	b.confirm(r5)
	r6 := a.reserve(keys, limits, since, now)
	check("after forgetting the address keys", r6, true, map[string]int{ip: 0, pair: 0, user: 2}, map[string]int{ip: 0, pair: 0, user: 2})

	// Failures before since count in neither.
	check("window", a.reserve(keys, limits, now.Add(time.Second), now), true, zero, zero)

	// Bad input changes nothing.
	for _, r := range []mailstore.AuthReservation{
		{Keys: []string{""}, At: now, ID: r6.ID},
		{Keys: []string{strings.Repeat("k", 100000)}, At: now, ID: r6.ID},
	} {
		if err := b.st.ConfirmAuthFailure(b.ctx, r); !errors.Is(err, mailstore.ErrInvalidArgument) {
			t.Errorf("ConfirmAuthFailure(%.20q) = %v; want ErrInvalidArgument", r.Keys, err)
		}
	}
	r7 := b.reserve(keys, limits, since, now)
	check("after bad input", r7, true, map[string]int{ip: 2, pair: 2, user: 4}, map[string]int{ip: 0, pair: 0, user: 2})
}

// testAuthConfirmRace: attempts racing on both handles, each confirming
// its reservation (a wrong password) or releasing it (a right one), leave
// exactly the confirmed ones, all decided; none reserved saw a decided
// count it could not have (at most the confirms before it).
func testAuthConfirmRace(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	ip, user := "ip:203.0.113.6", "user:erin@example.org"
	keys, limits := []string{ip, user}, []int{0, 0}
	now := time.Now().Truncate(time.Second)
	since := now.Add(-15 * time.Minute)

	const racers = 20
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		fx := []*fixture{a, b}[i%2]
		wg.Go(func() {
			<-start
			r, err := fx.st.ReserveAuthFailure(fx.ctx, keys, limits, since, now)
			if err != nil {
				t.Errorf("racing ReserveAuthFailure: %v", err)
				return
			}
			if r.Decided[ip] > r.Counts[ip] || r.Decided[ip] > racers/2 {
				t.Errorf("racing reservation saw %d decided of %d", r.Decided[ip], r.Counts[ip])
			}
			if i%2 == 0 {
				err = fx.st.ConfirmAuthFailure(fx.ctx, r)
			} else {
				err = fx.st.ReleaseAuthFailure(fx.ctx, r, nil)
			}
			if err != nil {
				t.Errorf("racing confirm or release: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	want := map[string]int{ip: racers / 2, user: racers / 2}
	r := b.reserve(keys, limits, since, now)
	if !maps.Equal(r.Counts, want) || !maps.Equal(r.Decided, want) {
		t.Errorf("after the race: counts %v, decided %v; want both %v", r.Counts, r.Decided, want)
	}
}
