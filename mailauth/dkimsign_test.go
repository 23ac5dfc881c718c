package mailauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

const signTestMsg = "From: Alice <alice@example.org>\r\n" +
	"To: bob@remote.example\r\n" +
	"Subject: signed\r\n" +
	"Date: Mon, 7 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"\r\n" +
	"Hello Bob.  \r\n" +
	"\r\n" +
	"Bye.\r\n"

// dkimZone serves the TXT records of keys (selector._domainkey.domain).
type dkimZone struct {
	mu  sync.Mutex
	txt map[string]string
}

func (z *dkimZone) add(t testing.TB, k mailstore.DKIMKey) {
	t.Helper()
	rec, err := DKIMRecord(k)
	if err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.txt == nil {
		z.txt = map[string]string{}
	}
	z.txt[k.Selector+"._domainkey."+k.Domain] = rec
}

func (z *dkimZone) lookup(name string) ([]string, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if r, ok := z.txt[name]; ok {
		return []string{r}, nil
	}
	return nil, errors.New("no such record: " + name)
}

func addKey(t *testing.T, st mailstore.Store, z *dkimZone, domain, sel, alg string, created time.Time) mailstore.DKIMKey {
	t.Helper()
	k, err := GenerateDKIMKey(domain, sel, alg)
	if err != nil {
		t.Fatal(err)
	}
	k.CreatedAt = created
	if err := st.AddDKIMKey(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	z.add(t, k)
	return k
}

// verify checks every signature of a signed message and returns them by
// domain/selector.
func verify(t *testing.T, z *dkimZone, msg []byte) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: z.lookup})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature of %s does not verify: %v", v.Domain, v.Err)
		}
	}
	return vs
}

func sigFields(sig []byte) []string {
	var out []string
	for _, f := range strings.SplitAfter(string(sig), "\r\n") {
		if strings.HasPrefix(f, "DKIM-Signature:") {
			out = append(out, f)
		} else if f != "" && len(out) > 0 {
			out[len(out)-1] += f
		}
	}
	return out
}

// TestDKIMDualSign: a domain with an Ed25519 and an RSA key gets both
// signatures (RFC 8463 §3), relaxed/relaxed, From: oversigned, no l=;
// both verify, and a changed message does not.
func TestDKIMDualSign(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	if err := st.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	var z dkimZone
	t0 := time.Now().Add(-time.Hour)
	addKey(t, st, &z, "example.org", "old-ed", "ed25519", t0.Add(-time.Hour))
	addKey(t, st, &z, "example.org", "rsa1", "rsa", t0)
	addKey(t, st, &z, "example.org", "ed1", "ed25519", t0)
	s := NewDKIMSigner(st, DKIMSignerOptions{Logger: slog.New(slog.DiscardHandler)})
	sig, err := s.Sign(ctx, []string{"example.org"}, strings.NewReader(signTestMsg))
	if err != nil {
		t.Fatal(err)
	}
	fs := sigFields(sig)
	if len(fs) != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", len(fs), sig)
	}
	if !strings.Contains(fs[0], "a=ed25519-sha256") || !strings.Contains(fs[0], "s=ed1") || !strings.Contains(fs[1], "a=rsa-sha256") {
		t.Errorf("want the newest Ed25519 key then RSA:\n%s", sig)
	}
	for _, f := range fs {
		unfolded := strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(f)
		for _, want := range []string{"c=relaxed/relaxed", "d=example.org", "h=From:From:Reply-To:Subject:Date:To:Cc:Message-ID"} {
			if !strings.Contains(unfolded, want) {
				t.Errorf("signature lacks %q: %s", want, f)
			}
		}
		if strings.Contains(unfolded, ";l=") {
			t.Errorf("signature has a body length: %s", f)
		}
	}
	signed := append(append([]byte(nil), sig...), signTestMsg...)
	vs := verify(t, &z, signed)
	if len(vs) != 2 {
		t.Fatalf("%d verifications", len(vs))
	}
	// Relaxed: whitespace changes in transit keep it valid.
	relaxed := bytes.Replace(signed, []byte("Subject: signed"), []byte("Subject:   signed"), 1)
	verify(t, &z, relaxed)
	// A changed body, or an added From:, breaks both.
	for _, bad := range [][]byte{
		bytes.Replace(signed, []byte("Bye."), []byte("Bye!"), 1),
		bytes.Replace(signed, []byte("From: Alice"), []byte("From: Mallory <m@evil.example>\r\nFrom: Alice"), 1),
	} {
		vs, err := dkim.VerifyWithOptions(bytes.NewReader(bad), &dkim.VerifyOptions{LookupTXT: z.lookup})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Errorf("a changed message still verifies (%s)", v.Domain)
			}
		}
	}
}

