package zonerecords

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/postrider/postrider/internal/dkimkeys"
	"github.com/postrider/postrider/mailstore"
)

// parseZone parses text with miekg/dns's zone parser, failing on any line
// it does not accept, and returns the records by owner name and type.
func parseZone(t *testing.T, text string) map[string][]dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	out := map[string][]dns.RR{}
	n := 0
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		key := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		out[key] = append(out[key], rr)
		if rr.Header().Ttl != TTL || rr.Header().Class != dns.ClassINET {
			t.Errorf("%s: ttl %d class %d", key, rr.Header().Ttl, rr.Header().Class)
		}
		n++
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone parser: %v\n%s", err, text)
	}
	if n == 0 {
		t.Fatal("no records")
	}
	return out
}

func one(t *testing.T, z map[string][]dns.RR, key string) dns.RR {
	t.Helper()
	if len(z[key]) != 1 {
		t.Fatalf("%s: %d records, want 1", key, len(z[key]))
	}
	return z[key][0]
}

func txt(t *testing.T, z map[string][]dns.RR, key string) string {
	t.Helper()
	r, ok := one(t, z, key).(*dns.TXT)
	if !ok {
		t.Fatalf("%s is not TXT", key)
	}
	for _, s := range r.Txt {
		if len(s) > 255 {
			t.Fatalf("%s: string of %d octets", key, len(s))
		}
	}
	return strings.Join(r.Txt, "")
}

