package storetest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testChangesEverySince builds a mixed history in one mailbox (deliveries,
// multi-recipient deliveries, appends, copies and moves in, flag changes of
// old and new messages, expunges) and after each round checks Changes for
// every mod-sequence from 0 to the mailbox's highest against the listing
// of a second handle: Updated must be exactly the live messages whose
// modseq is above since, in UID order, with the listed modseq and flags.
func testChangesEverySince(t *testing.T, f Factory) {
	var fx, oracle *fixture
	if f.NewPair != nil {
		fx, oracle = pair(t, f)
	} else {
		fx = newFixture(t, f)
		oracle = fx
	}
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	archive := fx.mailbox(a.ID, "Archive")
	fx.appendN(a.ID, archive.ID, 30)
	rng := rand.New(rand.NewPCG(2026, 11))
	pick := func(uids []uint32, max int) mailstore.UIDSet {
		var set mailstore.UIDSet
		for _, u := range uids {
			if rng.IntN(max) == 0 {
				set = append(set, mailstore.UIDRange{Start: u, Stop: u})
			}
		}
		return set
	}
	live := func(mbox int64) []uint32 { return uidsOf(fx.list(a.ID, mbox, nil)) }
	n := 0
	for round := 0; round < 5; round++ {
		for i := rng.IntN(6) + 1; i > 0; i-- {
			n++
			rcpts := []mailstore.Recipient{{AccountID: a.ID}}
			if i%2 == 0 {
				rcpts = append(rcpts, mailstore.Recipient{AccountID: b.ID})
			}
			fx.deliver(simpleMessage(fmt.Sprintf("delivered %d", n), "body"), rcpts...)
		}
		fx.appendN(a.ID, inbox.ID, rng.IntN(3))
		if set := pick(live(archive.ID), 8); set != nil {
			_, err := fx.st.Copy(fx.ctx, a.ID, archive.ID, set, inbox.ID)
			must(t, err, "Copy")
		}
		if set := pick(live(archive.ID), 8); set != nil {
			_, err := fx.st.Move(fx.ctx, a.ID, archive.ID, set, inbox.ID)
			must(t, err, "Move")
		}
		if set := pick(live(inbox.ID), 3); set != nil {
			fx.storeFlags(a.ID, inbox.ID, set, mailstore.FlagsAdd, fl(mailstore.FlagFlagged, fmt.Sprintf("round%d", round)), 0)
		}
		if set := pick(live(inbox.ID), 4); set != nil {
			fx.storeFlags(a.ID, inbox.ID, set, mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)
		}
		if set := pick(live(inbox.ID), 6); set != nil {
			fx.expunge(a.ID, inbox.ID, set, false)
		}

		list := oracle.list(a.ID, inbox.ID, nil)
		highest := fx.status(a.ID, inbox.ID).HighestModSeq
		for since := uint64(0); since <= highest; since++ {
			var want []mailstore.MessageMeta
			for _, m := range list {
				if m.ModSeq > since {
					want = append(want, m)
				}
			}
			c := fx.changes(a.ID, inbox.ID, since)
			if !equalUIDs(uidsOf(c.Updated), uidsOf(want)) {
				t.Fatalf("round %d: Changes(%d).Updated = %v, want %v", round, since, uidsOf(c.Updated), uidsOf(want))
			}
			for i, m := range c.Updated {
				if m.ModSeq != want[i].ModSeq || !sameFlags(m.Flags, want[i].Flags) {
					t.Fatalf("round %d: Changes(%d) UID %d: modseq %d flags %v, listing says %d %v",
						round, since, m.UID, m.ModSeq, m.Flags, want[i].ModSeq, want[i].Flags)
				}
			}
		}
	}
}

// testPruneTombstones: pruning deletes only tombstones older than the
// given time; Changes since a mod-sequence before a pruned tombstone says
// VanishedIncomplete, later ones are complete and exact.
func testPruneTombstones(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	u := fx.appendN(a.ID, inbox.ID, 5)
	h0 := fx.status(a.ID, inbox.ID).HighestModSeq
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u[0], u[1]), false)
	h1 := fx.status(a.ID, inbox.ID).HighestModSeq

	if n, err := fx.st.PruneTombstones(fx.ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneTombstones(an hour ago) = %d, %v; want 0 pruned", n, err)
	}
	if c := fx.changes(a.ID, inbox.ID, h0); c.VanishedIncomplete || !equalUIDs(sortedUIDs(c.Vanished), u[:2]) {
		t.Fatalf("before pruning: Changes(%d) vanished %v incomplete %v, want %v complete", h0, c.Vanished, c.VanishedIncomplete, u[:2])
	}
	if n, err := fx.st.PruneTombstones(fx.ctx, time.Now().Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("PruneTombstones(in an hour) = %d, %v; want 2", n, err)
	}
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u[2]), false)
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(u[3]), mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)

	c := fx.changes(a.ID, inbox.ID, h0)
	if !c.VanishedIncomplete {
		t.Errorf("Changes(%d) after pruning its tombstones: VanishedIncomplete not set", h0)
	}
	if !equalUIDs(uidsOf(c.Updated), u[3:4]) {
		t.Errorf("Changes(%d).Updated = %v, want %v", h0, uidsOf(c.Updated), u[3:4])
	}
	for _, v := range c.Vanished {
		if v != u[2] {
			t.Errorf("Changes(%d).Vanished has %d: a pruned tombstone or a live message", h0, v)
		}
	}
	c = fx.changes(a.ID, inbox.ID, h1)
	if c.VanishedIncomplete || !equalUIDs(sortedUIDs(c.Vanished), u[2:3]) || !equalUIDs(uidsOf(c.Updated), u[3:4]) {
		t.Errorf("Changes(%d) after pruning older tombstones: vanished %v incomplete %v updated %v; want %v complete, updated %v",
			h1, c.Vanished, c.VanishedIncomplete, uidsOf(c.Updated), u[2:3], u[3:4])
	}
	// Pruning all: nothing left to prune.
	if n, err := fx.st.PruneTombstones(fx.ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("second PruneTombstones = %d, %v; want 1", n, err)
	}
	if n, err := fx.st.PruneTombstones(fx.ctx, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("third PruneTombstones = %d, %v; want 0", n, err)
	}
	if c := fx.changes(a.ID, inbox.ID, c.HighestModSeq); c.VanishedIncomplete || len(c.Vanished)+len(c.Updated) != 0 {
		t.Errorf("Changes(highest) = %+v, want nothing and complete", c)
	}
}
