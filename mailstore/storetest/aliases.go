package storetest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func testAliases(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	carol := fx.account("carol@example.org")
	dave := fx.account("dave@example.org")
	fx.domain("nocatch.example")
	erin := fx.account("erin@nocatch.example")

	must(t, st.CreateAlias(ctx, "Sales@Example.org", "alice@example.org"), "CreateAlias sales->alice")
	must(t, st.CreateAlias(ctx, "sales@example.org", "BOB@example.org"), "CreateAlias sales->bob (second target)")
	must(t, st.CreateAlias(ctx, "bob+list@example.org", "carol@example.org"), "CreateAlias bob+list->carol")
	must(t, st.CreateAlias(ctx, "@example.org", "dave@example.org"), "CreateAlias catch-all")
	must(t, st.CreateAlias(ctx, "info@nocatch.example", "alice@example.org"), "CreateAlias cross-domain target")
	wantErr(t, st.CreateAlias(ctx, "sales@example.org", "alice@example.org"), "CreateAlias duplicate mapping", mailstore.ErrExists)
	wantErr(t, st.CreateAlias(ctx, "x@example.org", "nobody@example.org"), "CreateAlias to unknown account", mailstore.ErrNoSuchAccount)
	// Mail to an account's address always reaches the account: an alias
	// with that address would never apply.
	wantErr(t, st.CreateAlias(ctx, "Bob@example.org", "alice@example.org"), "CreateAlias with an account's address", mailstore.ErrExists)
	wantErr(t, st.CreateAlias(ctx, "x@unknown.example", "alice@example.org"), "CreateAlias in unknown domain",
		mailstore.ErrNoSuchDomain, mailstore.ErrNotLocalDomain)
	for _, bad := range []string{"", "x", "a b@example.org", "@", "@-bad.org", "a..b@example.org", "x@", "a%b@example.org"} {
		wantErr(t, st.CreateAlias(ctx, bad, "alice@example.org"), "CreateAlias invalid alias "+bad, mailstore.ErrInvalidAddress)
	}
	wantErr(t, st.CreateAlias(ctx, "y@example.org", "not an address"), "CreateAlias invalid target", mailstore.ErrInvalidAddress)

	ids := func(as []mailstore.Account) []int64 {
		var out []int64
		for _, a := range as {
			out = append(out, a.ID)
		}
		slices.Sort(out)
		return out
	}
	// Resolution order (store contract): exact account, exact alias, then
	// local+tag stripped (and looked up again), then the catch-all.
	for _, tc := range []struct {
		addr string
		want []int64
	}{
		{"alice@example.org", []int64{alice.ID}},
		{"ALICE@EXAMPLE.ORG", []int64{alice.ID}},
		{"alice@example.org.", []int64{alice.ID}},
		{"sales@example.org", []int64{alice.ID, bob.ID}},
		{"SALES@example.org", []int64{alice.ID, bob.ID}},
		{"bob+list@example.org", []int64{carol.ID}}, // exact alias beats stripping the tag
		{"bob+other@example.org", []int64{bob.ID}},
		{"bob+@example.org", []int64{bob.ID}},
		{"sales+q3@example.org", []int64{alice.ID, bob.ID}},
		{"nobody@example.org", []int64{dave.ID}}, // catch-all
		{"nobody+tag@example.org", []int64{dave.ID}},
		{"dave@example.org", []int64{dave.ID}},
		{"info@nocatch.example", []int64{alice.ID}},
		{"erin+x@nocatch.example", []int64{erin.ID}},
	} {
		got, err := st.ResolveRecipient(ctx, tc.addr)
		if err != nil {
			t.Errorf("ResolveRecipient(%q): %v", tc.addr, err)
			continue
		}
		if g := ids(got); !slices.Equal(g, tc.want) {
			t.Errorf("ResolveRecipient(%q) = accounts %v, want %v", tc.addr, g, tc.want)
		}
	}
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"nobody@nocatch.example", mailstore.ErrNoSuchRecipient},
		{"nobody+x@nocatch.example", mailstore.ErrNoSuchRecipient},
		{"alice@remote.example", mailstore.ErrNotLocalDomain},
		{"alice@sub.example.org", mailstore.ErrNotLocalDomain},
		{"", mailstore.ErrInvalidAddress},
		{"alice", mailstore.ErrInvalidAddress},
		{"alice%remote.example@example.org", mailstore.ErrInvalidAddress},
		{"a..b@example.org", mailstore.ErrInvalidAddress},
		{"@example.org", mailstore.ErrInvalidAddress},
	} {
		_, err := st.ResolveRecipient(ctx, tc.addr)
		wantErr(t, err, "ResolveRecipient("+tc.addr+")", tc.want)
	}

	addrs := func(id int64) []string {
		t.Helper()
		a, err := st.AccountAddresses(ctx, id)
		must(t, err, "AccountAddresses")
		slices.Sort(a)
		return a
	}
	if got, want := addrs(alice.ID), []string{"alice@example.org", "info@nocatch.example", "sales@example.org"}; !slices.Equal(got, want) {
		t.Errorf("AccountAddresses(alice) = %q, want %q", got, want)
	}
	if got, want := addrs(dave.ID), []string{"dave@example.org"}; !slices.Equal(got, want) {
		t.Errorf("AccountAddresses(dave) = %q, want %q (a catch-all is not a sending address)", got, want)
	}
	if got, want := addrs(carol.ID), []string{"bob+list@example.org", "carol@example.org"}; !slices.Equal(got, want) {
		t.Errorf("AccountAddresses(carol) = %q, want %q", got, want)
	}

	listAliases := func(domain string) []string {
		t.Helper()
		as, err := st.ListAliases(ctx, domain)
		must(t, err, "ListAliases")
		var out []string
		for _, a := range as {
			out = append(out, a.Alias+">"+a.Target)
		}
		slices.Sort(out)
		return out
	}
	if got, want := listAliases("example.org"), []string{
		"@example.org>dave@example.org", "bob+list@example.org>carol@example.org",
		"sales@example.org>alice@example.org", "sales@example.org>bob@example.org",
	}; !slices.Equal(got, want) {
		t.Errorf("ListAliases(example.org) = %q, want %q", got, want)
	}
	if got, want := listAliases("nocatch.example"), []string{"info@nocatch.example>alice@example.org"}; !slices.Equal(got, want) {
		t.Errorf("ListAliases(nocatch.example) = %q, want %q", got, want)
	}
	if got := listAliases(""); len(got) != 5 {
		t.Errorf("ListAliases(\"\") = %q, want 5 mappings", got)
	}

	// Delete one target, then all targets, then the catch-all.
	must(t, st.DeleteAlias(ctx, "sales@example.org", "alice@example.org"), "DeleteAlias one target")
	if got, err := st.ResolveRecipient(ctx, "sales@example.org"); err != nil || !slices.Equal(ids(got), []int64{bob.ID}) {
		t.Errorf("after deleting one target, ResolveRecipient(sales) = %v, %v; want [bob]", ids(got), err)
	}
	wantErr(t, st.DeleteAlias(ctx, "sales@example.org", "alice@example.org"), "DeleteAlias gone mapping", mailstore.ErrNoSuchAlias)
	must(t, st.DeleteAlias(ctx, "bob+list@example.org", ""), "DeleteAlias all targets")
	if got, err := st.ResolveRecipient(ctx, "bob+list@example.org"); err != nil || !slices.Equal(ids(got), []int64{bob.ID}) {
		t.Errorf("after deleting alias bob+list, ResolveRecipient = %v, %v; want [bob] via +tag", ids(got), err)
	}
	must(t, st.DeleteAlias(ctx, "@example.org", ""), "DeleteAlias catch-all")
	_, err := st.ResolveRecipient(ctx, "nobody@example.org")
	wantErr(t, err, "ResolveRecipient after catch-all deleted", mailstore.ErrNoSuchRecipient)
	wantErr(t, st.DeleteAlias(ctx, "never@example.org", ""), "DeleteAlias unknown", mailstore.ErrNoSuchAlias)
	if got, want := addrs(carol.ID), []string{"carol@example.org"}; !slices.Equal(got, want) {
		t.Errorf("after DeleteAlias, AccountAddresses(carol) = %q, want %q", got, want)
	}
}

