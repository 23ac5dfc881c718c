package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/smtpd"
)

// queued returns the store's queue, oldest first.
func (e *env) queued() []mailstore.QueueItem {
	e.t.Helper()
	items, err := e.st.ListQueue(context.Background(), 0)
	must(e.t, err)
	return items
}

// queuedBody reads a queue item's message.
func (e *env) queuedBody(id int64) []byte {
	e.t.Helper()
	rc, err := e.st.OpenQueued(context.Background(), id)
	must(e.t, err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	must(e.t, err)
	return b
}

// addDKIMKeys gives a domain an Ed25519 and an RSA key and returns a TXT
// lookup that publishes them.
func (e *env) addDKIMKeys(domain string) func(string) ([]string, error) {
	e.t.Helper()
	txt := map[string]string{}
	for _, alg := range []string{"ed25519", "rsa"} {
		k, err := mailauth.GenerateDKIMKey(domain, alg+"-2026", alg)
		must(e.t, err)
		must(e.t, e.st.AddDKIMKey(context.Background(), k))
		rec, err := mailauth.DKIMRecord(k)
		must(e.t, err)
		txt[k.Selector+"._domainkey."+domain] = rec
	}
	return func(name string) ([]string, error) {
		if r, ok := txt[name]; ok {
			return []string{r}, nil
		}
		return nil, errors.New("no such record " + name)
	}
}

// dkimResults verifies a message's DKIM signatures: the domains whose
// signature verifies, and how many signatures there are.
func dkimResults(t *testing.T, msg []byte, lookup func(string) ([]string, error)) (ok []string, n int) {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	must(t, err)
	for _, v := range vs {
		if v.Err == nil {
			ok = append(ok, v.Domain)
		} else {
			t.Errorf("signature by %s: %v", v.Domain, v.Err)
		}
	}
	return ok, len(vs)
}

// submit runs one authenticated transaction on the submission port and
// returns the final reply.
func submit(t *testing.T, e *env, user, pass, from string, to []string, msg string, want int) reply {
	t.Helper()
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login(user, pass)
	c.cmd("MAIL FROM:<"+from+">", 250)
	for _, r := range to {
		c.cmd("RCPT TO:<"+r+">", 250)
	}
	c.cmd("DATA", 354)
	c.send(msg + ".\r\n")
	r := c.expect(want)
	c.cmd("QUIT", 221)
	return r
}

const aliceMsg = "From: Alice <alice@example.org>\r\nTo: bob@example.org, x@remote.example\r\n" +
	"Subject: out\r\nDate: Mon, 7 Dec 2026 12:00:00 +0000\r\nMessage-ID: <out-1@example.org>\r\n\r\nHello world.\r\n"

// TestSubmitLocalAndRemote: one local and two remote recipients make one
// local copy and one queue item with both remote recipients, the body
// stored once and shared, DKIM-signed by both keys of the From: domain,
// committed before the 250; the DSN parameters and the submitter go with
// the queue item, and OnQueued is told.
func TestSubmitLocalAndRemote(t *testing.T) {
	t.Parallel()
	var kicks atomic.Int32
	e := newEnv(t, withConfig(func(c *smtpd.Config) { c.OnQueued = func() { kicks.Add(1) } }))
	lookup := e.addDKIMKeys("example.org")
	queuedBefore := counter(t, "postrider_smtp_messages_queued_total", map[string]string{"role": "submission"})

	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice@example.org> RET=HDRS ENVID=env-1 SMTPUTF8", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("RCPT TO:<x@Remote.Example> NOTIFY=FAILURE,DELAY ORCPT=rfc822;x@Remote.Example", 250)
	c.cmd("RCPT TO:<jörg@bücher-remote.example>", 250)
	c.cmd("DATA", 354)
	c.send(aliceMsg + ".\r\n")
	c.expect(250, "2.0.0 OK: message queued, id=")
	c.cmd("QUIT", 221)

	bob := e.inbox(e.bob)
	if len(bob) != 1 {
		t.Fatalf("bob has %d messages", len(bob))
	}
	items := e.queued()
	if len(items) != 1 {
		t.Fatalf("%d queue items, want 1", len(items))
	}
	it := items[0]
	if it.MailFrom != "alice@example.org" || it.SenderAccount != e.alice.ID {
		t.Errorf("item from %q account %d", it.MailFrom, it.SenderAccount)
	}
	if !strings.EqualFold(it.Params["SMTPUTF8"], "yes") || it.Params["RET"] != "HDRS" || it.Params["ENVID"] != "env-1" {
		t.Errorf("item params %v", it.Params)
	}
	rcpts := map[string]mailstore.QueueRecipient{}
	for _, r := range it.Recipients {
		rcpts[r.Address] = r
	}
	if len(rcpts) != 2 {
		t.Fatalf("recipients %+v", it.Recipients)
	}
	x, ok := rcpts["x@remote.example"]
	if !ok || x.Domain != "remote.example" || x.Notify != "FAILURE,DELAY" || !strings.EqualFold(x.ORCPT, "rfc822;x@Remote.Example") {
		t.Errorf("x: %+v", rcpts)
	}
	// IDN domain in A-labels (RFC 5891), the UTF-8 local part kept.
	if j, ok := rcpts["jörg@xn--bcher-remote-dlb.example"]; !ok || j.Domain != "xn--bcher-remote-dlb.example" || j.State != mailstore.RcptPending {
		t.Errorf("jörg: %+v", rcpts)
	}
	// One body: the queued message is bob's copy, byte for byte, and the
	// store holds its content once.
	q := e.queuedBody(it.ID)
	if !bytes.Equal(q, bob[0]) {
		t.Errorf("queued body differs from the local copy:\n%q\n%q", q, bob[0])
	}
	// refcount: bob's message and the queue item.
	if n, refs := e.contentRows(); n != 1 || refs != 2 {
		t.Errorf("%d message contents stored (refcount %d), want 1 shared by 2", n, refs)
	}
	trace, rest := body(t, q)
	if !strings.Contains(trace, "(authenticated user alice@example.org)") {
		t.Errorf("trace: %s", trace)
	}
	// Signed by both keys, over the message as submitted.
	if !bytes.HasPrefix(rest, []byte("DKIM-Signature: ")) || !bytes.HasSuffix(rest, []byte(aliceMsg)) {
		t.Errorf("signed message: %q", rest)
	}
	if ok, n := dkimResults(t, q, lookup); len(ok) != 2 || n != 2 || ok[0] != "example.org" {
		t.Errorf("DKIM: %v of %d", ok, n)
	}
	if k := kicks.Load(); k != 1 {
		t.Errorf("OnQueued called %d times", k)
	}
	if d := counter(t, "postrider_smtp_messages_queued_total", map[string]string{"role": "submission"}) - queuedBefore; d < 1 {
		t.Errorf("queued counter moved by %v", d)
	}
}

// contentRows counts the message contents stored (bodies are shared) and
// returns the largest reference count.
func (e *env) contentRows() (n int, refs int64) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	must(e.t, err)
	defer conn.Close(ctx)
	must(e.t, conn.QueryRow(ctx, "SELECT count(*), coalesce(max(refcount), 0) FROM contents").Scan(&n, &refs))
	return n, refs
}

