package storetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// observer follows one mailbox through Changes, as an IMAP session catching
// up would, and checks what the issue requires of concurrent writers: UIDs
// appear in ascending order of commit, and every change carries a modseq
// above the highest modseq observed before it committed. A transaction that
// committed with a modseq (or UID) at or below what an observer had already
// seen would be missed by every session forever; the final comparison with a
// full listing catches that.
type observer struct {
	fx         *fixture
	acct, mbox int64
	h          uint64
	uidNext    uint32
	maxUID     uint32
	seen       map[uint32]uint64 // UID -> last observed modseq
	vanished   map[uint32]bool
	errs       []string
}

func newObserver(fx *fixture, acct, mbox int64) *observer {
	return &observer{fx: fx, acct: acct, mbox: mbox, seen: map[uint32]uint64{}, vanished: map[uint32]bool{}}
}

func (o *observer) errorf(format string, args ...any) {
	if len(o.errs) < 20 {
		o.errs = append(o.errs, fmt.Sprintf(format, args...))
	}
}

// step catches up once.
func (o *observer) step() error {
	c, err := o.fx.st.Changes(o.fx.ctx, o.acct, o.mbox, o.h)
	if err != nil {
		return err
	}
	if c.HighestModSeq < o.h {
		o.errorf("highestmodseq went back from %d to %d", o.h, c.HighestModSeq)
	}
	if c.UIDNext < o.uidNext {
		o.errorf("uidnext went back from %d to %d", o.uidNext, c.UIDNext)
	}
	if !strictlyAscending(uidsOf(c.Updated)) {
		o.errorf("Changes(%d).Updated not strictly ascending: %v", o.h, uidsOf(c.Updated))
	}
	batchMax := o.maxUID
	for _, m := range c.Updated {
		if m.ModSeq <= o.h || m.ModSeq > c.HighestModSeq {
			o.errorf("UID %d modseq %d outside (%d, %d]", m.UID, m.ModSeq, o.h, c.HighestModSeq)
		}
		if _, old := o.seen[m.UID]; !old && !o.vanished[m.UID] {
			if m.UID <= o.maxUID {
				o.errorf("new UID %d appeared after UID %d had been observed: UIDs not allocated in commit order", m.UID, o.maxUID)
			}
			batchMax = max(batchMax, m.UID)
		}
		if m.UID >= c.UIDNext {
			o.errorf("UID %d listed but uidnext is %d", m.UID, c.UIDNext)
		}
		o.seen[m.UID] = m.ModSeq
	}
	for _, u := range c.Vanished {
		o.vanished[u] = true
		delete(o.seen, u)
	}
	o.maxUID = batchMax
	o.h = c.HighestModSeq
	o.uidNext = c.UIDNext
	return nil
}

// run steps until stop is closed, then once more.
func (o *observer) run(stop <-chan struct{}, done chan<- error) {
	for {
		select {
		case <-stop:
			done <- o.step()
			return
		default:
		}
		if err := o.step(); err != nil {
			done <- err
			return
		}
	}
}

// finish compares the observer's view with a full listing.
func (o *observer) finish(t *testing.T, name string) {
	t.Helper()
	for _, e := range o.errs {
		t.Errorf("%s observer: %s", name, e)
	}
	list := o.fx.list(o.acct, o.mbox, nil)
	if len(list) != len(o.seen) {
		t.Errorf("%s observer saw %d live messages, the listing has %d", name, len(o.seen), len(list))
	}
	missed := 0
	for _, m := range list {
		if got, ok := o.seen[m.UID]; !ok || got != m.ModSeq {
			if missed++; missed <= 10 {
				t.Errorf("%s observer missed a change: UID %d has modseq %d, observer last saw %d (present %v); it committed with a modseq at or below an already observed highestmodseq",
					name, m.UID, m.ModSeq, got, ok)
			}
		}
	}
	if s := o.fx.status(o.acct, o.mbox); s.HighestModSeq != o.h {
		t.Errorf("%s observer ended at highestmodseq %d, status says %d", name, o.h, s.HighestModSeq)
	}
}

