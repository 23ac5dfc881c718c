package smtpd_test

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSmugglingSequences: the sequences of SMTP smuggling (CVE-2023-51764
// class) never end the data: the message runs to the real CRLF.CRLF and the
// "smuggled" commands inside it are never executed; the connection stays
// in step. A message with a bare CR or NUL is refused (554 5.6.0); one
// with bare LF line endings is stored with CRLF (Postfix's
// smtpd_forbid_bare_newline = normalize), the smuggled text in it as
// content, its "." line too.
func TestSmugglingSequences(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	smuggled := "MAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nFrom: evil\r\n\r\nsmuggled\r\n"
	cases := []struct {
		name, end string
		want      int
		stored    string // with 250: the stored body's end, after "body"
	}{
		{`\n.\n`, "\n.\n", 250, "\r\n.\r\n" + smuggled},
		{`\n.\r\n`, "\n.\r\n", 250, "\r\n.\r\n" + smuggled},
		{`\r.\r\n`, "\r.\r\n", 554, ""},
		{`\r\n\x00.\r\n`, "\r\n\x00.\r\n", 554, ""},
		{`\r\n.\n`, "\r\n.\n", 250, "\r\n.\r\n" + smuggled},
		{`\r\n.\r\r\n`, "\r\n.\r\r\n", 554, ""},
		{`\r\r\n.\r\n`, "\r\r\n.\r\n", 554, ""},
		{`\n..\n`, "\n..\n", 250, "\r\n..\r\n" + smuggled}, // no unstuffing after a bare LF
		{`\n.\n\n.\n`, "\n.\n\n.\n", 250, "\r\n.\r\n\r\n.\r\n" + smuggled},
		{`bare CR in line`, "\r\nab\rcd\r\n", 554, ""},
		{`bare LF in header`, "", 250, ""}, // see below: stored with CRLF
		{`clean`, "\r\n", 250, "\r\n"},
	}
	var want []string // alice's messages
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, e.inbound)
			c.ehlo("client.example")
			c.cmd("MAIL FROM:<sender@remote.example>", 250)
			c.cmd("RCPT TO:<alice@example.org>", 250)
			c.cmd("DATA", 354)
			hdr := "From: <sender@remote.example>\r\nSubject: test\r\n\r\n"
			msg := hdr + "body"
			if tc.name == "bare LF in header" {
				msg = "From: <sender@remote.example>\nSubject: test\r\n\r\nbody"
			}
			msg += tc.end
			if tc.name != "clean" && tc.name != "bare LF in header" {
				msg += smuggled
			}
			c.send(msg + "\r\n.\r\n")
			r := c.expect(tc.want)
			if tc.want == 554 && !strings.HasPrefix(r.Lines[0], "5.6.0") {
				t.Errorf("reply %v", r)
			}
			if tc.want == 250 {
				want = append(want, hdr+"body"+tc.stored+"\r\n") // the line before the end marker
			}
			// In step: the next reply is the QUIT's.
			c.cmd("QUIT", 221)
		})
	}
	if n := len(e.inbox(e.bob)); n != 0 {
		t.Errorf("bob received %d smuggled messages", n)
	}
	got := e.inbox(e.alice)
	if len(got) != len(want) {
		t.Fatalf("alice has %d messages, want %d", len(got), len(want))
	}
	for i, m := range got {
		if _, rest := body(t, m); string(rest) != want[i] {
			t.Errorf("message %d stored as\n%q\nwant\n%q", i, rest, want[i])
		}
	}
}

