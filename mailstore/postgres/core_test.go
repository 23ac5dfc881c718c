package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fixture: a store with domain example.org and account a@example.org.
func fixture(t testing.TB) (*postgres.Store, string, mailstore.Account) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	st := pgtest.OpenStore(t, url)
	ctx := ctxT(t)
	must(t, st.CreateDomain(ctx, "example.org"))
	a, err := st.CreateAccount(ctx, "A@Example.org", "hash")
	must(t, err)
	return st, url, a
}

func msg(subject, body string) string {
	return "From: Alice <alice@example.net>\r\nTo: a@example.org\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <" + subject + "@x>\r\n\r\n" + body + "\r\n"
}

func deliver(t testing.TB, st mailstore.Store, body string, rcpts ...mailstore.Recipient) mailstore.DeliveryResult {
	t.Helper()
	res, err := st.Deliver(ctxT(t), &mailstore.Delivery{MailFrom: "alice@example.net", Recipients: rcpts, Body: strings.NewReader(body)})
	must(t, err)
	return res
}

func inbox(t testing.TB, st mailstore.Store, acct int64) mailstore.Mailbox {
	t.Helper()
	mb, err := st.GetMailbox(ctxT(t), acct, "inbox")
	must(t, err)
	return mb
}

func readAll(t testing.TB, st mailstore.Store, acct, mbox int64, uid uint32, off, n int64) string {
	t.Helper()
	rc, err := st.OpenMessage(ctxT(t), acct, mbox, uid, off, n)
	must(t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	must(t, err)
	return string(b)
}

func TestCoreLifecycle(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	if a.Address != "a@example.org" {
		t.Fatalf("address %q", a.Address)
	}
	mbs, err := st.ListMailboxes(ctx, a.ID)
	must(t, err)
	var names []string
	for _, m := range mbs {
		names = append(names, m.Name+m.SpecialUse)
		if !m.Subscribed || m.UIDNext != 1 || m.UIDValidity == 0 {
			t.Errorf("default mailbox %+v", m)
		}
	}
	if want := []string{`Archive\Archive`, `Drafts\Drafts`, "INBOX", `Junk\Junk`, `Sent\Sent`, `Trash\Trash`}; !slices.Equal(names, want) {
		t.Fatalf("mailboxes %v, want %v", names, want)
	}
	in := inbox(t, st, a.ID)
	body := msg("hello", "first body")
	res := deliver(t, st, body, mailstore.Recipient{AccountID: a.ID})
	if len(res.Delivered) != 1 || res.Delivered[0].UID != 1 || res.Delivered[0].MailboxID != in.ID || res.Size != int64(len(body)) {
		t.Fatalf("deliver result %+v", res)
	}
	deliver(t, st, msg("second", "second body"), mailstore.Recipient{AccountID: a.ID, Flags: mailstore.Flags{System: mailstore.FlagSeen, Keywords: []string{"$Junk", "$junk", "Foo"}}})

	ms, err := st.ListMessages(ctx, a.ID, in.ID, nil)
	must(t, err)
	if len(ms) != 2 || ms[0].UID != 1 || ms[1].UID != 2 || ms[1].Flags.System != mailstore.FlagSeen ||
		!slices.Equal(ms[1].Flags.Keywords, []string{"$Junk", "Foo"}) || ms[0].Size != int64(len(body)) || ms[1].ModSeq <= ms[0].ModSeq {
		t.Fatalf("list %+v", ms)
	}
	if got := readAll(t, st, a.ID, in.ID, 1, 0, -1); got != body {
		t.Fatalf("read back %q", got)
	}
	if got := readAll(t, st, a.ID, in.ID, 1, 6, 5); got != body[6:11] {
		t.Fatalf("partial read %q", got)
	}
	if got := readAll(t, st, a.ID, in.ID, 1, 10000, -1); got != "" {
		t.Fatalf("read past end %q", got)
	}
	if _, err := st.OpenMessage(ctx, a.ID, in.ID, 99, 0, -1); !errors.Is(err, mailstore.ErrNoSuchMessage) {
		t.Fatalf("open missing: %v", err)
	}
	st1, err := st.MailboxStatus(ctx, a.ID, in.ID)
	must(t, err)
	if st1.Messages != 2 || st1.Unseen != 1 || st1.UIDNext != 3 {
		t.Fatalf("status %+v", st1)
	}
	hms := st1.HighestModSeq

	// Flags.
	sr, err := st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(1, 2), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen | mailstore.FlagDeleted, Keywords: []string{"foo", "Bar"}}, 0)
	must(t, err)
	if len(sr.Updated) != 2 || sr.Updated[0].ModSeq <= hms || !slices.Equal(sr.Updated[1].Flags.Keywords, []string{"$Junk", "Foo", "Bar"}) {
		t.Fatalf("store %+v", sr)
	}
	// No-op store reports nothing; UNCHANGEDSINCE failure reported.
	sr, err = st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(1), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	must(t, err)
	if len(sr.Updated) != 0 || len(sr.Modified) != 0 {
		t.Fatalf("no-op store %+v", sr)
	}
	sr, err = st.StoreFlags(ctx, a.ID, in.ID, nil, mailstore.FlagsRemove, mailstore.Flags{Keywords: []string{"FOO"}}, hms)
	must(t, err)
	if len(sr.Updated) != 0 || !slices.Equal(sr.Modified, []uint32{1, 2}) {
		t.Fatalf("unchangedsince store %+v", sr)
	}
	// Changes.
	ch, err := st.Changes(ctx, a.ID, in.ID, hms)
	must(t, err)
	if len(ch.Updated) != 2 || len(ch.Vanished) != 0 || ch.UIDNext != 3 {
		t.Fatalf("changes %+v", ch)
	}
	// Expunge only deleted of uid 1.
	er, err := st.Expunge(ctx, a.ID, in.ID, mailstore.UIDs(1), true)
	must(t, err)
	if !slices.Equal(er.UIDs, []uint32{1}) || er.HighestModSeq <= ch.HighestModSeq {
		t.Fatalf("expunge %+v", er)
	}
	ch2, err := st.Changes(ctx, a.ID, in.ID, ch.HighestModSeq)
	must(t, err)
	if len(ch2.Updated) != 0 || !slices.Equal(ch2.Vanished, []uint32{1}) || ch2.HighestModSeq != er.HighestModSeq {
		t.Fatalf("changes after expunge %+v", ch2)
	}
	used, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if want := int64(len(msg("second", "second body"))); used != want {
		t.Fatalf("quota used %d, want %d", used, want)
	}
	// Another account cannot see the mailbox.
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	if _, err := st.ListMessages(ctx, b.ID, in.ID, nil); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("foreign list: %v", err)
	}
	if _, err := st.OpenMessage(ctx, b.ID, in.ID, 2, 0, -1); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("foreign open: %v", err)
	}
	if _, err := st.Expunge(ctx, b.ID, in.ID, nil, false); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("foreign expunge: %v", err)
	}
	if _, err := st.StoreFlags(ctx, b.ID, in.ID, nil, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("foreign store: %v", err)
	}
	// Delete account: contents released.
	must(t, st.DeleteAccount(ctx, "a@example.org"))
	must(t, st.DrainReleases(ctx)) // the expunge above released its content after commit (releases.go)
	var n int
	must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM contents) + (SELECT count(*) FROM chunks) + (SELECT count(*) FROM messages)`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d rows left after deleting the only account with mail", n)
	}
	if err := st.DeleteDomain(ctx, "example.org"); !errors.Is(err, mailstore.ErrDomainNotEmpty) {
		t.Fatalf("delete non-empty domain: %v", err)
	}
	checkInvariants(t, st)
}

func TestDeliverDedupeAndQuota(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	body := msg("shared", strings.Repeat("x", 1000))
	res := deliver(t, st, body,
		mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: b.ID},
		mailstore.Recipient{AccountID: a.ID, Mailbox: "inbox"}, mailstore.Recipient{AccountID: a.ID, Mailbox: "Archive"})
	if len(res.Delivered) != 3 {
		t.Fatalf("delivered %+v", res.Delivered)
	}
	var contents, refs int
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*), sum(refcount) FROM contents`).Scan(&contents, &refs))
	if contents != 1 || refs != 3 {
		t.Fatalf("one delivery: contents %d refs %d, want 1 and 3 (one content for every recipient)", contents, refs)
	}
	// The same small octets in another delivery get a content of their own
	// (0010: no reference count shared across deliveries).
	deliver(t, st, body, mailstore.Recipient{AccountID: b.ID})
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*), sum(refcount) FROM contents`).Scan(&contents, &refs))
	if contents != 2 || refs != 4 {
		t.Fatalf("second delivery: contents %d refs %d, want 2 and 4", contents, refs)
	}
	// Quota: b has 2 copies; limit allows no third.
	must(t, st.SetQuota(ctx, b.ID, int64(2*len(body)+10)))
	_, err = st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}, {AccountID: b.ID}}, Body: strings.NewReader(body)})
	var qe *mailstore.QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, mailstore.ErrOverQuota) || !slices.Equal(qe.AccountIDs, []int64{b.ID}) {
		t.Fatalf("over quota: %v", err)
	}
	// Nothing of the failed delivery stayed.
	used, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if used != int64(2*len(body)) {
		t.Fatalf("a used %d", used)
	}
	// Unknown mailbox and account.
	if _, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID, Mailbox: "nope"}}, Body: strings.NewReader(body)}); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("no such mailbox: %v", err)
	}
	if _, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: 999999}}, Body: strings.NewReader(body)}); !errors.Is(err, mailstore.ErrNoSuchAccount) {
		t.Fatalf("no such account: %v", err)
	}
	// Expunge everything from both: content gone.
	for _, acct := range []int64{a.ID, b.ID} {
		mbs, err := st.ListMailboxes(ctx, acct)
		must(t, err)
		for _, m := range mbs {
			_, err := st.Expunge(ctx, acct, m.ID, nil, false)
			must(t, err)
		}
	}
	must(t, st.DrainReleases(ctx)) // released after the expunges (releases.go)
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM contents`).Scan(&contents))
	if contents != 0 {
		t.Fatalf("%d contents left", contents)
	}
	checkInvariants(t, st)
}