func newKeys(t *testing.T, domain string, now time.Time) []mailstore.DKIMKey {
	t.Helper()
	keys, err := dkimkeys.NewPair(domain, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func params(keys []mailstore.DKIMKey) Params {
	return Params{
		Domain: "example.org", Hostname: "Mail.Example.NET", Policy: NewPolicy(ModeTesting, "mail.example.net"), Keys: keys,
		Services: ClientServices(map[string]string{"submission": ":587", "submissions": ":465", "imap": ":143", "imaps": ":993", "pop3s": ":995"}),
		Now:      time.Now(),
	}
}

func TestWriteEveryRecordParses(t *testing.T) {
	created := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	keys := newKeys(t, "example.org", created)
	old := newKeys(t, "example.org", created.Add(-90*24*time.Hour))
	for i := range old {
		old[i].RetiredAt = created
	}
	text, err := Write(params(append(keys, old...)))
	if err != nil {
		t.Fatal(err)
	}
	z := parseZone(t, text)

	mx := one(t, z, "example.org. MX").(*dns.MX)
	if mx.Mx != "mail.example.net." || mx.Preference != 10 {
		t.Errorf("MX = %v", mx)
	}
	if got := txt(t, z, "example.org. TXT"); got != "v=spf1 mx -all" {
		t.Errorf("SPF = %q", got)
	}
	if got := txt(t, z, "_dmarc.example.org. TXT"); got != "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org" {
		t.Errorf("DMARC = %q", got)
	}
	pol := NewPolicy(ModeTesting, "mail.example.net")
	if got := txt(t, z, "_mta-sts.example.org. TXT"); got != "v=STSv1; id="+pol.ID() {
		t.Errorf("MTA-STS = %q", got)
	}
	if c := one(t, z, "mta-sts.example.org. CNAME").(*dns.CNAME); c.Target != "mail.example.net." {
		t.Errorf("mta-sts host = %v", c)
	}
	if got := txt(t, z, "_smtp._tls.example.org. TXT"); got != "v=TLSRPTv1; rua=mailto:postmaster@example.org" {
		t.Errorf("TLS-RPT = %q", got)
	}
	// The policy itself is shown, commented.
	if !strings.Contains(text, ";   mode: testing\n") || !strings.Contains(text, ";   mx: mail.example.net\n") || !strings.Contains(text, ";   max_age: 604800\n") {
		t.Errorf("policy not shown:\n%s", text)
	}

	srv := map[string][3]int{ // priority, port, and 1 if the target is the host
		"_submissions._tcp": {0, 465, 1}, "_submission._tcp": {10, 587, 1},
		"_imaps._tcp": {0, 993, 1}, "_imap._tcp": {10, 143, 1},
		"_pop3s._tcp": {20, 995, 1}, "_pop3._tcp": {0, 0, 0}, // POP3_ADDR empty: not available
	}
	for name, want := range srv {
		r := one(t, z, name+".example.org. SRV").(*dns.SRV)
		target := "."
		if want[2] == 1 {
			target = "mail.example.net."
		}
		if int(r.Priority) != want[0] || int(r.Port) != want[1] || r.Target != target {
			t.Errorf("%s SRV = %v", name, r)
		}
	}

	// DKIM: each key's record is published, and a message signed with the
	// stored private key verifies against it (go-msgauth's verifier), the
	// RSA one split into 255-octet strings.
	for _, k := range append(keys, old...) {
		name := dkimkeys.RecordName(k.Selector, "example.org") + ". TXT"
		rec := txt(t, z, name)
		if n := len(one(t, z, name).(*dns.TXT).Txt); k.Algorithm == dkimkeys.RSA && n < 2 {
			t.Errorf("RSA record in %d string(s)", n)
		}
		verifyWith(t, k, rec)
	}
	if !strings.Contains(text, "postrider dkim remove example.org "+old[0].Selector) || !strings.Contains(text, "keep this record until 2026-12-14") {
		t.Errorf("retired key advice missing:\n%s", text)
	}
	if strings.Contains(text, "postrider dkim remove example.org "+keys[0].Selector) {
		t.Error("active key advised for removal")
	}
}

// TestWriteRotation: during a rotation every key not removed is
// published, each with what to do about it at the moment: the new pair
// before it signs (publish now, signs from), the signing pair (until when,
// then keep), and after the switch the superseded pair (keep until a week
// after it stopped, then remove); a key that never signed may go at once.
func TestWriteRotation(t *testing.T) {
	created := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	old := newKeys(t, "example.org", created.Add(-90*24*time.Hour))
	pending := newKeys(t, "example.org", created)
	for i := range pending {
		pending[i].SignFrom = created.Add(72 * time.Hour)
	}
	cancelled, err := dkimkeys.NewPair("example.org", created.Add(-time.Hour), []string{pending[0].Selector, pending[1].Selector})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cancelled {
		cancelled[i].SignFrom = created.Add(48 * time.Hour)
		cancelled[i].RetiredAt = created
	}
	all := append(append(append([]mailstore.DKIMKey(nil), pending...), cancelled...), old...)
	write := func(now time.Time) (string, map[string][]dns.RR) {
		t.Helper()
		p := params(all)
		p.Now = now
		text, err := Write(p)
		if err != nil {
			t.Fatal(err)
		}
		return text, parseZone(t, text)
	}
	mustHave := func(text string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("missing %q in:\n%s", w, text)
			}
		}
	}
	before, z := write(created.Add(time.Hour))
	for _, k := range all {
		verifyWith(t, k, txt(t, z, dkimkeys.RecordName(k.Selector, "example.org")+". TXT"))
	}
	mustHave(before,
		"key "+pending[0].Selector+", new: publish this record now; it signs from 2026-12-10 10:00 UTC",
		"key "+old[0].Selector+", signing since 2026-09-08 10:00 UTC.\n; A newer key takes over at 2026-12-10 10:00 UTC; keep this record until 2026-12-17 10:00 UTC",
		"key "+cancelled[0].Selector+", retired: it never signed; delete this record",
		"postrider dkim remove example.org "+cancelled[1].Selector)
	if strings.Contains(before, "remove example.org "+pending[0].Selector+"`") {
		t.Errorf("a pending key advised for removal:\n%s", before)
	}

	after, z := write(created.Add(73 * time.Hour))
	for _, k := range all {
		txt(t, z, dkimkeys.RecordName(k.Selector, "example.org")+". TXT")
	}
	mustHave(after,
		"key "+pending[1].Selector+", signing since 2026-12-10 10:00 UTC.",
		"key "+old[1].Selector+", superseded: it stopped signing 2026-12-10 10:00 UTC; keep this record until 2026-12-17 10:00 UTC",
		"postrider dkim remove example.org "+old[1].Selector)
	if strings.Contains(after, "remove example.org "+pending[1].Selector+"`") {
		t.Errorf("the signing key advised for removal:\n%s", after)
	}
}

