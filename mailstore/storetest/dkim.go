package storetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

func ed25519Key(t *testing.T) []byte {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	must(t, err, "ed25519.GenerateKey")
	der, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err, "MarshalPKCS8PrivateKey")
	return der
}

func rsaKey(t *testing.T) []byte {
	t.Helper()
	// 1024 bits, the least RFC 8301 allows, keeps the test fast.
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	must(t, err, "rsa.GenerateKey")
	der, err := x509.MarshalPKCS8PrivateKey(k)
	must(t, err, "MarshalPKCS8PrivateKey")
	return der
}

func keyNames(ks []mailstore.DKIMKey) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k.Domain+"/"+k.Selector)
	}
	return out
}

// testDKIMKeys: keys are stored per domain and selector, listed newest
// first, retired and deleted, and go with their domain.
func testDKIMKeys(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	fx.account("alice@example.org")
	fx.domain("other.example")
	ed, rs := ed25519Key(t), rsaKey(t)
	before := time.Now()
	must(t, st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "Example.ORG", Selector: "S2026a", Algorithm: "ed25519", PrivateKey: ed}), "AddDKIMKey ed25519")
	old := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	must(t, st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "example.org", Selector: "r1.rsa", Algorithm: "rsa", PrivateKey: rs, CreatedAt: old}), "AddDKIMKey rsa")
	must(t, st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "other.example", Selector: "o1", Algorithm: "ed25519", PrivateKey: ed}), "AddDKIMKey other domain")

	ks, err := st.ListDKIMKeys(ctx, "example.org")
	must(t, err, "ListDKIMKeys")
	if got := keyNames(ks); fmt.Sprint(got) != "[example.org/s2026a example.org/r1.rsa]" {
		t.Fatalf("ListDKIMKeys(example.org) = %v, want the new ed25519 key, then the older RSA key", got)
	}
	if k := ks[0]; k.Algorithm != "ed25519" || !bytes.Equal(k.PrivateKey, ed) || k.CreatedAt.Before(before.Add(-time.Minute)) || !k.RetiredAt.IsZero() {
		t.Errorf("ed25519 key = %s %d octets created %v retired %v", k.Algorithm, len(k.PrivateKey), k.CreatedAt, k.RetiredAt)
	}
	if k := ks[1]; k.Algorithm != "rsa" || !bytes.Equal(k.PrivateKey, rs) || !k.CreatedAt.Equal(old) {
		t.Errorf("RSA key = %s %d octets created %v", k.Algorithm, len(k.PrivateKey), k.CreatedAt)
	}
	if all, err := st.ListDKIMKeys(ctx, ""); err != nil || fmt.Sprint(keyNames(all)) != "[example.org/s2026a example.org/r1.rsa other.example/o1]" {
		t.Errorf("ListDKIMKeys(all) = %v, %v", keyNames(all), err)
	}

	snap := fx.snapshot()
	for _, bad := range []struct {
		name string
		k    mailstore.DKIMKey
		want error
	}{
		{"a selector twice", mailstore.DKIMKey{Domain: "example.org", Selector: "S2026A", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrExists},
		{"an unknown domain", mailstore.DKIMKey{Domain: "nowhere.example", Selector: "s", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrNoSuchDomain},
		{"an empty selector", mailstore.DKIMKey{Domain: "example.org", Selector: "", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"an underscore", mailstore.DKIMKey{Domain: "example.org", Selector: "a_b", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"an empty label", mailstore.DKIMKey{Domain: "example.org", Selector: "a..b", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"a trailing dot", mailstore.DKIMKey{Domain: "example.org", Selector: "a.", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"a leading hyphen", mailstore.DKIMKey{Domain: "example.org", Selector: "-a", Algorithm: "ed25519", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"another algorithm's key", mailstore.DKIMKey{Domain: "example.org", Selector: "x", Algorithm: "rsa", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"an RSA key as ed25519", mailstore.DKIMKey{Domain: "example.org", Selector: "x", Algorithm: "ed25519", PrivateKey: rs}, mailstore.ErrInvalidArgument},
		{"an unknown algorithm", mailstore.DKIMKey{Domain: "example.org", Selector: "x", Algorithm: "dsa", PrivateKey: ed}, mailstore.ErrInvalidArgument},
		{"no key", mailstore.DKIMKey{Domain: "example.org", Selector: "x", Algorithm: "ed25519"}, mailstore.ErrInvalidArgument},
		{"a key that is not PKCS #8", mailstore.DKIMKey{Domain: "example.org", Selector: "x", Algorithm: "ed25519", PrivateKey: []byte("-----BEGIN PRIVATE KEY-----")}, mailstore.ErrInvalidArgument},
	} {
		wantErr(t, st.AddDKIMKey(ctx, bad.k), "AddDKIMKey with "+bad.name, bad.want)
	}
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("refused keys changed the store:%s", d)
	}
	if ks, _ := st.ListDKIMKeys(ctx, "example.org"); len(ks) != 2 {
		t.Errorf("after refused keys: %v", keyNames(ks))
	}

	// Rotation: everything but the kept selector retires; a retired key
	// keeps its first retirement time.
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, st.RetireDKIMKeys(ctx, "example.org", []string{"S2026A"}, t1), "RetireDKIMKeys keeping s2026a")
	ks, _ = st.ListDKIMKeys(ctx, "example.org")
	if len(ks) != 2 || !ks[0].RetiredAt.IsZero() || !ks[1].RetiredAt.Equal(t1) {
		t.Errorf("after retiring all but s2026a: %+v", ks)
	}
	t2 := t1.Add(time.Hour)
	must(t, st.RetireDKIMKeys(ctx, "example.org", nil, t2), "RetireDKIMKeys keeping none")
	ks, _ = st.ListDKIMKeys(ctx, "example.org")
	if len(ks) != 2 || !ks[0].RetiredAt.Equal(t2) || !ks[1].RetiredAt.Equal(t1) {
		t.Errorf("after retiring every key: %v %v, want %v %v", ks[0].RetiredAt, ks[1].RetiredAt, t2, t1)
	}
	if o, _ := st.ListDKIMKeys(ctx, "other.example"); len(o) != 1 || !o[0].RetiredAt.IsZero() {
		t.Errorf("retiring example.org's keys touched other.example's: %+v", o)
	}
	wantErr(t, st.RetireDKIMKeys(ctx, "nowhere.example", nil, t2), "RetireDKIMKeys of an unknown domain", mailstore.ErrNoSuchDomain)
	_, err = st.ListDKIMKeys(ctx, "nowhere.example")
	wantErr(t, err, "ListDKIMKeys of an unknown domain", mailstore.ErrNoSuchDomain)

	must(t, st.DeleteDKIMKey(ctx, "example.org", "R1.rsa"), "DeleteDKIMKey")
	wantErr(t, st.DeleteDKIMKey(ctx, "example.org", "r1.rsa"), "DeleteDKIMKey twice", mailstore.ErrNoSuchKey)
	if ks, _ := st.ListDKIMKeys(ctx, "example.org"); fmt.Sprint(keyNames(ks)) != "[example.org/s2026a]" {
		t.Errorf("after DeleteDKIMKey: %v", keyNames(ks))
	}

	// Keys go with their domain, and do not keep it from being deleted.
	wantErr(t, st.DeleteDomain(ctx, "example.org"), "DeleteDomain with an account", mailstore.ErrDomainNotEmpty)
	must(t, st.DeleteDomain(ctx, "other.example"), "DeleteDomain with only DKIM keys")
	fx.domain("other.example")
	if ks, err := st.ListDKIMKeys(ctx, "other.example"); err != nil || len(ks) != 0 {
		t.Errorf("keys of a deleted and recreated domain = %v, %v", keyNames(ks), err)
	}
}

// testDKIMSignFrom: a key's sign-from time is stored as given and read by
// every handle (every node must switch keys at the same moment); without
// one it is the creation time (the key signs at once); retiring keeps it.
func testDKIMSignFrom(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	a.domain("example.org")
	ctx := a.ctx
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	later := created.Add(72*time.Hour + 123456*time.Microsecond)
	must(t, a.st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "example.org", Selector: "old", Algorithm: "ed25519",
		PrivateKey: ed25519Key(t), CreatedAt: created.Add(-24 * time.Hour)}), "AddDKIMKey without SignFrom")
	must(t, a.st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "example.org", Selector: "new", Algorithm: "ed25519",
		PrivateKey: ed25519Key(t), CreatedAt: created, SignFrom: later}), "AddDKIMKey with SignFrom")
	before := time.Now()
	must(t, a.st.AddDKIMKey(ctx, mailstore.DKIMKey{Domain: "example.org", Selector: "now", Algorithm: "rsa",
		PrivateKey: rsaKey(t)}), "AddDKIMKey with neither time")
	for i, fx := range []*fixture{a, b} {
		ks, err := fx.st.ListDKIMKeys(fx.ctx, "example.org")
		must(t, err, "ListDKIMKeys")
		all, err := fx.st.ListDKIMKeys(fx.ctx, "")
		must(t, err, "ListDKIMKeys of all domains")
		for _, list := range [][]mailstore.DKIMKey{ks, all} {
			if fmt.Sprint(keyNames(list)) != "[example.org/now example.org/new example.org/old]" {
				t.Fatalf("handle %d: keys %v", i, keyNames(list))
			}
			if k := list[1]; !k.SignFrom.Equal(later) || !k.CreatedAt.Equal(created) {
				t.Errorf("handle %d: new key created %v, signs from %v; want %v, %v", i, k.CreatedAt, k.SignFrom, created, later)
			}
			if k := list[2]; !k.SignFrom.Equal(k.CreatedAt) || !k.CreatedAt.Equal(created.Add(-24*time.Hour)) {
				t.Errorf("handle %d: key added without SignFrom: created %v, signs from %v", i, k.CreatedAt, k.SignFrom)
			}
			if k := list[0]; k.SignFrom.IsZero() || !k.SignFrom.Equal(k.CreatedAt) || k.CreatedAt.Before(before.Add(-time.Minute)) {
				t.Errorf("handle %d: key added without times: created %v, signs from %v", i, k.CreatedAt, k.SignFrom)
			}
		}
	}
	// Retiring (a pending rotation given up) keeps the time it would have
	// signed from, so that it is known never to have signed.
	retired := created.Add(time.Hour)
	must(t, b.st.RetireDKIMKeys(b.ctx, "example.org", []string{"old", "now"}, retired), "RetireDKIMKeys")
	ks, err := a.st.ListDKIMKeys(ctx, "example.org")
	must(t, err, "ListDKIMKeys")
	if k := ks[1]; k.Selector != "new" || !k.RetiredAt.Equal(retired) || !k.SignFrom.Equal(later) {
		t.Errorf("retired key: %s retired %v, signs from %v", k.Selector, k.RetiredAt, k.SignFrom)
	}
	if !ks[0].RetiredAt.IsZero() || !ks[2].RetiredAt.IsZero() {
		t.Errorf("kept keys retired: %v %v", ks[0].RetiredAt, ks[2].RetiredAt)
	}
}

// testClusterSecret: handles on two nodes racing for a secret all get the
// one stored first; later calls do not generate.
func testClusterSecret(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	var gens atomic.Int32
	gen := func() ([]byte, error) {
		gens.Add(1)
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	}
	const callers = 8
	got := make([][]byte, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		fx := []*fixture{a, b}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := fx.st.ClusterSecret(fx.ctx, "srs-key", gen)
			if err != nil {
				t.Errorf("ClusterSecret caller %d: %v", i, err)
			}
			got[i] = v
		}()
	}
	close(start)
	wg.Wait()
	for i := range got {
		if len(got[i]) != 32 || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("caller %d got %x, caller 0 %x: want one secret for all", i, got[i], got[0])
		}
	}
	if n := gens.Load(); n < 1 || n > callers {
		t.Errorf("gen called %d times by %d callers", n, callers)
	}
	noGen := func() ([]byte, error) { t.Error("gen called for a stored secret"); return []byte("x"), nil }
	for _, fx := range []*fixture{a, b} {
		if v, err := fx.st.ClusterSecret(fx.ctx, "srs-key", noGen); err != nil || !bytes.Equal(v, got[0]) {
			t.Errorf("ClusterSecret again = %x, %v; want %x", v, err, got[0])
		}
	}
	// A failing gen stores nothing; another name is another secret.
	errGen := errors.New("no entropy")
	_, err := a.st.ClusterSecret(a.ctx, "other", func() ([]byte, error) { return nil, errGen })
	wantErr(t, err, "ClusterSecret with a failing gen", errGen)
	if v, err := b.st.ClusterSecret(b.ctx, "other", func() ([]byte, error) { return []byte("second"), nil }); err != nil || string(v) != "second" {
		t.Errorf("ClusterSecret after a failed gen = %q, %v", v, err)
	}
	_, err = a.st.ClusterSecret(a.ctx, "", gen)
	wantErr(t, err, "ClusterSecret without a name", mailstore.ErrInvalidArgument)
	_, err = a.st.ClusterSecret(a.ctx, "empty", func() ([]byte, error) { return nil, nil })
	wantErr(t, err, "ClusterSecret with an empty secret", mailstore.ErrInvalidArgument)
}
