package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestBDAT: CHUNKING (RFC 3030) — chunks join exactly, a CRLF may be split
// across chunks, the whole command group may be pipelined, refused chunks
// are still read so the session stays in step.
func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")

	msg := "From: <s@remote.example>\r\nSubject: chunks\r\n\r\nline one\r\n.line with dot\r\nend\r\n"
	cut1, cut2 := strings.Index(msg, "one\r")+4, strings.Index(msg, "end") // first cut splits a CRLF
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.send(fmt.Sprintf("BDAT %d\r\n%s", cut1, msg[:cut1]))
	c.expect(250)
	c.send(fmt.Sprintf("BDAT %d\r\n%s", cut2-cut1, msg[cut1:cut2]))
	c.expect(250)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-cut2, msg[cut2:]))
	c.expect(250, "2.0.0 OK: message delivered")

	// Pipelined: MAIL, RCPT, BDAT LAST and the next transaction's MAIL.
	c.send(fmt.Sprintf("MAIL FROM:<s@remote.example>\r\nRCPT TO:<bob@example.org>\r\nBDAT %d LAST\r\n%sMAIL FROM:<s2@remote.example>\r\n", len(msg), msg))
	c.expect(250)
	c.expect(250)
	c.expect(250, "2.0.0 OK: message delivered")
	c.expect(250)
	c.cmd("RSET", 250)

	// BDAT without a transaction: refused, chunk consumed (its content,
	// which looks like commands, is not executed).
	junk := "RCPT TO:<bob@example.org>\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(junk), junk))
	c.expect(503)
	c.cmd("NOOP", 250)

	// Bare CR inside a chunk: the chunk is refused, and with it the
	// transaction (RFC 3030 §2); the next chunk finds no transaction.
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	bad := "Subject: x\r\n\r\nbare\rCR\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(bad), bad))
	c.expect(554, "5.6.0")
	c.send("BDAT 4 LAST\r\nxx\r\n")
	c.expect(503)

	// Empty message; BDAT 0 LAST.
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("BDAT 0 LAST", 250)

	// RSET in the middle of a chunked message discards it.
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.send("BDAT 5\r\nabcde")
	c.expect(250)
	c.cmd("RSET", 250)
	c.cmd("BDAT x", 501)
	c.cmd("QUIT", 221)

	a, b := e.inbox(e.alice), e.inbox(e.bob)
	if len(a) != 1 || len(b) != 2 {
		t.Fatalf("alice %d bob %d messages, want 1 and 2", len(a), len(b))
	}
	for _, m := range [][]byte{a[0], b[0]} {
		if _, rest := body(t, m); string(rest) != msg {
			t.Errorf("stored %q, want %q", rest, msg)
		}
	}
	if _, rest := body(t, b[1]); len(rest) != 0 {
		t.Errorf("empty message stored as %q", rest)
	}
}

// TestDATAThenBDAT: a DATA message refused by the raw line check (a bare CR
// after a stuffed dot, ".\r\r\n") does not taint the next,
// chunked, message.
func TestDATAThenBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: x\r\n\r\nbody\r\n.\r\r\nmore\r\n.\r\n")
	c.expect(554, "5.6.0")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	msg := "Subject: y\r\n\r\nclean\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
	c.expect(250)
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages", n)
	}
}