func TestNotificationsAcrossHandles(t *testing.T) {
	st, url, a := fixture(t)
	other := pgtest.OpenStore(t, url)
	ch, cancel := other.Subscribe(a.ID)
	defer cancel()
	// The listener's (re)connect signal may arrive first: drain it.
	deadline := time.After(10 * time.Second)
	select {
	case <-ch:
	case <-time.After(2 * time.Second):
	}
	deliver(t, st, msg("n", "x"), mailstore.Recipient{AccountID: a.ID})
	select {
	case <-ch:
	case <-deadline:
		t.Fatal("no notification from the other store handle")
	}
	// Cancelled subscriptions receive nothing and cancel is idempotent.
	cancel()
	cancel()
	deliver(t, st, msg("n2", "x"), mailstore.Recipient{AccountID: a.ID})
	select {
	case <-ch:
		t.Fatal("notification after cancel")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	ctx := ctxT(t)
	url := pgtest.NewEmptyDatabase(t)
	st, err := postgres.Open(ctx, url, postgres.Options{})
	must(t, err)
	defer st.Close()
	if err := st.Ping(ctx); !errors.Is(err, mailstore.ErrSchemaOutdated) {
		t.Fatalf("ping before migrate: %v", err)
	}
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		go func() { errs <- postgres.Migrate(ctx, url) }()
	}
	for i := 0; i < 10; i++ {
		must(t, <-errs)
	}
	must(t, postgres.Migrate(ctx, url))
	must(t, st.Ping(ctx))
	var n, distinct int
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct))
	if n != distinct || n < 2 {
		t.Fatalf("schema_migrations has %d rows for %d versions", n, distinct)
	}
}

