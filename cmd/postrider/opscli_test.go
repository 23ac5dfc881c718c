package main_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/postrider/postrider/delivery"
	"github.com/postrider/postrider/internal/dkimkeys"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// cli runs the binary against one database and fails the test on an
// unexpected exit.
type cli struct {
	t   *testing.T
	env []string
}

func newCLI(t *testing.T, url string, env ...string) *cli {
	return &cli{t: t, env: append([]string{"POSTRIDER_DATABASE_URL=" + url}, env...)}
}

func (c *cli) ok(args ...string) result {
	c.t.Helper()
	r := runCLI(c.t, c.env, "", args...)
	if r.code != 0 {
		c.t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	return r
}

func (c *cli) fail(code int, wantInErr string, args ...string) {
	c.t.Helper()
	r := runCLI(c.t, c.env, "", args...)
	if r.code != code || !strings.Contains(r.stderr, wantInErr) {
		c.t.Fatalf("%v: exit %d, stderr %q; want exit %d mentioning %q", args, r.code, r.stderr, code, wantInErr)
	}
}

// zoneRecords parses text with miekg/dns's zone parser (every line must be
// valid) and returns the records by "name TYPE".
func zoneRecords(t *testing.T, text string) map[string][]dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	out := map[string][]dns.RR{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		k := rr.Header().Name + " " + dns.TypeToString[rr.Header().Rrtype]
		out[k] = append(out[k], rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone parser: %v\n%s", err, text)
	}
	return out
}

func txtOf(t *testing.T, z map[string][]dns.RR, key string) string {
	t.Helper()
	if len(z[key]) != 1 {
		t.Fatalf("%s: %d records, want 1", key, len(z[key]))
	}
	r := z[key][0].(*dns.TXT)
	for _, s := range r.Txt {
		if len(s) > 255 {
			t.Fatalf("%s: a string of %d octets", key, len(s))
		}
	}
	return strings.Join(r.Txt, "")
}

func TestDKIMCommands(t *testing.T) {
	url := pgtest.NewDatabase(t)
	c := newCLI(t, url)
	c.ok("domain", "add", "example.org")
	c.fail(1, "not a local domain", "dkim", "generate", "other.example")
	c.fail(1, "not a local domain", "dkim", "list", "other.example")
	c.fail(2, "usage", "dkim", "generate")
	c.fail(2, "unknown dkim command", "dkim", "frob", "example.org")
	if r := c.ok("dkim", "list", "example.org"); !strings.Contains(r.stdout, "dkim generate example.org") {
		t.Fatalf("list without keys: %q", r.stdout)
	}

	r := c.ok("dkim", "generate", "Example.ORG")
	gen := zoneRecords(t, r.stdout)
	if len(gen) != 2 {
		t.Fatalf("generate printed %d records, want 2:\n%s", len(gen), r.stdout)
	}
	c.fail(1, "dkim rotate example.org", "dkim", "generate", "example.org")

	st := pgtest.OpenStore(t, url)
	ctx := context.Background()
	keys, err := st.ListDKIMKeys(ctx, "example.org")
	if err != nil || len(keys) != 2 {
		t.Fatalf("stored keys: %v %v", keys, err)
	}
	algs := map[string]bool{}
	for _, k := range keys {
		algs[k.Algorithm] = true
		if !regexp.MustCompile(`^pr\d{8}[er]$`).MatchString(k.Selector) || !k.RetiredAt.IsZero() {
			t.Errorf("key %s %s retired %v", k.Selector, k.Algorithm, k.RetiredAt)
		}
		// The printed record verifies a signature made with the stored
		// PKCS #8 key.
		verifySigned(t, k, txtOf(t, gen, dkimkeys.RecordName(k.Selector, "example.org")+". TXT"))
	}
	if !algs["ed25519"] || !algs["rsa"] {
		t.Fatalf("algorithms %v, want ed25519 and rsa", algs)
	}

	c.ok("domain", "add", "nokeys.example")
	c.fail(1, "dkim generate nokeys.example", "dkim", "rotate", "nokeys.example")
	testDKIMRotation(t, url, c, st, keys)
}

// keysOf returns example.org's stored keys by selector.
func keysOf(t *testing.T, st *postgres.Store) map[string]mailstore.DKIMKey {
	t.Helper()
	all, err := st.ListDKIMKeys(context.Background(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mailstore.DKIMKey{}
	for _, k := range all {
		out[k.Selector] = k
	}
	return out
}

// newPair returns the two keys of m not in old.
func newPair(t *testing.T, m map[string]mailstore.DKIMKey, old ...mailstore.DKIMKey) []mailstore.DKIMKey {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range old {
		seen[k.Selector] = true
	}
	var out []mailstore.DKIMKey
	for sel, k := range m {
		if !seen[sel] {
			out = append(out, k)
		}
	}
	if len(out) != 2 || out[0].Algorithm == out[1].Algorithm {
		t.Fatalf("new keys %v, want one pair", out)
	}
	// In selector order, as the CLI lists them (the map's order is random:
	// a test that named out[0] first failed now and then).
	slices.SortFunc(out, func(a, b mailstore.DKIMKey) int { return strings.Compare(a.Selector, b.Selector) })
	return out
}

// signedBy signs a message with the stored keys (the signer of submitted
// mail, at the real time) and returns the selectors that signed.
func signedBy(t *testing.T, st *postgres.Store) []string {
	t.Helper()
	msg := "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: test\r\n\r\nHello.\r\n"
	sigs, err := mailauth.NewDKIMSigner(st, mailauth.DKIMSignerOptions{}).Sign(context.Background(), []string{"example.org"}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`[;\s]s=([a-z0-9]+);`).FindAllStringSubmatch(string(sigs), -1) {
		out = append(out, m[1])
	}
	sort.Strings(out)
	return out
}

func sels(keys ...mailstore.DKIMKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Selector)
	}
	sort.Strings(out)
	return out
}

// testDKIMRotation: rotate publishes first and switches later. With the
// default delay the new pair signs 72 hours on and the old keeps signing;
// a second rotation (--sign-after=36h) replaces the pending one, whose
// keys are retired never having signed; --sign-after 0 switches at once
// and supersedes the old pair. list names every state with its dates, dns
// keeps publishing every key not removed, and remove refuses the keys that
// sign or will.
func testDKIMRotation(t *testing.T, url string, c *cli, st *postgres.Store, first []mailstore.DKIMKey) {
	c.fail(2, "want a duration", "dkim", "rotate", "--sign-after", "-1h", "example.org")
	c.fail(2, "needs a duration", "dkim", "rotate", "example.org", "--sign-after")
	c.fail(2, "unknown flag", "dkim", "list", "--sign-after", "1h")
	c.fail(2, "unknown flag", "dkim", "rotate", "--now", "example.org")
	if len(keysOf(t, st)) != 2 {
		t.Fatal("a refused rotate stored keys")
	}

	// The default: published now, signing in 72 hours.
	r := c.ok("dkim", "rotate", "example.org")
	second := newPair(t, keysOf(t, st), first...)
	for _, k := range second {
		if d := k.SignFrom.Sub(k.CreatedAt); d != dkimkeys.DefaultSignAfter || !k.RetiredAt.IsZero() {
			t.Errorf("new key %s signs %v after its creation, retired %v; want %v", k.Selector, d, k.RetiredAt, dkimkeys.DefaultSignAfter)
		}
	}
	from := second[0].SignFrom
	if z := zoneRecords(t, r.stdout); len(z) != 2 || z[dkimkeys.RecordName(second[0].Selector, "example.org")+". TXT"] == nil {
		t.Fatalf("rotate prints %d records:\n%s", len(z), r.stdout)
	}
	for _, want := range []string{
		"Publish these records now. The new keys sign from " + dkimkeys.Time(from) + " (in 3 days)",
		"The current keys " + first[0].Selector + ", " + first[1].Selector + " stop signing at " + dkimkeys.Time(from),
		"Keep their DNS records until " + dkimkeys.Time(from.Add(dkimkeys.KeepRetired)),
		"postrider dkim remove example.org " + first[0].Selector + "\n",
		"postrider dkim remove example.org " + first[1].Selector + "\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, k := range first {
		if got := keysOf(t, st)[k.Selector]; !got.RetiredAt.IsZero() || !got.SignFrom.Equal(got.CreatedAt) {
			t.Errorf("old key %s after rotate: retired %v, signs from %v", k.Selector, got.RetiredAt, got.SignFrom)
		}
	}
	if got, want := signedBy(t, st), sels(first...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("during the publish delay mail is signed by %v, want the old keys %v", got, want)
	}
	r = c.ok("dkim", "list", "example.org")
	if n := strings.Count(r.stdout, "\tpublished, signs from "+dkimkeys.Time(from)+"\n"); n != 2 {
		t.Errorf("list: %d keys published and signing later, want 2:\n%s", n, r.stdout)
	}
	if n := strings.Count(r.stdout, "\tsigning since "+dkimkeys.Time(first[0].SignFrom)+", until "+dkimkeys.Time(from)+"\n"); n != 2 {
		t.Errorf("list: %d keys signing until the switch, want 2:\n%s", n, r.stdout)
	}
	if z := zoneRecords(t, r.stdout); len(z) != 4 {
		t.Errorf("list: %d records, want 4", len(z))
	}
	c.fail(1, "still signs", "dkim", "remove", "example.org", first[0].Selector)
	c.fail(1, "signs from "+dkimkeys.Time(from), "dkim", "remove", "example.org", second[1].Selector)
	c.fail(1, "no DKIM key", "dkim", "remove", "example.org", "nosuch")

	// Rotating again replaces the pending pair.
	r = c.ok("dkim", "rotate", "--sign-after=36h", "example.org")
	third := newPair(t, keysOf(t, st), append(first, second...)...)
	if d := third[0].SignFrom.Sub(third[0].CreatedAt); d != 36*time.Hour {
		t.Errorf("--sign-after=36h: signs %v after creation", d)
	}
	for _, k := range second {
		if got := keysOf(t, st)[k.Selector]; got.RetiredAt.IsZero() || !got.RetiredAt.Before(got.SignFrom) {
			t.Errorf("replaced pending key %s: retired %v, signs from %v", k.Selector, got.RetiredAt, got.SignFrom)
		}
	}
	for _, want := range []string{"(in 36 hours)", "This replaces the rotation that was pending: " + second[0].Selector} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("second rotate output lacks %q:\n%s", want, r.stdout)
		}
	}

	// --sign-after 0: the new pair signs at once, the old is superseded.
	r = c.ok("dkim", "rotate", "example.org", "--sign-after", "0")
	fourth := newPair(t, keysOf(t, st), append(append(first, second...), third...)...)
	switched := fourth[0].SignFrom
	if !switched.Equal(fourth[0].CreatedAt) {
		t.Errorf("--sign-after 0: created %v, signs from %v", fourth[0].CreatedAt, switched)
	}
	if !strings.Contains(r.stdout, "They sign its mail from now on") || !strings.Contains(r.stdout, "are superseded now. Keep their DNS records until "+dkimkeys.Time(switched.Add(dkimkeys.KeepRetired))) {
		t.Errorf("rotate --sign-after 0 output:\n%s", r.stdout)
	}
	if got, want := signedBy(t, st), sels(fourth...); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after rotate --sign-after 0 mail is signed by %v, want %v", got, want)
	}
	r = c.ok("dkim", "list")
	for _, c := range []struct {
		text string
		n    int
	}{
		{"\tsigning since " + dkimkeys.Time(switched) + "\n", 2},
		{"\tsuperseded since " + dkimkeys.Time(switched) + ", remove after " + dkimkeys.Time(switched.Add(dkimkeys.KeepRetired)) + "\n", 2},
		{" before it signed, remove any time\n", 4},
		{"\tpublished", 0},
	} {
		if n := strings.Count(r.stdout, c.text); n != c.n {
			t.Errorf("list: %d × %q, want %d:\n%s", n, c.text, c.n, r.stdout)
		}
	}
	if z := zoneRecords(t, r.stdout); len(z) != 8 {
		t.Errorf("list: %d records, want 8", len(z))
	}

	// remove: the signing key is refused; a superseded key goes, with a
	// warning before its date; a key that never signed goes quietly.
	c.fail(1, "still signs", "dkim", "remove", "example.org", fourth[0].Selector)
	r = c.ok("dkim", "remove", "example.org", first[0].Selector)
	if !strings.Contains(r.stdout, "removed; delete its DNS record "+dkimkeys.RecordName(first[0].Selector, "example.org")+". too") ||
		!strings.Contains(r.stderr, "warning: "+first[0].Selector+" signed until "+dkimkeys.Time(switched)) {
		t.Errorf("remove of a superseded key: %q, %q", r.stdout, r.stderr)
	}
	r = c.ok("dkim", "remove", "example.org", second[0].Selector)
	if r.stderr != "" {
		t.Errorf("remove of a key that never signed warns: %q", r.stderr)
	}
	left := keysOf(t, st)
	_, gone1 := left[first[0].Selector]
	_, gone2 := left[second[0].Selector]
	if len(left) != 6 || gone1 || gone2 {
		t.Fatalf("after two removals: %d keys left", len(left))
	}
	// dns publishes every key not removed, and no other.
	z := zoneRecords(t, newCLI(t, url, "POSTRIDER_HOSTNAME=mail.example.net").ok("dns", "example.org").stdout)
	for sel := range left {
		txtOf(t, z, dkimkeys.RecordName(sel, "example.org")+". TXT")
	}
	n := 0
	for name := range z {
		if strings.Contains(name, "._domainkey.") {
			n++
		}
	}
	if n != len(left) {
		t.Errorf("dns publishes %d DKIM records, want %d", n, len(left))
	}
}

