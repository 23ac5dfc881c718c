package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func (fx *fixture) mailboxNames(acct int64) []string {
	fx.t.Helper()
	mbs, err := fx.st.ListMailboxes(fx.ctx, acct)
	must(fx.t, err, "ListMailboxes")
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	slices.Sort(names)
	return names
}

func testMailboxCreate(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")

	q1 := fx.createMailbox(a.ID, "Projects/2024/Q1", "")
	if q1.ID == 0 || q1.AccountID != a.ID || q1.Name != "Projects/2024/Q1" || q1.UIDValidity == 0 || q1.UIDNext < 1 || q1.SpecialUse != "" {
		t.Errorf("CreateMailbox = %+v", q1)
	}
	if got := fx.mailbox(a.ID, "Projects/2024/Q1"); got.ID != q1.ID || got.UIDValidity != q1.UIDValidity || got.Name != q1.Name {
		t.Errorf("GetMailbox = %+v, CreateMailbox returned %+v", got, q1)
	}
	// Parents are created as needed (RFC 9051 §6.3.4).
	for _, p := range []string{"Projects", "Projects/2024"} {
		if mb, err := st.GetMailbox(ctx, a.ID, p); err != nil || mb.Name != p {
			t.Errorf("parent %q: GetMailbox = %+v, %v", p, mb, err)
		}
	}
	all := fx.createMailbox(a.ID, "All Mail", mailstore.SpecialUseAll)
	if all.SpecialUse != mailstore.SpecialUseAll || fx.mailbox(a.ID, "All Mail").SpecialUse != mailstore.SpecialUseAll {
		t.Errorf("special-use \\All not kept: %+v", all)
	}
	fx.createMailbox(a.ID, "Starred", mailstore.SpecialUseFlagged)

	// Names are case-sensitive except INBOX (RFC 9051 §5.1).
	fx.createMailbox(a.ID, "projects", "")
	sub := fx.createMailbox(a.ID, "inbox/Sub", "")
	if sub.Name != "INBOX/Sub" {
		t.Errorf("CreateMailbox(inbox/Sub).Name = %q, want INBOX/Sub", sub.Name)
	}
	for _, n := range []string{"iNbOx", "Inbox/Sub", "INBOX/Sub"} {
		mb, err := st.GetMailbox(ctx, a.ID, n)
		must(t, err, "GetMailbox "+n)
		if !strings.EqualFold(mb.Name, n) || !strings.HasPrefix(mb.Name, "INBOX") {
			t.Errorf("GetMailbox(%q).Name = %q", n, mb.Name)
		}
	}
	_, err := st.GetMailbox(ctx, a.ID, "inbox/sub")
	wantErr(t, err, "GetMailbox(inbox/sub): levels below INBOX are case-sensitive", mailstore.ErrNoSuchMailbox)

	// Boundaries that are still valid.
	uni := fx.createMailbox(a.ID, "Entwürfe/日本語 & more", "")
	if uni.Name != "Entwürfe/日本語 & more" {
		t.Errorf("UTF-8 name round trip: %q", uni.Name)
	}
	longName := strings.Repeat("n", mailstore.MaxMailboxNameLength)
	fx.createMailbox(a.ID, longName, "")
	deep := strings.TrimSuffix(strings.Repeat("d/", mailstore.MaxMailboxDepth), "/")
	fx.createMailbox(a.ID, deep, "")

	for _, n := range []string{"Projects/2024/Q1", "Projects", "Projects/2024", "INBOX", "inbox", "Inbox", "Drafts", "INBOX/Sub", "inbox/Sub"} {
		_, err := st.CreateMailbox(ctx, a.ID, n, "")
		wantErr(t, err, "CreateMailbox duplicate "+n, mailstore.ErrExists)
	}
	_, err = st.CreateMailbox(ctx, a.ID, "Weird", `\Bogus`)
	wantErr(t, err, "CreateMailbox with an unknown special-use", mailstore.ErrInvalidArgument)

	got := fx.mailboxNames(a.ID)
	want := []string{"All Mail", "Archive", "Drafts", "Entwürfe", "Entwürfe/日本語 & more", "INBOX", "INBOX/Sub", "Junk",
		"Projects", "Projects/2024", "Projects/2024/Q1", "Sent", "Starred", "Trash", "projects", longName}
	for i := 1; i <= mailstore.MaxMailboxDepth; i++ {
		want = append(want, strings.TrimSuffix(strings.Repeat("d/", i), "/"))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("ListMailboxes = %q\nwant %q", got, want)
	}
	seen := map[int64]bool{}
	mbs, err := st.ListMailboxes(ctx, a.ID)
	must(t, err, "ListMailboxes")
	for _, mb := range mbs {
		if seen[mb.ID] || mb.AccountID != a.ID {
			t.Errorf("ListMailboxes: mailbox %+v duplicated or of another account", mb)
		}
		seen[mb.ID] = true
	}

	// Another account has its own namespace.
	bp := fx.createMailbox(b.ID, "Projects", "")
	if seen[bp.ID] {
		t.Errorf("bob's Projects has the ID of one of alice's mailboxes")
	}
	if got := fx.mailboxNames(b.ID); len(got) != len(mailstore.DefaultMailboxes)+1 {
		t.Errorf("bob's mailboxes = %q", got)
	}
}