func TestMailboxOps(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	m, err := st.CreateMailbox(ctx, a.ID, "Work/2024/Q1", "")
	must(t, err)
	if m.Name != "Work/2024/Q1" || m.Subscribed {
		t.Fatalf("created %+v", m)
	}
	if _, err := st.GetMailbox(ctx, a.ID, "Work/2024"); err != nil {
		t.Fatalf("parent not created: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, a.ID, "Work/2024/Q1", ""); !errors.Is(err, mailstore.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, a.ID, "bad\xff", ""); !errors.Is(err, mailstore.ErrInvalidName) {
		t.Fatalf("invalid utf-8: %v", err)
	}
	if err := st.DeleteMailbox(ctx, a.ID, "INBOX"); !errors.Is(err, mailstore.ErrProtectedMailbox) {
		t.Fatalf("delete INBOX: %v", err)
	}
	if err := st.DeleteMailbox(ctx, a.ID, "Work"); !errors.Is(err, mailstore.ErrHasChildren) {
		t.Fatalf("delete parent: %v", err)
	}
	must(t, st.SetSubscribed(ctx, a.ID, "Work/2024/Q1", true))
	deliver(t, st, msg("w", "x"), mailstore.Recipient{AccountID: a.ID, Mailbox: "Work/2024/Q1"})
	must(t, st.RenameMailbox(ctx, a.ID, "Work", "Old/Work"))
	got, err := st.GetMailbox(ctx, a.ID, "Old/Work/2024/Q1")
	must(t, err)
	if got.ID != m.ID || got.UIDValidity != m.UIDValidity || !got.Subscribed {
		t.Fatalf("renamed %+v (was %+v)", got, m)
	}
	if _, err := st.GetMailbox(ctx, a.ID, "Work/2024"); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("old name: %v", err)
	}
	// A recreated name gets a new UIDVALIDITY.
	m2, err := st.CreateMailbox(ctx, a.ID, "Work/2024/Q1", "")
	must(t, err)
	if m2.UIDValidity == m.UIDValidity {
		t.Fatal("UIDVALIDITY reused")
	}
	// Rename INBOX: messages move, INBOX stays, empty.
	deliver(t, st, msg("i", "y"), mailstore.Recipient{AccountID: a.ID})
	in := inbox(t, st, a.ID)
	must(t, st.RenameMailbox(ctx, a.ID, "INBOX", "Saved"))
	sv, err := st.GetMailbox(ctx, a.ID, "Saved")
	must(t, err)
	ms, err := st.ListMessages(ctx, a.ID, sv.ID, nil)
	must(t, err)
	if len(ms) != 1 {
		t.Fatalf("moved %d messages", len(ms))
	}
	ms, err = st.ListMessages(ctx, a.ID, in.ID, nil)
	must(t, err)
	if len(ms) != 0 {
		t.Fatalf("INBOX kept %d", len(ms))
	}
	ch, err := st.Changes(ctx, a.ID, in.ID, 1)
	must(t, err)
	if len(ch.Vanished) != 1 {
		t.Fatalf("INBOX changes %+v", ch)
	}
	// Delete with messages releases quota.
	must(t, st.DeleteMailbox(ctx, a.ID, "Saved"))
	must(t, st.DeleteMailbox(ctx, a.ID, "Old/Work/2024/Q1"))
	used, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if used != 0 {
		t.Fatalf("used %d after deletes", used)
	}
	subs, err := st.ListSubscriptions(ctx, a.ID)
	must(t, err)
	if !slices.Contains(subs, "Old/Work/2024/Q1") {
		t.Fatalf("subscriptions %v", subs)
	}
	checkInvariants(t, st)
}

