package pop3d_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testkit"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

const (
	testDomain = "example.org"
	testUser   = "alice@example.org"
	testPass   = "correct horse battery"
)

// cheapArgon keeps password hashing fast in tests.
var cheapArgon = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// testTLS is a self-signed certificate for 127.0.0.1 and localhost, and
// a pool that trusts it.
func testTLS() (*tls.Config, *x509.CertPool) { return testkit.ServerTLS(), testkit.RootCAs() }

// testLogger logs to the test output at LOG level POP3_TEST_LOG (e.g.
// "-8" for protocol traces); silent by default.
func testLogger(t testing.TB) *slog.Logger {
	lvl := slog.LevelError + 4
	if v := os.Getenv("POP3_TEST_LOG"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			lvl = slog.Level(n)
		} else {
			_ = lvl.UnmarshalText([]byte(v))
		}
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// env is one database with one account, and any number of servers
// ("nodes"), each on its own store handle.
type env struct {
	t        testing.TB
	url      string
	st       mailstore.Store // the first node's store handle
	acc      mailstore.Account
	inbox    mailstore.Mailbox
	authOpts auth.Options
}

func newEnv(t testing.TB) *env {
	t.Helper()
	url := pgtest.NewDatabase(t)
	e := &env{t: t, url: url, st: pgtest.OpenStore(t, url)}
	e.authOpts = auth.Options{Argon2: cheapArgon, Logger: testLogger(t)}
	ctx := context.Background()
	if err := e.st.CreateDomain(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	e.acc = e.addAccount(testUser, testPass)
	var err error
	if e.inbox, err = e.st.GetMailbox(ctx, e.acc.ID, "INBOX"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) addAccount(addr, pass string) mailstore.Account {
	e.t.Helper()
	h, err := cheapArgon.Hash(pass)
	if err != nil {
		e.t.Fatal(err)
	}
	acc, err := e.st.CreateAccount(context.Background(), addr, h)
	if err != nil {
		e.t.Fatal(err)
	}
	return acc
}

// node is one running server.
type node struct {
	srv     *pop3d.Server
	st      mailstore.Store
	addr    string // plain listener (STLS)
	tlsAddr string // implicit TLS listener
}

// start runs a server on st (nil: the env's first handle) with cfg
// adjusted for tests; it is shut down at cleanup.
func (e *env) start(st mailstore.Store, mod func(*pop3d.Config)) *node {
	e.t.Helper()
	if st == nil {
		st = e.st
	}
	tc, _ := testTLS()
	cfg := pop3d.Config{
		Config:         frontend.Config{Hostname: "pop.example.org", TLS: tc, Logger: testLogger(e.t)},
		MarkSeenOnRetr: true,
		LockTTL:        2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := pop3d.New(cfg, st, auth.New(st, e.authOpts))
	if err != nil {
		e.t.Fatal(err)
	}
	n := &node{srv: srv, st: st}
	for _, implicit := range []bool{false, true} {
		if implicit && cfg.TLS == nil {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.t.Fatal(err)
		}
		if implicit {
			n.tlsAddr = ln.Addr().String()
		} else {
			n.addr = ln.Addr().String()
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln, implicit) }()
		e.t.Cleanup(func() {
			if err := <-done; !errors.Is(err, pop3d.ErrServerClosed) {
				e.t.Errorf("Serve returned %v", err)
			}
		})
	}
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return n
}

// deliver stores a message in INBOX as SMTP would and returns its UID.
func (e *env) deliver(msg string) uint32 {
	e.t.Helper()
	res, err := e.st.Deliver(context.Background(), &mailstore.Delivery{
		MailFrom:   "bob@example.net",
		Recipients: []mailstore.Recipient{{AccountID: e.acc.ID}},
		Body:       strings.NewReader(msg),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Delivered[0].UID
}

// appendRaw stores a message in INBOX as IMAP APPEND would (any octets).
func (e *env) appendRaw(msg string) uint32 {
	e.t.Helper()
	res, err := e.st.Append(context.Background(), e.acc.ID, e.inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader(msg))
	if err != nil {
		e.t.Fatal(err)
	}
	return res.UID
}

// messages lists INBOX.
func (e *env) messages() []mailstore.MessageMeta {
	e.t.Helper()
	ms, err := e.st.ListMessages(context.Background(), e.acc.ID, e.inbox.ID, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return ms
}

// testMsg is a small SMTP-style message.
func testMsg(subject, body string) string {
	return "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.net>\r\n\r\n" + body
}

// client is a raw POP3 client for transcripts.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// dial connects and checks the greeting.
func dial(t testing.TB, addr string) *client {
	t.Helper()
	c := dialRaw(t, addr)
	if g := c.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func dialTLS(t testing.TB, addr string) *client {
	t.Helper()
	_, pool := testTLS()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	_ = c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", lines, err)
	}
}

// line reads one response line without CRLF.
func (c *client) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", l)
	}
	return l[:len(l)-2]
}

// eof checks that the server closed the connection.
func (c *client) eof() {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil || l != "" {
		c.t.Fatalf("expected the connection to be closed, got %q, %v", l, err)
	}
}

// cmd sends a command and returns the first response line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// ok sends a command and fails unless the reply starts with "+OK".
func (c *client) ok(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: %q", line, r)
	}
	return r
}

// errResp sends a command and fails unless the reply starts with prefix
// (e.g. "-ERR [AUTH]").
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%s: got %q, want prefix %q", line, r, prefix)
	}
	return r
}

// body reads a multi-line body after its "+OK" line: the octets of the
// message with the stuffing undone, as a client keeps them.
func (c *client) body() []byte {
	c.t.Helper()
	var b bytes.Buffer
	for {
		_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read body: %v", err)
		}
		if !strings.HasSuffix(l, "\r\n") || strings.ContainsAny(l[:len(l)-2], "\r\n") {
			c.t.Fatalf("bad line in multi-line response: %q", l)
		}
		if l == ".\r\n" {
			return b.Bytes()
		}
		b.WriteString(strings.TrimPrefix(l, ".")) // undo the byte-stuffing
	}
}