// TestSubmitRemoteOnly: remote recipients only: one queue item, no
// Return-Path: in it (it is not a final delivery, RFC 5321 §4.4), over
// DATA and BDAT; a local-only submission is not signed (signing applies
// to mail that leaves) and is delivered as before.
func TestSubmitRemoteOnly(t *testing.T) {
	t.Parallel()
	var kicks atomic.Int32
	e := newEnv(t, withConfig(func(c *smtpd.Config) { c.OnQueued = func() { kicks.Add(1) } }))
	lookup := e.addDKIMKeys("example.org")
	msg := strings.Replace(aliceMsg, "bob@example.org, ", "", 1)
	submit(t, e, "alice@example.org", alicePass, "alice@example.org", []string{"x@remote.example", "y@remote.example"}, msg, 250)
	c := dialTLS(t, e.submissions)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice+out@example.org>", 250)
	c.cmd("RCPT TO:<z@other.example>", 250)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
	c.expect(250, "2.0.0 OK: message queued")
	c.cmd("QUIT", 221)

	items := e.queued()
	if len(items) != 2 || len(items[0].Recipients) != 2 || len(items[1].Recipients) != 1 || items[1].MailFrom != "alice+out@example.org" {
		t.Fatalf("items %+v", items)
	}
	for _, it := range items {
		q := e.queuedBody(it.ID)
		if !bytes.HasPrefix(q, []byte("Received: from client.example")) {
			t.Errorf("queued message starts %q", q[:min(len(q), 60)])
		}
		if ok, n := dkimResults(t, q, lookup); len(ok) != 2 || n != 2 {
			t.Errorf("DKIM: %v of %d", ok, n)
		}
	}
	if n := len(e.inbox(e.alice)) + len(e.inbox(e.bob)); n != 0 {
		t.Errorf("%d local copies", n)
	}
	if k := kicks.Load(); k != 2 {
		t.Errorf("OnQueued called %d times", k)
	}

	// Local only: delivered, not signed, nothing queued, no kick.
	submit(t, e, "alice@example.org", alicePass, "alice@example.org", []string{"bob@example.org"}, aliceMsg, 250)
	got := e.inbox(e.bob)
	if len(got) != 1 || bytes.Contains(got[0], []byte("DKIM-Signature")) {
		t.Fatalf("local-only copy: %d %q", len(got), got)
	}
	if len(e.queued()) != 2 || kicks.Load() != 2 {
		t.Errorf("local-only submission queued something")
	}
}