func TestAliasesResolve(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	must(t, st.CreateAlias(ctx, "Team@example.org", "a@example.org"))
	must(t, st.CreateAlias(ctx, "team@example.org", "b@example.org"))
	must(t, st.CreateAlias(ctx, "@example.org", "b@example.org"))
	if err := st.CreateAlias(ctx, "team@example.org", "b@example.org"); !errors.Is(err, mailstore.ErrExists) {
		t.Fatalf("dup alias: %v", err)
	}
	if err := st.CreateAlias(ctx, "x@nowhere.org", "b@example.org"); !errors.Is(err, mailstore.ErrNoSuchDomain) {
		t.Fatalf("alias in foreign domain: %v", err)
	}
	if err := st.CreateAlias(ctx, "y@example.org", "nobody@example.org"); !errors.Is(err, mailstore.ErrNoSuchAccount) {
		t.Fatalf("alias to nobody: %v", err)
	}
	cases := []struct {
		addr string
		want []int64
		err  error
	}{
		{"A@example.org", []int64{a.ID}, nil},
		{"a+tag@example.org", []int64{a.ID}, nil},
		{"team@example.org", []int64{a.ID, b.ID}, nil},
		{"team+x@example.org", []int64{a.ID, b.ID}, nil},
		{"whoever@example.org", []int64{b.ID}, nil},
		{"a@elsewhere.org", nil, mailstore.ErrNotLocalDomain},
		{"not an address", nil, mailstore.ErrInvalidAddress},
	}
	for _, c := range cases {
		got, err := st.ResolveRecipient(ctx, c.addr)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err %v, want %v", c.addr, err, c.err)
			}
			continue
		}
		var ids []int64
		for _, x := range got {
			ids = append(ids, x.ID)
		}
		if err != nil || !slices.Equal(ids, c.want) {
			t.Errorf("%s: %v %v, want %v", c.addr, ids, err, c.want)
		}
	}
	must(t, st.DeleteAlias(ctx, "@example.org", ""))
	if _, err := st.ResolveRecipient(ctx, "whoever@example.org"); !errors.Is(err, mailstore.ErrNoSuchRecipient) {
		t.Fatalf("after removing catch-all: %v", err)
	}
	addrs, err := st.AccountAddresses(ctx, b.ID)
	must(t, err)
	if !slices.Equal(addrs, []string{"b@example.org", "team@example.org"}) {
		t.Fatalf("addresses %v", addrs)
	}
	als, err := st.ListAliases(ctx, "")
	must(t, err)
	if fmt.Sprint(als) != "[{team@example.org a@example.org} {team@example.org b@example.org}]" {
		t.Fatalf("aliases %v", als)
	}
}

