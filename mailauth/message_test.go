package mailauth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailauth/mailauthtest"
)

func msg(from string) string {
	return "From: Someone <" + from + ">\r\nTo: <alice@example.org>\r\nSubject: test\r\n" +
		"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\n\r\nHello.\r\n"
}

func check(t *testing.T, c *mailauth.Checker, spf mailauth.SPFResult, m string) *mailauth.Result {
	t.Helper()
	r, err := c.Message(context.Background(), spf, strings.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var noSPF = mailauth.SPFResult{Result: "none", Identity: "mailfrom"}

func spfPass(domain string) mailauth.SPFResult {
	return mailauth.SPFResult{Result: "pass", Identity: "mailfrom", Domain: domain, MailFrom: "bounce@" + domain}
}

func TestDKIM(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	ed, rsa := mailauthtest.Ed25519(t), mailauthtest.RSA(t)
	ed.Publish(t, d, "example.com", "ed")
	rsa.Publish(t, d, "example.com", "rsa")
	d.ServFail("temp._domainkey.example.com")
	d.TXT("revoked._domainkey.example.com", "v=DKIM1; k=rsa; p=")
	other := mailauthtest.Ed25519(t)
	other.Publish(t, d, "example.com", "other") // a key that did not sign
	c := newChecker(d)
	m := msg("a@example.com")

	cases := []struct {
		name   string
		msg    string
		result string
		reason string
	}{
		{"ed25519", ed.Sign(t, m, "example.com", "ed"), "pass", ""},
		{"rsa", rsa.Sign(t, m, "example.com", "rsa"), "pass", ""},
		{"body tampered", strings.Replace(ed.Sign(t, m, "example.com", "ed"), "Hello.", "Hello!", 1), "fail", "body hash did not verify"},
		{"header tampered", strings.Replace(rsa.Sign(t, m, "example.com", "rsa"), "Subject: test", "Subject: pay now", 1), "fail", "signature did not verify"},
		{"missing key", ed.Sign(t, m, "example.com", "nokey"), "permerror", "no key for signature"},
		{"revoked key", ed.Sign(t, m, "example.com", "revoked"), "permerror", "key revoked"},
		{"wrong key", ed.Sign(t, m, "example.com", "other"), "fail", "signature did not verify"},
		{"key server failure", ed.Sign(t, m, "example.com", "temp"), "temperror", "key unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, c, noSPF, tc.msg)
			if len(r.DKIM) != 1 {
				t.Fatalf("DKIM = %+v, want one result", r.DKIM)
			}
			got := r.DKIM[0]
			if got.Result != tc.result || got.Domain != "example.com" || !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("DKIM = %+v, want %s (%s)", got, tc.result, tc.reason)
			}
		})
	}

	t.Run("unsigned", func(t *testing.T) {
		if r := check(t, c, noSPF, m); len(r.DKIM) != 0 {
			t.Errorf("DKIM = %+v for an unsigned message", r.DKIM)
		}
	})
	t.Run("bounded signatures", func(t *testing.T) {
		// Seven signatures: only the first five are verified.
		s := m
		for range 7 {
			s = ed.Sign(t, s, "example.com", "ed")
		}
		r := check(t, c, noSPF, s)
		if len(r.DKIM) != mailauth.DefaultMaxSignatures {
			t.Fatalf("%d results, want %d", len(r.DKIM), mailauth.DefaultMaxSignatures)
		}
		for _, v := range r.DKIM {
			if v.Result != "pass" || v.Selector != "ed" || len(v.B) != 8 {
				t.Errorf("signature %+v", v)
			}
		}
	})
}