// TestDKIMNoKey: a domain without an active key is signed by nobody, and
// said so once per interval; a key added shows after the cache's TTL.
func TestDKIMNoKeyAndRotation(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	for _, d := range []string{"example.org", "other.example"} {
		if err := st.CreateDomain(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	var lmu sync.Mutex
	var z dkimZone
	s := NewDKIMSigner(st, DKIMSignerOptions{KeyTTL: time.Minute, WarnInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil))})
	now := time.Now()
	s.now = func() time.Time { return now }
	for range 3 {
		sig, err := s.Sign(ctx, []string{"example.org"}, strings.NewReader(signTestMsg))
		if err != nil || len(sig) != 0 {
			t.Fatalf("no keys: %q, %v", sig, err)
		}
	}
	if n := strings.Count(logs.String(), "no DKIM key"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	// A retired key does not sign either.
	old := addKey(t, st, &z, "example.org", "old", "ed25519", now.Add(-48*time.Hour))
	if err := st.RetireDKIMKeys(ctx, "example.org", nil, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	addKey(t, st, &z, "example.org", "new", "ed25519", now)
	// Cached: still unsigned within the TTL ...
	if sig, _ := s.Sign(ctx, []string{"example.org"}, strings.NewReader(signTestMsg)); len(sig) != 0 {
		t.Fatalf("signed within the TTL of the cached absence")
	}
	// ... signed with the new key after it.
	now = now.Add(time.Minute + time.Second)
	sig, err := s.Sign(ctx, []string{"example.org"}, strings.NewReader(signTestMsg))
	if err != nil || !strings.Contains(string(sig), "s=new;") {
		t.Fatalf("after the TTL: %q, %v", sig, err)
	}
	if strings.Contains(string(sig), "s="+old.Selector+";") {
		t.Errorf("retired key signs")
	}
	verify(t, &z, append(sig, signTestMsg...))
	// Several From: domains: each with keys signs; the one without is
	// warned about once more only after the interval.
	addKey(t, st, &z, "other.example", "o1", "rsa", now)
	sig, err = s.Sign(ctx, []string{"other.example", "example.org", "Example.Org", "nokeys.example"}, strings.NewReader(signTestMsg))
	if err != nil {
		t.Fatal(err)
	}
	vs := verify(t, &z, append(sig, signTestMsg...))
	if len(vs) != 2 || vs[0].Domain != "other.example" || vs[1].Domain != "example.org" {
		t.Errorf("domains signed: %d %v", len(vs), vs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestDKIMBlankRun: a body of empty lines beyond MaxDKIMBlankRun is not
// signed (go-msgauth would hold them all), one just under is.
func TestDKIMBlankRun(t *testing.T) {
	t.Parallel()
	st := pgtest.NewStore(t)
	ctx := context.Background()
	if err := st.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	var z dkimZone
	addKey(t, st, &z, "example.org", "ed1", "ed25519", time.Now())
	s := NewDKIMSigner(st, DKIMSignerOptions{})
	head := "From: alice@example.org\r\n\r\nx\r\n"
	ok := head + strings.Repeat(" \r\n", MaxDKIMBlankRun/2-2) + "end\r\n"
	sig, err := s.Sign(ctx, []string{"example.org"}, strings.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	verify(t, &z, append(sig, ok...))
	bad := head + strings.Repeat("\r\n \t", MaxDKIMBlankRun/2+1) + "end\r\n"
	if _, err := s.Sign(ctx, []string{"example.org"}, strings.NewReader(bad)); !errors.Is(err, ErrDKIMBlankRun) {
		t.Fatalf("long blank run: %v", err)
	}
}

func TestDKIMRecordAndKeys(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"ed25519", "rsa"} {
		k, err := GenerateDKIMKey("example.org", "s1", alg)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := DKIMRecord(k)
		if err != nil || !strings.HasPrefix(rec, "v=DKIM1; k="+alg+"; p=") {
			t.Errorf("%s record %q, %v", alg, rec, err)
		}
		// A key stored under the wrong algorithm is refused.
		wrong := k
		wrong.Algorithm = map[string]string{"ed25519": "rsa", "rsa": "ed25519"}[alg]
		if _, err := parseSigningKey(wrong); err == nil {
			t.Errorf("%s key accepted as %s", alg, wrong.Algorithm)
		}
	}
	if _, err := GenerateDKIMKey("example.org", "s", "dsa"); err == nil {
		t.Error("unknown algorithm accepted")
	}
	if _, err := parseSigningKey(mailstore.DKIMKey{Algorithm: "rsa", PrivateKey: []byte("junk")}); err == nil {
		t.Error("junk key accepted")
	}
}
