package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// contentRefs returns the refs of a mailbox's messages as ListMessages
// reports them.
func (fx *fixture) contentRefs(acct, mbox int64) []mailstore.ContentRef {
	fx.t.Helper()
	var refs []mailstore.ContentRef
	for _, m := range fx.list(acct, mbox, nil) {
		if m.ContentID == 0 {
			fx.t.Errorf("ListMessages: UID %d without a content id", m.UID)
		}
		refs = append(refs, mailstore.ContentRef{UID: m.UID, ContentID: m.ContentID})
	}
	return refs
}

func (fx *fixture) contents(acct, mbox int64, refs []mailstore.ContentRef) []mailstore.MessageContent {
	fx.t.Helper()
	cs, err := fx.st.MessageContents(fx.ctx, acct, mbox, refs)
	must(fx.t, err, "MessageContents")
	if len(cs) != len(refs) {
		fx.t.Fatalf("MessageContents: %d results for %d refs", len(cs), len(refs))
	}
	return cs
}

// checkContent compares a content with the message's octets.
func checkContent(t *testing.T, what string, c mailstore.MessageContent, body []byte, subject string) {
	t.Helper()
	if c.Parsed == nil {
		t.Errorf("%s: no parse result", what)
		return
	}
	if c.Size != int64(len(body)) || c.Parsed.Envelope.Subject != subject {
		t.Errorf("%s: size %d subject %q, want %d %q", what, c.Size, c.Parsed.Envelope.Subject, len(body), subject)
	}
	switch {
	case len(c.Data) == len(body):
		if !bytes.Equal(c.Data, body) {
			t.Errorf("%s: whole data differs from the message", what)
		}
	case len(c.Data) > 0:
		if int64(len(c.Data)) != c.Parsed.HeaderSize || !bytes.Equal(c.Data, body[:len(c.Data)]) {
			t.Errorf("%s: %d octets of data that are not the %d-octet header", what, len(c.Data), c.Parsed.HeaderSize)
		}
	}
}

// testMessageContents: contents by UID and content id, small ones whole,
// large ones with their header; copies share a content; a message
// expunged meanwhile is either still held or absent, never another's.
func testMessageContents(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	trash := fx.mailbox(a.ID, "Trash")
	small := simpleMessage("small one", "hello\r\n")
	large := simpleMessage("large one", strings.Repeat("0123456789abcdef\r\n", 20000)) // 360 KB
	u1 := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, small)
	u2 := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, large)
	refs := fx.contentRefs(a.ID, inbox.ID)
	if len(refs) != 2 || refs[0].ContentID != u1.ContentID || refs[1].ContentID != u2.ContentID {
		t.Fatalf("refs %v, appended contents %d %d", refs, u1.ContentID, u2.ContentID)
	}
	for round := 0; round < 2; round++ { // the second from the node's memory, where it keeps them
		cs := fx.contents(a.ID, inbox.ID, refs)
		checkContent(t, fmt.Sprintf("small, round %d", round), cs[0], small, "small one")
		checkContent(t, fmt.Sprintf("large, round %d", round), cs[1], large, "large one")
		if len(cs[0].Data) != len(small) {
			t.Errorf("small message: %d octets of data, want all %d", len(cs[0].Data), len(small))
		}
		if len(cs[1].Data) == len(large) {
			t.Errorf("large message held whole")
		}
	}
	// An unknown content id is found by UID; repeated refs are answered.
	cs := fx.contents(a.ID, inbox.ID, []mailstore.ContentRef{{UID: u2.UID}, {UID: u1.UID}, {UID: u1.UID}, {UID: 999}})
	if cs[0].ContentID != u2.ContentID || cs[1].ContentID != u1.ContentID || cs[2].ContentID != u1.ContentID || cs[3].Parsed != nil {
		t.Errorf("refs by UID: %d %d %d %v", cs[0].ContentID, cs[1].ContentID, cs[2].ContentID, cs[3].Parsed != nil)
	}
	// A copy shares the content.
	cr, err := fx.st.Copy(fx.ctx, a.ID, inbox.ID, mailstore.UIDs(u1.UID), trash.ID)
	must(t, err, "Copy")
	tr := fx.contentRefs(a.ID, trash.ID)
	if len(tr) != 1 || tr[0].UID != cr.DstUIDs[0] || tr[0].ContentID != u1.ContentID {
		t.Errorf("copy's ref %v, want content %d", tr, u1.ContentID)
	}
	// Expunged: never another message's content.
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u2.UID), false)
	cs = fx.contents(a.ID, inbox.ID, []mailstore.ContentRef{{UID: u2.UID}})
	if cs[0].Parsed != nil {
		t.Errorf("expunged message with unknown content id: got content %d", cs[0].ContentID)
	}
	cs = fx.contents(a.ID, inbox.ID, refs[1:])
	if cs[0].Parsed != nil && cs[0].ContentID != u2.ContentID {
		t.Errorf("expunged message: content %d, want %d or none", cs[0].ContentID, u2.ContentID)
	}
	// Another account's mailbox, or one that does not exist.
	b := fx.account("bob@example.org")
	_, err = fx.st.MessageContents(fx.ctx, b.ID, inbox.ID, []mailstore.ContentRef{{UID: u1.UID}})
	wantErr(t, err, "MessageContents of another account's mailbox", mailstore.ErrNoSuchMailbox)
	cs = fx.contents(b.ID, fx.mailbox(b.ID, "INBOX").ID, []mailstore.ContentRef{{UID: u1.UID}})
	if cs[0].Parsed != nil {
		t.Errorf("bob's empty INBOX gave content %d for UID %d", cs[0].ContentID, u1.UID)
	}
}

