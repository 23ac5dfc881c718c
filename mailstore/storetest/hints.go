package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// view is what a session knows of a mailbox for MayHaveChanged: the
// mod-sequence it read and the mark taken before reading it.
type view struct {
	mbox   int64
	modseq uint64
	mark   mailstore.ChangeMark
}

// settle takes a mark and reads the mailbox's highest mod-sequence until
// the store says nothing changed since (the listener may still be
// connecting when a store opens: until then anything may have changed).
func settle(t *testing.T, fx *fixture, acct, mbox int64, ch <-chan struct{}) view {
	t.Helper()
	deadline := time.Now().Add(notifyTimeout)
	for {
		v := view{mbox: mbox, mark: fx.st.ChangeMark()}
		v.modseq = fx.status(acct, mbox).HighestModSeq
		if !fx.st.MayHaveChanged(acct, mbox, v.modseq, v.mark) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailbox %d: MayHaveChanged still true %v after reading it", mbox, notifyTimeout)
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitChanged waits until the store says v's mailbox may have changed.
func waitChanged(t *testing.T, fx *fixture, acct int64, v view, ch <-chan struct{}, what string) bool {
	t.Helper()
	deadline := time.Now().Add(notifyTimeout)
	for !fx.st.MayHaveChanged(acct, v.mbox, v.modseq, v.mark) {
		if time.Now().After(deadline) {
			t.Errorf("%s: MayHaveChanged(%d since %d) still false after %v", what, v.mbox, v.modseq, notifyTimeout)
			return false
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}

func testHintsSameHandle(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	checkHints(t, fx, fx)
}

func testHintsCrossHandle(t *testing.T, f Factory) {
	a, b := pair(t, f)
	checkHints(t, a, b)
}

// checkHints: every kind of write to a mailbox makes MayHaveChanged true
// for a session of sub that knew the mailbox before (at once when sub is
// the writer's handle), and only for that mailbox; a mailbox-level change
// makes it true for every mailbox of the account; another account's
// changes never do.
func checkHints(t *testing.T, sub, writer *fixture) {
	alice := writer.account("alice@example.org")
	bob := writer.account("bob@example.org")
	inbox := writer.mailbox(alice.ID, "INBOX")
	trash := writer.mailbox(alice.ID, "Trash")
	bobInbox := writer.mailbox(bob.ID, "INBOX")
	ch, cancel := sub.st.Subscribe(alice.ID)
	defer cancel()
	same := sub == writer
	uid := writer.deliver(simpleMessage("hint", "h"), mailstore.Recipient{AccountID: alice.ID}).Delivered[0].UID
	steps := []struct {
		name      string
		op        func()
		mailboxes []int64 // those that change
	}{
		{"Deliver", func() { writer.deliver(simpleMessage("d", "d"), mailstore.Recipient{AccountID: alice.ID}) }, []int64{inbox.ID}},
		{"Append", func() { writer.appendMsg(alice.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("a", "a")) }, []int64{inbox.ID}},
		{"StoreFlags", func() {
			writer.storeFlags(alice.ID, inbox.ID, mailstore.UIDs(uid), mailstore.FlagsAdd, fl(mailstore.FlagSeen), 0)
		}, []int64{inbox.ID}},
		{"Copy", func() {
			_, err := writer.st.Copy(writer.ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), trash.ID)
			must(t, err, "Copy")
		}, []int64{trash.ID}},
		{"Move", func() {
			_, err := writer.st.Move(writer.ctx, alice.ID, trash.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, inbox.ID)
			must(t, err, "Move")
		}, []int64{trash.ID, inbox.ID}},
		{"Expunge", func() { writer.expunge(alice.ID, inbox.ID, mailstore.UIDs(uid), false) }, []int64{inbox.ID}},
		{"CreateMailbox", func() { writer.createMailbox(alice.ID, "Hints", "") }, []int64{inbox.ID, trash.ID}},
		{"RenameMailbox", func() { must(t, writer.st.RenameMailbox(writer.ctx, alice.ID, "Hints", "Hints2"), "Rename") }, []int64{inbox.ID, trash.ID}},
		{"DeleteMailbox", func() { must(t, writer.st.DeleteMailbox(writer.ctx, alice.ID, "Hints2"), "Delete") }, []int64{inbox.ID, trash.ID}},
	}
	for _, s := range steps {
		vi := settle(t, sub, alice.ID, inbox.ID, ch)
		vt := settle(t, sub, alice.ID, trash.ID, ch)
		// Another account's change tells alice's sessions nothing.
		writer.deliver(simpleMessage("bob", "b"), mailstore.Recipient{AccountID: bob.ID})
		if sub.st.MayHaveChanged(alice.ID, inbox.ID, vi.modseq, vi.mark) {
			t.Errorf("before %s: bob's delivery made alice's INBOX possibly changed", s.name)
		}
		s.op()
		views := map[int64]view{inbox.ID: vi, trash.ID: vt}
		for _, id := range s.mailboxes {
			v := views[id]
			if same {
				if !sub.st.MayHaveChanged(alice.ID, id, v.modseq, v.mark) {
					t.Errorf("after %s through the same handle: MayHaveChanged(mailbox %d) false", s.name, id)
				}
				continue
			}
			waitChanged(t, sub, alice.ID, v, ch, fmt.Sprintf("after %s, mailbox %d", s.name, id))
		}
		if len(s.mailboxes) == 1 && s.mailboxes[0] == inbox.ID {
			// The notification for INBOX has arrived; Trash did not change.
			if sub.st.MayHaveChanged(alice.ID, trash.ID, vt.modseq, vt.mark) {
				t.Errorf("after %s of INBOX: Trash counts as changed", s.name)
			}
		}
	}
	// Own writes: each raises the mailbox's highest mod-sequence by
	// exactly one, and reports the new value.
	st0 := writer.status(alice.ID, inbox.ID).HighestModSeq
	ar := writer.appendMsg(alice.ID, inbox.ID, mailstore.Flags{Keywords: []string{"$A", "$a"}}, fixedDate, simpleMessage("own", "o"))
	if ar.ModSeq != st0+1 {
		t.Errorf("Append: ModSeq %d, want %d", ar.ModSeq, st0+1)
	}
	if ar.ContentID == 0 || len(ar.Flags.Keywords) != 1 || !ar.InternalDate.Equal(fixedDate) || ar.CRLFSize == 0 {
		t.Errorf("Append result %+v lacks what a view needs", ar)
	}
	meta := writer.list(alice.ID, inbox.ID, mailstore.UIDs(ar.UID))
	if len(meta) != 1 || meta[0].ModSeq != ar.ModSeq || meta[0].ContentID != ar.ContentID || meta[0].Size != ar.Size ||
		meta[0].CRLFSize != ar.CRLFSize || !meta[0].InternalDate.Equal(ar.InternalDate) || meta[0].Flags.System != ar.Flags.System {
		t.Errorf("Append result %+v differs from the stored message %+v", ar, meta)
	}
	sr := writer.storeFlags(alice.ID, inbox.ID, mailstore.UIDs(ar.UID), mailstore.FlagsAdd, fl(mailstore.FlagFlagged), 0)
	if len(sr.Updated) != 1 || sr.Updated[0].ModSeq != ar.ModSeq+1 {
		t.Errorf("StoreFlags after Append: %+v, want modseq %d", sr.Updated, ar.ModSeq+1)
	}
	cr, err := writer.st.Copy(writer.ctx, alice.ID, inbox.ID, mailstore.UIDs(ar.UID), trash.ID)
	must(t, err, "Copy")
	if want := writer.status(alice.ID, trash.ID).HighestModSeq; cr.ModSeq != want || cr.SrcModSeq != 0 {
		t.Errorf("Copy: ModSeq %d SrcModSeq %d, want %d and 0", cr.ModSeq, cr.SrcModSeq, want)
	}
	mr, err := writer.st.Move(writer.ctx, alice.ID, trash.ID, mailstore.UIDs(cr.DstUIDs...), inbox.ID)
	must(t, err, "Move")
	if mr.ModSeq != ar.ModSeq+2 || mr.SrcModSeq != cr.ModSeq+1 {
		t.Errorf("Move: ModSeq %d SrcModSeq %d, want %d and %d", mr.ModSeq, mr.SrcModSeq, ar.ModSeq+2, cr.ModSeq+1)
	}
	xr := writer.expunge(alice.ID, inbox.ID, mailstore.UIDs(mr.DstUIDs...), false)
	if xr.HighestModSeq != mr.ModSeq+1 {
		t.Errorf("Expunge: HighestModSeq %d, want %d", xr.HighestModSeq, mr.ModSeq+1)
	}
	dr := writer.deliver(simpleMessage("own d", "d"), mailstore.Recipient{AccountID: alice.ID}, mailstore.Recipient{AccountID: bob.ID})
	if len(dr.Delivered) != 2 || dr.Delivered[0].ModSeq != xr.HighestModSeq+1 || dr.ContentID == 0 {
		t.Errorf("Deliver: %+v, want alice's copy at modseq %d and a content id", dr, xr.HighestModSeq+1)
	} else if got := writer.status(bob.ID, bobInbox.ID).HighestModSeq; dr.Delivered[1].ModSeq != got {
		t.Errorf("Deliver: bob's copy at modseq %d, mailbox at %d", dr.Delivered[1].ModSeq, got)
	}
}
