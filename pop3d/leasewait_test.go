package pop3d

import "testing"

// A release on this node wakes every login waiting for that lock, and the
// bookkeeping goes with the last waiter or the release.
func TestLeaseFreedWakesWaiters(t *testing.T) {
	var o orphanLeases
	a, doneA := o.waitFreed("pop3:1")
	b, doneB := o.waitFreed("pop3:1")
	other, doneOther := o.waitFreed("pop3:2")
	o.signalFreed("pop3:1")
	for i, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Fatalf("waiter %d not woken by the release", i)
		}
	}
	select {
	case <-other:
		t.Fatal("a release of another lock woke a waiter")
	default:
	}
	doneA()
	doneB()
	if len(o.freed) != 1 {
		t.Fatalf("%d entries after the released lock's waiters left, want 1 (the other lock's)", len(o.freed))
	}
	doneOther()
	if len(o.freed) != 0 {
		t.Fatalf("%d entries after every waiter left, want 0", len(o.freed))
	}
	// A release nobody waits for, and a wait after it, start afresh.
	o.signalFreed("pop3:3")
	c, doneC := o.waitFreed("pop3:3")
	select {
	case <-c:
		t.Fatal("a wait that began after the release was woken by it")
	default:
	}
	doneC()
}