// invalidMailboxNames are rejected with ErrInvalidName everywhere a name is
// taken.
var invalidMailboxNames = []string{
	"", "/", "a//b", "/a", "a/", "bad\xffname", "\xc3", "ctl\x01x", "tab\tname", "nl\nname", "cr\rname", "nul\x00",
	"del\x7fname", "c1\u0085name", "star*", "pct%", ".", "..", "a/./b", "a/../b", " lead", "trail ", "a/ b",
	strings.Repeat("n", mailstore.MaxMailboxNameLength+1),
	strings.TrimSuffix(strings.Repeat("d/", mailstore.MaxMailboxDepth+1), "/"),
}

func printable(s string) string {
	if len(s) > 40 {
		s = s[:20] + "..." + s[len(s)-10:]
	}
	return strings.ToValidUTF8(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s), "?")
}

func testMailboxInvalidNames(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	fx.createMailbox(a.ID, "Keep", "")
	before := fx.mailboxNames(a.ID)
	for _, n := range invalidMailboxNames {
		_, err := st.CreateMailbox(ctx, a.ID, n, "")
		wantErr(t, err, "CreateMailbox "+printable(n), mailstore.ErrInvalidName)
		wantErr(t, st.RenameMailbox(ctx, a.ID, "Keep", n), "RenameMailbox to "+printable(n), mailstore.ErrInvalidName)
		wantErr(t, st.SetSubscribed(ctx, a.ID, n, true), "SetSubscribed "+printable(n), mailstore.ErrInvalidName)
		_, err = st.GetMailbox(ctx, a.ID, n)
		wantErr(t, err, "GetMailbox "+printable(n), mailstore.ErrInvalidName, mailstore.ErrNoSuchMailbox)
		wantErr(t, st.DeleteMailbox(ctx, a.ID, n), "DeleteMailbox "+printable(n), mailstore.ErrInvalidName, mailstore.ErrNoSuchMailbox)
	}
	if after := fx.mailboxNames(a.ID); !slices.Equal(before, after) {
		t.Errorf("rejected names changed the mailbox list:\nbefore %q\nafter  %q", before, after)
	}
	subs, err := st.ListSubscriptions(ctx, a.ID)
	must(t, err, "ListSubscriptions")
	if len(subs) != len(mailstore.DefaultMailboxes) {
		t.Errorf("rejected names changed the subscriptions: %q", subs)
	}
}