// multi sends a command expecting a multi-line response and returns its
// lines (without the "+OK" line and the terminator).
func (c *client) multi(line string) []string {
	c.t.Helper()
	c.ok(line)
	s := strings.TrimSuffix(string(c.body()), "\r\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\r\n")
}

// login authenticates with USER/PASS.
func (c *client) login() string {
	c.t.Helper()
	c.ok("USER " + testUser)
	return c.ok("PASS " + testPass)
}

// run plays a transcript: "C: x" lines are sent (consecutive ones in one
// write: pipelined), "S: y" lines must be received exactly, or as a prefix
// when y ends with "*". "S: <EOF>" expects the connection to close.
func (c *client) run(script string) {
	c.t.Helper()
	var pending []string
	flush := func() {
		if len(pending) > 0 {
			c.send(pending...)
			pending = nil
		}
	}
	for _, l := range strings.Split(script, "\n") {
		l = strings.TrimLeft(l, " \t") // trailing spaces matter ("+ ")
		switch {
		case l == "":
		case strings.HasPrefix(l, "C: "):
			pending = append(pending, l[3:])
		case l == "S: <EOF>":
			flush()
			c.eof()
		case strings.HasPrefix(l, "S: "):
			flush()
			want := l[3:]
			got := c.line()
			if p, ok := strings.CutSuffix(want, "*"); ok {
				if !strings.HasPrefix(got, p) {
					c.t.Fatalf("transcript: got %q, want %q", got, want)
				}
			} else if got != want {
				c.t.Fatalf("transcript: got %q, want %q", got, want)
			}
		default:
			c.t.Fatalf("bad transcript line %q", l)
		}
	}
	flush()
}

// proxyV1 is a PROXY protocol v1 header claiming the client is at ip.
func proxyV1(ip string) string {
	return "PROXY TCP4 " + ip + " 127.0.0.1 40000 110\r\n"
}

// loopbackPrefix is what tests trust as proxies.
var loopbackPrefix = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