func TestDMARC(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	key := mailauthtest.Ed25519(t)
	for _, dom := range []string{"example.com", "mail.example.com", "other.net", "relaxed.example", "strict.example", "sub.org.example"} {
		key.Publish(t, d, dom, "k")
	}
	d.TXT("_dmarc.example.com", "v=DMARC1; p=reject")
	d.TXT("_dmarc.relaxed.example", "v=DMARC1; p=reject; adkim=r; aspf=r")
	d.TXT("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s")
	d.TXT("_dmarc.quar.example", "v=DMARC1; p=quarantine")
	d.TXT("_dmarc.none.example", "v=DMARC1; p=none; rua=mailto:r@none.example")
	d.TXT("_dmarc.org.example", "v=DMARC1; p=reject; sp=quarantine")
	d.TXT("_dmarc.nosp.example", "v=DMARC1; p=reject")
	d.TXT("_dmarc.pct.example", "v=DMARC1; p=reject; pct=50")
	d.TXT("_dmarc.pctq.example", "v=DMARC1; p=quarantine; pct=0")
	d.TXT("_dmarc.two.example", "v=DMARC1; p=reject", "v=DMARC1; p=none")
	d.TXT("_dmarc.bad.example", "v=DMARC1; p=bogus")
	d.TXT("_dmarc.other.example", "v=spf1 -all", "v=DMARC1; p=reject")
	d.ServFail("_dmarc.temp.example")

	type tc struct {
		name    string
		from    string // RFC5322.From domain
		spf     mailauth.SPFResult
		dkim    string // signing domain, "" = unsigned
		sample  int
		result  string
		policy  string
		applied string
		action  mailauth.Action
	}
	fail := mailauth.SPFResult{Result: "fail", Identity: "mailfrom", Domain: "other.net"}
	cases := []tc{
		{"pass via SPF", "example.com", spfPass("example.com"), "", 0, "pass", "reject", "", mailauth.Deliver},
		{"pass via DKIM", "example.com", fail, "example.com", 0, "pass", "reject", "", mailauth.Deliver},
		{"unaligned SPF pass", "example.com", spfPass("other.net"), "", 0, "fail", "reject", "reject", mailauth.Reject},
		{"unaligned DKIM pass", "example.com", fail, "other.net", 0, "fail", "reject", "reject", mailauth.Reject},
		{"relaxed DKIM subdomain", "example.com", fail, "mail.example.com", 0, "pass", "reject", "", mailauth.Deliver},
		{"relaxed SPF subdomain", "relaxed.example", spfPass("bounce.relaxed.example"), "", 0, "pass", "reject", "", mailauth.Deliver},
		{"strict SPF subdomain", "strict.example", spfPass("bounce.strict.example"), "", 0, "fail", "reject", "reject", mailauth.Reject},
		{"strict SPF exact", "strict.example", spfPass("strict.example"), "", 0, "pass", "reject", "", mailauth.Deliver},
		{"strict DKIM exact", "strict.example", fail, "strict.example", 0, "pass", "reject", "", mailauth.Deliver},
		{"quarantine", "quar.example", fail, "", 0, "fail", "quarantine", "quarantine", mailauth.Quarantine},
		{"p=none", "none.example", fail, "", 0, "fail", "none", "none", mailauth.Deliver},
		{"no record", "norecord.example", fail, "", 0, "none", "", "", mailauth.Deliver},
		{"org domain sp=", "sub.org.example", fail, "", 0, "fail", "quarantine", "quarantine", mailauth.Quarantine},
		{"org domain without sp=", "deep.sub.nosp.example", fail, "", 0, "fail", "reject", "reject", mailauth.Reject},
		{"org domain, subdomain DKIM", "sub.org.example", fail, "sub.org.example", 0, "pass", "quarantine", "", mailauth.Deliver},
		{"pct in sample", "pct.example", fail, "", 49, "fail", "reject", "reject", mailauth.Reject},
		{"pct out of sample", "pct.example", fail, "", 50, "fail", "reject", "quarantine", mailauth.Quarantine},
		{"pct=0 quarantine", "pctq.example", fail, "", 0, "fail", "quarantine", "none", mailauth.Deliver},
		{"two records", "two.example", fail, "", 0, "none", "", "", mailauth.Deliver},
		{"bad record", "bad.example", fail, "", 0, "permerror", "", "", mailauth.Deliver},
		{"other TXT ignored", "other.example", fail, "", 0, "fail", "reject", "reject", mailauth.Reject},
		{"record temperror", "temp.example", fail, "", 0, "temperror", "", "", mailauth.Defer},
		{"SPF temperror", "example.com", mailauth.SPFResult{Result: "temperror", Identity: "mailfrom", Domain: "example.com"}, "", 0, "temperror", "reject", "", mailauth.Defer},
		{"SPF temperror, DKIM pass", "example.com", mailauth.SPFResult{Result: "temperror", Identity: "mailfrom", Domain: "example.com"}, "example.com", 0, "pass", "reject", "", mailauth.Deliver},
		{"SPF temperror, p=none", "none.example", mailauth.SPFResult{Result: "temperror", Identity: "mailfrom", Domain: "none.example"}, "", 0, "temperror", "none", "", mailauth.Deliver},
		{"unrelated SPF temperror", "example.com", mailauth.SPFResult{Result: "temperror", Identity: "mailfrom", Domain: "other.net"}, "", 0, "fail", "reject", "reject", mailauth.Reject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(d)
			c.Sample = func() int { return tc.sample }
			m := msg("a@" + tc.from)
			if tc.dkim != "" {
				m = key.Sign(t, m, tc.dkim, "k")
			}
			r := check(t, c, tc.spf, m)
			got := r.DMARC
			if got.Result != tc.result || got.Policy != tc.policy || got.Applied != tc.applied || r.Action != tc.action {
				t.Errorf("DMARC %+v, action %v; want %s p=%q applied %q, %v", got, r.Action, tc.result, tc.policy, tc.applied, tc.action)
			}
			if got.FromDomain != tc.from {
				t.Errorf("FromDomain %q", got.FromDomain)
			}
		})
	}
}