// TestSubmitNoKeys: a From: domain without DKIM keys sends unsigned.
func TestSubmitNoKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addDKIMKeys("example.org") // another domain's keys sign nothing here
	msg := "From: info@bücher.example\r\nTo: x@remote.example\r\nSubject: unsigned\r\n\r\nNo keys.\r\n"
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("info@xn--bcher-kva.example", "info-pw-123")
	c.cmd("MAIL FROM:<info@bücher.example> SMTPUTF8", 250)
	c.cmd("RCPT TO:<x@remote.example>", 250)
	c.cmd("DATA", 354)
	c.send(msg + ".\r\n")
	c.expect(250, "2.0.0 OK: message queued")
	items := e.queued()
	if len(items) != 1 {
		t.Fatalf("%d items", len(items))
	}
	q := e.queuedBody(items[0].ID)
	if bytes.Contains(q, []byte("DKIM-Signature")) || !bytes.HasSuffix(q, []byte(msg)) {
		t.Errorf("queued: %q", q)
	}
}

// TestSubmitRemoteRefusals: what a remote recipient must be.
func TestSubmitRemoteRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	for _, tc := range []struct{ rcpt, want string }{
		{"<x@[192.0.2.1]>", "553 5.1.3"},
		{"<x@[IPv6:2001:db8::1]>", "553 5.1.3"},
		{"<" + strings.Repeat("l", 65) + "@remote.example>", "501 5.1.3"},
		{"<jörg@remote.example>", "553 5.6.7"}, // SMTPUTF8 not given
		{"<x@bücher-remote.example>", "553 5.6.7"},
		{"<x@remote..example>", "501 5.1.3"},
		{"<nobody@example.org>", "550 5.1.1"}, // ours: unknown user, not relayed
		{"<x@remote.example> NOTIFY=NEVER", "250"},
		{`<"a b"@remote.example>`, "250"},
		{"<user%host@remote.example>", "250"},
	} {
		c.send("RCPT TO:" + tc.rcpt + "\r\n")
		r, err := c.read()
		must(t, err)
		if got := r.String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("RCPT %s: %s, want %s", tc.rcpt, got, tc.want)
		}
	}
	c.cmd("DATA", 354)
	c.send("From: alice@example.org\r\n\r\nx\r\n.\r\n")
	c.expect(250)
	items := e.queued()
	if len(items) != 1 {
		t.Fatalf("%d items", len(items))
	}
	var addrs []string
	for _, r := range items[0].Recipients {
		addrs = append(addrs, r.Address)
	}
	if got := strings.Join(addrs, " "); !strings.Contains(got, `"a b"@remote.example`) || !strings.Contains(got, "user%host@remote.example") || !strings.Contains(got, "x@remote.example") {
		t.Errorf("recipients %s", got)
	}
}

