package storetest

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

func testQuotaUsage(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	want := map[int64]int64{a.ID: 0, b.ID: 0}
	check := func(when string) {
		t.Helper()
		fx.checkQuota(a.ID, want[a.ID], when+" (alice)")
		fx.checkQuota(b.ID, want[b.ID], when+" (bob)")
	}
	inbox := fx.mailbox(a.ID, "INBOX")
	drafts := fx.mailbox(a.ID, "Drafts")
	archive := fx.mailbox(a.ID, "Archive")
	trash := fx.mailbox(a.ID, "Trash")

	m1 := simpleMessage("one", strings.Repeat("1", 1000))
	m2 := simpleMessage("two", strings.Repeat("2", 2000))
	m3 := simpleMessage("three", strings.Repeat("3", 3000))
	fx.deliver(m1, mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: b.ID})
	want[a.ID] += int64(len(m1))
	want[b.ID] += int64(len(m1))
	check("after delivery to two")

	fx.appendMsg(a.ID, drafts.ID, mailstore.Flags{}, fixedDate, m2)
	want[a.ID] += int64(len(m2))
	check("after append")

	_, err := st.Copy(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, archive.ID)
	must(t, err, "Copy")
	if n := len(fx.list(a.ID, archive.ID, nil)); n != 1 {
		t.Fatalf("Archive has %d messages after Copy, want 1", n)
	}
	want[a.ID] += int64(len(m1))
	check("after copy")

	fx.expunge(a.ID, drafts.ID, nil, false)
	want[a.ID] -= int64(len(m2))
	check("after expunge")

	_, err = st.Move(ctx, a.ID, archive.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, trash.ID)
	must(t, err, "Move")
	check("after move")

	fx.storeFlags(a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, mailstore.FlagsAdd, fl(mailstore.FlagSeen, "$Big"), 0)
	check("after a flag change")

	must(t, st.RenameMailbox(ctx, a.ID, "Trash", "Old Trash"), "RenameMailbox")
	check("after rename")

	fx.appendMsg(a.ID, fx.mailbox(a.ID, "Old Trash").ID, mailstore.Flags{}, fixedDate, m3)
	want[a.ID] += int64(len(m3))
	check("after append to the renamed mailbox")
	must(t, st.DeleteMailbox(ctx, a.ID, "Old Trash"), "DeleteMailbox")
	want[a.ID] -= int64(len(m1) + len(m3))
	check("after deleting a mailbox with two messages")

	fx.expunge(b.ID, fx.mailbox(b.ID, "INBOX").ID, nil, true)
	check("after an expunge that removed nothing")
}

func testQuotaLimit(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	archive := fx.mailbox(a.ID, "Archive")
	trash := fx.mailbox(a.ID, "Trash")
	fx.deliver(simpleMessage("first", "x"), mailstore.Recipient{AccountID: a.ID})
	used, _ := fx.usage(a.ID)
	body := simpleMessage("big", strings.Repeat("b", 2000))
	size := int64(len(body))

	// One octet short: the whole delivery fails, for every recipient.
	must(t, st.SetQuota(ctx, a.ID, used+size-1), "SetQuota")
	snap := fx.snapshot()
	_, err := st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:   "sender@remote.example",
		Recipients: []mailstore.Recipient{{AccountID: b.ID}, {AccountID: a.ID}},
		Body:       bytes.NewReader(body),
	})
	if wantErr(t, err, "Deliver over quota", mailstore.ErrOverQuota) {
		var qe *mailstore.QuotaError
		if !errors.As(err, &qe) {
			t.Errorf("over-quota Deliver error %q is not a *mailstore.QuotaError", err)
		} else if !slices.Contains(qe.AccountIDs, a.ID) || slices.Contains(qe.AccountIDs, b.ID) {
			t.Errorf("QuotaError.AccountIDs = %v, want alice (%d) and not bob (%d)", qe.AccountIDs, a.ID, b.ID)
		}
	}
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("over-quota Deliver changed the store:%s", d)
	}
	_, err = st.Append(ctx, a.ID, inbox.ID, mailstore.Flags{}, fixedDate, bytes.NewReader(body))
	wantErr(t, err, "Append over quota", mailstore.ErrOverQuota)
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("over-quota Append changed the store:%s", d)
	}

	// Exactly at the limit is allowed.
	must(t, st.SetQuota(ctx, a.ID, used+size), "SetQuota")
	fx.deliver(body, mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: b.ID})
	if u, l := fx.usage(a.ID); u != l {
		t.Errorf("after filling the quota exactly, used %d, limit %d", u, l)
	}

	// At the limit: anything that adds octets fails and changes nothing.
	snap = fx.snapshot()
	_, err = st.Append(ctx, a.ID, inbox.ID, mailstore.Flags{}, fixedDate, strings.NewReader("Subject: tiny\r\n\r\nx\r\n"))
	wantErr(t, err, "Append of a tiny message at the limit", mailstore.ErrOverQuota)
	_, err = st.Copy(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, archive.ID)
	wantErr(t, err, "Copy at the limit", mailstore.ErrOverQuota)
	_, err = st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: strings.NewReader("Subject: t\r\n\r\nx\r\n")})
	wantErr(t, err, "Deliver at the limit", mailstore.ErrOverQuota)
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("refused operations at the limit changed the store:%s", d)
	}

	// Moving does not add octets, so a full account can still move mail
	// (e.g. to Trash) and then expunge it.
	first := fx.list(a.ID, inbox.ID, nil)[0].UID
	if _, err := st.Move(ctx, a.ID, inbox.ID, mailstore.UIDs(first), trash.ID); err != nil {
		t.Errorf("Move at the quota limit: %v (a move adds no octets)", err)
	}
	fx.checkQuota(a.ID, used+size, "after Move at the limit")
	fx.expunge(a.ID, trash.ID, nil, false)
	fx.checkQuota(a.ID, size, "after expunge")
	fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, time.Time{}, []byte("Subject: fits\r\n\r\n"))

	// A limit below the usage is accepted; nothing more fits until mail is
	// removed.
	must(t, st.SetQuota(ctx, a.ID, 1), "SetQuota below usage")
	if u, l := fx.usage(a.ID); l != 1 || u <= 1 {
		t.Errorf("QuotaUsage = %d, %d; want the usage and limit 1", u, l)
	}
	_, err = st.Append(ctx, a.ID, inbox.ID, mailstore.Flags{}, fixedDate, strings.NewReader("Subject: t\r\n\r\nx\r\n"))
	wantErr(t, err, "Append over a lowered quota", mailstore.ErrOverQuota)
	fx.expunge(a.ID, inbox.ID, nil, false)
	fx.checkQuota(a.ID, 0, "after expunging everything")

	must(t, st.SetQuota(ctx, a.ID, 0), "SetQuota unlimited")
	fx.deliver(genMessage(1<<20, 3), mailstore.Recipient{AccountID: a.ID})
	fx.checkQuota(a.ID, 1<<20, "unlimited")
	fx.checkQuota(b.ID, int64(len(body)), "bob")
}
