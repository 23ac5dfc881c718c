package storetest

import (
	"fmt"
	"math/rand/v2"
	"testing"

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
