package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// failingReader returns some bytes, then an error: a client that drops the
// connection in the middle of DATA or APPEND.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

var errClientGone = errors.New("storetest: client went away")

// cancelReader cancels a context once it has returned after octets: a
// connection dropped or a shutdown in the middle of a delivery.
type cancelReader struct {
	r      io.Reader
	after  int
	cancel context.CancelFunc
}

func (r *cancelReader) Read(p []byte) (int, error) {
	if r.after <= 0 {
		r.cancel()
	}
	n, err := r.r.Read(p[:min(len(p), max(r.after, 1))])
	r.after -= n
	return n, err
}

// testBadInput makes calls the store must reject and checks, after each,
// that the error is the typed one and that nothing in the store changed.
func testBadInput(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	must(t, st.CreateAlias(ctx, "sales@example.org", "alice@example.org"), "CreateAlias")
	fx.createMailbox(alice.ID, "Projects/Sub", "")
	inbox := fx.mailbox(alice.ID, "INBOX")
	bobInbox := fx.mailbox(bob.ID, "INBOX")
	uid := fx.deliver(simpleMessage("existing", "e"), mailstore.Recipient{AccountID: alice.ID, Flags: fl(mailstore.FlagSeen, "$Keep")}).Delivered[0].UID
	fx.deliver(simpleMessage("bob's", "b"), mailstore.Recipient{AccountID: bob.ID})
	bobUsed, _ := fx.usage(bob.ID)
	must(t, st.SetQuota(ctx, bob.ID, bobUsed), "SetQuota")
	unknownAcct := alice.ID + bob.ID + 1_000_000
	msg := func() io.Reader { return bytes.NewReader(simpleMessage("new", "n")) }
	tooMany := make([]string, mailstore.MaxKeywords+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("$kw%d", i)
	}
	longKeyword := strings.Repeat("k", mailstore.MaxKeywordLength+1)

	type badCall struct {
		name string
		call func() error
		want []error // nil: any error
	}
	calls := []badCall{
		{"CreateDomain empty", func() error { return st.CreateDomain(ctx, "") }, []error{mailstore.ErrInvalidAddress}},
		{"CreateDomain bad character", func() error { return st.CreateDomain(ctx, "bad_domain.org") }, []error{mailstore.ErrInvalidAddress}},
		{"CreateDomain over-long", func() error { return st.CreateDomain(ctx, strings.Repeat("a", 250)+".org") }, []error{mailstore.ErrInvalidAddress}},
		{"CreateDomain duplicate", func() error { return st.CreateDomain(ctx, "EXAMPLE.org.") }, []error{mailstore.ErrExists}},
		{"DeleteDomain in use", func() error { return st.DeleteDomain(ctx, "example.org") }, []error{mailstore.ErrDomainNotEmpty}},
		{"CreateAccount malformed", func() error { _, err := st.CreateAccount(ctx, "a..b@example.org", "h"); return err }, []error{mailstore.ErrInvalidAddress}},
		{"CreateAccount non-ASCII", func() error { _, err := st.CreateAccount(ctx, "ünï@example.org", "h"); return err }, []error{mailstore.ErrInvalidAddress}},
		{"CreateAccount local part over 64", func() error {
			_, err := st.CreateAccount(ctx, strings.Repeat("x", 65)+"@example.org", "h")
			return err
		}, []error{mailstore.ErrInvalidAddress}},
		{"CreateAccount address over 254", func() error {
			// A valid domain (under 253 octets) with a local part that
			// together exceed 254.
			_, err := st.CreateAccount(ctx, strings.Repeat("x", 60)+"@"+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 60)+"."+strings.Repeat("d", 10)+".org", "h")
			return err
		}, []error{mailstore.ErrInvalidAddress}},
		{"CreateAccount duplicate", func() error { _, err := st.CreateAccount(ctx, "Alice@Example.org", "h"); return err }, []error{mailstore.ErrExists}},
		{"CreateAccount unknown domain", func() error { _, err := st.CreateAccount(ctx, "carol@unknown.example", "h"); return err }, []error{mailstore.ErrNoSuchDomain}},
		{"CreateAlias malformed", func() error { return st.CreateAlias(ctx, "a b@example.org", "alice@example.org") }, []error{mailstore.ErrInvalidAddress}},
		{"CreateAlias unknown target", func() error { return st.CreateAlias(ctx, "x@example.org", "nobody@example.org") }, []error{mailstore.ErrNoSuchAccount}},
		{"CreateAlias duplicate", func() error { return st.CreateAlias(ctx, "SALES@example.org", "alice@example.org") }, []error{mailstore.ErrExists}},
		{"CreateAlias unknown domain", func() error { return st.CreateAlias(ctx, "x@unknown.example", "alice@example.org") },
			[]error{mailstore.ErrNoSuchDomain, mailstore.ErrNotLocalDomain}},
		{"DeleteAlias unknown", func() error { return st.DeleteAlias(ctx, "nosuch@example.org", "") }, []error{mailstore.ErrNoSuchAlias}},
		{"DeleteAccount unknown", func() error { return st.DeleteAccount(ctx, "nobody@example.org") }, []error{mailstore.ErrNoSuchAccount}},
		{"SetPasswordHash unknown", func() error { return st.SetPasswordHash(ctx, unknownAcct, "h") }, []error{mailstore.ErrNoSuchAccount}},
		{"SetQuota negative", func() error { return st.SetQuota(ctx, alice.ID, -1) }, []error{mailstore.ErrInvalidArgument}},
		{"CreateMailbox unknown account", func() error { _, err := st.CreateMailbox(ctx, unknownAcct, "X", ""); return err }, []error{mailstore.ErrNoSuchAccount}},
		{"CreateMailbox duplicate", func() error { _, err := st.CreateMailbox(ctx, alice.ID, "Projects/Sub", ""); return err }, []error{mailstore.ErrExists}},
		{"CreateMailbox INBOX", func() error { _, err := st.CreateMailbox(ctx, alice.ID, "inbox", ""); return err }, []error{mailstore.ErrExists}},
		{"CreateMailbox bad special-use", func() error { _, err := st.CreateMailbox(ctx, alice.ID, "X", `\Nonsense`); return err }, []error{mailstore.ErrInvalidArgument}},
		{"DeleteMailbox INBOX", func() error { return st.DeleteMailbox(ctx, alice.ID, "INBOX") }, []error{mailstore.ErrProtectedMailbox}},
		{"DeleteMailbox with children", func() error { return st.DeleteMailbox(ctx, alice.ID, "Projects") }, []error{mailstore.ErrHasChildren}},
		{"DeleteMailbox unknown", func() error { return st.DeleteMailbox(ctx, alice.ID, "Nope") }, []error{mailstore.ErrNoSuchMailbox}},
		{"RenameMailbox onto existing", func() error { return st.RenameMailbox(ctx, alice.ID, "Projects", "Sent") }, []error{mailstore.ErrExists}},
		{"RenameMailbox unknown", func() error { return st.RenameMailbox(ctx, alice.ID, "Nope", "Yes") }, []error{mailstore.ErrNoSuchMailbox}},
		{"Append unknown mailbox", func() error {
			_, err := st.Append(ctx, alice.ID, inbox.ID+bobInbox.ID+1_000_000, mailstore.Flags{}, time.Time{}, msg())
			return err
		}, []error{mailstore.ErrNoSuchMailbox}},
		{"StoreFlags unknown op", func() error {
			_, err := st.StoreFlags(ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), mailstore.FlagOp(42), fl(mailstore.FlagFlagged), 0)
			return err
		}, []error{mailstore.ErrInvalidArgument}},
		{"Deliver without recipients", func() error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{Body: msg()})
			return err
		}, []error{mailstore.ErrInvalidArgument}},
		{"Deliver with one unknown account among valid ones", func() error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}, {AccountID: unknownAcct}}, Body: msg()})
			return err
		}, []error{mailstore.ErrNoSuchAccount}},
		{"Deliver to an invalid mailbox name", func() error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID, Mailbox: "a//b"}}, Body: msg()})
			return err
		}, []error{mailstore.ErrInvalidName}},
		{"Deliver over one recipient's quota", func() error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}, {AccountID: bob.ID}}, Body: msg()})
			return err
		}, []error{mailstore.ErrOverQuota}},
		{"Deliver whose body fails midway", func() error {
			_, err := st.Deliver(ctx, &mailstore.Delivery{
				Recipients: []mailstore.Recipient{{AccountID: alice.ID}},
				Body:       &failingReader{data: genMessage(300_000, 5), err: errClientGone},
			})
			return err
		}, nil},
		{"Append whose body fails midway", func() error {
			_, err := st.Append(ctx, alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, &failingReader{data: genMessage(300_000, 6), err: errClientGone})
			return err
		}, nil},
		{"Deliver with a cancelled context", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := st.Deliver(cctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}}, Body: msg()})
			return err
		}, nil},
		{"Deliver cancelled while the body is read", func() error {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			body := &cancelReader{r: newGenReader(2_000_000, 8), after: 700_000, cancel: cancel}
			_, err := st.Deliver(cctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}}, Body: body})
			return err
		}, nil},
		{"Deliver of a small message cancelled after its last octet", func() error {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			m := simpleMessage("small", "s")
			body := &cancelReader{r: bytes.NewReader(m), after: len(m), cancel: cancel}
			_, err := st.Deliver(cctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}}, Body: body})
			return err
		}, nil},
		{"Append cancelled while the body is read", func() error {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			body := &cancelReader{r: newGenReader(2_000_000, 9), after: 300_000, cancel: cancel}
			_, err := st.Append(cctx, alice.ID, inbox.ID, mailstore.Flags{}, time.Time{}, body)
			return err
		}, nil},
		{"Copy to unknown mailbox", func() error {
			_, err := st.Copy(ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), inbox.ID+bobInbox.ID+1_000_000)
			return err
		}, []error{mailstore.ErrNoSuchMailbox}},
		{"Move to unknown mailbox", func() error {
			_, err := st.Move(ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), inbox.ID+bobInbox.ID+1_000_000)
			return err
		}, []error{mailstore.ErrNoSuchMailbox}},
	}
	for _, kw := range []struct {
		name string
		kw   []string
	}{
		{"with a space", []string{"bad keyword"}},
		{"with a backslash", []string{`\Custom`}},
		{"with a parenthesis", []string{"a(b"}},
		{"with a control character", []string{"a\x01"}},
		{"non-ASCII", []string{"ключ"}},
		{"empty", []string{""}},
		{"over-long", []string{longKeyword}},
		{"too many", tooMany},
	} {
		calls = append(calls,
			badCall{"StoreFlags keyword " + kw.name, func() error {
				_, err := st.StoreFlags(ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), mailstore.FlagsAdd, fl(0, kw.kw...), 0)
				return err
			}, []error{mailstore.ErrInvalidArgument}},
			badCall{"StoreFlags replace with keyword " + kw.name, func() error {
				_, err := st.StoreFlags(ctx, alice.ID, inbox.ID, mailstore.UIDs(uid), mailstore.FlagsReplace, fl(mailstore.FlagDraft, kw.kw...), 0)
				return err
			}, []error{mailstore.ErrInvalidArgument}},
			badCall{"Append keyword " + kw.name, func() error {
				_, err := st.Append(ctx, alice.ID, inbox.ID, fl(0, kw.kw...), time.Time{}, msg())
				return err
			}, []error{mailstore.ErrInvalidArgument}},
			badCall{"Deliver keyword " + kw.name, func() error {
				_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID, Flags: fl(0, kw.kw...)}}, Body: msg()})
				return err
			}, []error{mailstore.ErrInvalidArgument}},
		)
	}
	for _, n := range invalidMailboxNames {
		calls = append(calls, badCall{"CreateMailbox " + printable(n), func() error {
			_, err := st.CreateMailbox(ctx, alice.ID, n, "")
			return err
		}, []error{mailstore.ErrInvalidName}})
	}

	snap := fx.snapshot()
	for _, c := range calls {
		err := c.call()
		if c.want == nil {
			if err == nil {
				t.Errorf("%s: got no error, want one", c.name)
			}
		} else {
			wantErr(t, err, c.name, c.want...)
		}
		after := fx.snapshot()
		if d := diffSnapshots(snap, after); d != "" {
			t.Errorf("%s changed the store:%s", c.name, d)
			snap = after
		}
	}
}