// TestBareNewlineInCommands: a bare CR or LF in a command line ends the
// connection with a 5xx (RFC 5321 §2.3.8), also inside TLS.
func TestBareNewlineInCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct{ name, before, bad string }{
		{"LF-terminated EHLO", "", "EHLO client.example\n"},
		{"LF-terminated MAIL", "EHLO client.example\r\n", "MAIL FROM:<a@remote.example>\nRCPT TO:<alice@example.org>\r\n"},
		{"CR inside line", "EHLO client.example\r\n", "NOOP\rRSET\r\n"},
		{"CR without LF", "EHLO client.example\r\n", "NOOP\rX"},
		{"LF in SASL response", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.bad == "" {
				c := dial(t, e.submission)
				c.ehlo("client.example")
				c.cmd("AUTH PLAIN", 334)
				c.send(plain("alice@example.org", alicePass) + "\n")
				c.expect(500, "5.5.2")
				c.expectClosed()
				return
			}
			c := dial(t, e.inbound)
			if tc.before != "" {
				c.send(tc.before)
				c.expect(250)
			}
			c.send(tc.bad)
			c.expect(500, "5.5.2 Bare CR or LF")
			c.expectClosed()
		})
	}
	t.Run("inside TLS", func(t *testing.T) {
		c := dial(t, e.inbound)
		c.ehlo("client.example")
		c.cmd("STARTTLS", 220)
		c.startTLS()
		c.send("EHLO client.example\n")
		c.expect(500, "5.5.2")
		c.expectClosed()
	})
}

// TestSTARTTLSPipelining: plaintext sent after STARTTLS in the same
// packet is discarded, never executed inside TLS (RFC 3207 §4.2,
// CVE-2011-0411); the transaction and greeting are reset.
func TestSTARTTLSPipelining(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, addr := range []string{e.inbound, e.submission} {
		c := dial(t, addr)
		c.ehlo("client.example")
		c.send("STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<bob@example.org>\r\n")
		c.expect(220, "2.0.0")
		c.startTLS()
		// The first reply inside TLS is the one to our command.
		c.cmd("NOOP", 250)
		c.cmd("RCPT TO:<bob@example.org>", 503) // no greeting, no MAIL was executed
		c.cmd("MAIL FROM:<sender@remote.example>", 503, "5.5.1 Send EHLO first")
		ext := c.ehlo("client.example")
		if _, ok := ext["STARTTLS"]; ok {
			t.Errorf("STARTTLS offered inside TLS")
		}
		c.cmd("STARTTLS", 503)
		c.cmd("QUIT", 221)
	}
	// A transaction begun before STARTTLS does not survive it.
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("STARTTLS", 220)
	c.startTLS()
	c.ehlo("client.example")
	c.cmd("DATA", 503)
	c.cmd("STARTTLS x", 501)
	if n := len(e.inbox(e.bob)) + len(e.inbox(e.alice)); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}

func TestLineTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.send("NOOP " + strings.Repeat("a", 3000) + "\r\n")
	c.expect(500, "5.5.2 Line too long")
	c.expectClosed()
	// AUTH lines may be longer (RFC 4954 §4): a 5000-octet initial
	// response is read (and refused by the auth module), not cut off.
	c = dial(t, e.submission)
	c.ehlo("client.example")
	c.cmd("AUTH PLAIN "+b64("\x00alice@example.org\x00"+strings.Repeat("p", 3700)), 501, "5.5.2 Malformed")
	c.cmd("NOOP", 250)
}

func TestTooManyErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.MaxErrors = 4 }))
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	for i := 0; i < 3; i++ {
		c.cmd(fmt.Sprintf("RCPT TO:<x%d@remote.example>", i), 554)
	}
	c.send("RCPT TO:<nobody@example.org>\r\n")
	c.expect(550)
	c.expect(421, "4.7.0")
	c.expectClosed()
}

func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.MaxConnsPerIP = 2 }))
	c1 := dial(t, e.inbound)
	c2 := dial(t, e.submission) // the limit spans all listeners
	c3 := dialNoGreet(t, e.inbound)
	c3.expect(421, "4.7.0")
	c3.expectClosed()
	c1.cmd("QUIT", 221)
	c1.expectClosed()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dialNoGreet(t, e.inbound)
		r, err := c.read()
		if err == nil && r.Code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %v %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2.cmd("NOOP", 250)
}

func TestCommandTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.CommandTimeout = 300 * time.Millisecond }))
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	time.Sleep(600 * time.Millisecond)
	c.expect(421, "4.4.2")
	c.expectClosed()
}