// verifySigned signs a message with k and verifies it with go-msgauth
// against rec, the published text of k's record.
func verifySigned(t *testing.T, k mailstore.DKIMKey, rec string) {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	signer := key.(crypto.Signer)
	var signed bytes.Buffer
	msg := "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: test\r\n\r\nHello.\r\n"
	if err := dkim.Sign(&signed, strings.NewReader(msg), &dkim.SignOptions{Domain: k.Domain, Selector: k.Selector, Signer: signer, Hash: crypto.SHA256}); err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(&signed, &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != dkimkeys.RecordName(k.Selector, k.Domain) {
			return nil, fmt.Errorf("unexpected lookup %s", name)
		}
		return []string{rec}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("%s (%s) does not verify against its record: %v %+v", k.Selector, k.Algorithm, err, vs)
	}
}

func TestDNSCommand(t *testing.T) {
	url := pgtest.NewDatabase(t)
	c := newCLI(t, url, "POSTRIDER_HOSTNAME=mail.example.net", "POSTRIDER_POP3_ADDR=", "POSTRIDER_MTA_STS_MODE=enforce")
	c.ok("domain", "add", "example.org")
	c.fail(1, "not a local domain", "dns", "other.example")
	c.fail(2, "usage", "dns")
	bad := newCLI(t, url, "POSTRIDER_HOSTNAME=localhost")
	bad.fail(2, "POSTRIDER_HOSTNAME", "dns", "example.org")

	// Before keys and postmaster: records, and warnings on stderr.
	r := c.ok("dns", "example.org")
	if !strings.Contains(r.stderr, "postmaster@example.org") || !strings.Contains(r.stderr, "dkim generate example.org") {
		t.Errorf("no warnings: %q", r.stderr)
	}
	if !strings.Contains(r.stdout, "postrider dkim generate example.org") {
		t.Errorf("no advice to generate keys:\n%s", r.stdout)
	}

	c.ok("dkim", "generate", "example.org")
	r = runCLI(t, c.env, "pw-of-admin\n", "user", "add", "boss@example.org")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	c.ok("alias", "add", "postmaster@example.org", "boss@example.org")
	r = c.ok("dns", "example.org")
	if r.stderr != "" {
		t.Errorf("warnings with keys and postmaster: %q", r.stderr)
	}
	z := zoneRecords(t, r.stdout)

	if mx := z["example.org. MX"]; len(mx) != 1 || mx[0].(*dns.MX).Mx != "mail.example.net." {
		t.Errorf("MX: %v", mx)
	}
	if got := txtOf(t, z, "example.org. TXT"); got != "v=spf1 mx -all" {
		t.Errorf("SPF: %q", got)
	}
	if got := txtOf(t, z, "_dmarc.example.org. TXT"); !strings.HasPrefix(got, "v=DMARC1; p=quarantine;") || !strings.Contains(got, "rua=mailto:postmaster@example.org") {
		t.Errorf("DMARC: %q", got)
	}
	if got := txtOf(t, z, "_smtp._tls.example.org. TXT"); got != "v=TLSRPTv1; rua=mailto:postmaster@example.org" {
		t.Errorf("TLS-RPT: %q", got)
	}
	if c := z["mta-sts.example.org. CNAME"]; len(c) != 1 || c[0].(*dns.CNAME).Target != "mail.example.net." {
		t.Errorf("mta-sts host: %v", c)
	}
	// The id is the one of the policy the nodes serve with this
	// configuration.
	policy := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.net\r\nmax_age: 604800\r\n"
	sum := sha256.Sum256([]byte(policy))
	if got := txtOf(t, z, "_mta-sts.example.org. TXT"); got != "v=STSv1; id="+hex.EncodeToString(sum[:10]) {
		t.Errorf("MTA-STS: %q", got)
	}
	for name, port := range map[string]uint16{"_submission": 587, "_submissions": 465, "_imap": 143, "_imaps": 993, "_pop3s": 995, "_pop3": 0} {
		rr := z[name+"._tcp.example.org. SRV"]
		if len(rr) != 1 {
			t.Errorf("%s: %d SRV records", name, len(rr))
			continue
		}
		srv := rr[0].(*dns.SRV)
		if want := "mail.example.net."; port == 0 && (srv.Target != "." || srv.Port != 0) || port != 0 && (srv.Target != want || srv.Port != port) {
			t.Errorf("%s SRV: %v", name, srv)
		}
	}
	st := pgtest.OpenStore(t, url)
	keys, err := st.ListDKIMKeys(context.Background(), "example.org")
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v %v", keys, err)
	}
	for _, k := range keys {
		verifySigned(t, k, txtOf(t, z, dkimkeys.RecordName(k.Selector, "example.org")+". TXT"))
	}
	// The signer of submitted mail signs with the stored keys, and both
	// signatures verify against the records printed.
	msg := "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: test\r\n\r\nHello.\r\n"
	sigs, err := mailauth.NewDKIMSigner(st, mailauth.DKIMSignerOptions{}).Sign(context.Background(), []string{"example.org"}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(strings.NewReader(string(sigs)+msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if rr := z[name+". TXT"]; len(rr) == 1 {
			return []string{strings.Join(rr[0].(*dns.TXT).Txt, "")}, nil
		}
		return nil, fmt.Errorf("no record %s", name)
	}})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Fatalf("signed mail does not verify against the printed records: %v %+v", err, vs)
	}

	// With a smarthost, SPF names it and soft-fails the rest.
	relay := newCLI(t, url, "POSTRIDER_HOSTNAME=mail.example.net", "POSTRIDER_RELAY_HOST=smtp.relay.example:587")
	if got := txtOf(t, zoneRecords(t, relay.ok("dns", "example.org").stdout), "example.org. TXT"); got != "v=spf1 mx a:smtp.relay.example ~all" {
		t.Errorf("SPF with relay: %q", got)
	}
}

