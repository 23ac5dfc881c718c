package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func testAccounts(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	fx.domain("example.org")
	fx.domain("second.example")

	a, err := st.CreateAccount(ctx, "Alice@Example.ORG", "hash-1")
	must(t, err, "CreateAccount")
	if a.ID == 0 || a.Address != "alice@example.org" || a.PasswordHash != "hash-1" || a.QuotaLimit != 0 || a.CreatedAt.IsZero() {
		t.Errorf("CreateAccount = %+v; want non-zero ID and CreatedAt, address alice@example.org, hash-1, no quota", a)
	}

	// Default mailboxes, with special-use attributes, all subscribed.
	mbs, err := st.ListMailboxes(ctx, a.ID)
	must(t, err, "ListMailboxes")
	if len(mbs) != len(mailstore.DefaultMailboxes) {
		t.Errorf("new account has %d mailboxes, want %d", len(mbs), len(mailstore.DefaultMailboxes))
	}
	byName := map[string]mailstore.Mailbox{}
	for _, mb := range mbs {
		byName[mb.Name] = mb
	}
	for _, d := range mailstore.DefaultMailboxes {
		mb, ok := byName[d.Name]
		if !ok {
			t.Errorf("default mailbox %q missing", d.Name)
			continue
		}
		if mb.SpecialUse != d.SpecialUse || !mb.Subscribed || mb.AccountID != a.ID || mb.UIDValidity == 0 || mb.UIDNext < 1 {
			t.Errorf("default mailbox %q = %+v; want special-use %q, subscribed, account %d, uidvalidity > 0, uidnext >= 1",
				d.Name, mb, d.SpecialUse, a.ID)
		}
		if s := fx.status(a.ID, mb.ID); s.Messages != 0 || s.Size != 0 {
			t.Errorf("default mailbox %q not empty: %+v", d.Name, s)
		}
	}
	subs, err := st.ListSubscriptions(ctx, a.ID)
	must(t, err, "ListSubscriptions")
	slices.Sort(subs)
	var wantSubs []string
	for _, d := range mailstore.DefaultMailboxes {
		wantSubs = append(wantSubs, d.Name)
	}
	slices.Sort(wantSubs)
	if !slices.Equal(subs, wantSubs) {
		t.Errorf("ListSubscriptions = %q, want %q", subs, wantSubs)
	}

	got, err := st.GetAccount(ctx, "alice@example.org")
	must(t, err, "GetAccount")
	if got.ID != a.ID || got.Address != a.Address || got.PasswordHash != "hash-1" {
		t.Errorf("GetAccount = %+v, want %+v", got, a)
	}
	got, err = st.GetAccountByID(ctx, a.ID)
	must(t, err, "GetAccountByID")
	if got.ID != a.ID || got.Address != a.Address {
		t.Errorf("GetAccountByID = %+v, want %+v", got, a)
	}
	_, err = st.GetAccount(ctx, "nobody@example.org")
	wantErr(t, err, "GetAccount unknown", mailstore.ErrNoSuchAccount)
	_, err = st.GetAccountByID(ctx, a.ID+1_000_000)
	wantErr(t, err, "GetAccountByID unknown", mailstore.ErrNoSuchAccount)

	for _, addr := range []string{"alice@example.org", "ALICE@example.org", "alice@EXAMPLE.ORG."} {
		_, err := st.CreateAccount(ctx, addr, "x")
		wantErr(t, err, "CreateAccount duplicate "+addr, mailstore.ErrExists)
	}
	_, err = st.CreateAccount(ctx, "carol@nowhere.example", "x")
	wantErr(t, err, "CreateAccount in unknown domain", mailstore.ErrNoSuchDomain)

	local64 := strings.Repeat("l", mailstore.MaxLocalPartLength)
	for _, addr := range []string{
		"", "alice", "@example.org", "alice@", "al ice@example.org", "al..ice@example.org",
		".alice@example.org", "alice.@example.org", "a%b@example.org", "a!b@example.org",
		`"quoted"@example.org`, "a<b@example.org", "a@b@example.org", "ålice@example.org",
		"nul\x00@example.org", "bad\xff@example.org", "alice@-example.org",
		local64 + "x@example.org", // local part over 64 octets
		local64 + "@" + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + ".org", // over 254
	} {
		_, err := st.CreateAccount(ctx, addr, "x")
		wantErr(t, err, "CreateAccount invalid "+strings.ToValidUTF8(addr, "?"), mailstore.ErrInvalidAddress)
	}
	// 64 octets is the limit, not over it.
	long, err := st.CreateAccount(ctx, local64+"@example.org", "x")
	must(t, err, "CreateAccount with a 64-octet local part")
	bob, err := st.CreateAccount(ctx, "bob@second.example", "x")
	must(t, err, "CreateAccount bob")

	listed := func(domain string) []string {
		t.Helper()
		as, err := st.ListAccounts(ctx, domain)
		must(t, err, "ListAccounts "+domain)
		var out []string
		for _, x := range as {
			out = append(out, x.Address)
		}
		slices.Sort(out)
		return out
	}
	if got, want := listed("example.org"), []string{"alice@example.org", long.Address}; !slices.Equal(got, want) {
		t.Errorf("ListAccounts(example.org) = %q, want %q", got, want)
	}
	if got, want := listed("second.example"), []string{"bob@second.example"}; !slices.Equal(got, want) {
		t.Errorf("ListAccounts(second.example) = %q, want %q", got, want)
	}
	if got, want := listed(""), []string{"alice@example.org", "bob@second.example", long.Address}; !slices.Equal(got, want) {
		t.Errorf("ListAccounts(\"\") = %q, want %q", got, want)
	}

	must(t, st.SetPasswordHash(ctx, a.ID, "hash-2"), "SetPasswordHash")
	if got, _ := st.GetAccount(ctx, "alice@example.org"); got.PasswordHash != "hash-2" {
		t.Errorf("after SetPasswordHash, hash = %q, want hash-2", got.PasswordHash)
	}
	if got, _ := st.GetAccountByID(ctx, bob.ID); got.PasswordHash != "x" {
		t.Errorf("SetPasswordHash of alice changed bob's hash to %q", got.PasswordHash)
	}
	wantErr(t, st.SetPasswordHash(ctx, a.ID+1_000_000, "h"), "SetPasswordHash unknown", mailstore.ErrNoSuchAccount)

	must(t, st.SetQuota(ctx, a.ID, 12345), "SetQuota")
	if used, limit := fx.usage(a.ID); used != 0 || limit != 12345 {
		t.Errorf("QuotaUsage = %d, %d; want 0, 12345", used, limit)
	}
	if got, _ := st.GetAccountByID(ctx, a.ID); got.QuotaLimit != 12345 {
		t.Errorf("Account.QuotaLimit = %d, want 12345", got.QuotaLimit)
	}
	if _, limit := fx.usage(bob.ID); limit != 0 {
		t.Errorf("SetQuota of alice gave bob limit %d", limit)
	}
	must(t, st.SetQuota(ctx, a.ID, 0), "SetQuota 0")
	if _, limit := fx.usage(a.ID); limit != 0 {
		t.Errorf("after SetQuota 0, limit = %d, want 0 (unlimited)", limit)
	}
	wantErr(t, st.SetQuota(ctx, a.ID+1_000_000, 5), "SetQuota unknown", mailstore.ErrNoSuchAccount)
	_, _, err = st.QuotaUsage(ctx, a.ID+1_000_000)
	wantErr(t, err, "QuotaUsage unknown", mailstore.ErrNoSuchAccount)

	must(t, st.DeleteAccount(ctx, "bob@second.example"), "DeleteAccount")
	_, err = st.GetAccount(ctx, "bob@second.example")
	wantErr(t, err, "GetAccount after delete", mailstore.ErrNoSuchAccount)
	_, err = st.GetAccountByID(ctx, bob.ID)
	wantErr(t, err, "GetAccountByID after delete", mailstore.ErrNoSuchAccount)
	_, err = st.ListMailboxes(ctx, bob.ID)
	if err == nil {
		if mbs, _ := st.ListMailboxes(ctx, bob.ID); len(mbs) != 0 {
			t.Errorf("deleted account still lists %d mailboxes", len(mbs))
		}
	}
	wantErr(t, st.DeleteAccount(ctx, "bob@second.example"), "DeleteAccount twice", mailstore.ErrNoSuchAccount)
	if got := listed(""); len(got) != 2 {
		t.Errorf("after DeleteAccount, ListAccounts = %q", got)
	}
}

