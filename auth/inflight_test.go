package auth

// Attempts in flight count for the refusal limits but not for the delays
// (ThrottlePolicy): parallel logins with the right password are not
// delayed, while parallel guessing stays bounded
// (TestPostgresParallelGuessesBounded).

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// gate holds every attempt of a batch at its account lookup (after its
// reservation and delay, before its verdict) until each attempt of the
// batch has got there or has returned, so the reservations of all of them
// are in the store at once whatever the scheduling: the parallelism is
// guaranteed, not hoped for.
type gate struct {
	mu     sync.Mutex
	n      int
	passed map[int]bool
	open   chan struct{}
}

type gateKey struct{}

func newGate(n int) *gate {
	return &gate{n: n, passed: map[int]bool{}, open: make(chan struct{})}
}

// pass marks attempt i as past its reservation (or returned).
func (g *gate) pass(i int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.passed[i] {
		g.passed[i] = true
		if len(g.passed) == g.n {
			close(g.open)
		}
	}
}

// gatedStore is a Store whose account lookups wait at the gate named by the
// context (ctxAttempt).
type gatedStore struct {
	Store
}

type gateAttempt struct {
	g *gate
	i int
}

func ctxAttempt(ctx context.Context, g *gate, i int) context.Context {
	return context.WithValue(ctx, gateKey{}, gateAttempt{g, i})
}

func (s gatedStore) GetAccount(ctx context.Context, address string) (mailstore.Account, error) {
	if at, ok := ctx.Value(gateKey{}).(gateAttempt); ok {
		at.g.pass(at.i)
		select {
		case <-at.g.open:
		case <-ctx.Done():
			return mailstore.Account{}, ctx.Err()
		}
	}
	return s.Store.GetAccount(ctx, address)
}

// batch runs n logins of alice from ip1 at once, spread over nodes, held
// at the gate until all are reserved, and returns their errors.
func batch(nodes []*harness, n int, password string) []error {
	g := newGate(n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx := ctxAttempt(context.Background(), g, i)
			_, errs[i] = nodes[i%len(nodes)].Authenticate(ctx, "alice@example.org", password, ip1)
			g.pass(i)
		})
	}
	wg.Wait()
	return errs
}

// twoGatedNodes returns two harnesses over two store handles ("nodes") of
// one fresh database with alice's account, and the first handle.
func twoGatedNodes(t *testing.T) ([]*harness, mailstore.Store) {
	url := pgtest.NewDatabase(t)
	st1, st2 := pgtest.OpenStore(t, url), pgtest.OpenStore(t, url)
	createAccount(t, st1, "alice@example.org", mustHash(t, "right"))
	return []*harness{pgHarness(t, gatedStore{st1}), pgHarness(t, gatedStore{st2})}, st1
}

func allSleeps(nodes []*harness) []time.Duration {
	var s []time.Duration
	for _, n := range nodes {
		s = append(s, n.takeSleeps()...)
	}
	return s
}

var aliceKeys = []string{"ip:192.0.2.10", "userip:alice@example.org|192.0.2.10", "user:alice@example.org"}

// One client opening many connections at once with the right password (a
// mail client at start-up; "bench smtp -sessions 10") logs them all in
// without any delay: the reservations in flight are no failures for the
// delay. With the version 5 throttle the later ones of 10 waited 1 to 15 s.
func TestPostgresParallelRightPasswordsNotDelayed(t *testing.T) {
	for _, n := range []int{9, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nodes, st := twoGatedNodes(t)
			for i, err := range batch(nodes, n, "right") {
				if err != nil {
					t.Errorf("login %d of %d: %v", i+1, n, err)
				}
			}
			if s := allSleeps(nodes); len(s) != 0 {
				t.Errorf("%d parallel logins with the right password delayed %v, want no delay", n, s)
			}
			counts, err := st.AuthFailures(context.Background(), aliceKeys, time.Now().Add(-time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range aliceKeys {
				if counts[k] != 0 {
					t.Errorf("failures of %s after %d successes: %d, want 0", k, n, counts[k])
				}
			}
		})
	}
}

