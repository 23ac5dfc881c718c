package postgres_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// TestListCacheMatchesDatabase fills a node's list cache for a large
// mailbox, changes the mailbox through another node, and compares every
// answer with a node that has no cache.
func TestListCacheMatchesDatabase(t *testing.T) {
	st, url, a := fixture(t)
	ctx := ctxT(t)
	other := pgtest.OpenStore(t, url)
	plain, err := postgres.Open(ctx, url, postgres.Options{ListCacheMessages: -1})
	must(t, err)
	defer plain.Close()
	mb := seedMailbox(t, st, a.ID, 3000)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)

	compare := func(step string, uids mailstore.UIDSet) {
		t.Helper()
		got, err := st.ListMessages(ctx, a.ID, mb.ID, uids)
		must(t, err)
		want, err := plain.ListMessages(ctx, a.ID, mb.ID, uids)
		must(t, err)
		if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("%s: cached list (%d) differs from the database (%d)", step, len(got), len(want))
		}
	}
	compare("fill", nil)
	compare("hit", nil)
	compare("subset", mailstore.UIDSet{{Start: 10, Stop: 20}, {Start: 2990, Stop: 0}})

	_, err = other.StoreFlags(ctx, a.ID, mb.ID, mailstore.UIDSet{{Start: 5, Stop: 50}}, mailstore.FlagsAdd,
		mailstore.Flags{System: mailstore.FlagFlagged, Keywords: []string{"$Label1"}}, 0)
	must(t, err)
	compare("flags", nil)
	_, err = other.Expunge(ctx, a.ID, mb.ID, mailstore.UIDs(7, 8, 9, 1000), false)
	must(t, err)
	compare("expunge", nil)
	deliver(t, other, msg("new", "x"), mailstore.Recipient{AccountID: a.ID})
	// Bare LFs: CRLFSize differs from Size, and the cache must carry it.
	bare := deliver(t, other, "Subject: bare\n\nline one\nline two", mailstore.Recipient{AccountID: a.ID})
	compare("deliver", nil)
	if ms, err := st.ListMessages(ctx, a.ID, mb.ID, mailstore.UIDs(bare.Delivered[0].UID)); err != nil || len(ms) != 1 ||
		ms[0].CRLFSize != ms[0].Size+5 {
		t.Fatalf("cached bare-LF message: %+v, %v; want CRLFSize = Size+5", ms, err)
	}
	_, err = other.Move(ctx, a.ID, mb.ID, mailstore.UIDSet{{Start: 100, Stop: 199}}, arch.ID)
	must(t, err)
	_, err = other.Copy(ctx, a.ID, arch.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, mb.ID)
	must(t, err)
	compare("move and copy", nil)
	compare("subset after changes", mailstore.UIDSet{{Start: 1, Stop: 300}})

	// Callers cannot alter the cache through the returned slices.
	got, err := st.ListMessages(ctx, a.ID, mb.ID, nil)
	must(t, err)
	for i := range got {
		got[i].Flags.System = 0
		if len(got[i].Flags.Keywords) > 0 {
			got[i].Flags.Keywords[0] = "mutated"
		}
	}
	compare("after caller mutation", nil)

	// SELECT of a large mailbox lists it through the cache, as ListMessages.
	sel, err := st.SelectMailbox(ctx, a.ID, mb.Name, false)
	must(t, err)
	want, err := plain.SelectMailbox(ctx, a.ID, mb.Name, false)
	must(t, err)
	if len(sel.Messages) < listCacheMinForTest || !reflect.DeepEqual(sel.Messages, want.Messages) || sel.Status != want.Status {
		t.Fatalf("SelectMailbox of a cached mailbox: %d messages, status %+v; without the cache %d, %+v",
			len(sel.Messages), sel.Status, len(want.Messages), want.Status)
	}

	// Another account cannot read through the cache.
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	if _, err := st.ListMessages(ctx, b.ID, mb.ID, nil); err == nil {
		t.Fatal("foreign account listed a cached mailbox")
	}
	// Renaming INBOX empties it: the cache follows.
	must(t, other.RenameMailbox(ctx, a.ID, "INBOX", "Old"))
	compare("after INBOX rename", nil)
	checkInvariants(t, st)
}

// listCacheMinForTest is the smallest mailbox the list cache keeps.
const listCacheMinForTest = 2000

// TestListCacheAfterPrune: a cached list whose tombstones were pruned is
// reloaded, not left with messages that were expunged meanwhile.
func TestListCacheAfterPrune(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	mb := seedMailbox(t, st, a.ID, 2500)
	if ms, err := st.ListMessages(ctx, a.ID, mb.ID, nil); err != nil || len(ms) != 2500 {
		t.Fatalf("first listing: %d messages, %v", len(ms), err)
	}
	_, err := st.Expunge(ctx, a.ID, mb.ID, mailstore.UIDSet{{Start: 10, Stop: 19}}, false)
	must(t, err)
	if n, err := st.PruneTombstones(ctx, time.Now().Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("PruneTombstones = %d, %v; want 10", n, err)
	}
	_, err = st.StoreFlags(ctx, a.ID, mb.ID, mailstore.UIDs(100), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagFlagged}, 0)
	must(t, err)
	for round := 0; round < 2; round++ { // the reload, then the entry cached again
		ms, err := st.ListMessages(ctx, a.ID, mb.ID, nil)
		must(t, err)
		if len(ms) != 2490 {
			t.Fatalf("round %d: %d messages listed, want 2490", round, len(ms))
		}
		for _, m := range ms {
			if m.UID >= 10 && m.UID <= 19 {
				t.Fatalf("round %d: expunged UID %d still listed", round, m.UID)
			}
			if m.UID == 100 && m.Flags.System&mailstore.FlagFlagged == 0 {
				t.Fatalf("round %d: UID 100 lost its flag change", round)
			}
		}
	}
}