// verifyWith signs a message with k and verifies it against rec as
// published at its selector.
func verifyWith(t *testing.T, k mailstore.DKIMKey, rec string) {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	signer := key.(crypto.Signer)
	msg := "From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
	var signed bytes.Buffer
	opts := &dkim.SignOptions{Domain: "example.org", Selector: k.Selector, Signer: signer, Hash: crypto.SHA256}
	if err := dkim.Sign(&signed, strings.NewReader(msg), opts); err != nil {
		t.Fatal(err)
	}
	want := dkimkeys.RecordName(k.Selector, "example.org")
	vs, err := dkim.VerifyWithOptions(&signed, &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if name != want {
			t.Errorf("looked up %s, want %s", name, want)
		}
		return []string{rec}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("%s (%s): verify: %v %+v", k.Selector, k.Algorithm, err, vs)
	}
}

func TestWriteWithoutKeysAndWithRelay(t *testing.T) {
	p := params(nil)
	p.RelayHost = "smtp.relay.example:587"
	text, err := Write(p)
	if err != nil {
		t.Fatal(err)
	}
	z := parseZone(t, text)
	if got := txt(t, z, "example.org. TXT"); got != "v=spf1 mx a:smtp.relay.example ~all" {
		t.Errorf("SPF with relay = %q", got)
	}
	if !strings.Contains(text, "postrider dkim generate example.org") {
		t.Errorf("no advice to generate keys:\n%s", text)
	}
	for key := range z {
		if strings.Contains(key, "_domainkey") {
			t.Errorf("DKIM record %s without keys", key)
		}
	}
	p.RelayHost = "[2001:db8::25]:25"
	text, _ = Write(p)
	if got := txt(t, parseZone(t, text), "example.org. TXT"); got != "v=spf1 mx ip6:2001:db8::25 ~all" {
		t.Errorf("SPF with relay address = %q", got)
	}
	p.RelayHost = "192.0.2.25:25"
	text, _ = Write(p)
	if got := txt(t, parseZone(t, text), "example.org. TXT"); got != "v=spf1 mx ip4:192.0.2.25 ~all" {
		t.Errorf("SPF with relay address = %q", got)
	}
}

func TestWriteRefusesBadHostname(t *testing.T) {
	for _, h := range []string{"localhost", "192.0.2.1", "[::1]", "mail_1.example.org", ""} {
		p := params(nil)
		p.Hostname = h
		if _, err := Write(p); err == nil || !strings.Contains(err.Error(), "POSTRIDER_HOSTNAME") {
			t.Errorf("hostname %q: err %v", h, err)
		}
	}
}

func TestSplitTXT(t *testing.T) {
	s := strings.Repeat("a", 600)
	parts := dkimkeys.SplitTXT(s)
	if len(parts) != 3 || len(parts[0]) != 255 || len(parts[1]) != 255 || len(parts[2]) != 90 || strings.Join(parts, "") != s {
		t.Fatalf("split into %d", len(parts))
	}
	if p := dkimkeys.SplitTXT("short"); len(p) != 1 || p[0] != "short" {
		t.Fatal(p)
	}
}

func TestSelectorsAreUnique(t *testing.T) {
	now := time.Date(2026, 12, 7, 23, 59, 0, 0, time.UTC)
	ed, rs := dkimkeys.Selectors(now, nil)
	if ed != "pr20261207e" || rs != "pr20261207r" {
		t.Fatalf("selectors %s %s", ed, rs)
	}
	ed2, rs2 := dkimkeys.Selectors(now, []string{ed})
	if ed2 != "pr20261207e2" || rs2 != "pr20261207r2" {
		t.Fatalf("second pair %s %s", ed2, rs2)
	}
	ed3, _ := dkimkeys.Selectors(now, []string{"PR20261207R", ed2})
	if ed3 != "pr20261207e3" {
		t.Fatalf("third pair %s", ed3)
	}
}
