package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// notifyTimeout bounds the wait for a change notification: generous, since
// a signal may travel through the database to another handle.
const notifyTimeout = 10 * time.Second

// waitSignal waits for a value on ch.
func waitSignal(t *testing.T, ch <-chan struct{}, what string) bool {
	t.Helper()
	timer := time.NewTimer(notifyTimeout)
	defer timer.Stop()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Errorf("%s: notification channel closed while subscribed", what)
			return false
		}
		return true
	case <-timer.C:
		t.Errorf("%s: no notification within %v", what, notifyTimeout)
		return false
	}
}

// drain empties ch without blocking.
func drain(ch <-chan struct{}) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

// pairOrSingle returns two handles on one database, or the same store twice
// when the factory has no NewPair.
func pairOrSingle(t *testing.T, f Factory) (a, b *fixture) {
	if f.NewPair == nil {
		fx := newFixture(t, f)
		return fx, fx
	}
	return pair(t, f)
}

func testNotifySameHandle(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	checkNotifications(t, fx, fx)
}

func testNotifyCrossHandle(t *testing.T, f Factory) {
	a, b := pair(t, f)
	checkNotifications(t, a, b)
}

// checkNotifications subscribes on sub and changes alice's mail through
// writer; every committed change must signal, and the change must be
// visible through sub once it has.
func checkNotifications(t *testing.T, sub, writer *fixture) {
	alice := writer.account("alice@example.org")
	inbox := writer.mailbox(alice.ID, "INBOX")
	trash := writer.mailbox(alice.ID, "Trash")
	ch, cancel := sub.st.Subscribe(alice.ID)
	defer cancel()
	h := sub.status(alice.ID, inbox.ID).HighestModSeq

	var uid uint32
	steps := []struct {
		name string
		op   func()
	}{
		{"Deliver", func() {
			uid = writer.deliver(simpleMessage("notify", "n"), mailstore.Recipient{AccountID: alice.ID}).Delivered[0].UID
		}},
		{"StoreFlags", func() {
			writer.storeFlags(alice.ID, inbox.ID, mailstore.UIDs(uid), mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)
		}},
		{"Append", func() {
			writer.appendMsg(alice.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("appended", "a"))
		}},
		{"Expunge", func() { writer.expunge(alice.ID, inbox.ID, mailstore.UIDs(uid), false) }},
		{"Move", func() {
			_, err := writer.st.Move(writer.ctx, alice.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, trash.ID)
			must(t, err, "Move")
		}},
	}
	for _, s := range steps {
		drain(ch)
		s.op()
		if !waitSignal(t, ch, "after "+s.name) {
			continue
		}
		// The signal comes after the commit: the reader sees the change.
		c := sub.changes(alice.ID, inbox.ID, h)
		if c.HighestModSeq <= h {
			t.Errorf("after %s signalled, highestmodseq read through the subscriber is %d, not above %d", s.name, c.HighestModSeq, h)
		}
		h = c.HighestModSeq
	}

	// A cancelled subscription stops receiving; others keep working.
	ch2, cancel2 := sub.st.Subscribe(alice.ID)
	defer cancel2()
	cancel()
	drain(ch)
	drain(ch2)
	writer.deliver(simpleMessage("after cancel", "c"), mailstore.Recipient{AccountID: alice.ID})
	if waitSignal(t, ch2, "second subscriber after the first cancelled") {
		select {
		case _, ok := <-ch:
			if ok {
				t.Errorf("a cancelled subscription still received a notification")
			}
		default:
		}
	}
}

func testLeases(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	acquire := func(fx *fixture, name, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := fx.st.AcquireLease(fx.ctx, name, holder, ttl)
		must(t, err, fmt.Sprintf("AcquireLease %s by %s", name, holder))
		return ok
	}
	renew := func(fx *fixture, name, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := fx.st.RenewLease(fx.ctx, name, holder, ttl)
		must(t, err, fmt.Sprintf("RenewLease %s by %s", name, holder))
		return ok
	}
	expect := func(got, want bool, what string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	const long = 60 * time.Second
	expect(acquire(a, "pop3:alice", "node-a", long), true, "acquire free lease")
	expect(acquire(b, "pop3:alice", "node-b", long), false, "acquire lease held by another")
	expect(acquire(a, "pop3:alice", "node-a", long), true, "acquire lease already held by the same holder")
	expect(acquire(b, "pop3:bob", "node-b", long), true, "acquire another name")
	expect(renew(a, "pop3:alice", "node-a", long), true, "renew by holder")
	expect(renew(b, "pop3:alice", "node-b", long), false, "renew by non-holder")
	expect(renew(b, "never", "node-b", long), false, "renew of a lease never taken")
	must(t, b.st.ReleaseLease(b.ctx, "pop3:alice", "node-b"), "ReleaseLease by non-holder")
	expect(acquire(b, "pop3:alice", "node-b", long), false, "acquire after a non-holder's release")
	must(t, a.st.ReleaseLease(a.ctx, "pop3:alice", "node-a"), "ReleaseLease by holder")
	expect(acquire(b, "pop3:alice", "node-b", long), true, "acquire after the holder's release")
	expect(renew(a, "pop3:alice", "node-a", long), false, "renew by the former holder")

	// Expiry: a lease not renewed is free once its ttl has passed.
	const ttl = 2 * time.Second
	start := time.Now()
	expect(acquire(a, "exp", "node-a", ttl), true, "acquire short lease")
	if held := acquire(b, "exp", "node-b", long); held && time.Since(start) < ttl-200*time.Millisecond {
		t.Errorf("short lease taken by another holder %v after it was acquired with ttl %v", time.Since(start), ttl)
	}
	deadline := time.Now().Add(ttl + notifyTimeout)
	for !acquire(b, "exp", "node-b", long) {
		if time.Now().After(deadline) {
			t.Fatalf("lease with ttl %v still held %v after acquisition", ttl, time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if el := time.Since(start); el < ttl-200*time.Millisecond {
		t.Errorf("lease with ttl %v expired after only %v", ttl, el)
	}
	expect(renew(a, "exp", "node-a", ttl), false, "renew of an expired lease taken over by another")

	// Renewing keeps a lease past its original ttl.
	const rttl = 3 * time.Second
	expect(acquire(a, "renewed", "node-a", rttl), true, "acquire lease to renew")
	for i := 0; i < 4; i++ {
		time.Sleep(time.Second)
		if !renew(a, "renewed", "node-a", rttl) {
			t.Errorf("renew #%d (every second, ttl %v) failed", i+1, rttl)
		}
		expect(acquire(b, "renewed", "node-b", long), false, fmt.Sprintf("acquire by another during renewals (#%d)", i+1))
	}

	// Racing holders on two handles: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for i := 0; i < 10; i++ {
		fx := a
		if i%2 == 1 {
			fx = b
		}
		holder := fmt.Sprintf("racer-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := fx.st.AcquireLease(fx.ctx, "race", holder, long)
			if err != nil {
				t.Errorf("racing AcquireLease: %v", err)
				return
			}
			if ok {
				mu.Lock()
				winners = append(winners, holder)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Errorf("racing AcquireLease: winners %q, want exactly one", winners)
	}
}