// TestDataTimeouts: a slow but live upload finishes (the inactivity
// timeout restarts with every read); a stalled one and one that exceeds
// the whole-message timeout are cut off.
func TestDataTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.DataTimeout = 400 * time.Millisecond
		c.MessageTimeout = 3 * time.Second
		c.MinDataRate = -1 // TestDataMinRate tests the minimum rate
	}))
	start := func() *client {
		c := dial(t, e.inbound)
		c.ehlo("client.example")
		c.cmd("MAIL FROM:<sender@remote.example>", 250)
		c.cmd("RCPT TO:<alice@example.org>", 250)
		c.cmd("DATA", 354)
		c.send(simpleMsg)
		return c
	}
	t.Run("slow but live", func(t *testing.T) {
		c := start()
		for i := 0; i < 8; i++ { // 1.6 s in all, 4× the inactivity timeout
			time.Sleep(200 * time.Millisecond)
			c.send(fmt.Sprintf("line %d\r\n", i))
		}
		c.send(".\r\n")
		c.expect(250)
	})
	t.Run("stalled", func(t *testing.T) {
		c := start()
		time.Sleep(800 * time.Millisecond)
		c.expect(421, "4.4.2")
		c.expectClosed()
	})
	t.Run("whole message", func(t *testing.T) {
		c := start()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			if _, err := c.conn.Write([]byte("more\r\n")); err != nil {
				break
			}
		}
		r, err := c.read()
		if err != nil || r.Code != 421 {
			t.Fatalf("want 421, got %v %v", r, err)
		}
	})
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestSizeLimits: SIZE (RFC 1870) is enforced on the declaration, on DATA
// and on BDAT, nothing is stored, and the session continues.
func TestSizeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.MaxMessageSize = 64 << 10
		c.MaxHeaderBytes = 2048
	}))
	c := dial(t, e.inbound)
	if got := c.ehlo("client.example")["SIZE"]; got != "65536" {
		t.Errorf("SIZE %q", got)
	}
	c.cmd("MAIL FROM:<sender@remote.example> SIZE=70000", 552, "5.3.4")
	big := simpleMsg + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 70)
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(big + ".\r\n")
	c.expect(552, "5.3.4")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	c.expect(552, "5.3.4")
	// Header section over its bound.
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("X-Big: " + strings.Repeat("h", 900) + "\r\n X" + strings.Repeat("h", 900) + "\r\n X" + strings.Repeat("h", 900) + "\r\n\r\nbody\r\n.\r\n")
	c.expect(552, "5.3.4 Message header")
	// A big body under a small header section is fine.
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 50) + ".\r\n")
	c.expect(250)
	c.cmd("QUIT", 221)
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

func TestNULRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + "a\x00b\r\n.\r\n")
	c.expect(554, "5.6.0")
}

// TestImplicitTLSReceived: on 465 the Received: field records TLS and the
// authenticated user, never the password.
func TestImplicitTLSReceived(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dialTLS(t, e.submissions)
	ext := c.ehlo("client.example")
	if _, ok := ext["STARTTLS"]; ok {
		t.Errorf("STARTTLS offered on implicit TLS")
	}
	if ext["AUTH"] != "PLAIN LOGIN" {
		t.Errorf("AUTH = %q", ext["AUTH"])
	}
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nhi\r\n.\r\n")
	c.expect(250)
	got := e.inbox(e.bob)
	if len(got) != 1 {
		t.Fatalf("bob has %d messages", len(got))
	}
	trace, _ := body(t, got[0])
	state := c.conn.(*tls.Conn).ConnectionState()
	for _, s := range []string{
		"with ESMTPSA id ",
		"(using TLS" + tls.VersionName(state.Version)[4:] + " with cipher " + tls.CipherSuiteName(state.CipherSuite) + ")",
		"(authenticated user alice@example.org)",
	} {
		if !strings.Contains(trace, s) {
			t.Errorf("trace lacks %q:\n%s", s, trace)
		}
	}
	if strings.Contains(string(got[0]), alicePass) || strings.Contains(string(got[0]), plain("alice@example.org", alicePass)) {
		t.Errorf("password in stored message")
	}
	if n := len(e.mailbox(e.alice, "Sent")); n != 0 {
		t.Errorf("a copy went to alice's Sent")
	}
}