// testAliasesOnAccountDelete: deleting an account removes the aliases that
// point only to it and the mappings to it, and leaves other targets alone.
func testAliasesOnAccountDelete(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	must(t, st.CreateAlias(ctx, "solo@example.org", "alice@example.org"), "CreateAlias")
	must(t, st.CreateAlias(ctx, "team@example.org", "alice@example.org"), "CreateAlias")
	must(t, st.CreateAlias(ctx, "team@example.org", "bob@example.org"), "CreateAlias")
	must(t, st.DeleteAccount(ctx, "alice@example.org"), "DeleteAccount")

	as, err := st.ListAliases(ctx, "")
	must(t, err, "ListAliases")
	for _, a := range as {
		if a.Target == "alice@example.org" || a.Alias == "solo@example.org" {
			t.Errorf("alias %s -> %s survived the deletion of alice", a.Alias, a.Target)
		}
	}
	_, err = st.ResolveRecipient(ctx, "solo@example.org")
	wantErr(t, err, "ResolveRecipient(solo) after its only target was deleted", mailstore.ErrNoSuchRecipient)
	got, err := st.ResolveRecipient(ctx, "team@example.org")
	if err != nil || len(got) != 1 || got[0].ID != bob.ID {
		t.Errorf("ResolveRecipient(team) after alice was deleted = %v, %v; want only bob", got, err)
	}
	// The domain now holds bob and team@; deleting both empties it.
	must(t, st.DeleteAlias(ctx, "team@example.org", ""), "DeleteAlias")
	must(t, st.DeleteAccount(ctx, "bob@example.org"), "DeleteAccount")
	must(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain after its accounts and aliases are gone")
}

func resolutionString(r mailstore.Resolution) string {
	var as []string
	for _, a := range r.Accounts {
		as = append(as, a.Address)
	}
	return fmt.Sprintf("accounts %q forwards %q", as, r.Forwards)
}

// testAliasesForward: aliases to external addresses (forwarding), alone
// or beside local accounts, through every step of the resolution order;
// ResolveRecipient keeps to accounts.
func testAliasesForward(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	fx.account("erin@nocatch.example")

	for _, m := range [][2]string{
		{"fwd@example.org", "Friend@Remote.EXAMPLE"},
		{"fwd@example.org", "carol@Bücher.example"},
		{"fwd@example.org", "alice@example.org"},
		{"only@example.org", "ext@remote.example"},
		{"bob+ext@example.org", "bob@remote.example"},
		{"@example.org", "catchall@remote.example"},
		{"quoted@example.org", `"dan smith"@remote.example`},
	} {
		must(t, st.CreateAlias(ctx, m[0], m[1]), "CreateAlias "+m[0]+" -> "+m[1])
	}
	wantErr(t, st.CreateAlias(ctx, "fwd@example.org", "Friend@remote.example"), "CreateAlias duplicate external mapping", mailstore.ErrExists)
	wantErr(t, st.CreateAlias(ctx, "fwd@example.org", "carol@xn--bcher-kva.example"), "CreateAlias duplicate IDN mapping", mailstore.ErrExists)
	wantErr(t, st.CreateAlias(ctx, "bob@example.org", "x@remote.example"), "CreateAlias forwarding an account's address", mailstore.ErrExists)
	wantErr(t, st.CreateAlias(ctx, "x@unknown.example", "x@remote.example"), "CreateAlias forwarding in an unknown domain",
		mailstore.ErrNoSuchDomain, mailstore.ErrNotLocalDomain)
	wantErr(t, st.CreateAlias(ctx, "x@example.org", "nobody@nocatch.example"), "CreateAlias to a local domain's unknown address", mailstore.ErrNoSuchAccount)
	for _, bad := range []string{"not an address", "x@[192.0.2.1]", "x@bad_domain.example", "a\x00b@remote.example", "x@", "@remote.example",
		strings.Repeat("x", 65) + "@remote.example"} {
		wantErr(t, st.CreateAlias(ctx, "y@example.org", bad), fmt.Sprintf("CreateAlias to invalid target %q", bad), mailstore.ErrInvalidAddress)
	}

	for _, tc := range []struct{ addr, want string }{
		{"alice@example.org", `accounts ["alice@example.org"] forwards []`},
		{"fwd@example.org", `accounts ["alice@example.org"] forwards ["Friend@remote.example" "carol@xn--bcher-kva.example"]`},
		{"FWD+tag@example.org", `accounts ["alice@example.org"] forwards ["Friend@remote.example" "carol@xn--bcher-kva.example"]`},
		{"only@example.org", `accounts [] forwards ["ext@remote.example"]`},
		{"bob+ext@example.org", `accounts [] forwards ["bob@remote.example"]`}, // exact alias beats stripping the tag
		{"bob+other@example.org", `accounts ["bob@example.org"] forwards []`},
		{"nobody@example.org", `accounts [] forwards ["catchall@remote.example"]`},
		{"quoted@example.org", `accounts [] forwards ["\"dan smith\"@remote.example"]`},
		{"erin@nocatch.example", `accounts ["erin@nocatch.example"] forwards []`},
	} {
		r, err := st.Resolve(ctx, tc.addr)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tc.addr, err)
			continue
		}
		if got := resolutionString(r); got != tc.want {
			t.Errorf("Resolve(%q) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct {
		addr string
		want error
	}{
		{"nobody@nocatch.example", mailstore.ErrNoSuchRecipient},
		{"x@remote.example", mailstore.ErrNotLocalDomain},
		{"", mailstore.ErrInvalidAddress},
		{"a%b@example.org", mailstore.ErrInvalidAddress},
	} {
		_, err := st.Resolve(ctx, tc.addr)
		wantErr(t, err, "Resolve("+tc.addr+")", tc.want)
	}
	// ResolveRecipient: the accounts of the same resolution only.
	if got, err := st.ResolveRecipient(ctx, "fwd@example.org"); err != nil || len(got) != 1 || got[0].ID != alice.ID {
		t.Errorf("ResolveRecipient(fwd) = %v, %v; want alice", got, err)
	}
	for _, addr := range []string{"only@example.org", "nobody@example.org", "bob+ext@example.org"} {
		_, err := st.ResolveRecipient(ctx, addr)
		wantErr(t, err, "ResolveRecipient("+addr+") of a forward-only alias", mailstore.ErrNoSuchRecipient)
	}
	if got, err := st.ResolveRecipient(ctx, "bob+other@example.org"); err != nil || len(got) != 1 || got[0].ID != bob.ID {
		t.Errorf("ResolveRecipient(bob+other) = %v, %v; want bob", got, err)
	}

	as, err := st.ListAliases(ctx, "example.org")
	must(t, err, "ListAliases")
	var lines []string
	for _, a := range as {
		lines = append(lines, a.Alias+">"+a.Target)
	}
	slices.Sort(lines)
	want := []string{"@example.org>catchall@remote.example", "bob+ext@example.org>bob@remote.example", "fwd@example.org>Friend@remote.example",
		"fwd@example.org>alice@example.org", "fwd@example.org>carol@xn--bcher-kva.example", "only@example.org>ext@remote.example",
		`quoted@example.org>"dan smith"@remote.example`}
	if !slices.Equal(lines, want) {
		t.Errorf("ListAliases = %q, want %q", lines, want)
	}
	if got, err := st.AccountAddresses(ctx, alice.ID); err != nil || !slices.Equal(got, []string{"alice@example.org", "fwd@example.org"}) {
		t.Errorf("AccountAddresses(alice) = %q, %v", got, err)
	}

	must(t, st.DeleteAlias(ctx, "fwd@example.org", "Friend@Remote.example"), "DeleteAlias of an external target")
	wantErr(t, st.DeleteAlias(ctx, "fwd@example.org", "Friend@remote.example"), "DeleteAlias of a gone external target", mailstore.ErrNoSuchAlias)
	must(t, st.DeleteAlias(ctx, "fwd@example.org", "carol@bücher.example"), "DeleteAlias of an IDN target")
	wantErr(t, st.DeleteAlias(ctx, "fwd@example.org", "not an address"), "DeleteAlias of an invalid target", mailstore.ErrInvalidAddress)
	if r, err := st.Resolve(ctx, "fwd@example.org"); err != nil || resolutionString(r) != `accounts ["alice@example.org"] forwards []` {
		t.Errorf("Resolve(fwd) after deleting its external targets = %s, %v", resolutionString(r), err)
	}
	// Deleting alice leaves the external mappings; the domain is not
	// empty while they exist.
	must(t, st.DeleteAccount(ctx, "alice@example.org"), "DeleteAccount")
	_, err = st.Resolve(ctx, "fwd@example.org")
	if r, _ := st.Resolve(ctx, "fwd@example.org"); err != nil || resolutionString(r) != `accounts [] forwards ["catchall@remote.example"]` {
		t.Errorf("Resolve(fwd) after its last target went = %s, %v; want the catch-all", resolutionString(r), err)
	}
	must(t, st.DeleteAccount(ctx, "bob@example.org"), "DeleteAccount")
	wantErr(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain with forwarding aliases", mailstore.ErrDomainNotEmpty)
	for _, al := range []string{"only@example.org", "bob+ext@example.org", "@example.org", "quoted@example.org"} {
		must(t, st.DeleteAlias(ctx, al, ""), "DeleteAlias "+al)
	}
	must(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain once its aliases are gone")
}