// The HTTP listener serves the MTA-STS policy of local domains only, named
// by the Host header.
func TestMTASTSPolicyServed(t *testing.T) {
	url := pgtest.NewDatabase(t)
	n := startNode(t, url, "POSTRIDER_MTA_STS_MODE=enforce")
	newCLI(t, url).ok("domain", "add", "example.org")
	get := func(host string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+n.addrs["HTTP"]+"/.well-known/mta-sts.txt", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
	}
	code, body, ctype := get("mta-sts.example.org")
	if want := "version: STSv1\r\nmode: enforce\r\nmx: mx.test.example\r\nmax_age: 604800\r\n"; code != 200 || body != want || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("policy: %d %q %q", code, body, ctype)
	}
	// Our delivery engine's MTA-STS parser reads it as senders will.
	pol, err := delivery.ParseSTSPolicy([]byte(body))
	if err != nil || string(pol.Mode) != "enforce" || !pol.MatchMX("mx.test.example") || pol.MaxAge != 7*24*time.Hour {
		t.Fatalf("policy as a sender reads it: %+v %v", pol, err)
	}
	for _, host := range []string{"mta-sts.other.example", "example.org", n.addrs["HTTP"]} {
		if code, _, _ := get(host); code != 404 {
			t.Errorf("Host %s: %d, want 404", host, code)
		}
	}
	// A domain added while the node runs is served at once (no cache).
	newCLI(t, url).ok("domain", "add", "second.example")
	if code, _, _ := get("mta-sts.second.example"); code != 200 {
		t.Errorf("new domain: %d", code)
	}
}

