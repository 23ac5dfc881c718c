package postgres

import "testing"

func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHubMarks: what MayHaveChanged answers for every state of the hub.
func TestHubMarks(t *testing.T) {
	h := newHub()
	ch, cancel := h.subscribe(1)
	defer cancel()
	m0 := h.mark()
	if !h.mayHaveChanged(1, 10, 5, m0) {
		t.Fatal("before the listener connected: unchanged")
	}
	h.connected()
	if !pending(ch) {
		t.Fatal("no wake-up on connect")
	}
	if !h.mayHaveChanged(1, 10, 5, m0) {
		t.Fatal("a mark from before the connect counts")
	}
	m1 := h.mark()
	if h.mayHaveChanged(1, 10, 5, m1) || h.mayHaveChanged(1, 11, 0, m1) {
		t.Fatal("nothing notified, yet changed")
	}
	// Another account, another mailbox: no effect.
	h.record([]change{{account: 2}, {account: 1, mailbox: 11, modseq: 3}})
	if !pending(ch) || h.mayHaveChanged(1, 10, 5, m1) {
		t.Fatal("a change to mailbox 11 affects mailbox 10 (or woke nobody)")
	}
	if !h.mayHaveChanged(1, 11, 2, m1) || h.mayHaveChanged(1, 11, 3, m1) {
		t.Fatal("mailbox 11 at modseq 3: wrong answer for views at 2 and 3")
	}
	// The echo of a known change wakes nobody; a lower one changes nothing.
	h.record([]change{{account: 1, mailbox: 11, modseq: 3}, {account: 1, mailbox: 11, modseq: 2}})
	if pending(ch) || h.mayHaveChanged(1, 11, 3, m1) {
		t.Fatal("an echo woke the subscriber or raised the record")
	}
	// Account-level: every mailbox, for marks taken before it only.
	h.record([]change{{account: 1}})
	if !pending(ch) || !h.mayHaveChanged(1, 10, 5, m1) || !h.mayHaveChanged(1, 99, 1<<40, m1) {
		t.Fatal("an account-level change does not count for every mailbox")
	}
	m2 := h.mark()
	if h.mayHaveChanged(1, 10, 5, m2) {
		t.Fatal("an account-level change counts for a mark taken after it")
	}
	// Listener down: everything may have changed; back up: marks before void.
	h.disconnected()
	if !h.mayHaveChanged(1, 10, 5, m2) {
		t.Fatal("listener down, yet unchanged")
	}
	h.connected()
	if !h.mayHaveChanged(1, 10, 5, m2) {
		t.Fatal("after a reconnect, a mark from before counts")
	}
	// A mark taken before the account had a subscriber is void.
	m3 := h.mark()
	ch2, cancel2 := h.subscribe(2)
	defer cancel2()
	if !h.mayHaveChanged(2, 20, 1, m3) || h.mayHaveChanged(2, 20, 1, h.mark()) {
		t.Fatal("subscription after the mark")
	}
	_ = ch2
	// Unsubscribed accounts are forgotten.
	cancel2()
	if _, ok := h.accts[2]; ok {
		t.Fatal("record kept without subscribers")
	}
	if !h.mayHaveChanged(2, 20, 1, h.mark()) {
		t.Fatal("an account without subscribers counts as unchanged")
	}
}