func testMailboxRename(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	q1 := fx.createMailbox(a.ID, "Projects/2024/Q1", "")
	fx.createMailbox(a.ID, "Projects/Old", "")
	trap := fx.createMailbox(a.ID, "ProjectsX", "") // shares the prefix, not a child
	fx.createMailbox(a.ID, "Projects/2024/Q1/Deep", "")
	msgs := [][]byte{simpleMessage("one", "1"), simpleMessage("two", "22")}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, fx.appendMsg(a.ID, q1.ID, mailstore.Flags{System: mailstore.FlagSeen}, fixedDate, m).UID)
	}
	fx.appendMsg(a.ID, trap.ID, mailstore.Flags{}, fixedDate, simpleMessage("trap", "t"))
	usedBefore, _ := fx.usage(a.ID)

	must(t, st.RenameMailbox(ctx, a.ID, "Projects", "Work"), "RenameMailbox Projects -> Work")
	got := fx.mailboxNames(a.ID)
	for _, n := range []string{"Work", "Work/2024", "Work/2024/Q1", "Work/2024/Q1/Deep", "Work/Old", "ProjectsX"} {
		if !slices.Contains(got, n) {
			t.Errorf("after rename, %q missing from %q", n, got)
		}
	}
	for _, n := range got {
		if n == "Projects" || strings.HasPrefix(n, "Projects/") {
			t.Errorf("after rename, %q still listed", n)
		}
	}
	_, err := st.GetMailbox(ctx, a.ID, "Projects/2024/Q1")
	wantErr(t, err, "GetMailbox old name", mailstore.ErrNoSuchMailbox)
	w := fx.mailbox(a.ID, "Work/2024/Q1")
	ms := fx.list(a.ID, w.ID, nil)
	if !equalUIDs(uidsOf(ms), uids) {
		t.Errorf("renamed mailbox holds UIDs %v, want %v", uidsOf(ms), uids)
	}
	for i, m := range ms {
		if i < len(msgs) && string(fx.mustRead(a.ID, w.ID, m.UID)) != string(msgs[i]) {
			t.Errorf("renamed mailbox: message %d content changed", m.UID)
		}
		if m.Flags.System != mailstore.FlagSeen {
			t.Errorf("renamed mailbox: message %d flags %s", m.UID, flagString(m.Flags))
		}
	}
	if n := len(fx.list(a.ID, fx.mailbox(a.ID, "ProjectsX").ID, nil)); n != 1 {
		t.Errorf("ProjectsX (not a child) has %d messages after the rename, want 1", n)
	}
	fx.checkQuota(a.ID, usedBefore, "after rename")

	// Renaming creates missing superiors of the new name (RFC 9051 §6.3.6).
	must(t, st.RenameMailbox(ctx, a.ID, "Work/Old", "Archive2/Deep/Old"), "RenameMailbox into new parents")
	for _, n := range []string{"Archive2", "Archive2/Deep", "Archive2/Deep/Old"} {
		if _, err := st.GetMailbox(ctx, a.ID, n); err != nil {
			t.Errorf("after rename into new parents, GetMailbox(%q): %v", n, err)
		}
	}

	// A special-use attribute follows its mailbox.
	must(t, st.RenameMailbox(ctx, a.ID, "Sent", "Sent Items"), "RenameMailbox Sent")
	if mb := fx.mailbox(a.ID, "Sent Items"); mb.SpecialUse != mailstore.SpecialUseSent {
		t.Errorf("renamed Sent has special-use %q, want \\Sent", mb.SpecialUse)
	}

	before := fx.mailboxNames(a.ID)
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Work", "Drafts"), "RenameMailbox onto existing", mailstore.ErrExists)
	// INBOX always exists; a store may also call the name unusable.
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Work", "INBOX"), "RenameMailbox onto INBOX", mailstore.ErrExists, mailstore.ErrInvalidName)
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Work", "inbox"), "RenameMailbox onto inbox", mailstore.ErrExists, mailstore.ErrInvalidName)
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Work", "Work/2024"), "RenameMailbox onto own child", mailstore.ErrExists, mailstore.ErrInvalidArgument, mailstore.ErrInvalidName)
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Nope", "Other"), "RenameMailbox unknown", mailstore.ErrNoSuchMailbox)
	wantErr(t, st.RenameMailbox(ctx, a.ID, "Work", "a//b"), "RenameMailbox to invalid", mailstore.ErrInvalidName)
	if after := fx.mailboxNames(a.ID); !slices.Equal(before, after) {
		t.Errorf("rejected renames changed the mailbox list:\nbefore %q\nafter  %q", before, after)
	}
}

