package smtpd_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailauth/mailauthtest"
	"github.com/postrider/postrider/mailstore"
)

// authDNS serves the sender domains of the inbound authentication tests
// (the client is 127.0.0.1):
//
//	sender.example    SPF pass, DKIM key "k", DMARC p=reject
//	attacker.example  SPF pass (the forger's own domain), no DMARC
//	bank.example      SPF for another host, DMARC p=reject
//	quar.example      SPF for another host, DMARC p=quarantine
//	lax.example       SPF for another host, DMARC p=none
//	example.org       (ours) SPF for another host, DMARC p=reject
func authDNS(t *testing.T) (*mailauthtest.DNS, mailauthtest.Key) {
	d := mailauthtest.NewDNS(t)
	key := mailauthtest.Ed25519(t)
	d.TXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")
	key.Publish(t, d, "sender.example", "k")
	d.TXT("_dmarc.sender.example", "v=DMARC1; p=reject")
	d.TXT("attacker.example", "v=spf1 ip4:127.0.0.1 -all")
	for dom, p := range map[string]string{"bank.example": "reject", "quar.example": "quarantine", "lax.example": "none", "example.org": "reject"} {
		d.TXT(dom, "v=spf1 ip4:192.0.2.1 -all")
		d.TXT("_dmarc."+dom, "v=DMARC1; p="+p)
	}
	return d, key
}

// withAuth turns the checks on, asking d, in mode.
func withAuth(d *mailauthtest.DNS, mode mailauth.Mode) envOption {
	return withConfig(func(c *smtpdConfig) {
		c.InboundAuth = &mailauth.Checker{Resolver: d.Resolver(), Mode: mode}
	})
}

func authMsg(from, subject string) string {
	return "From: <" + from + ">\r\nTo: <alice@example.org>\r\nSubject: " + subject +
		"\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@x>\r\n\r\nHello Alice.\r\n"
}

// authResults returns the Authentication-Results: field we added: the one
// right after our trace fields.
func authResults(t *testing.T, stored []byte) string {
	t.Helper()
	_, rest := body(t, stored)
	s := string(rest)
	if !strings.HasPrefix(s, "Authentication-Results: mx.example.org;\r\n") {
		t.Fatalf("no Authentication-Results: after the trace fields:\n%s", s)
	}
	end := strings.Index(s, "\r\n")
	for end+2 < len(s) && s[end+2] == '\t' {
		end += 2 + strings.Index(s[end+2:], "\r\n")
	}
	return s[:end+2]
}

func TestInboundAuthPass(t *testing.T) {
	t.Parallel()
	d, key := authDNS(t)
	e := newEnv(t, withAuth(d, mailauth.Enforce))
	signed := key.Sign(t, authMsg("news@sender.example", "pass"), "sender.example", "k")
	sendMail(t, e.inbound, "bounce@sender.example", []string{"alice@example.org"}, signed, 250)
	got := e.inbox(e.alice)
	if len(got) != 1 {
		t.Fatalf("alice has %d messages", len(got))
	}
	ar := authResults(t, got[0])
	for _, want := range []string{
		"\tspf=pass smtp.mailfrom=bounce@sender.example;\r\n",
		"\tdkim=pass header.d=sender.example header.s=k header.b=",
		"\tdmarc=pass (p=reject) header.from=sender.example\r\n",
	} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results: lacks %q:\n%s", want, ar)
		}
	}
	// The message itself follows, unchanged (the signature still verifies).
	if _, rest := body(t, got[0]); !strings.HasSuffix(string(rest), signed) {
		t.Errorf("stored message does not end with the message sent")
	}
}

// TestInboundAuthReject: a forgery of a p=reject domain (the forger's SPF
// passes for its own MAIL FROM domain, which does not align) is refused
// with 550 5.7.1 and nothing is stored, over DATA and BDAT; so is one that
// claims our own domain.
func TestInboundAuthReject(t *testing.T) {
	t.Parallel()
	d, _ := authDNS(t)
	e := newEnv(t, withAuth(d, mailauth.Enforce))
	r := sendMail(t, e.inbound, "x@attacker.example", []string{"alice@example.org", "bob@example.org"}, authMsg("ceo@bank.example", "forged"), 550)
	if !strings.HasPrefix(r.Lines[0], "5.7.1 ") || !strings.Contains(r.Lines[0], "bank.example") {
		t.Errorf("reply %v", r)
	}
	sendMail(t, e.inbound, "alice@example.org", []string{"bob@example.org"}, authMsg("alice@example.org", "ours"), 550)

	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<x@attacker.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	m := authMsg("ceo@bank.example", "bdat")
	c.send("BDAT 10\r\n" + m[:10])
	c.expect(250)
	c.send("BDAT " + strconv.Itoa(len(m)-10) + " LAST\r\n" + m[10:])
	c.expect(550, "5.7.1 ")
	// The session goes on.
	c.cmd("MAIL FROM:<bounce@sender.example>", 250)
	c.cmd("QUIT", 221)

	// Several From: domains: no single one to judge (RFC 7489 §6.6.1).
	sendMail(t, e.inbound, "x@attacker.example", []string{"alice@example.org"},
		"From: a@attacker.example, ceo@bank.example\r\nSubject: two\r\n\r\nx\r\n", 550)

	for _, a := range []mailstore.Account{e.alice, e.bob} {
		if n := len(e.inbox(a)) + len(e.mailbox(a, "Junk")); n != 0 {
			t.Errorf("%s has %d messages", a.Address, n)
		}
	}
	if v := counter(t, "postrider_smtp_messages_rejected_total", map[string]string{"role": "inbound", "reason": "dmarc_reject"}); v < 4 {
		t.Errorf("dmarc_reject counted %v times, want at least 4", v)
	}
	if v := counter(t, "postrider_smtp_auth_results_total", map[string]string{"method": "dmarc", "result": "fail"}); v < 3 {
		t.Errorf("dmarc=fail counted %v times", v)
	}
}