func TestQueueCommands(t *testing.T) {
	url := pgtest.NewDatabase(t)
	c := newCLI(t, url)
	c.ok("domain", "add", "example.org")
	if r := runCLI(t, c.env, "pw\n", "user", "add", "alice@example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := c.ok("queue", "list"); strings.TrimSpace(r.stdout) != "queue is empty" {
		t.Fatalf("empty queue: %q", r.stdout)
	}
	c.fail(2, "not a queue ID", "queue", "show", "x")
	c.fail(2, "usage", "queue", "show")
	c.fail(2, "unknown queue command", "queue", "frob")
	c.fail(1, "no queue item 99", "queue", "show", "99")

	st := pgtest.OpenStore(t, url)
	ctx := context.Background()
	alice, err := st.GetAccount(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	enqueue := func(from string, rcpts ...string) int64 {
		t.Helper()
		d := &mailstore.Delivery{MailFrom: from, SenderAccount: alice.ID, Params: map[string]string{"body": "8BITMIME"},
			Body: strings.NewReader("From: alice@example.org\r\nSubject: out\r\n\r\nHello world.\r\n")}
		for _, r := range rcpts {
			d.Remote = append(d.Remote, mailstore.RemoteRecipient{Address: r, Notify: "FAILURE"})
		}
		res, err := st.Deliver(ctx, d)
		if err != nil || res.QueueID == 0 {
			t.Fatalf("deliver: %v %+v", err, res)
		}
		return res.QueueID
	}
	id1 := enqueue("alice@example.org", "bob@remote.example", "carol@far.example")
	id2 := enqueue("alice@example.org", "dave@remote.example")

	r := c.ok("queue", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], fmt.Sprint(id1)+" ") || !strings.HasPrefix(lines[2], fmt.Sprint(id2)+" ") {
		t.Fatalf("list:\n%s", r.stdout)
	}
	for _, want := range []string{"<alice@example.org>", "bob@remote.example (pending)", "carol@far.example (pending)", " now "} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("list line lacks %q: %q", want, lines[1])
		}
	}

	// An attempt by a worker: bob fails for now with a reply carrying
	// terminal escapes, carol is delivered; the next attempt is in an hour.
	now := time.Now()
	items, err := st.ClaimQueue(ctx, "node-test", now, time.Minute, 10)
	if err != nil || len(items) != 2 {
		t.Fatalf("claim: %v %d", err, len(items))
	}
	if r := c.ok("queue", "list"); !strings.Contains(r.stdout, "being delivered by node-test") {
		t.Errorf("leased item not shown as being delivered:\n%s", r.stdout)
	}
	var it mailstore.QueueItem
	for _, x := range items {
		if x.ID == id1 {
			it = x
		}
	}
	var res []mailstore.QueueRecipientResult
	for _, rc := range it.Recipients {
		if rc.Address == "bob@remote.example" {
			res = append(res, mailstore.QueueRecipientResult{RecipientID: rc.ID, State: mailstore.RcptPending, Code: "4.7.1", Reply: "451 4.7.1 Greylisted \x1b[31mplease\x1b[0m try later", RemoteMTA: "mx.remote.example"})
		} else {
			res = append(res, mailstore.QueueRecipientResult{RecipientID: rc.ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 2.0.0 OK", RemoteMTA: "mx.far.example"})
		}
	}
	if err := st.FinishAttempt(ctx, "node-test", mailstore.QueueAttempt{ItemID: id1, At: now, Results: res, Next: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r = c.ok("queue", "list")
	if strings.Contains(r.stdout, "\x1b") {
		t.Errorf("terminal escape from a remote reply printed: %q", r.stdout)
	}
	for _, want := range []string{"bob@remote.example (pending, 1 attempt: 451 4.7.1 Greylisted ?[31mplease?[0m try later)", "carol@far.example (delivered, 1 attempt: 250 2.0.0 OK)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`\s in \d+m\s`).MatchString(r.stdout) {
		t.Errorf("list does not show the next attempt in the future:\n%s", r.stdout)
	}
	r = c.ok("queue", "show", fmt.Sprint(id1))
	for _, want := range []string{"<alice@example.org>, submitted by alice@example.org", "Recipient bob@remote.example", "State:", "pending",
		"Remote server: mx.remote.example", "Last reply:    451 4.7.1 Greylisted", "NOTIFY=FAILURE", "body=8BITMIME", "Recipient carol@far.example", "delivered"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}

	// retry makes it due now; an unknown ID is an error that names it.
	c.fail(1, "no queue item 424242", "queue", "retry", fmt.Sprint(id1), "424242")
	got, err := st.GetQueueItem(ctx, id1)
	if err != nil || got.NextAttempt.After(time.Now()) {
		t.Fatalf("after retry next attempt %v (%v)", got.NextAttempt, err)
	}
	// flush: every item due now.
	if err := st.FinishAttempt(ctx, "node-test", mailstore.QueueAttempt{ItemID: id2, At: now, Results: nil, Next: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if r := c.ok("queue", "flush"); !strings.HasPrefix(r.stdout, "2 items due now") {
		t.Errorf("flush: %q", r.stdout)
	}
	for _, id := range []int64{id1, id2} {
		got, err := st.GetQueueItem(ctx, id)
		if err != nil || got.NextAttempt.After(time.Now()) {
			t.Fatalf("after flush item %d next attempt %v (%v)", id, got.NextAttempt, err)
		}
	}

	c.ok("queue", "remove", fmt.Sprint(id1))
	c.fail(1, "no queue item "+fmt.Sprint(id1), "queue", "remove", fmt.Sprint(id1))
	c.ok("queue", "remove", fmt.Sprint(id2))
	if r := c.ok("queue", "list"); strings.TrimSpace(r.stdout) != "queue is empty" {
		t.Fatalf("after remove: %q", r.stdout)
	}
}