func testMailboxRenameInbox(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	m1, m2 := simpleMessage("first", "1"), simpleMessage("second", "22")
	fx.deliver(m1, mailstore.Recipient{AccountID: a.ID, Flags: mailstore.Flags{System: mailstore.FlagFlagged}})
	fx.deliver(m2, mailstore.Recipient{AccountID: a.ID})
	child := fx.createMailbox(a.ID, "INBOX/Child", "")
	fx.appendMsg(a.ID, child.ID, mailstore.Flags{}, fixedDate, simpleMessage("child", "c"))
	oldMax := fx.status(a.ID, inbox.ID).UIDNext - 1
	used, _ := fx.usage(a.ID)

	// RFC 9051 §6.3.6: renaming INBOX moves all its messages to a new
	// mailbox with the given name, leaving INBOX empty; inferiors of INBOX
	// are unaffected.
	must(t, st.RenameMailbox(ctx, a.ID, "Inbox", "Old Inbox"), "RenameMailbox INBOX")
	old := fx.mailbox(a.ID, "Old Inbox")
	ms := fx.list(a.ID, old.ID, nil)
	if len(ms) != 2 {
		t.Fatalf("Old Inbox holds %d messages, want 2", len(ms))
	}
	if got := [2]string{string(fx.mustRead(a.ID, old.ID, ms[0].UID)), string(fx.mustRead(a.ID, old.ID, ms[1].UID))}; got != [2]string{string(m1), string(m2)} {
		t.Errorf("Old Inbox contents differ from the delivered messages")
	}
	if ms[0].Flags.System != mailstore.FlagFlagged {
		t.Errorf("moved message lost its flags: %s", flagString(ms[0].Flags))
	}
	in := fx.mailbox(a.ID, "INBOX")
	if s := fx.status(a.ID, in.ID); s.Messages != 0 || s.Size != 0 {
		t.Errorf("INBOX after rename: %+v, want empty", s)
	}
	if n := len(fx.list(a.ID, in.ID, nil)); n != 0 {
		t.Errorf("INBOX lists %d messages after rename", n)
	}
	if c := fx.mailbox(a.ID, "INBOX/Child"); len(fx.list(a.ID, c.ID, nil)) != 1 {
		t.Errorf("INBOX/Child lost its message")
	}
	if _, err := st.GetMailbox(ctx, a.ID, "Old Inbox/Child"); err == nil {
		t.Errorf("INBOX's child was renamed along with INBOX")
	}
	fx.checkQuota(a.ID, used, "after INBOX rename")

	// New mail to INBOX must not reuse a UID a client saw under the same
	// UIDVALIDITY.
	r := fx.deliver(simpleMessage("third", "3"), mailstore.Recipient{AccountID: a.ID})
	in2 := fx.mailbox(a.ID, "INBOX")
	if in2.UIDValidity == inbox.UIDValidity && r.Delivered[0].UID <= oldMax {
		t.Errorf("after INBOX rename, new message got UID %d <= old max %d with unchanged UIDVALIDITY %d",
			r.Delivered[0].UID, oldMax, inbox.UIDValidity)
	}
	if r.Delivered[0].MailboxID != in2.ID {
		t.Errorf("delivery after INBOX rename went to mailbox %d, INBOX is %d", r.Delivered[0].MailboxID, in2.ID)
	}
}

func testMailboxDelete(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	for _, n := range []string{"INBOX", "inbox", "Inbox"} {
		wantErr(t, st.DeleteMailbox(ctx, a.ID, n), "DeleteMailbox "+n, mailstore.ErrProtectedMailbox)
	}
	fx.createMailbox(a.ID, "A/B", "")
	wantErr(t, st.DeleteMailbox(ctx, a.ID, "A"), "DeleteMailbox with children", mailstore.ErrHasChildren)
	wantErr(t, st.DeleteMailbox(ctx, a.ID, "Nope"), "DeleteMailbox unknown", mailstore.ErrNoSuchMailbox)
	if _, err := st.GetMailbox(ctx, a.ID, "A/B"); err != nil {
		t.Errorf("refused delete removed the child: %v", err)
	}
	must(t, st.DeleteMailbox(ctx, a.ID, "A/B"), "DeleteMailbox leaf")
	must(t, st.DeleteMailbox(ctx, a.ID, "A"), "DeleteMailbox former parent")

	// Deleting a mailbox removes its messages from the quota; content
	// shared with another mailbox stays readable there.
	keep := fx.createMailbox(a.ID, "Keep", "")
	gone := fx.createMailbox(a.ID, "Gone", "")
	body := simpleMessage("shared", strings.Repeat("s", 500))
	kr := fx.appendMsg(a.ID, keep.ID, mailstore.Flags{}, fixedDate, body)
	if _, err := st.Copy(ctx, a.ID, keep.ID, mailstore.UIDs(kr.UID), gone.ID); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	fx.appendMsg(a.ID, gone.ID, mailstore.Flags{}, fixedDate, simpleMessage("only here", "x"))
	must(t, st.DeleteMailbox(ctx, a.ID, "Gone"), "DeleteMailbox with messages")
	fx.checkQuota(a.ID, int64(len(body)), "after deleting a mailbox")
	_, err := st.GetMailbox(ctx, a.ID, "Gone")
	wantErr(t, err, "GetMailbox deleted", mailstore.ErrNoSuchMailbox)
	_, err = st.ListMessages(ctx, a.ID, gone.ID, nil)
	wantErr(t, err, "ListMessages deleted mailbox ID", mailstore.ErrNoSuchMailbox)
	_, err = st.MailboxStatus(ctx, a.ID, gone.ID)
	wantErr(t, err, "MailboxStatus deleted mailbox ID", mailstore.ErrNoSuchMailbox)
	_, err = st.OpenMessage(ctx, a.ID, gone.ID, 1, 0, -1)
	wantErr(t, err, "OpenMessage in deleted mailbox", mailstore.ErrNoSuchMailbox, mailstore.ErrNoSuchMessage)
	_, err = st.Append(ctx, a.ID, gone.ID, mailstore.Flags{}, fixedDate, strings.NewReader("x"))
	wantErr(t, err, "Append to deleted mailbox ID", mailstore.ErrNoSuchMailbox)
	if got := fx.mustRead(a.ID, keep.ID, kr.UID); string(got) != string(body) {
		t.Errorf("shared content changed after deleting the other mailbox")
	}
}