// testContentsRecreated: a mailbox deleted and created again under its
// name on another node has a new UIDVALIDITY and the same UIDs with other
// contents; a node that held the old ones answers with the new.
func testContentsRecreated(t *testing.T, f Factory) {
	a, b := pair(t, f)
	acct := a.account("alice@example.org")
	box := a.createMailbox(acct.ID, "Box", "")
	old := a.appendMsg(acct.ID, box.ID, mailstore.Flags{}, fixedDate, simpleMessage("old", "old body\r\n"))
	refs := b.contentRefs(acct.ID, box.ID)
	if cs := b.contents(acct.ID, box.ID, refs); cs[0].Parsed == nil || cs[0].Parsed.Envelope.Subject != "old" {
		t.Fatalf("node b: old content not read")
	}
	must(t, a.st.DeleteMailbox(a.ctx, acct.ID, "Box"), "DeleteMailbox")
	box2 := a.createMailbox(acct.ID, "Box", "")
	newBody := simpleMessage("new", "new body\r\n")
	nu := a.appendMsg(acct.ID, box2.ID, mailstore.Flags{}, fixedDate, newBody)
	if box2.UIDValidity == box.UIDValidity || nu.UID != old.UID {
		t.Fatalf("recreated mailbox: UIDVALIDITY %d→%d, UID %d→%d", box.UIDValidity, box2.UIDValidity, old.UID, nu.UID)
	}
	mb := b.mailbox(acct.ID, "Box")
	if mb.ID != box2.ID {
		t.Fatalf("node b sees mailbox %d, want %d", mb.ID, box2.ID)
	}
	// The old mailbox's messages by UID: the mailbox is gone. (By their
	// content ids a node may answer from memory, as for any message
	// expunged after a session learnt of it.)
	_, err := b.st.MessageContents(b.ctx, acct.ID, box.ID, []mailstore.ContentRef{{UID: old.UID}})
	wantErr(t, err, "MessageContents of the deleted mailbox", mailstore.ErrNoSuchMailbox)
	refs2 := b.contentRefs(acct.ID, mb.ID)
	if slices.Equal(refs, refs2) {
		t.Fatalf("recreated mailbox has the old refs %v", refs)
	}
	cs := b.contents(acct.ID, mb.ID, refs2)
	checkContent(t, "recreated mailbox on node b", cs[0], newBody, "new")
}

// testSelectMailbox: SelectMailbox agrees with MailboxStatus,
// ListMessages and ClaimRecent.
func testSelectMailbox(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	fx.appendN(a.ID, inbox.ID, 3)
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(2), mailstore.FlagsAdd, fl(mailstore.FlagSeen, "$Work"), 0)
	st := fx.status(a.ID, inbox.ID)
	list := fx.list(a.ID, inbox.ID, nil)
	peek, err := fx.st.SelectMailbox(fx.ctx, a.ID, "inbox", false)
	must(t, err, "SelectMailbox (EXAMINE)")
	if peek.Status != st || !slices.EqualFunc(peek.Messages, list, sameMeta) || peek.Recent != nil {
		t.Errorf("SelectMailbox without claim:\n got %+v\nwant %+v %+v", peek, st, list)
	}
	if peek.Status.Recent != 3 {
		t.Errorf("unclaimed count %d, want 3", peek.Status.Recent)
	}
	sel, err := fx.st.SelectMailbox(fx.ctx, a.ID, "INBOX", true)
	must(t, err, "SelectMailbox")
	if !slices.Equal(sel.Recent, []uint32{1, 2, 3}) || sel.Status.Recent != 3 {
		t.Errorf("claimed %v (unclaimed before: %d), want 1:3", sel.Recent, sel.Status.Recent)
	}
	sel, err = fx.st.SelectMailbox(fx.ctx, a.ID, "INBOX", true)
	must(t, err, "SelectMailbox again")
	if len(sel.Recent) != 0 || sel.Status.Recent != 0 {
		t.Errorf("second claim got %v", sel.Recent)
	}
	_, err = fx.st.SelectMailbox(fx.ctx, a.ID, "Nope", true)
	wantErr(t, err, "SelectMailbox of a missing mailbox", mailstore.ErrNoSuchMailbox)
	b := fx.account("bob@example.org")
	empty, err := fx.st.SelectMailbox(fx.ctx, b.ID, "INBOX", true)
	must(t, err, "SelectMailbox of an empty mailbox")
	if len(empty.Messages) != 0 || empty.Status.AccountID != b.ID {
		t.Errorf("bob's INBOX: %+v", empty)
	}
	sn, err := fx.st.MailboxStatusByName(fx.ctx, a.ID, "INBOX")
	must(t, err, "MailboxStatusByName")
	if sn != fx.status(a.ID, inbox.ID) {
		t.Errorf("MailboxStatusByName %+v differs from MailboxStatus", sn)
	}
	_, err = fx.st.MailboxStatusByName(fx.ctx, b.ID, "Nope")
	wantErr(t, err, "MailboxStatusByName of a missing mailbox", mailstore.ErrNoSuchMailbox)
}

func sameMeta(a, b mailstore.MessageMeta) bool {
	return a.UID == b.UID && a.ModSeq == b.ModSeq && a.Flags.System == b.Flags.System &&
		slices.Equal(a.Flags.Keywords, b.Flags.Keywords) && a.InternalDate.Equal(b.InternalDate) &&
		a.Size == b.Size && a.CRLFSize == b.CRLFSize && a.ContentID == b.ContentID
}
