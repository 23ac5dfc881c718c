package main_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
)

// lineConn is a minimal line-oriented client for transcript-style checks.
type lineConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (l *lineConn) send(s string) {
	l.t.Helper()
	l.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := l.c.Write([]byte(s + "\r\n")); err != nil {
		l.t.Fatal(err)
	}
}

// until reads lines until one starts with prefix, within d; it returns all
// lines read.
func (l *lineConn) until(prefix string, d time.Duration) []string {
	l.t.Helper()
	l.c.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for {
		s, err := l.r.ReadString('\n')
		if err != nil {
			l.t.Fatalf("waiting for %q: %v (got %q)", prefix, err, lines)
		}
		lines = append(lines, s)
		if strings.HasPrefix(s, prefix) {
			return lines
		}
	}
}

// TestTwoNodesEndToEnd runs two `postrider serve` processes over one
// database: mail submitted on node A reaches an IMAP client idling on node
// B at once, POP3 on node B downloads it byte for byte while node A refuses
// a second POP3 session for the same maildrop, and POP3's deletion shows up
// as an EXPUNGE in the IMAP session.
func TestTwoNodesEndToEnd(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := []string{"POSTRIDER_DATABASE_URL=" + url}
	for _, args := range [][]string{{"domain", "add", "example.org"}, {"user", "add", "alice@example.org"}} {
		if r := runCLI(t, env, "alice-pass\n", args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	a := startNode(t, url)
	b := startNode(t, url)

	imap := dialLines(t, b.addrs["IMAP"])
	imap.until("* OK", 10*time.Second)
	imap.send("a1 LOGIN alice@example.org alice-pass")
	imap.until("a1 OK", 30*time.Second)
	imap.send("a2 SELECT INBOX")
	imap.until("a2 OK", 10*time.Second)
	imap.send("a3 IDLE")
	imap.until("+ ", 10*time.Second)

	body := "From: alice@example.org\r\nTo: alice@example.org\r\nSubject: across nodes\r\nMessage-ID: <x1@example.org>\r\n\r\nHello from node A.\r\n"
	submit(t, a, "alice@example.org", "alice-pass", body)
	imap.until("* 1 EXISTS", 10*time.Second)
	imap.send("DONE")
	imap.until("a3 OK", 10*time.Second)

	// POP3 on node B has the maildrop; node A refuses a second session.
	pop := dialLines(t, b.addrs["POP3"])
	pop.until("+OK", 10*time.Second)
	pop.send("USER alice@example.org")
	pop.until("+OK", 10*time.Second)
	pop.send("PASS alice-pass")
	pop.until("+OK", 30*time.Second)

	pop2 := dialLines(t, a.addrs["POP3"])
	pop2.until("+OK", 10*time.Second)
	pop2.send("USER alice@example.org")
	pop2.until("+OK", 10*time.Second)
	pop2.send("PASS alice-pass")
	if l := pop2.until("-ERR", 30*time.Second); !strings.Contains(l[len(l)-1], "[IN-USE]") {
		t.Fatalf("second POP3 session on node A: %q", l)
	}

	pop.send("RETR 1")
	lines := pop.until(".\r\n", 10*time.Second)
	got := strings.Join(lines[1:len(lines)-1], "")
	if !strings.HasSuffix(got, body) || !strings.Contains(got, "Received: ") || !strings.HasPrefix(got, "Return-Path: <alice@example.org>\r\n") {
		t.Fatalf("RETR on node B returned:\n%s", got)
	}
	pop.send("DELE 1")
	pop.until("+OK", 10*time.Second)

	imap.send("a4 IDLE")
	imap.until("+ ", 10*time.Second)
	pop.send("QUIT")
	pop.until("+OK", 10*time.Second)
	imap.until("* 1 EXPUNGE", 10*time.Second)
	imap.send("DONE")
	imap.until("a4 OK", 10*time.Second)
	imap.send("a5 LOGOUT")
	imap.until("a5 OK", 10*time.Second)

	for i, n := range []*node{a, b} {
		n.stop(t)
		if strings.Contains(n.logs(), "alice-pass") {
			t.Errorf("node %d logged the password", i)
		}
		if strings.Contains(n.logs(), "Hello from node A") {
			t.Errorf("node %d logged the message body", i)
		}
	}
}

// submit sends body through a node's submission port with STARTTLS
// (verifying the node's generated certificate) and AUTH PLAIN, to user.
func submit(t *testing.T, n *node, user, pass, body string) {
	t.Helper()
	submitTo(t, n, user, pass, []string{user}, body)
}

// submitTo is submit to other recipients.
func submitTo(t *testing.T, n *node, user, pass string, rcpts []string, body string) {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(n.data, "selfsigned-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatal("bad generated certificate")
	}
	c, err := smtp.Dial(n.addrs["SUBMISSION"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{ServerName: "127.0.0.1", RootCAs: roots}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.Mail(user); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("DATA: %v\n%s", err, n.logs())
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}