func testMailboxSubscriptions(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	subs := func(id int64) []string {
		t.Helper()
		s, err := st.ListSubscriptions(ctx, id)
		must(t, err, "ListSubscriptions")
		slices.Sort(s)
		return s
	}
	must(t, st.SetSubscribed(ctx, a.ID, "Not/There", true), "subscribe non-existent name")
	must(t, st.SetSubscribed(ctx, a.ID, "Not/There", true), "subscribe twice")
	must(t, st.SetSubscribed(ctx, a.ID, "Drafts", false), "unsubscribe Drafts")
	must(t, st.SetSubscribed(ctx, a.ID, "inbox", false), "unsubscribe inbox")
	must(t, st.SetSubscribed(ctx, a.ID, "Later", true), "subscribe a name before it exists")
	want := []string{"Archive", "Junk", "Later", "Not/There", "Sent", "Trash"}
	if got := subs(a.ID); !slices.Equal(got, want) {
		t.Errorf("ListSubscriptions = %q, want %q", got, want)
	}
	if mb := fx.mailbox(a.ID, "Drafts"); mb.Subscribed {
		t.Errorf("Drafts.Subscribed = true after unsubscribe")
	}
	if mb := fx.mailbox(a.ID, "INBOX"); mb.Subscribed {
		t.Errorf("INBOX.Subscribed = true after unsubscribing \"inbox\"")
	}
	if mb := fx.createMailbox(a.ID, "Later", ""); !mb.Subscribed || !fx.mailbox(a.ID, "Later").Subscribed {
		t.Errorf("mailbox created under a subscribed name is not marked subscribed")
	}
	mbs, err := st.ListMailboxes(ctx, a.ID)
	must(t, err, "ListMailboxes")
	for _, mb := range mbs {
		if mb.Subscribed != slices.Contains(want, mb.Name) {
			t.Errorf("ListMailboxes: %q Subscribed = %v, subscriptions are %q", mb.Name, mb.Subscribed, want)
		}
	}
	if got := subs(b.ID); len(got) != len(mailstore.DefaultMailboxes) {
		t.Errorf("alice's subscriptions changed bob's: %q", got)
	}
	must(t, st.SetSubscribed(ctx, a.ID, "Not/There", false), "unsubscribe non-existent name")
	if got := subs(a.ID); slices.Contains(got, "Not/There") {
		t.Errorf("Not/There still subscribed: %q", got)
	}
}

func testMailboxUIDValidity(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	// RFC 9051 §2.3.1.1: a mailbox re-created under a name must get a
	// different UIDVALIDITY, even within the same second.
	seen := map[uint32]bool{}
	for i := 0; i < 3; i++ {
		mb := fx.createMailbox(a.ID, "Tmp", "")
		if mb.UIDValidity == 0 || seen[mb.UIDValidity] {
			t.Errorf("re-created Tmp (round %d) has UIDVALIDITY %d, already used by an earlier Tmp", i, mb.UIDValidity)
		}
		seen[mb.UIDValidity] = true
		fx.appendMsg(a.ID, mb.ID, mailstore.Flags{}, fixedDate, simpleMessage("tmp", "t"))
		must(t, st.DeleteMailbox(ctx, a.ID, "Tmp"), "DeleteMailbox Tmp")
	}
	// A different mailbox renamed onto the name also differs.
	fx.createMailbox(a.ID, "Other", "")
	must(t, st.RenameMailbox(ctx, a.ID, "Other", "Tmp"), "RenameMailbox Other -> Tmp")
	if mb := fx.mailbox(a.ID, "Tmp"); seen[mb.UIDValidity] {
		t.Errorf("mailbox renamed to Tmp has UIDVALIDITY %d of a deleted Tmp", mb.UIDValidity)
	}
}