// testAccountDeleteRecreate checks that deleting an account removes its
// mail and that an account re-created at the same address starts empty.
func testAccountDeleteRecreate(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	other := fx.account("other@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	body := simpleMessage("hello", "body")
	fx.deliver(body, mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: other.ID})
	fx.createMailbox(a.ID, "Projects/X", "")
	must(t, st.SetSubscribed(ctx, a.ID, "Ghost", true), "SetSubscribed")

	must(t, st.DeleteAccount(ctx, "alice@example.org"), "DeleteAccount")
	_, err := st.ListMessages(ctx, a.ID, inbox.ID, nil)
	wantErr(t, err, "ListMessages of a deleted account's INBOX", mailstore.ErrNoSuchMailbox, mailstore.ErrNoSuchAccount)

	b := fx.account("alice@example.org")
	mbs, err := st.ListMailboxes(ctx, b.ID)
	must(t, err, "ListMailboxes")
	if len(mbs) != len(mailstore.DefaultMailboxes) {
		var names []string
		for _, mb := range mbs {
			names = append(names, mb.Name)
		}
		t.Errorf("re-created account has mailboxes %q, want only the defaults", names)
	}
	if n := len(fx.list(b.ID, fx.mailbox(b.ID, "INBOX").ID, nil)); n != 0 {
		t.Errorf("re-created account's INBOX has %d messages, want 0", n)
	}
	subs, err := st.ListSubscriptions(ctx, b.ID)
	must(t, err, "ListSubscriptions")
	if slices.Contains(subs, "Ghost") {
		t.Errorf("re-created account inherited subscription Ghost: %q", subs)
	}
	fx.checkQuota(b.ID, 0, "re-created account")

	// The other recipient's copy of the shared content is untouched.
	oin := fx.mailbox(other.ID, "INBOX")
	ms := fx.list(other.ID, oin.ID, nil)
	if len(ms) != 1 {
		t.Fatalf("other recipient has %d messages after the first account was deleted, want 1", len(ms))
	}
	if got := fx.mustRead(other.ID, oin.ID, ms[0].UID); string(got) != string(body) {
		t.Errorf("other recipient's message changed after the first account was deleted")
	}
	fx.checkQuota(other.ID, int64(len(body)), "other recipient")
}
