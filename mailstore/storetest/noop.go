package storetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// A backend may answer writes that change nothing (an EXPUNGE without
// \Deleted messages, a STORE that sets flags already set, a \Recent claim
// with nothing new) from a snapshot read, without the locks of a real
// write. These cases check that such no-ops stay exact when they race real
// writes on another handle.

// testNoopExpungeVsStoreDeleted: handle a expunges \Deleted messages in a
// loop (mostly finding none) while handle b marks messages \Deleted one at
// a time. Once b's STORE has returned, the next expunge that starts must
// remove the message, unless a racing one already did; no message is
// removed twice, none without \Deleted, and the STATUS counters match the
// listing at the end.
func testNoopExpungeVsStoreDeleted(t *testing.T, f Factory) {
	fa, fb := pairOrSingle(t, f)
	a := fa.account("alice@example.org")
	inbox := fa.mailbox(a.ID, "INBOX")
	const rounds = 40
	var uids []uint32
	for i := 0; i < rounds+5; i++ {
		uids = append(uids, fa.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage(fmt.Sprint("keep ", i), "k")).UID)
	}
	keep, uids := uids[rounds:], uids[:rounds]

	var (
		mu      sync.Mutex
		removed = map[uint32]string{}
		errs    []string
	)
	record := func(who string, us []uint32) {
		mu.Lock()
		defer mu.Unlock()
		for _, u := range us {
			if prev, ok := removed[u]; ok {
				errs = append(errs, fmt.Sprintf("UID %d expunged by %s and again by %s", u, prev, who))
			}
			if slices.Contains(keep, u) {
				errs = append(errs, fmt.Sprintf("UID %d expunged by %s without \\Deleted", u, who))
			}
			removed[u] = who
		}
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// Alternately the whole mailbox and explicit ranges (\Deleted only).
		for i := 0; ; i++ {
			var set mailstore.UIDSet
			if i%2 == 1 {
				set = mailstore.UIDSet{{Start: 1, Stop: 0}}
			}
			r, err := fa.st.Expunge(fa.ctx, a.ID, inbox.ID, set, true)
			if err != nil {
				done <- err
				return
			}
			record("the looping expunge", r.UIDs)
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
		}
	}()
	for i, u := range uids {
		r, err := fb.st.StoreFlags(fb.ctx, a.ID, inbox.ID, mailstore.UIDs(u), mailstore.FlagsAdd, fl(mailstore.FlagDeleted), 0)
		must(t, err, "StoreFlags +\\Deleted")
		if len(r.Updated) != 1 {
			t.Fatalf("round %d: STORE +\\Deleted on UID %d updated %v", i, u, uidsOf(r.Updated))
		}
		// An expunge that starts now, on either handle, sees the flag.
		ex := fa
		if i%2 == 1 {
			ex = fb
		}
		x, err := ex.st.Expunge(ex.ctx, a.ID, inbox.ID, nil, true)
		must(t, err, "Expunge after the STORE returned")
		record("the expunge after the STORE", x.UIDs)
		// Removed by it or by a racing expunge that returned meanwhile
		// (whose result the loop may not have recorded yet).
		if left := fb.list(a.ID, inbox.ID, mailstore.UIDs(u)); len(left) != 0 {
			t.Errorf("round %d: UID %d is \\Deleted (STORE returned) but the next expunge left it", i, u)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Error(e)
	}
	for _, u := range uids {
		if _, ok := removed[u]; !ok {
			t.Errorf("UID %d is gone but no expunge reported it", u)
		}
	}
	if got := uidsOf(fa.list(a.ID, inbox.ID, nil)); !equalUIDs(got, keep) {
		t.Errorf("left %v, want %v", got, keep)
	}
	if s := fb.status(a.ID, inbox.ID); s.Messages != uint32(len(keep)) || s.Deleted != 0 || s.Unseen != uint32(len(keep)) {
		t.Errorf("status = %d messages, %d deleted, %d unseen; want %d, 0, %d", s.Messages, s.Deleted, s.Unseen, len(keep), len(keep))
	}
	fa.checkQuota(a.ID, fa.sumSizes(a.ID), "after the race")
}

// testNoopStoresKeepCounters: workers on two handles store random system
// flags (most of them already set or already clear, so most STOREs change
// nothing) and expunge \Deleted messages, while messages are appended;
// every STORE result must be consistent with the flags it was asked to set,
// and at the end STATUS (messages, unseen, deleted) on both handles must
// match the listing.
func testNoopStoresKeepCounters(t *testing.T, f Factory) {
	fa, fb := pairOrSingle(t, f)
	a := fa.account("alice@example.org")
	inbox := fa.mailbox(a.ID, "INBOX")
	for i := 0; i < 12; i++ {
		fa.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage(fmt.Sprint("c", i), "c"))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w, fx := range []*fixture{fa, fb, fa, fb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 12))
			for i := 0; i < 60; i++ {
				lo := uint32(rng.IntN(14) + 1)
				set := mailstore.UIDSet{{Start: lo, Stop: lo + uint32(rng.IntN(4))}}
				switch k := rng.IntN(10); {
				case k < 7:
					flag := []mailstore.SystemFlag{mailstore.FlagSeen, mailstore.FlagDeleted, mailstore.FlagFlagged}[rng.IntN(3)]
					op := []mailstore.FlagOp{mailstore.FlagsAdd, mailstore.FlagsRemove}[rng.IntN(2)]
					r, err := fx.st.StoreFlags(fx.ctx, a.ID, inbox.ID, set, op, fl(flag), 0)
					if err != nil {
						errs <- err
						return
					}
					for _, m := range r.Updated {
						if (m.Flags.System&flag != 0) != (op == mailstore.FlagsAdd) {
							errs <- fmt.Errorf("STORE %v flag %v on UID %d reported flags %s", op, flag, m.UID, flagString(m.Flags))
							return
						}
					}
				case k < 9:
					r, err := fx.st.Expunge(fx.ctx, a.ID, inbox.ID, set, true)
					if err != nil {
						errs <- err
						return
					}
					if len(r.UIDs) > 0 && r.HighestModSeq == 0 {
						errs <- fmt.Errorf("expunge of %v reported highestmodseq 0", r.UIDs)
						return
					}
				default:
					_, err := fx.st.Append(fx.ctx, a.ID, inbox.ID, mailstore.Flags{}, time.Time{},
						bytes.NewReader(simpleMessage(fmt.Sprintf("w%d-%d", w, i), "a")))
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list := fa.list(a.ID, inbox.ID, nil)
	var unseen, deleted uint32
	for _, m := range list {
		if m.Flags.System&mailstore.FlagSeen == 0 {
			unseen++
		}
		if m.Flags.System&mailstore.FlagDeleted != 0 {
			deleted++
		}
	}
	for _, fx := range []*fixture{fa, fb} {
		if s := fx.status(a.ID, inbox.ID); s.Messages != uint32(len(list)) || s.Unseen != unseen || s.Deleted != deleted {
			t.Errorf("status = %d messages, %d unseen, %d deleted; the listing has %d, %d, %d",
				s.Messages, s.Unseen, s.Deleted, len(list), unseen, deleted)
		}
	}
	fa.checkQuota(a.ID, fa.sumSizes(a.ID), "after the stores")
}
