package postgres

import (
	"sync"

	"github.com/postrider/postrider/mailstore"
)

// hub fans change notifications out to this node's subscribers and keeps,
// for every account that has one, what the notifications said: per
// mailbox the highest mod-sequence notified, and when the account as a
// whole was last said to have changed. A session asks it (MayHaveChanged)
// whether its mailbox may have changed since the mod-sequence its view
// reflects, and skips the catch-up query when it cannot have: most
// notifications of an account concern another mailbox, or the session's
// own write, which it has applied already.
//
// Positions: seq counts the hub's events (an account record begun, an
// account-level change, a (re)connect). A mark is the seq at some moment;
// whatever the hub learns after it has a higher seq. A record is complete
// from its account's first subscription on, and only while the listener
// is connected: PostgreSQL delivers a notification to every connection
// that listened when the notifying transaction committed, so a listener
// that stays connected misses nothing; after a reconnect (reset) every
// mark taken before counts as void.
type hub struct {
	mu     sync.Mutex
	seq    uint64
	up     bool   // the listener is connected
	reset  uint64 // seq of the last (re)connect: marks before it are void
	accts  map[int64]*acctRecord
	counts hubCounts
}

type acctRecord struct {
	subs    map[*chan struct{}]struct{}
	since   uint64          // seq when the record began
	unknown uint64          // seq of the last account-level change
	boxes   map[int64]int64 // mailbox → highest modseq notified
}

// hubCounts are for tests and metrics.
type hubCounts struct {
	skipped, needed uint64 // MayHaveChanged answers
}

func newHub() *hub { return &hub{accts: map[int64]*acctRecord{}} }

func (h *hub) subscribe(accountID int64) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	key := &ch
	h.mu.Lock()
	r := h.accts[accountID]
	if r == nil {
		h.seq++
		r = &acctRecord{subs: map[*chan struct{}]struct{}{}, since: h.seq, boxes: map[int64]int64{}}
		h.accts[accountID] = r
	}
	r.subs[key] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if r := h.accts[accountID]; r != nil {
				delete(r.subs, key)
				if len(r.subs) == 0 {
					delete(h.accts, accountID)
				}
			}
			h.mu.Unlock()
		})
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a value is already pending; it covers this change too
	}
}

// record notes changes and wakes the subscribers of the accounts they
// tell something new about. Accounts nobody here subscribes to are not
// kept (a later subscriber reads the database after subscribing).
func (h *hub) record(cs []change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cs {
		r := h.accts[c.account]
		if r == nil {
			continue
		}
		if c.mailbox == 0 {
			h.seq++
			r.unknown = h.seq
		} else if old, ok := r.boxes[c.mailbox]; !ok || c.modseq > old {
			r.boxes[c.mailbox] = c.modseq
		} else {
			continue // known already (this node's own write, echoed)
		}
		for k := range r.subs {
			signal(*k)
		}
	}
}

// connected starts a new epoch: the listener (re)connected, or something
// said anything may have changed. Every subscriber is woken.
func (h *hub) connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up = true
	h.seq++
	h.reset = h.seq
	for _, r := range h.accts {
		clear(r.boxes)
		for k := range r.subs {
			signal(*k)
		}
	}
}

// disconnected notes that the listener is down: until it is back, any
// mailbox may have changed.
func (h *hub) disconnected() {
	h.mu.Lock()
	h.up = false
	h.mu.Unlock()
}

func (h *hub) mark() mailstore.ChangeMark {
	h.mu.Lock()
	defer h.mu.Unlock()
	return mailstore.ChangeMark(h.seq)
}

func (h *hub) mayHaveChanged(accountID, mailboxID int64, since uint64, mark mailstore.ChangeMark) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := uint64(mark)
	r := h.accts[accountID]
	changed := !h.up || h.reset > m || r == nil || r.since > m || r.unknown > m ||
		uint64(max(r.boxes[mailboxID], 0)) > since
	if changed {
		h.counts.needed++
	} else {
		h.counts.skipped++
	}
	return changed
}

// Subscribe implements mailstore.Store. Values arrive after commits on any
// node (via LISTEN/NOTIFY; this node's own at once) and after the listener
// (re)connects, when notifications may have been missed.
func (s *Store) Subscribe(accountID int64) (<-chan struct{}, func()) {
	return s.hub.subscribe(accountID)
}

// ChangeMark implements mailstore.Store.
func (s *Store) ChangeMark() mailstore.ChangeMark { return s.hub.mark() }

// MayHaveChanged implements mailstore.Store (see hub).
func (s *Store) MayHaveChanged(accountID, mailboxID int64, since uint64, mark mailstore.ChangeMark) bool {
	return s.hub.mayHaveChanged(accountID, mailboxID, since, mark)
}

// ChangeHintStats reports how often MayHaveChanged answered false (a
// catch-up skipped) and true.
func (s *Store) ChangeHintStats() (skipped, needed uint64) {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.counts.skipped, s.hub.counts.needed
}