// TestListenerReconnects kills the listening connection: subscribers get a
// catch-up signal on reconnect and later notifications still arrive.
func TestListenerReconnects(t *testing.T) {
	st, url, a := fixture(t)
	ctx := ctxT(t)
	other := pgtest.OpenStore(t, url)
	ch, cancel := other.Subscribe(a.ID)
	defer cancel()
	time.Sleep(300 * time.Millisecond) // let the listener connect
	drain := func() {
		for {
			select {
			case <-ch:
			case <-time.After(200 * time.Millisecond):
				return
			}
		}
	}
	drain()
	// A session that knows INBOX: nothing changed since.
	in := inbox(t, other, a.ID)
	var mark mailstore.ChangeMark
	var hms uint64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mark = other.ChangeMark()
		hms = mustStatus(t, other, a.ID, in.ID).HighestModSeq
		if !other.MayHaveChanged(a.ID, in.ID, hms, mark) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("INBOX may have changed right after it was read (listener not connected?)")
		}
	}
	var killed int
	must(t, st.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed))
	if killed < 2 {
		t.Fatalf("terminated %d listeners, want 2", killed)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no catch-up signal after the listener reconnected")
	}
	drain()
	// Notifications may have been lost while it was down: the session's
	// view counts as possibly changed, though nothing did, until it reads
	// the mailbox again.
	if !other.MayHaveChanged(a.ID, in.ID, hms, mark) {
		t.Fatal("after the listener reconnected, a view from before counts as unchanged")
	}
	mark = other.ChangeMark()
	hms = mustStatus(t, other, a.ID, in.ID).HighestModSeq
	if other.MayHaveChanged(a.ID, in.ID, hms, mark) {
		t.Fatal("a view read after the reconnect counts as changed")
	}
	deliver(t, st, msg("after reconnect", "x"), mailstore.Recipient{AccountID: a.ID})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after the listener reconnected")
	}
	if !other.MayHaveChanged(a.ID, in.ID, hms, mark) {
		t.Fatal("a delivery notified after the reconnect does not count")
	}
}

func mustStatus(t *testing.T, st mailstore.Store, acct, mbox int64) mailstore.MailboxStatus {
	t.Helper()
	s, err := st.MailboxStatus(ctxT(t), acct, mbox)
	must(t, err)
	return s
}
