package postgres_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestOutageIsUnavailable: with the database cut off (a proxy that drops
// every connection and refuses new ones), every store method fails with
// ErrUnavailable, not an anonymous error the frontends would report as a
// server bug; once the database is back, the same handle works again.
func TestOutageIsUnavailable(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	direct := pgtest.OpenStore(t, url)
	ctx := ctxT(t)
	must(t, direct.CreateDomain(ctx, "example.org"))
	acc, err := direct.CreateAccount(ctx, "alice@example.org", "x")
	must(t, err)
	inbox, err := direct.GetMailbox(ctx, acc.ID, "INBOX")
	must(t, err)
	res, err := direct.Append(ctx, acc.ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: a\r\n\r\nb\r\n"))
	must(t, err)

	proxy, purl := pgtest.NewProxy(t, url)
	st := pgtest.OpenStore(t, purl)
	if _, err := st.GetAccount(ctx, "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	proxy.Down()

	uids := mailstore.UIDSet{{Start: res.UID, Stop: res.UID}}
	calls := map[string]func(context.Context) error{
		"Ping":         st.Ping,
		"ListDomains":  func(ctx context.Context) error { _, err := st.ListDomains(ctx); return err },
		"IsLocal":      func(ctx context.Context) error { _, err := st.IsLocalDomain(ctx, "example.org"); return err },
		"CreateDomain": func(ctx context.Context) error { return st.CreateDomain(ctx, "new.example") },
		"GetAccount":   func(ctx context.Context) error { _, err := st.GetAccount(ctx, "alice@example.org"); return err },
		"DeleteAcct":   func(ctx context.Context) error { return st.DeleteAccount(ctx, "alice@example.org") },
		"Resolve":      func(ctx context.Context) error { _, err := st.ResolveRecipient(ctx, "alice@example.org"); return err },
		"Addresses":    func(ctx context.Context) error { _, err := st.AccountAddresses(ctx, acc.ID); return err },
		"QuotaUsage":   func(ctx context.Context) error { _, _, err := st.QuotaUsage(ctx, acc.ID); return err },
		"CreateMbox":   func(ctx context.Context) error { _, err := st.CreateMailbox(ctx, acc.ID, "New", ""); return err },
		"RenameMbox":   func(ctx context.Context) error { return st.RenameMailbox(ctx, acc.ID, "Trash", "Bin") },
		"DeleteMbox":   func(ctx context.Context) error { return st.DeleteMailbox(ctx, acc.ID, "Trash") },
		"GetMailbox":   func(ctx context.Context) error { _, err := st.GetMailbox(ctx, acc.ID, "INBOX"); return err },
		"ListMbox":     func(ctx context.Context) error { _, err := st.ListMailboxes(ctx, acc.ID); return err },
		"Status":       func(ctx context.Context) error { _, err := st.MailboxStatus(ctx, acc.ID, inbox.ID); return err },
		"Subscribe":    func(ctx context.Context) error { return st.SetSubscribed(ctx, acc.ID, "INBOX", false) },
		"Deliver": func(ctx context.Context) error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "b@x.example", Recipients: []mailstore.Recipient{{AccountID: acc.ID}},
				Body: strings.NewReader("Subject: x\r\n\r\ny\r\n")})
			return err
		},
		"DeliverBig": func(ctx context.Context) error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "b@x.example", Recipients: []mailstore.Recipient{{AccountID: acc.ID}},
				Body: strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("y", 600<<10))})
			return err
		},
		"Append": func(ctx context.Context) error {
			_, err := st.Append(ctx, acc.ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: x\r\n\r\ny\r\n"))
			return err
		},
		"Copy": func(ctx context.Context) error { _, err := st.Copy(ctx, acc.ID, inbox.ID, uids, inbox.ID); return err },
		"Move": func(ctx context.Context) error { _, err := st.Move(ctx, acc.ID, inbox.ID, uids, inbox.ID); return err },
		"StoreFlags": func(ctx context.Context) error {
			_, err := st.StoreFlags(ctx, acc.ID, inbox.ID, uids, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
			return err
		},
		"Expunge":  func(ctx context.Context) error { _, err := st.Expunge(ctx, acc.ID, inbox.ID, uids, true); return err },
		"ListMsgs": func(ctx context.Context) error { _, err := st.ListMessages(ctx, acc.ID, inbox.ID, nil); return err },
		"Changes":  func(ctx context.Context) error { _, err := st.Changes(ctx, acc.ID, inbox.ID, 1); return err },
		"Details":  func(ctx context.Context) error { _, err := st.FetchDetails(ctx, acc.ID, inbox.ID, uids); return err },
		"Search": func(ctx context.Context) error {
			_, err := st.Search(ctx, acc.ID, inbox.ID, &mailstore.SearchCriteria{Body: []string{"b"}})
			return err
		},
		"ClaimRecent": func(ctx context.Context) error { _, err := st.ClaimRecent(ctx, acc.ID, inbox.ID); return err },
		"OpenMessage": func(ctx context.Context) error {
			r, err := st.OpenMessage(ctx, acc.ID, inbox.ID, res.UID, 0, -1)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		},
		"AuthFailures": func(ctx context.Context) error { _, err := st.AuthFailures(ctx, []string{"k"}, time.Now()); return err },
		"ReserveAuth": func(ctx context.Context) error {
			_, err := st.ReserveAuthFailure(ctx, []string{"k"}, []int{10}, time.Now().Add(-time.Minute), time.Now())
			return err
		},
		"ConfirmAuth": func(ctx context.Context) error {
			return st.ConfirmAuthFailure(ctx, mailstore.AuthReservation{Keys: []string{"k"}, At: time.Now(), ID: 1})
		},
		"Acquire": func(ctx context.Context) error { _, err := st.AcquireLease(ctx, "l", "h", time.Second); return err },
		"Renew":   func(ctx context.Context) error { _, err := st.RenewLease(ctx, "l", "h", time.Second); return err },
		"Release": func(ctx context.Context) error { return st.ReleaseLease(ctx, "l", "h") },
	}
	for name, call := range calls {
		err := call(ctx)
		if !errors.Is(err, mailstore.ErrUnavailable) {
			t.Errorf("%s during the outage: %v, want ErrUnavailable", name, err)
		}
	}
	// A deadline on a store call that the database does not answer in
	// time is an outage too; cancellation (the caller's doing) is not.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.GetMailbox(cctx, acc.ID, "INBOX"); errors.Is(err, mailstore.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v, want context.Canceled and not ErrUnavailable", err)
	}

	proxy.Up()
	if _, err := st.GetMailbox(ctx, acc.ID, "INBOX"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	// Genuine errors stay what they are.
	if _, err := st.GetMailbox(ctx, acc.ID, "Nope"); !errors.Is(err, mailstore.ErrNoSuchMailbox) || errors.Is(err, mailstore.ErrUnavailable) {
		t.Errorf("missing mailbox: %v", err)
	}
}