// paddedMessage makes a message whose size depends on n.
func paddedMessage(tag string, n int) []byte {
	return simpleMessage(tag, strings.Repeat(fmt.Sprintf("%s line %d\n", tag, n), 1+n%40))
}

// testConcurrentDeliverFlags: 20 goroutines deliver to and change flags in
// one mailbox while an observer catches up continuously.
func testConcurrentDeliverFlags(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	const workers, perWorker = 20, 8

	obs := newObserver(fx, a.ID, inbox.ID)
	stop := make(chan struct{})
	obsDone := make(chan error, 1)
	go obs.run(stop, obsDone)

	var mu sync.Mutex
	sizes := map[uint32]int64{}
	var order []uint32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for i := 0; i < perWorker; i++ {
				body := paddedMessage(fmt.Sprintf("w%d-%d", w, i), w*perWorker+i)
				r, err := fx.st.Deliver(fx.ctx, &mailstore.Delivery{
					MailFrom: "sender@remote.example", Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: bytes.NewReader(body),
				})
				if err != nil {
					t.Errorf("worker %d: Deliver: %v", w, err)
					return
				}
				uid := r.Delivered[0].UID
				mu.Lock()
				if _, dup := sizes[uid]; dup {
					t.Errorf("UID %d returned by two deliveries", uid)
				}
				sizes[uid] = int64(len(body))
				order = append(order, uid)
				other := order[rng.IntN(len(order))]
				mu.Unlock()
				op := mailstore.FlagsAdd
				if i%3 == 2 {
					op = mailstore.FlagsRemove
				}
				set := mailstore.UIDs(min(uid, other), max(uid, other))
				if uid == other {
					set = mailstore.UIDs(uid)
				}
				kw := fl(mailstore.FlagSeen, fmt.Sprintf("$w%d", w%5))
				if _, err := fx.st.StoreFlags(fx.ctx, a.ID, inbox.ID, set, op, kw, 0); err != nil {
					t.Errorf("worker %d: StoreFlags: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-obsDone; err != nil {
		t.Fatalf("observer: Changes: %v", err)
	}
	obs.finish(t, "deliver+flags")

	list := fx.list(a.ID, inbox.ID, nil)
	var sum int64
	for _, m := range list {
		want, ok := sizes[m.UID]
		if !ok {
			t.Errorf("listed UID %d was returned by no delivery", m.UID)
		} else if m.Size != want {
			t.Errorf("UID %d size %d, delivered %d octets", m.UID, m.Size, want)
		}
		sum += m.Size
	}
	if len(list) != len(sizes) || len(sizes) != workers*perWorker {
		t.Errorf("%d deliveries returned %d distinct UIDs; the mailbox lists %d", workers*perWorker, len(sizes), len(list))
	}
	s := fx.status(a.ID, inbox.ID)
	if s.Messages != uint32(len(list)) || s.Size != sum || s.UIDNext <= slices.Max(uidsOf(list)) {
		t.Errorf("status %+v; want %d messages, size %d, uidnext above every UID", s, len(list), sum)
	}
	var maxMod uint64
	for _, m := range list {
		maxMod = max(maxMod, m.ModSeq)
	}
	if s.HighestModSeq != maxMod {
		t.Errorf("highestmodseq %d, highest message modseq %d (no expunges happened)", s.HighestModSeq, maxMod)
	}
	fx.checkQuota(a.ID, sum, "after concurrent deliveries")
}

// testConcurrentMultiRecipient: deliveries to the same two accounts listed in
// opposite orders must neither deadlock nor fail.
func testConcurrentMultiRecipient(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	const workers, perWorker = 20, 5
	shared := [][]byte{fixedMessage("shared small", 0), genMessage(700_000, 77), fixedMessage("shared other", 3)}
	var mu sync.Mutex
	got := map[int64][]uint32{}
	var total int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := []mailstore.Recipient{{AccountID: a.ID}, {AccountID: b.ID}}
			if w%2 == 1 {
				rc[0], rc[1] = rc[1], rc[0]
			}
			for i := 0; i < perWorker; i++ {
				// Identical octets from several workers at once: the shared
				// content must be stored once without conflicts.
				body := shared[i%len(shared)]
				r, err := fx.st.Deliver(fx.ctx, &mailstore.Delivery{Recipients: rc, Body: bytes.NewReader(body)})
				if err != nil {
					t.Errorf("worker %d: Deliver: %v", w, err)
					return
				}
				mu.Lock()
				for _, d := range r.Delivered {
					got[d.AccountID] = append(got[d.AccountID], d.UID)
				}
				total += int64(len(body))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, acct := range []mailstore.Account{a, b} {
		uids := sortedUIDs(got[acct.ID])
		if len(slices.Compact(slices.Clone(uids))) != len(uids) || len(uids) != workers*perWorker {
			t.Errorf("%s: %d UIDs returned (duplicates: %v), want %d distinct", acct.Address, len(uids),
				len(slices.Compact(slices.Clone(uids))) != len(uids), workers*perWorker)
		}
		if list := uidsOf(fx.list(acct.ID, fx.mailbox(acct.ID, "INBOX").ID, nil)); !slices.Equal(list, uids) {
			t.Errorf("%s: INBOX lists %d UIDs, deliveries returned %d", acct.Address, len(list), len(uids))
		}
		fx.checkQuota(acct.ID, total, acct.Address)
	}
}

// testConcurrentCopyMoveExpunge: copies, moves and expunges race on one
// source mailbox. Every source UID leaves at most once (by move or expunge),
// every copy is complete, and the quota stays exact.
func testConcurrentCopyMoveExpunge(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	src := fx.mailbox(a.ID, "INBOX")
	copies := fx.mailbox(a.ID, "Archive")
	moved := fx.mailbox(a.ID, "Trash")
	const n = 30
	srcSize := map[uint32]int64{}
	var srcUIDs []uint32
	for i := 0; i < n; i++ {
		r := fx.appendMsg(a.ID, src.ID, fl(mailstore.SystemFlag(1<<(i%5))), fixedDate, paddedMessage("cme", i))
		srcSize[r.UID] = r.Size
		srcUIDs = append(srcUIDs, r.UID)
	}

	var mu sync.Mutex
	removed := map[uint32]string{}      // source UID -> how it left
	copyOf := map[uint32]uint32{}       // Archive UID -> source UID
	moveOf := map[uint32]uint32{}       // Trash UID -> source UID
	expungedCopies := map[uint32]bool{} // Archive UIDs expunged
	note := func(m map[uint32]uint32, r mailstore.CopyResult, what string) {
		if len(r.SrcUIDs) != len(r.DstUIDs) || !strictlyAscending(r.SrcUIDs) || !strictlyAscending(r.DstUIDs) {
			t.Errorf("%s result malformed: %+v", what, r)
			return
		}
		for i, d := range r.DstUIDs {
			if _, dup := m[d]; dup {
				t.Errorf("%s: destination UID %d assigned twice", what, d)
			}
			m[d] = r.SrcUIDs[i]
		}
	}
	leave := func(uids []uint32, how string) {
		for _, u := range uids {
			if prev, dup := removed[u]; dup {
				t.Errorf("source UID %d removed twice: by %s and by %s", u, prev, how)
			}
			removed[u] = how
		}
	}
	pick := func(rng *rand.Rand, k int) mailstore.UIDSet {
		var s []uint32
		for len(s) < k {
			u := srcUIDs[rng.IntN(n)]
			if !slices.Contains(s, u) {
				s = append(s, u)
			}
		}
		slices.Sort(s)
		return mailstore.UIDs(s...)
	}
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < 4; i++ {
				switch w % 4 {
				case 0, 1: // copy
					r, err := fx.st.Copy(fx.ctx, a.ID, src.ID, pick(rng, 5), copies.ID)
					if err != nil {
						t.Errorf("Copy: %v", err)
						return
					}
					mu.Lock()
					note(copyOf, r, "Copy")
					mu.Unlock()
				case 2: // move
					r, err := fx.st.Move(fx.ctx, a.ID, src.ID, pick(rng, 2), moved.ID)
					if err != nil {
						t.Errorf("Move: %v", err)
						return
					}
					mu.Lock()
					note(moveOf, r, "Move")
					leave(r.SrcUIDs, fmt.Sprintf("Move by worker %d", w))
					mu.Unlock()
				case 3: // expunge from the source, then from the copies
					r, err := fx.st.Expunge(fx.ctx, a.ID, src.ID, pick(rng, 2), false)
					if err != nil {
						t.Errorf("Expunge: %v", err)
						return
					}
					mu.Lock()
					leave(r.UIDs, fmt.Sprintf("Expunge by worker %d", w))
					var some []uint32
					for d := range copyOf {
						if len(some) < 3 && !expungedCopies[d] {
							some = append(some, d)
						}
					}
					mu.Unlock()
					slices.Sort(some)
					r2, err := fx.st.Expunge(fx.ctx, a.ID, copies.ID, mailstore.UIDs(some...), false)
					if err != nil {
						t.Errorf("Expunge of copies: %v", err)
						return
					}
					mu.Lock()
					for _, u := range r2.UIDs {
						if expungedCopies[u] {
							t.Errorf("copy UID %d expunged twice", u)
						}
						expungedCopies[u] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()

	var wantSrc []uint32
	for _, u := range srcUIDs {
		if _, gone := removed[u]; !gone {
			wantSrc = append(wantSrc, u)
		}
	}
	if got := uidsOf(fx.list(a.ID, src.ID, nil)); !equalUIDs(got, wantSrc) {
		t.Errorf("source lists %v, want %v", got, wantSrc)
	}
	check := func(mb mailstore.Mailbox, of map[uint32]uint32, expunged map[uint32]bool) {
		var want []uint32
		for d := range of {
			if !expunged[d] {
				want = append(want, d)
			}
		}
		slices.Sort(want)
		list := fx.list(a.ID, mb.ID, nil)
		if got := uidsOf(list); !equalUIDs(got, want) {
			t.Errorf("%s lists %v, want %v", mb.Name, got, want)
		}
		for _, m := range list {
			if s := of[m.UID]; m.Size != srcSize[s] {
				t.Errorf("%s UID %d (from %d) size %d, source size %d", mb.Name, m.UID, s, m.Size, srcSize[s])
			}
		}
	}
	check(copies, copyOf, expungedCopies)
	check(moved, moveOf, nil)
	fx.checkQuota(a.ID, -1, "after concurrent copy/move/expunge")
}

// fixedMessage is a message whose octets depend only on its arguments (no
// unique Message-ID), for content shared between deliveries.
func fixedMessage(subject string, n int) []byte {
	return buildMessage([]string{"From: fixed@remote.example", "To: rcpt@example.org", "Subject: " + subject},
		strings.Repeat("fixed content line\n", 1+n))
}

// testConcurrentSharedContent: identical content is delivered and expunged
// over and over by concurrent workers; content shared by several messages
// must never be removed while one of them still uses it, or be half
// stored.
func testConcurrentSharedContent(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	bodies := [][]byte{fixedMessage("churn", 5), genMessage(600_000, 123)}
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				body := bodies[(w+i)%len(bodies)]
				r, err := fx.st.Deliver(fx.ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: bytes.NewReader(body)})
				if err != nil {
					t.Errorf("worker %d: Deliver of %d octets: %v", w, len(body), err)
					return
				}
				uid := r.Delivered[0].UID
				if got, err := fx.read(a.ID, inbox.ID, uid, 0, -1); err != nil || !bytes.Equal(got, body) {
					t.Errorf("worker %d: reading back UID %d: %v (equal %v)", w, uid, err, bytes.Equal(got, body))
				}
				if _, err := fx.st.Expunge(fx.ctx, a.ID, inbox.ID, mailstore.UIDs(uid), false); err != nil {
					t.Errorf("worker %d: Expunge: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, body := range bodies {
		r := fx.deliver(body, mailstore.Recipient{AccountID: a.ID})
		if got := fx.mustRead(a.ID, inbox.ID, r.Delivered[0].UID); !bytes.Equal(got, body) {
			t.Errorf("content %d delivered after the churn reads back %d octets, want %d (first difference at %d)",
				i, len(got), len(body), firstDiff(got, body))
		}
	}
	fx.checkQuota(a.ID, int64(len(bodies[0])+len(bodies[1])), "after the churn")
}
