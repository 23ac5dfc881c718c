package smtpd_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
)

func TestSubmissionAuthRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.submission)
	ext := c.ehlo("client.example")
	if ext["AUTH"] != "PLAIN LOGIN" {
		t.Errorf("AUTH on loopback = %q", ext["AUTH"])
	}
	if _, ok := ext["STARTTLS"]; !ok {
		t.Errorf("STARTTLS not offered")
	}
	c.cmd("MAIL FROM:<alice@example.org>", 530, "5.7.0")
	c.cmd("AUTH PLAIN "+plain("alice@example.org", "wrong-password"), 535, "5.7.8")
	c.cmd("AUTH CRAM-MD5", 504)
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 235)
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 503)
	c.cmd("STARTTLS", 503, "5.5.1 STARTTLS not permitted after AUTH")

	// Senders: own address, case-insensitive, +tag, aliases.
	for _, from := range []string{"alice@example.org", "Alice@Example.ORG", "alice+news@example.org", "sales@example.org", "SALES+x@example.org"} {
		c.cmd("MAIL FROM:<"+from+">", 250)
		c.cmd("RSET", 250)
	}
	// Not hers: another account, a list alias she is one of several
	// targets of is still hers; catch-alls are not.
	for _, from := range []string{"bob@example.org", "", "anyone@catchall.example", "alice@example.org.evil.example", "alice%example.org@evil.example"} {
		c.cmd("MAIL FROM:<"+from+">", 553, "5.7.1")
	}
	c.cmd("MAIL FROM:<list@example.org>", 250)
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 503)
	c.cmd("RSET", 250)

	// Local delivery, and a recipient elsewhere queued (outbound_test.go).
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<friend@elsewhere.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("From: \"Alice A.\" <alice+x@example.org>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nhello bob\r\n.\r\n")
	c.expect(250)
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob has %d messages", n)
	}
	if n := len(e.mailbox(e.alice, "Sent")) + len(e.inbox(e.alice)); n != 0 {
		t.Errorf("alice has %d messages (Sent copies are the client's job)", n)
	}
}

// TestSubmissionFromHeader: the From: header must name only addresses the
// account owns.
func TestSubmissionFromHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	cases := []struct {
		header string
		want   int
	}{
		{"From: alice@example.org\r\n", 250},
		{"from:   =?UTF-8?Q?Alic=C3=A9?=\r\n <ALICE@example.org>\r\n", 250},
		{"From: Sales <sales@example.org>, alice@example.org\r\n", 250},
		{"From: bob@example.org\r\n", 553},
		{"From: alice@example.org, bob@example.org\r\n", 553},
		{"From: alice@example.org\r\nFrom: bob@example.org\r\n", 553},
		{"Sender: alice@example.org\r\n", 553},
		{"From: <not an address\r\n", 553},
		{"X-From: bob@example.org\r\nFrom: =?x-unknown?Q?=FF?= <alice@example.org>\r\n", 250},
	}
	delivered := 0
	for _, tc := range cases {
		c.cmd("MAIL FROM:<alice@example.org>", 250)
		c.cmd("RCPT TO:<bob@example.org>", 250)
		c.cmd("DATA", 354)
		c.send(tc.header + "Subject: t\r\n\r\nbody\r\n.\r\n")
		r := c.expect(tc.want)
		if tc.want == 553 && !strings.HasPrefix(r.Lines[0], "5.7.1") {
			t.Errorf("%q: %v", tc.header, r)
		}
		if tc.want == 250 {
			delivered++
		}
	}
	if n := len(e.inbox(e.bob)); n != delivered {
		t.Errorf("bob has %d messages, want %d", n, delivered)
	}
}

func TestSubmissionAuthLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.cmd("AUTH LOGIN", 334)
	c.cmd(b64("bob@example.org"), 334)
	c.cmd(b64(bobPass), 235)
	c.cmd("MAIL FROM:<bob@example.org>", 250)
	// Cancelled exchange (RFC 4954 §4).
	c = dial(t, e.submission)
	c.ehlo("client.example")
	c.cmd("AUTH LOGIN", 334)
	c.cmd("*", 501)
	c.cmd("MAIL FROM:<bob@example.org>", 530)
}

