package main_test

import (
	"fmt"
	"net"
	"net/textproto"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testdns"
)

// mailDomain is one of the two test mail domains, served by its own node
// with its own database, listening on port 25 of its own loopback address
// as a real MX does.
type mailDomain struct {
	name, ip, user string
	db             string
	env            []string
	node           *node
}

// setUpDomain creates the domain, its user and DKIM keys with the CLI,
// and publishes what `postrider dns` prints in the test DNS server.
func setUpDomain(t *testing.T, z *testdns.Server, name, ip, user string) *mailDomain {
	t.Helper()
	d := &mailDomain{name: name, ip: ip, user: user + "@" + name, db: pgtest.NewDatabase(t)}
	d.env = []string{"POSTRIDER_DATABASE_URL=" + d.db, "POSTRIDER_HOSTNAME=mx." + name,
		"POSTRIDER_SMTP_ADDR=" + ip + ":25", "POSTRIDER_DNS_RESOLVER=" + z.Addr, "POSTRIDER_OUTBOUND_IPS=" + ip}
	for _, args := range [][]string{
		{"domain", "add", name}, {"user", "add", d.user}, {"alias", "add", "postmaster@" + name, d.user},
		{"dkim", "generate", name},
	} {
		if r := runCLI(t, d.env, "pass-"+user+"\n", args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	r := runCLI(t, d.env, "", "dns", name)
	if r.code != 0 {
		t.Fatalf("dns %s: %s", name, r.stderr)
	}
	published := 0
	for _, line := range strings.Split(r.stdout, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if err := z.Add(line); err != nil {
			t.Fatalf("`postrider dns %s` printed a line the zone parser refuses: %v", name, err)
		}
		published++
	}
	if published < 8 {
		t.Fatalf("`postrider dns %s` printed only %d records:\n%s", name, published, r.stdout)
	}
	if err := z.Add(fmt.Sprintf("mx.%s. 300 IN A %s", name, ip)); err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs the domain's node; its SMTP listener is ip:25.
func (d *mailDomain) start(t *testing.T) {
	t.Helper()
	d.node = startNode(t, d.db, d.env[1:]...)
}

// popAll logs in over POP3 and returns every message of the maildrop.
func popAll(t *testing.T, n *node, user, pass string) []string {
	t.Helper()
	p := dialLines(t, n.addrs["POP3"])
	p.until("+OK", 10*time.Second)
	p.send("USER " + user)
	p.until("+OK", 10*time.Second)
	p.send("PASS " + pass)
	p.until("+OK", 30*time.Second)
	p.send("STAT")
	var count int
	fmt.Sscanf(p.until("+OK", 10*time.Second)[0], "+OK %d", &count)
	var msgs []string
	for i := 1; i <= count; i++ {
		p.send(fmt.Sprintf("RETR %d", i))
		lines := p.until(".\r\n", 10*time.Second)
		msgs = append(msgs, strings.Join(lines[1:len(lines)-1], ""))
	}
	p.send("QUIT")
	p.until("+OK", 10*time.Second)
	p.c.Close()
	return msgs
}

// waitMail polls a maildrop until it holds n messages.
func waitMail(t *testing.T, d *mailDomain, pass string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msgs := popAll(t, d.node, d.user, pass)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d messages after %v, want %d\n--- sender logs and receiver logs follow ---\n%s", d.user, len(msgs), within, n, d.node.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// headerOf returns the unfolded header section of a message.
func headerOf(msg string) string {
	h, _, _ := strings.Cut(msg, "\r\n\r\n")
	return strings.ReplaceAll(strings.ReplaceAll(h, "\r\n ", " "), "\r\n\t", " ")
}

// sendFrom speaks SMTP to addr from the local address src, as a host
// other than the sending domain's MX would.
func sendFrom(t *testing.T, src, addr, from, to, body string) (int, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	tp := textproto.NewConn(c)
	step := func(want int, format string, args ...any) (int, string) {
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		code, msg, err := tp.ReadResponse(want)
		if err != nil && code == 0 {
			t.Fatal(err)
		}
		return code, msg
	}
	step(220, "")
	step(250, "EHLO forger.example")
	if code, msg := step(250, "MAIL FROM:<%s>", from); code != 250 {
		return code, msg
	}
	if code, msg := step(250, "RCPT TO:<%s>", to); code != 250 {
		return code, msg
	}
	step(354, "DATA")
	w := tp.DotWriter()
	_, _ = w.Write([]byte(body))
	_ = w.Close()
	code, msg := step(250, "")
	step(221, "QUIT")
	return code, msg
}

// TestOutboundByMXBetweenTwoNodes is issue 11's acceptance: two Postrider
// instances, each with its own database and domain on port 25 of its own
// loopback address, find each other by MX in a DNS server inside the test
// and publish what `postrider dns` prints. Mail submitted on A arrives in
// B's INBOX DKIM-signed with spf, dkim and dmarc passing; mail forged
// with A's domain from elsewhere fails and is handled per A's policy.
func TestOutboundByMXBetweenTwoNodes(t *testing.T) {
	if u, err := user.Current(); err != nil || u.Uid != "0" {
		t.Skip("binds port 25: needs root")
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if l, err := net.Listen("tcp", ip+":25"); err != nil {
			t.Skipf("port 25 of %s is taken: %v", ip, err)
		} else {
			l.Close()
		}
	}
	z := testdns.Start(t)
	a := setUpDomain(t, z, "a.test", "127.0.0.2", "alice")
	b := setUpDomain(t, z, "b.test", "127.0.0.3", "bob")
	a.start(t)
	b.start(t)

	// 1. Submitted on A, delivered by MX to B.
	body := "From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: across domains\r\n" +
		"Message-ID: <e2e-1@a.test>\r\nDate: Mon, 07 Dec 2026 16:00:00 +0000\r\n\r\nHello Bob, from A.\r\n"
	submitTo(t, a.node, a.user, "pass-alice", []string{b.user}, body)
	msgs := waitMail(t, b, "pass-bob", 1, 60*time.Second)
	got := msgs[0]
	h := headerOf(got)
	t.Logf("as B stored it:\n%s", h)
	if !strings.HasSuffix(got, "Hello Bob, from A.\r\n") {
		t.Fatalf("body changed on the way:\n%s", got)
	}
	if strings.Count(h, "DKIM-Signature:") != 2 || !strings.Contains(h, "a=ed25519-sha256") || !strings.Contains(h, "a=rsa-sha256") || !strings.Contains(h, "d=a.test") {
		t.Errorf("want an Ed25519 and an RSA signature by a.test:\n%s", h)
	}
	var ar string
	for _, l := range strings.Split(h, "\r\n") {
		if strings.HasPrefix(l, "Authentication-Results: mx.b.test") {
			ar = l
		}
	}
	for _, want := range []string{"spf=pass", "dkim=pass", "dmarc=pass", "header.from=a.test"} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results lacks %s: %q\n%s", want, ar, h)
		}
	}
	if !strings.HasPrefix(got, "Return-Path: <alice@a.test>\r\n") || strings.Count(h, "Return-Path:") != 1 {
		t.Errorf("want exactly B's Return-Path: at the top:\n%s", h)
	}
	// The sender's queue is empty once B took the message.
	if r := runCLI(t, a.env, "", "queue", "list"); r.code != 0 || !strings.Contains(r.stdout, "queue is empty") {
		t.Errorf("queue list on A after delivery: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(a.node.logs(), `"msg":"delivery attempt"`) || !strings.Contains(a.node.logs(), `"mx":"mx.b.test"`) {
		t.Errorf("A logged no delivery attempt to mx.b.test:\n%s", a.node.logs())
	}

	// 2. Forged: a.test's From: sent to B from an address a.test's SPF does
	// not name, unsigned. `postrider dns` publishes p=quarantine: B files
	// it in Junk with dmarc=fail (POP3 sees only INBOX).
	forged := "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: pay this invoice\r\n" +
		"Message-ID: <forged-1@a.test>\r\nDate: Mon, 07 Dec 2026 16:01:00 +0000\r\n\r\nPlease pay.\r\n"
	if code, msg := sendFrom(t, "127.0.0.66", b.ip+":25", "alice@a.test", b.user, forged); code != 250 {
		t.Fatalf("forgery under p=quarantine: %d %s, want 250 (into Junk)", code, msg)
	}
	if n := len(popAll(t, b.node, b.user, "pass-bob")); n != 1 {
		t.Errorf("INBOX has %d messages after a quarantined forgery, want 1", n)
	}
	if !strings.Contains(b.node.logs(), "dmarc=fail") && !strings.Contains(b.node.logs(), `"dmarc":"fail"`) {
		t.Errorf("B did not log the DMARC failure:\n%s", b.node.logs())
	}
	// A's own domain switched to p=reject: the same forgery is refused.
	z.Remove("_dmarc.a.test", 0)
	if err := z.Add(`_dmarc.a.test. 300 IN TXT "v=DMARC1; p=reject"`); err != nil {
		t.Fatal(err)
	}
	if code, msg := sendFrom(t, "127.0.0.66", b.ip+":25", "alice@a.test", b.user, forged); code != 550 || !strings.HasPrefix(msg, "5.7.1") {
		t.Errorf("forgery under p=reject: %d %s, want 550 5.7.1", code, msg)
	}
	// Genuine mail from A still passes under p=reject.
	submitTo(t, a.node, a.user, "pass-alice", []string{b.user}, strings.Replace(body, "e2e-1", "e2e-2", 1))
	if msgs := waitMail(t, b, "pass-bob", 2, 60*time.Second); !strings.Contains(headerOf(msgs[1]), "dmarc=pass") {
		t.Errorf("second genuine message:\n%s", headerOf(msgs[1]))
	}

	for _, d := range []*mailDomain{a, b} {
		d.node.stop(t)
		for _, secret := range []string{"pass-alice", "pass-bob", "Hello Bob", "PRIVATE KEY"} {
			if strings.Contains(d.node.logs(), secret) {
				t.Errorf("%s logged %q", d.name, secret)
			}
		}
	}
}