// TestInboundAuthQuarantine: p=quarantine puts the message in each
// recipient's Junk mailbox with $Junk; p=none delivers to INBOX.
func TestInboundAuthQuarantine(t *testing.T) {
	t.Parallel()
	d, _ := authDNS(t)
	e := newEnv(t, withAuth(d, mailauth.Enforce))
	sendMail(t, e.inbound, "x@attacker.example", []string{"alice@example.org", "bob@example.org"}, authMsg("billing@quar.example", "quar"), 250)
	for _, a := range []mailstore.Account{e.alice, e.bob} {
		junk := e.mailbox(a, "Junk")
		if len(junk) != 1 || len(e.inbox(a)) != 0 {
			t.Fatalf("%s: %d in Junk, %d in INBOX; want 1, 0", a.Address, len(junk), len(e.inbox(a)))
		}
		if ar := authResults(t, junk[0]); !strings.Contains(ar, "\tdmarc=fail (p=quarantine) header.from=quar.example\r\n") {
			t.Errorf("Authentication-Results:\n%s", ar)
		}
		mb, err := e.st.GetMailbox(context.Background(), a.ID, "Junk")
		must(t, err)
		ms, err := e.st.ListMessages(context.Background(), a.ID, mb.ID, nil)
		must(t, err)
		if len(ms) != 1 || len(ms[0].Flags.Keywords) != 1 || ms[0].Flags.Keywords[0] != "$Junk" {
			t.Errorf("%s: flags %+v, want $Junk", a.Address, ms[0].Flags)
		}
	}

	// A renamed junk mailbox is found by its special use; without one,
	// INBOX with $Junk.
	ctx := context.Background()
	must(t, e.st.RenameMailbox(ctx, e.alice.ID, "Junk", "Spam"))
	must(t, e.st.DeleteMailbox(ctx, e.bob.ID, "Junk"))
	sendMail(t, e.inbound, "x@attacker.example", []string{"alice@example.org", "bob@example.org"}, authMsg("billing@quar.example", "quar2"), 250)
	if n := len(e.mailbox(e.alice, "Spam")); n != 2 {
		t.Errorf("alice's Spam has %d messages, want 2", n)
	}
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob's INBOX has %d messages, want 1", n)
	}

	sendMail(t, e.inbound, "x@attacker.example", []string{"carol@example.org"}, authMsg("x@lax.example", "lax"), 250)
	in := e.inbox(e.carol)
	if len(in) != 1 || !strings.Contains(authResults(t, in[0]), "\tdmarc=fail (p=none) header.from=lax.example\r\n") {
		t.Errorf("p=none: carol's INBOX has %d messages", len(in))
	}
}

// TestInboundAuthModes: quarantine-only files a p=reject forgery as junk;
// report-only delivers it to INBOX with the verdict.
func TestInboundAuthModes(t *testing.T) {
	t.Parallel()
	d, _ := authDNS(t)
	q := newEnv(t, withAuth(d, mailauth.QuarantineOnly))
	sendMail(t, q.inbound, "x@attacker.example", []string{"alice@example.org"}, authMsg("ceo@bank.example", "q"), 250)
	if n := len(q.mailbox(q.alice, "Junk")); n != 1 {
		t.Errorf("quarantine-only: %d in Junk", n)
	}
	r := newEnv(t, withAuth(d, mailauth.ReportOnly))
	sendMail(t, r.inbound, "x@attacker.example", []string{"alice@example.org"}, authMsg("ceo@bank.example", "r"), 250)
	in := r.inbox(r.alice)
	if len(in) != 1 || !strings.Contains(authResults(t, in[0]), "\tdmarc=fail (p=reject) header.from=bank.example\r\n") {
		t.Errorf("report-only: %d in INBOX", len(in))
	}
}

