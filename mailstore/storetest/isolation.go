package storetest

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testIsolation calls every mailbox-level method with one account's ID and
// another account's mailbox ID (or a mailbox ID that does not exist): each
// must fail with ErrNoSuchMailbox, return nothing, and change nothing.
func testIsolation(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	aIn := fx.mailbox(alice.ID, "INBOX")
	bIn := fx.mailbox(bob.ID, "INBOX")
	bu := fx.deliver(simpleMessage("for bob only", "secret of bob"),
		mailstore.Recipient{AccountID: bob.ID, Flags: fl(mailstore.FlagSeen)}).Delivered[0].UID
	fx.appendMsg(alice.ID, aIn.ID, mailstore.Flags{}, fixedDate, simpleMessage("alice", "a"))
	fx.storeFlags(bob.ID, bIn.ID, mailstore.UIDs(bu), mailstore.FlagsAdd, fl(mailstore.FlagDeleted), 0)
	missing := aIn.ID + bIn.ID + 1_000_000
	snap := fx.snapshot()

	type probe struct {
		name string
		call func(acct, mbox int64) (leak string, err error)
	}
	all := mailstore.UIDSet{{Start: 1, Stop: 0}}
	probes := []probe{
		{"MailboxStatus", func(acct, mbox int64) (string, error) {
			s, err := st.MailboxStatus(ctx, acct, mbox)
			if s.Messages != 0 || s.UIDValidity != 0 {
				return "status with data", err
			}
			return "", err
		}},
		{"ListMessages", func(acct, mbox int64) (string, error) {
			ms, err := st.ListMessages(ctx, acct, mbox, nil)
			if len(ms) > 0 {
				return "messages listed", err
			}
			return "", err
		}},
		{"Changes", func(acct, mbox int64) (string, error) {
			c, err := st.Changes(ctx, acct, mbox, 0)
			if len(c.Updated) > 0 || c.HighestModSeq != 0 {
				return "changes returned", err
			}
			return "", err
		}},
		{"FetchDetails", func(acct, mbox int64) (string, error) {
			ds, err := st.FetchDetails(ctx, acct, mbox, all)
			if len(ds) > 0 {
				return "details returned", err
			}
			return "", err
		}},
		{"SaveDates", func(acct, mbox int64) (string, error) {
			ds, err := st.SaveDates(ctx, acct, mbox, all)
			if len(ds) > 0 {
				return "save dates returned", err
			}
			return "", err
		}},
		{"OpenMessage", func(acct, mbox int64) (string, error) {
			rc, err := st.OpenMessage(ctx, acct, mbox, bu, 0, -1)
			if rc != nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				if len(b) > 0 {
					return "message content readable", err
				}
			}
			return "", err
		}},
		{"ReadMessages", func(acct, mbox int64) (string, error) {
			ms, err := st.ReadMessages(ctx, acct, mbox, []uint32{bu}, 1<<20, nil)
			for _, m := range ms {
				if m.Whole || len(m.Data) > 0 {
					return "message content read", err
				}
			}
			return "", err
		}},
		{"Search", func(acct, mbox int64) (string, error) {
			u, err := st.Search(ctx, acct, mbox, &mailstore.SearchCriteria{})
			if len(u) > 0 {
				return "search results", err
			}
			return "", err
		}},
		{"ClaimRecent", func(acct, mbox int64) (string, error) {
			u, err := st.ClaimRecent(ctx, acct, mbox)
			if len(u) > 0 {
				return "recent messages claimed", err
			}
			return "", err
		}},
		{"Append", func(acct, mbox int64) (string, error) {
			_, err := st.Append(ctx, acct, mbox, mailstore.Flags{}, time.Time{}, strings.NewReader("Subject: intruder\r\n\r\nx\r\n"))
			return "", err
		}},
		{"StoreFlags", func(acct, mbox int64) (string, error) {
			r, err := st.StoreFlags(ctx, acct, mbox, all, mailstore.FlagsReplace, fl(0, "$Pwned"), 0)
			if len(r.Updated) > 0 {
				return "flags updated", err
			}
			return "", err
		}},
		{"Expunge", func(acct, mbox int64) (string, error) {
			r, err := st.Expunge(ctx, acct, mbox, nil, false)
			if len(r.UIDs) > 0 {
				return "messages expunged", err
			}
			return "", err
		}},
		{"Copy from", func(acct, mbox int64) (string, error) {
			r, err := st.Copy(ctx, acct, mbox, all, fx.mailbox(acct, "INBOX").ID)
			if len(r.DstUIDs) > 0 {
				return "messages copied out", err
			}
			return "", err
		}},
		{"Copy to", func(acct, mbox int64) (string, error) {
			r, err := st.Copy(ctx, acct, fx.mailbox(acct, "INBOX").ID, all, mbox)
			if len(r.DstUIDs) > 0 {
				return "messages copied in", err
			}
			return "", err
		}},
		{"Move from", func(acct, mbox int64) (string, error) {
			r, err := st.Move(ctx, acct, mbox, all, fx.mailbox(acct, "INBOX").ID)
			if len(r.DstUIDs) > 0 {
				return "messages moved out", err
			}
			return "", err
		}},
		{"Move to", func(acct, mbox int64) (string, error) {
			r, err := st.Move(ctx, acct, fx.mailbox(acct, "INBOX").ID, all, mbox)
			if len(r.DstUIDs) > 0 {
				return "messages moved in", err
			}
			return "", err
		}},
	}
	for _, p := range probes {
		for _, tc := range []struct {
			who        string
			acct, mbox int64
		}{
			{"alice on bob's INBOX", alice.ID, bIn.ID},
			{"bob on alice's INBOX", bob.ID, aIn.ID},
			{"alice on a missing mailbox", alice.ID, missing},
		} {
			leak, err := p.call(tc.acct, tc.mbox)
			wantErr(t, err, p.name+" by "+tc.who, mailstore.ErrNoSuchMailbox)
			if leak != "" {
				t.Errorf("%s by %s leaked: %s", p.name, tc.who, leak)
			}
		}
	}
	// Deleting, renaming and subscribing work by name within the caller's
	// account: another account's mailbox names are not visible.
	fx.createMailbox(bob.ID, "Bob Only", "")
	wantErr(t, st.DeleteMailbox(ctx, alice.ID, "Bob Only"), "DeleteMailbox of bob's name by alice", mailstore.ErrNoSuchMailbox)
	wantErr(t, st.RenameMailbox(ctx, alice.ID, "Bob Only", "Mine"), "RenameMailbox of bob's name by alice", mailstore.ErrNoSuchMailbox)
	_, err := st.GetMailbox(ctx, alice.ID, "Bob Only")
	wantErr(t, err, "GetMailbox of bob's name by alice", mailstore.ErrNoSuchMailbox)
	must(t, st.DeleteMailbox(ctx, bob.ID, "Bob Only"), "DeleteMailbox by bob")

	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("cross-account calls changed the store:%s", d)
	}
}
