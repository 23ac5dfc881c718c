package storetest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// testMessageQuota: the message-count limit (RFC 9208 §5.2) is enforced by
// every operation that adds messages, exactly at the limit, and given back
// by every operation that removes them.
func testMessageQuota(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	archive := fx.mailbox(a.ID, "Archive")
	trash := fx.mailbox(a.ID, "Trash")

	wantErr(t, st.SetMessageQuota(ctx, a.ID, -1), "SetMessageQuota negative", mailstore.ErrInvalidArgument)
	wantErr(t, st.SetMessageQuota(ctx, a.ID+1_000_000, 5), "SetMessageQuota unknown", mailstore.ErrNoSuchAccount)
	_, err := st.Quota(ctx, a.ID+1_000_000)
	wantErr(t, err, "Quota unknown", mailstore.ErrNoSuchAccount)

	must(t, st.SetMessageQuota(ctx, a.ID, 3), "SetMessageQuota")
	if q, err := st.Quota(ctx, a.ID); err != nil || q.MessagesLimit != 3 || q.MessagesUsed != 0 || q.StorageLimit != 0 {
		t.Fatalf("Quota = %+v, %v; want 0 of 3 messages, no storage limit", q, err)
	}
	if acc, err := st.GetAccountByID(ctx, a.ID); err != nil || acc.MessageLimit != 3 {
		t.Errorf("GetAccountByID: MessageLimit = %d, %v; want 3", acc.MessageLimit, err)
	}
	if res, err := st.Resolve(ctx, "alice@example.org"); err != nil || len(res.Accounts) != 1 ||
		res.Accounts[0].MessageLimit != 3 {
		t.Errorf("Resolve: %+v, %v; want alice with MessageLimit 3", res, err)
	}

	fx.deliver(simpleMessage("one", "1"), mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: b.ID})
	// Two targets in the same account count twice.
	fx.deliver(simpleMessage("two", "2"), mailstore.Recipient{AccountID: a.ID},
		mailstore.Recipient{AccountID: a.ID, Mailbox: "Archive"})
	fx.checkQuota(a.ID, -1, "after three messages")

	// At the limit: every operation that adds a message fails and changes
	// nothing; for a delivery to several accounts, only the full one is named.
	snap := fx.snapshot()
	_, err = st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:   "sender@remote.example",
		Recipients: []mailstore.Recipient{{AccountID: b.ID}, {AccountID: a.ID}},
		Body:       bytes.NewReader(simpleMessage("three", "3")),
	})
	if wantErr(t, err, "Deliver over the message limit", mailstore.ErrOverQuota) {
		var qe *mailstore.QuotaError
		if !errors.As(err, &qe) || !slices.Contains(qe.AccountIDs, a.ID) || slices.Contains(qe.AccountIDs, b.ID) {
			t.Errorf("over-limit Deliver error %v: want a QuotaError naming alice only", err)
		}
	}
	_, err = st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}},
		Body: strings.NewReader("Subject: t\r\n\r\nx\r\n")})
	wantErr(t, err, "Deliver to one account over the message limit", mailstore.ErrOverQuota)
	_, err = st.Append(ctx, a.ID, inbox.ID, mailstore.Flags{}, fixedDate, strings.NewReader("Subject: t\r\n\r\nx\r\n"))
	wantErr(t, err, "Append over the message limit", mailstore.ErrOverQuota)
	_, err = st.Copy(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, archive.ID)
	wantErr(t, err, "Copy over the message limit", mailstore.ErrOverQuota)
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("refused operations at the message limit changed the store:%s", d)
	}

	// A move adds no message.
	if _, err := st.Move(ctx, a.ID, archive.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, trash.ID); err != nil {
		t.Errorf("Move at the message limit: %v", err)
	}
	fx.checkQuota(a.ID, -1, "after Move")
	fx.expunge(a.ID, trash.ID, nil, false)
	fx.checkQuota(a.ID, -1, "after expunge")
	if q, _ := st.Quota(ctx, a.ID); q.MessagesUsed != 2 {
		t.Errorf("after expunging one of three, MessagesUsed = %d, want 2", q.MessagesUsed)
	}
	// A copy of one message fits again; of two it would not.
	must(t, st.SetMessageQuota(ctx, a.ID, 4), "SetMessageQuota 4")
	_, err = st.Copy(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, archive.ID)
	must(t, err, "Copy of 2 with room for 2")
	_, err = st.Copy(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, archive.ID)
	wantErr(t, err, "Copy of 2 with room for none", mailstore.ErrOverQuota)
	fx.checkQuota(a.ID, -1, "after copies")

	// Deleting a mailbox gives its messages back.
	must(t, st.DeleteMailbox(ctx, a.ID, "Archive"), "DeleteMailbox")
	fx.checkQuota(a.ID, -1, "after DeleteMailbox")
	if q, _ := st.Quota(ctx, a.ID); q.MessagesUsed != 2 {
		t.Errorf("after deleting Archive, MessagesUsed = %d, want 2", q.MessagesUsed)
	}
	must(t, st.SetMessageQuota(ctx, a.ID, 0), "SetMessageQuota unlimited")
	fx.appendN(a.ID, inbox.ID, 5)
	fx.checkQuota(a.ID, -1, "unlimited")
	fx.checkQuota(b.ID, -1, "bob")
}

// testDeletedSize: the octets an EXPUNGE would give back (RFC 9208
// DELETED-STORAGE), per mailbox and account.
func testDeletedSize(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	drafts := fx.mailbox(a.ID, "Drafts")
	m1 := simpleMessage("one", strings.Repeat("1", 1000))
	m2 := simpleMessage("two", strings.Repeat("2", 2000))
	u1 := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, m1).UID
	u2 := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, m2).UID
	fx.appendMsg(a.ID, drafts.ID, mailstore.Flags{System: mailstore.FlagDeleted}, fixedDate, m1)
	size := func(mbox int64, want int64, when string) {
		t.Helper()
		got, err := st.DeletedSize(ctx, a.ID, mbox)
		must(t, err, "DeletedSize")
		if got != want {
			t.Errorf("%s: DeletedSize = %d, want %d", when, got, want)
		}
	}
	size(inbox.ID, 0, "nothing deleted")
	size(drafts.ID, int64(len(m1)), "Drafts")
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(u1, u2), mailstore.FlagsAdd, fl(mailstore.FlagDeleted), 0)
	size(inbox.ID, int64(len(m1)+len(m2)), "both flagged")
	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(u1), mailstore.FlagsRemove, fl(mailstore.FlagDeleted), 0)
	size(inbox.ID, int64(len(m2)), "one unflagged")
	fx.expunge(a.ID, inbox.ID, nil, true)
	size(inbox.ID, 0, "after EXPUNGE")
	_, err := st.DeletedSize(ctx, b.ID, drafts.ID)
	wantErr(t, err, "DeletedSize of another account's mailbox", mailstore.ErrNoSuchMailbox)
	_, err = st.DeletedSize(ctx, a.ID, drafts.ID+1_000_000)
	wantErr(t, err, "DeletedSize of a missing mailbox", mailstore.ErrNoSuchMailbox)
}
