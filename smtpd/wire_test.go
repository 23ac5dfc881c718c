package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestMailParams: MAIL and RCPT parameters (RFC 5321 §4.1.2) of the
// extensions offered, and refusals for the rest.
func TestMailParams(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.MaxErrors = 100 }))
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	for _, tc := range []struct {
		line string
		want string // reply code and enhanced code
	}{
		// RFC 1870 §6: over the limit is 552 whatever the length.
		{"MAIL FROM:<s@remote.example> SIZE=999999999999999999999", "552 5.3.4"},
		{"MAIL FROM:<s@remote.example> SIZE=1048577", "552 5.3.4"},
		{"MAIL FROM:<s@remote.example> SIZE=12x", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> SIZE=", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> BODY=BINARYMIME", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> SMTPUTF8=yes", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> RET=ALL", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> ENVID=" + strings.Repeat("x", 101), "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> ENVID=a+2", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> AUTH=bad", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> SIZE=1 SIZE=2", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example>" + strings.Repeat(" X-P=1", 11), "501 5.5.4"},
		{"MAIL FROM:<s@remote.example> X-UNKNOWN=1", "555 5.5.4"}, // RFC 5321 §4.1.1.11
		{"MAIL FROM:<s@remote.example> =1", "501 5.5.4"},
		{"MAIL FROM:<s@remote.example>junk", "501 5.5.2"},
		{"MAIL FROM:<s@remote.example", "501 5.5.2"},
		{"MAIL TO:<s@remote.example>", "501 5.5.2"},
		{"MAIL FROM:<s@remote.example> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=id+2B1 AUTH=<>", "250 2.1.0"},
		{"RCPT TO:<alice@example.org> NOTIFY=NEVER,SUCCESS", "501 5.5.4"},
		{"RCPT TO:<alice@example.org> NOTIFY=FAILURE,FAILURE", "501 5.5.4"},
		{"RCPT TO:<alice@example.org> ORCPT=x400;abc", "501 5.5.4"},
		{"RCPT TO:<alice@example.org> ORCPT=rfc822;a+ZZ", "501 5.5.4"},
		{"RCPT TO:<alice@example.org> X-UNKNOWN", "555 5.5.4"},
		{"RCPT TO:<alice@example.org> NOTIFY=delay ORCPT=utf-8;j\\x{F6}rg@example.org", "250 2.1.5"},
		{"RCPT TO: <bob@example.org>", "250 2.1.5"}, // a space after the colon, as many clients send
		{"RCPT TO:alice@example.org", "250 2.1.5"},  // no angle brackets
	} {
		c.send(tc.line + "\r\n")
		r, err := c.read()
		must(t, err)
		if got := r.String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s, want %s", tc.line, got, tc.want)
		}
	}
	c.cmd("QUIT", 221)
}

// TestBDATBareLF: bare LF line endings in BDAT chunks are stored as CRLF,
// also when a CRLF is split between two chunks; nothing else changes.
func TestBDATBareLF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	chunks := []string{"Subject: lf\n\nline one\r", "\nline two\n.\n", "last\n"}
	for i, ch := range chunks {
		last := ""
		if i == len(chunks)-1 {
			last = " LAST"
		}
		c.send(fmt.Sprintf("BDAT %d%s\r\n%s", len(ch), last, ch))
		c.expect(250)
	}
	got := e.inbox(e.alice)
	if len(got) != 1 {
		t.Fatalf("alice has %d messages", len(got))
	}
	if _, rest := body(t, got[0]); string(rest) != "Subject: lf\r\n\r\nline one\r\nline two\r\n.\r\nlast\r\n" {
		t.Errorf("stored %q", rest)
	}
}

// TestEHLOAndSequence: the EHLO reply names the server first (RFC 5321
// §4.1.1.1); commands out of sequence get 503 (RFC 5321 §4.1.4); unknown
// commands 500; the pipelined group's replies come in order.
func TestEHLOAndSequence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.cmd("MAIL FROM:<s@remote.example>", 503, "5.5.1")
	c.send("BDAT 3 LAST\r\nabc") // greeting first; the chunk is still consumed
	c.expect(503)
	c.cmd("NOOP", 250)
	r := c.cmd("EHLO client.example", 250)
	if r.Lines[0] != "mx.example.org Hello client.example" {
		t.Errorf("EHLO first line %q", r.Lines[0])
	}
	c.cmd("XYZZY", 500, "5.5.2")
	c.cmd("EHLO", 501)
	c.cmd("VRFY alice", 252)
	c.cmd("EXPN list", 502)
	c.cmd("RCPT TO:<alice@example.org>", 503, "5.5.1")
	c.cmd("DATA", 503, "5.5.1")
	c.cmd("DATA x", 501)
	c.send("RSET\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nNOOP\r\n")
	for _, want := range []int{250, 250, 250, 550, 250} {
		c.expect(want)
	}
	c.cmd("QUIT", 221)
	c.expectClosed()
}