// TestInboundAuthStripsForged: Authentication-Results: fields that claim
// our host name are removed; another host's are kept; with the checks off
// too, where no field of ours is added.
func TestInboundAuthStripsForged(t *testing.T) {
	t.Parallel()
	d, key := authDNS(t)
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.example; dmarc=pass\r\n" +
		"Authentication-Results: MX.EXAMPLE.ORG (we are) ;\r\n\tspf=pass\r\n" +
		"Authentication-Results: relay.sender.example; spf=pass\r\n"
	m := key.Sign(t, authMsg("news@sender.example", "strip"), "sender.example", "k")
	m = forged + m
	for _, on := range []bool{true, false} {
		var opts []envOption
		if on {
			opts = append(opts, withAuth(d, mailauth.Enforce))
		}
		e := newEnv(t, opts...)
		sendMail(t, e.inbound, "bounce@sender.example", []string{"alice@example.org"}, m, 250)
		got := e.inbox(e.alice)
		if len(got) != 1 {
			t.Fatalf("checks %v: %d messages", on, len(got))
		}
		_, rest := body(t, got[0])
		s := string(rest)
		if n := strings.Count(strings.ToLower(s), "authentication-results: mx.example.org"); on && n != 1 || !on && n != 0 {
			t.Errorf("checks %v: %d fields of ours:\n%s", on, n, s)
		}
		if strings.Contains(s, "header.d=bank.example") || strings.Contains(s, "(we are)") {
			t.Errorf("checks %v: forged field kept:\n%s", on, s)
		}
		if !strings.Contains(s, "Authentication-Results: relay.sender.example; spf=pass\r\n") {
			t.Errorf("checks %v: another host's field removed:\n%s", on, s)
		}
		if on && !strings.Contains(authResults(t, got[0]), "dkim=pass") {
			t.Errorf("the signature does not cover A-R fields, so it still verifies")
		}
	}
}

// TestInboundAuthDNSDown: with the DNS server failing, or gone, a message
// gets 451 4.4.3 and nothing is stored; mail from submission is not
// checked.
func TestInboundAuthDNSDown(t *testing.T) {
	t.Parallel()
	d, key := authDNS(t)
	var logs syncBuffer
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.InboundAuth = &mailauth.Checker{Resolver: d.Resolver()}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}))
	d.Down(true)
	signed := key.Sign(t, authMsg("news@sender.example", "down"), "sender.example", "k")
	sendMail(t, e.inbound, "bounce@sender.example", []string{"alice@example.org"}, signed, 451)
	gone := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.InboundAuth = &mailauth.Checker{Resolver: mailauthtest.GoneResolver(t)}
	}))
	sendMail(t, gone.inbound, "bounce@sender.example", []string{"alice@example.org"}, signed, 451)
	if n := len(gone.inbox(gone.alice)) + len(gone.mailbox(gone.alice, "Junk")); n != 0 {
		t.Errorf("DNS gone: alice has %d messages", n)
	}
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<x@attacker.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(authMsg("ceo@bank.example", "down2") + ".\r\n")
	c.expect(451, "4.4.3 ")
	c.cmd("QUIT", 221)
	if n := len(e.inbox(e.alice)) + len(e.mailbox(e.alice, "Junk")); n != 0 {
		t.Errorf("alice has %d messages", n)
	}

	s := dial(t, e.submission)
	s.ehlo("client.example")
	s.login("bob@example.org", bobPass)
	s.cmd("MAIL FROM:<bob@example.org>", 250)
	s.cmd("RCPT TO:<alice@example.org>", 250)
	s.cmd("DATA", 354)
	s.send("From: bob@example.org\r\nSubject: internal\r\n\r\nx\r\n.\r\n")
	s.expect(250)
	got := e.inbox(e.alice)
	if len(got) != 1 || strings.Contains(string(got[0]), "Authentication-Results:") {
		t.Errorf("submission: %d messages, or checked", len(got))
	}
	if l := logs.String(); !strings.Contains(l, "reason=auth_temperror") || !strings.Contains(l, "dmarc=temperror") {
		t.Errorf("the refusal is not logged with its verdict:\n%s", l)
	}
}

// TestInboundAuthLog: the delivery log line has the verdict, and no
// message content.
func TestInboundAuthLog(t *testing.T) {
	t.Parallel()
	d, key := authDNS(t)
	var logs syncBuffer
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.InboundAuth = &mailauth.Checker{Resolver: d.Resolver()}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}))
	signed := key.Sign(t, authMsg("news@sender.example", "secret-subject"), "sender.example", "k")
	sendMail(t, e.inbound, "bounce@sender.example", []string{"alice@example.org"}, signed, 250)
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "msg=delivered") {
			line = l
		}
	}
	for _, want := range []string{"spf=pass", "dkim=pass", "dmarc=pass", "from_domain=sender.example", "auth_action=deliver"} {
		if !strings.Contains(line, want) {
			t.Errorf("delivery log line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(logs.String(), "secret-subject") || strings.Contains(logs.String(), "Hello Alice") {
		t.Error("message content logged")
	}
}