// TestSubmissionPlaintextPolicy exercises a non-loopback client through a
// trusted PROXY header: no AUTH without TLS, AUTH after STARTTLS, and
// Received: shows the real client.
func TestSubmissionPlaintextPolicy(t *testing.T) {
	t.Parallel()
	proxied := func(c *smtpdConfig) {
		c.TrustedProxies = []netip.Prefix{mustPrefix("127.0.0.0/8")}
	}
	e := newEnv(t, withConfig(proxied))
	c := dialNoGreet(t, e.submission)
	c.send(proxyV1("192.0.2.1"))
	c.expect(220)
	ext := c.ehlo("client.example")
	if _, ok := ext["AUTH"]; ok {
		t.Errorf("AUTH offered in plaintext to a remote client: %v", ext)
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 538, "5.7.11")
	c.cmd("MAIL FROM:<alice@example.org>", 530)
	c.cmd("STARTTLS", 220)
	c.startTLS()
	ext = c.ehlo("client.example")
	if ext["AUTH"] != "PLAIN LOGIN" {
		t.Errorf("AUTH inside TLS = %q", ext["AUTH"])
	}
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("From: alice@example.org\r\n\r\nvia proxy\r\n.\r\n")
	c.expect(250)
	got := e.inbox(e.bob)
	if len(got) != 1 {
		t.Fatalf("bob has %d messages", len(got))
	}
	trace, _ := body(t, got[0])
	if !strings.Contains(trace, "Received: from client.example ([192.0.2.1])") || !strings.Contains(trace, "with ESMTPSA") {
		t.Errorf("trace fields:\n%s", trace)
	}

	// PROXY v2 works too; a trusted peer without a header is dropped.
	c = dialNoGreet(t, e.inbound)
	c.send("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + "\xc6\x33\x64\x07" + "\xc0\x00\x02\xfe" + "\x9c\x40\x00\x19")
	c.expect(220)
	c.ehlo("v2.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: v2\r\n\r\nx\r\n.\r\n")
	c.expect(250)
	if got := e.inbox(e.alice); len(got) != 1 || !bytes.Contains(got[0], []byte("([198.51.100.7])")) {
		t.Errorf("PROXY v2 client not recorded: %q", got)
	}
	c = dialNoGreet(t, e.inbound)
	c.send("EHLO no-proxy-header.example\r\n")
	c.expectClosed()

	// With AllowInsecureAuth the remote client may authenticate in
	// plaintext.
	e2 := newEnv(t, withConfig(func(c *smtpdConfig) { proxied(c); c.AllowInsecureAuth = true }))
	c = dialNoGreet(t, e2.submission)
	c.send(proxyV1("192.0.2.1"))
	c.expect(220)
	if ext := c.ehlo("client.example"); ext["AUTH"] != "PLAIN LOGIN" {
		t.Errorf("AUTH with AllowInsecureAuth = %q", ext["AUTH"])
	}
	c.login("alice@example.org", alicePass)
}

// TestSubmissionThrottling: repeated failures are throttled by the shared
// auth module and reported as a temporary failure.
func TestSubmissionThrottling(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withThrottle(auth.ThrottlePolicy{
		BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, AccountMaxDelay: 5 * time.Millisecond,
		PairFree: 1, PairBlock: 3, IPFree: 1, IPBlock: 100,
	}), withConfig(func(c *smtpdConfig) { c.MaxErrors = 100 }))
	c := dial(t, e.submission)
	c.ehlo("client.example")
	var last reply
	for i := 0; i < 6; i++ {
		c.send("AUTH PLAIN " + plain("alice@example.org", "nope") + "\r\n")
		r, err := c.read()
		must(t, err)
		last = r
		if r.Code == 454 {
			break
		}
		if r.Code != 535 {
			t.Fatalf("attempt %d: %v", i, r)
		}
	}
	if last.Code != 454 || !strings.HasPrefix(last.Lines[0], "4.7.0 Too many failed logins") {
		t.Fatalf("never throttled; last reply %v", last)
	}
	// Even the right password is refused while throttled.
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 454)
}