// The delay grows with decided failures exactly as before, sequentially and
// for wrong passwords given in parallel (each confirmed before its verdict),
// while attempts in flight add nothing to it.
func TestPostgresDecidedFailuresDelay(t *testing.T) {
	nodes, st := twoGatedNodes(t)
	ctx := context.Background()
	// Sequential wrong passwords: the pair key's 3 free failures, then 1 s.
	for i, want := range []time.Duration{0, 0, 0, time.Second} {
		n := nodes[i%2]
		if _, err := n.Authenticate(ctx, "alice@example.org", "wrong", ip1); err != ErrInvalidCredentials {
			t.Fatalf("wrong password %d: %v", i+1, err)
		}
		var got time.Duration
		if s := n.takeSleeps(); len(s) == 1 {
			got = s[0]
		} else if len(s) > 1 {
			t.Fatalf("wrong password %d slept %v", i+1, s)
		}
		if got != want {
			t.Errorf("wrong password %d: delay %v, want %v", i+1, got, want)
		}
	}
	// After 4 decided failures, three wrong passwords at once: each is
	// delayed as the 5th sequential attempt would be (2 s), not more.
	for i, err := range batch(nodes, 3, "wrong") {
		if err != ErrInvalidCredentials {
			t.Errorf("parallel wrong password %d: %v", i+1, err)
		}
	}
	if s := allSleeps(nodes); len(s) != 3 || s[0] != 2*time.Second || s[1] != 2*time.Second || s[2] != 2*time.Second {
		t.Errorf("parallel attempts after 4 decided failures delayed %v, want 2s each", s)
	}
	// Those three were confirmed: 7 decided failures of the pair (15 s cap
	// of 2^(7-3) s). The right password is delayed by them, then forgets
	// the address's failures, not the account's.
	if _, err := nodes[0].Authenticate(ctx, "alice@example.org", "right", ip1); err != nil {
		t.Fatalf("right password after 7 failures: %v", err)
	}
	if s := nodes[0].takeSleeps(); len(s) != 1 || s[0] != 15*time.Second {
		t.Errorf("right password after 7 decided failures delayed %v, want [15s]", s)
	}
	counts, err := st.AuthFailures(ctx, aliceKeys, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if counts[aliceKeys[0]] != 0 || counts[aliceKeys[1]] != 0 || counts[aliceKeys[2]] != 7 {
		t.Errorf("failures after the success: %v, want ip 0, pair 0, account 7", counts)
	}
}

func TestDecideRefusesOnAllDelaysOnDecided(t *testing.T) {
	p := DefaultThrottlePolicy
	k := throttleKeys("alice@example.org", ip1)
	counts := func(ip, pair, user int) map[string]int {
		return map[string]int{k.ip: ip, k.pair: pair, k.user: user}
	}
	for _, c := range []struct {
		all, decided map[string]int
		blocked      bool
		delay        time.Duration
	}{
		{counts(9, 9, 9), counts(0, 0, 0), false, 0},
		{counts(9, 9, 9), counts(4, 4, 4), false, 2 * time.Second},
		{counts(10, 10, 10), counts(0, 0, 0), true, 0},
		{counts(50, 1, 1), counts(0, 0, 0), true, 0},
		{counts(49, 9, 500), counts(0, 0, 0), false, 0},
		{counts(49, 9, 500), counts(0, 0, 30), false, 2 * time.Second},
		{counts(49, 9, 500), counts(7, 0, 0), false, 4 * time.Second},
	} {
		v := p.decide(k, c.all, c.decided)
		if v.blocked != c.blocked || !v.blocked && v.delay != c.delay {
			t.Errorf("decide(all %v, decided %v) = %+v; want blocked %v, delay %v", c.all, c.decided, v, c.blocked, c.delay)
		}
	}
}

// A wrong password whose confirm cannot be written is still a wrong
// password; its failure stays in flight, counting for the limits.
func TestConfirmFailureKeepsVerdictAndLimit(t *testing.T) {
	st := newFakeStore()
	st.add("alice@example.org", mustHash(t, "right"))
	st.confirmErr = errors.New("connection reset")
	h := newHarness(t, st)
	for i := range DefaultThrottlePolicy.PairBlock {
		if _, err := h.Authenticate(context.Background(), "alice@example.org", "wrong", ip1); err != ErrInvalidCredentials {
			t.Fatalf("wrong password %d with the confirm failing: %v", i+1, err)
		}
	}
	if n, f := st.count("userip:alice@example.org|192.0.2.10"), st.inFlight("userip:alice@example.org|192.0.2.10"); n != 10 || f != 10 {
		t.Errorf("pair failures %d, in flight %d; want 10 and 10", n, f)
	}
	if s := h.takeSleeps(); len(s) != 0 {
		t.Errorf("failures in flight delayed %v", s)
	}
	if _, err := h.Authenticate(context.Background(), "alice@example.org", "right", ip1); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after PairBlock failures in flight: %v, want ErrThrottled", err)
	}
}

// Concurrent successful logins of one user from one address each forget
// the address's failures, deleting the same rows. Those deletes deadlocked
// in PostgreSQL (imaptest's stress mode, ten clients on one account): the
// losing release left its reservation in flight for the whole window, and
// after ten such leaks the user was refused. Reserve-and-release loops of
// one key set on two nodes must never fail and must leave nothing behind.
func TestPostgresConcurrentReleasesLeaveNothing(t *testing.T) {
	url := pgtest.NewDatabase(t)
	stores := []mailstore.Store{pgtest.OpenStore(t, url), pgtest.OpenStore(t, url)}
	ctx := context.Background()
	limits := []int{50, 1000, 0}
	forget := aliceKeys[:2]
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 8 {
		wg.Go(func() {
			st := stores[g%2]
			for range 60 {
				now := time.Now()
				r, err := st.ReserveAuthFailure(ctx, aliceKeys, limits, now.Add(-time.Hour), now)
				if err == nil && !r.Reserved {
					err = fmt.Errorf("refused: %v", r.Counts)
				}
				if err == nil {
					err = st.ReleaseAuthFailure(ctx, r, forget)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	counts, err := stores[0].AuthFailures(ctx, aliceKeys, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range aliceKeys {
		if counts[k] != 0 {
			t.Errorf("%d failures of %s left after releases only", counts[k], k)
		}
	}
}
