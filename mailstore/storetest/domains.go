package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

func testDomains(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	must(t, st.Ping(ctx), "Ping")

	// Names are stored normalised: lower case, no trailing dot.
	fx.domain("Example.ORG.")
	fx.domain("second.example")
	doms, err := st.ListDomains(ctx)
	must(t, err, "ListDomains")
	slices.Sort(doms)
	if want := []string{"example.org", "second.example"}; !slices.Equal(doms, want) {
		t.Errorf("ListDomains = %q, want %q", doms, want)
	}

	for _, d := range []string{"example.org", "EXAMPLE.org", "example.org.", "Second.Example"} {
		wantErr(t, st.CreateDomain(ctx, d), "CreateDomain duplicate "+d, mailstore.ErrExists)
	}

	invalid := []string{
		"", ".", "..", "-bad.org", "bad-.org", "a..b.org", "sp ace.org", "under_score.org",
		"ex@mple.org", "tab\t.org", "nul\x00.org", "ümlaut.org", "bad\xff.org",
		strings.Repeat("a", 64) + ".org",                       // label over 63 octets
		strings.Repeat(strings.Repeat("a", 60)+".", 5) + "org", // name over 253 octets
	}
	for _, d := range invalid {
		wantErr(t, st.CreateDomain(ctx, d), "CreateDomain invalid "+strings.ToValidUTF8(d, "?"), mailstore.ErrInvalidAddress)
	}
	doms, err = st.ListDomains(ctx)
	must(t, err, "ListDomains")
	if len(doms) != 2 {
		t.Errorf("after rejected creates, ListDomains = %q, want 2 domains", doms)
	}

	// IsLocalDomain is case-insensitive and ignores a trailing dot.
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"example.org", true}, {"EXAMPLE.ORG", true}, {"example.org.", true}, {"Example.Org.", true},
		{"second.example", true}, {"other.org", false}, {"sub.example.org", false}, {"org", false},
	} {
		got, err := st.IsLocalDomain(ctx, tc.name)
		must(t, err, "IsLocalDomain "+tc.name)
		if got != tc.want {
			t.Errorf("IsLocalDomain(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}

	// A domain in use by an account, an alias or a catch-all cannot go.
	alice := fx.account("alice@example.org")
	wantErr(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain with an account", mailstore.ErrDomainNotEmpty)
	must(t, st.CreateAlias(ctx, "sales@second.example", "alice@example.org"), "CreateAlias")
	wantErr(t, st.DeleteDomain(ctx, "second.example"), "DeleteDomain with an alias", mailstore.ErrDomainNotEmpty)
	fx.domain("third.example")
	must(t, st.CreateAlias(ctx, "@third.example", "alice@example.org"), "CreateAlias catch-all")
	wantErr(t, st.DeleteDomain(ctx, "third.example"), "DeleteDomain with a catch-all", mailstore.ErrDomainNotEmpty)
	for _, d := range []string{"example.org", "second.example", "third.example"} {
		if ok, err := st.IsLocalDomain(ctx, d); err != nil || !ok {
			t.Errorf("after refused DeleteDomain, IsLocalDomain(%q) = %v, %v; want true", d, ok, err)
		}
	}
	if _, err := st.GetAccountByID(ctx, alice.ID); err != nil {
		t.Errorf("after refused DeleteDomain, GetAccountByID: %v", err)
	}

	must(t, st.DeleteAlias(ctx, "sales@second.example", ""), "DeleteAlias")
	must(t, st.DeleteDomain(ctx, "Second.Example."), "DeleteDomain (unnormalised name)")
	must(t, st.DeleteAlias(ctx, "@third.example", "alice@example.org"), "DeleteAlias catch-all")
	must(t, st.DeleteDomain(ctx, "third.example"), "DeleteDomain")
	wantErr(t, st.DeleteDomain(ctx, "third.example"), "DeleteDomain twice", mailstore.ErrNoSuchDomain)
	wantErr(t, st.DeleteDomain(ctx, "never.example"), "DeleteDomain unknown", mailstore.ErrNoSuchDomain)
	if ok, err := st.IsLocalDomain(ctx, "second.example"); err != nil || ok {
		t.Errorf("after DeleteDomain, IsLocalDomain = %v, %v; want false", ok, err)
	}

	must(t, st.DeleteAccount(ctx, "alice@example.org"), "DeleteAccount")
	must(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain once empty")
	doms, err = st.ListDomains(ctx)
	must(t, err, "ListDomains")
	if len(doms) != 0 {
		t.Errorf("ListDomains after deleting all = %q, want none", doms)
	}
	// A deleted domain can be created again.
	fx.domain("example.org")
}