// TestRemoteCutShort: a DATA or BDAT transfer with remote recipients that
// the client cuts short leaves neither a queue item nor a local copy.
func TestRemoteCutShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpd.Config) { c.SpoolMemory = 16 << 10 }))
	e.addDKIMKeys("example.org")
	msg := "From: alice@example.org\r\nSubject: cut\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n", 3000)
	for _, mode := range []string{"DATA", "BDAT", "BDAT chunks"} {
		for _, how := range []string{"close", "reset"} {
			t.Run(mode+"/"+how, func(t *testing.T) {
				c := dial(t, e.submission)
				c.ehlo("client.example")
				c.login("alice@example.org", alicePass)
				c.cmd("MAIL FROM:<alice@example.org>", 250)
				c.cmd("RCPT TO:<bob@example.org>", 250)
				c.cmd("RCPT TO:<x@remote.example>", 250)
				switch mode {
				case "DATA":
					c.cmd("DATA", 354)
					c.send(msg[:100_000])
				case "BDAT":
					c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg[:len(msg)-1]))
				default:
					c.send(fmt.Sprintf("BDAT %d\r\n%s", 1000, msg[:1000]))
					c.expect(250)
					c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-1000, msg[1000:5000]))
				}
				tcp := c.conn.(*net.TCPConn)
				if how == "reset" {
					_ = tcp.SetLinger(0)
				}
				tcp.Close()
				waitConns(t, e)
				if n := len(e.queued()); n != 0 {
					t.Fatalf("%d queue items from a cut transfer", n)
				}
				if n := len(e.inbox(e.bob)); n != 0 {
					t.Fatalf("%d local copies from a cut transfer", n)
				}
			})
		}
	}
}

// TestInboundNeverRelays: on port 25 nothing but our own recipients is
// taken, whoever the sender claims to be, and an SRS-shaped address of a
// domain that is not ours is just a remote address.
func TestInboundNeverRelays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addDKIMKeys("example.org")
	for _, from := range []string{"alice@example.org", "s@remote.example", ""} {
		c := dial(t, e.inbound)
		c.ehlo("client.example")
		c.cmd("MAIL FROM:<"+from+">", 250)
		c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 502)
		for _, rcpt := range []string{"x@remote.example", "SRS0=abcd=TT=remote.example=x@other.example", "x@[127.0.0.1]"} {
			c.cmd("RCPT TO:<"+rcpt+">", 554, "5.7.1")
		}
		c.cmd("RCPT TO:<bob@example.org>", 250)
		c.cmd("DATA", 354)
		c.send(simpleMsg + ".\r\n")
		c.expect(250, "2.0.0 OK: message delivered")
		c.cmd("QUIT", 221)
	}
	if n := len(e.queued()); n != 0 {
		t.Errorf("%d queue items from port 25", n)
	}
	if n := len(e.inbox(e.bob)); n != 3 {
		t.Errorf("bob has %d messages", n)
	}
}