// TestDMARCFrom: RFC 7489 §6.6.1, a message without a single author
// domain.
func TestDMARCFrom(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	d.TXT("_dmarc.example.com", "v=DMARC1; p=none")
	c := newChecker(d)
	body := "To: <alice@example.org>\r\nSubject: x\r\n\r\nHi.\r\n"
	cases := []struct {
		name, hdr, from, result string
		action                  mailauth.Action
	}{
		{"one", "From: a@example.com\r\n", "example.com", "fail", mailauth.Deliver},
		{"two addresses, one domain", "From: a@example.com, b@EXAMPLE.com\r\n", "example.com", "fail", mailauth.Deliver},
		{"folded", "From: Someone\r\n <a@example.com>\r\n", "example.com", "fail", mailauth.Deliver},
		{"encoded name", "From: =?x-unknown?q?Jos=E9?= <a@example.com>\r\n", "example.com", "fail", mailauth.Deliver},
		{"none", "", "", "none", mailauth.Deliver},
		{"two fields", "From: a@example.com\r\nFrom: b@example.com\r\n", "", "permerror", mailauth.Reject},
		{"two domains", "From: a@example.com, b@example.net\r\n", "", "permerror", mailauth.Reject},
		{"unreadable", "From: <a@example.com\r\n", "", "permerror", mailauth.Reject},
		{"group without address", "From: undisclosed:;\r\n", "", "permerror", mailauth.Reject},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, c, noSPF, tc.hdr+body)
			if r.DMARC.Result != tc.result || r.DMARC.FromDomain != tc.from || r.Action != tc.action {
				t.Errorf("DMARC %+v action %v, want %s from %q %v", r.DMARC, r.Action, tc.result, tc.from, tc.action)
			}
		})
	}
}

// TestModes: what each Mode does with each policy.
func TestModes(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	d.TXT("_dmarc.rej.example", "v=DMARC1; p=reject")
	d.TXT("_dmarc.quar.example", "v=DMARC1; p=quarantine")
	d.TXT("_dmarc.none.example", "v=DMARC1; p=none")
	d.ServFail("_dmarc.temp.example")
	want := map[mailauth.Mode]map[string]mailauth.Action{
		mailauth.Enforce:        {"rej": mailauth.Reject, "quar": mailauth.Quarantine, "none": mailauth.Deliver, "temp": mailauth.Defer},
		mailauth.QuarantineOnly: {"rej": mailauth.Quarantine, "quar": mailauth.Quarantine, "none": mailauth.Deliver, "temp": mailauth.Defer},
		mailauth.ReportOnly:     {"rej": mailauth.Deliver, "quar": mailauth.Deliver, "none": mailauth.Deliver, "temp": mailauth.Deliver},
	}
	for mode, acts := range want {
		for dom, act := range acts {
			c := newChecker(d)
			c.Mode = mode
			r := check(t, c, noSPF, msg("a@"+dom+".example"))
			if r.Action != act {
				t.Errorf("mode %v, %s: %v, want %v (%+v)", mode, dom, r.Action, act, r.DMARC)
			}
		}
	}
	for _, s := range []string{"enforce", "quarantine-only", "report-only"} {
		m, err := mailauth.ParseMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := mailauth.ParseMode("strict"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
}

// TestDKIMBlankRun: a signed body with a huge run of empty lines is not
// verified (permerror), at bounded cost; a long but bounded run verifies.
func TestDKIMBlankRun(t *testing.T) {
	t.Parallel()
	d := mailauthtest.NewDNS(t)
	key := mailauthtest.Ed25519(t)
	key.Publish(t, d, "example.com", "k")
	c := newChecker(d)
	ok := key.Sign(t, msg("a@example.com")+strings.Repeat("\r\n", 1000)+"end\r\n", "example.com", "k")
	if r := check(t, c, noSPF, ok); len(r.DKIM) != 1 || r.DKIM[0].Result != "pass" {
		t.Errorf("1000 empty lines: %+v", r.DKIM)
	}
	huge := key.Sign(t, msg("a@example.com"), "example.com", "k") + strings.Repeat("\r\n", 8<<20)
	r := check(t, c, noSPF, huge)
	if len(r.DKIM) != 1 || r.DKIM[0].Result != "permerror" || r.DKIM[0].Domain != "example.com" {
		t.Errorf("8 Mi empty lines: %+v", r.DKIM)
	}
}
