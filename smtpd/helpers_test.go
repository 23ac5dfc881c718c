package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testkit"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/smtpd"
)

// Test accounts and passwords.
const (
	alicePass = "alice-s3cret-pw"
	bobPass   = "bob-s3cret-pw"
)

// testArgon2 makes password hashing cheap in tests.
var testArgon2 = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

type env struct {
	t      *testing.T
	st     mailstore.Store
	dbURL  string
	srv    *smtpd.Server
	cfg    smtpd.Config
	authn  *auth.Authenticator
	served sync.WaitGroup
	errs   chan error

	inbound, submission, submissions string // listener addresses

	alice, bob, carol, info mailstore.Account
}

type envOption func(*envOpts)

type envOpts struct {
	cfg      func(*smtpd.Config)
	store    func(mailstore.Store) mailstore.Store
	storeAt  func(url string) mailstore.Store // the server's store, opened on the test database
	throttle auth.ThrottlePolicy
}

func withConfig(f func(*smtpd.Config)) envOption { return func(o *envOpts) { o.cfg = f } }
func withStore(f func(mailstore.Store) mailstore.Store) envOption {
	return func(o *envOpts) { o.store = f }
}
func withThrottle(p auth.ThrottlePolicy) envOption { return func(o *envOpts) { o.throttle = p } }

// newEnv starts a server with inbound, submission and submissions
// listeners on 127.0.0.1 over a fresh database with:
//
//	example.org: alice, bob, carol (quota 20000); aliases sales→alice,
//	list→alice+bob
//	catchall.example: catch-all → bob
//	xn--bcher-kva.example (bücher.example): info
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	var o envOpts
	for _, f := range opts {
		f(&o)
	}
	url := pgtest.NewDatabase(t)
	st := mailstore.Store(pgtest.OpenStore(t, url))
	e := &env{t: t, st: st, dbURL: url, errs: make(chan error, 3)}
	ctx := context.Background()
	for _, d := range []string{"example.org", "catchall.example", "xn--bcher-kva.example"} {
		must(t, st.CreateDomain(ctx, d))
	}
	mk := func(addr, pw string) mailstore.Account {
		h, err := testArgon2.Hash(pw)
		must(t, err)
		a, err := st.CreateAccount(ctx, addr, h)
		must(t, err)
		return a
	}
	e.alice = mk("alice@example.org", alicePass)
	e.bob = mk("bob@example.org", bobPass)
	e.carol = mk("carol@example.org", "carol-pw-123")
	e.info = mk("info@xn--bcher-kva.example", "info-pw-123")
	must(t, st.SetQuota(ctx, e.carol.ID, 20000))
	e.carol.QuotaLimit = 20000
	must(t, st.CreateAlias(ctx, "sales@example.org", "alice@example.org"))
	must(t, st.CreateAlias(ctx, "list@example.org", "alice@example.org"))
	must(t, st.CreateAlias(ctx, "list@example.org", "bob@example.org"))
	must(t, st.CreateAlias(ctx, "@catchall.example", "bob@example.org"))
	if o.storeAt != nil {
		st = o.storeAt(url)
	}
	if o.store != nil {
		st = o.store(st)
	}

	e.authn = auth.New(st, auth.Options{Argon2: testArgon2, Throttle: o.throttle, Logger: testLogger(t)})
	e.cfg = smtpd.Config{
		Config:         frontend.Config{Hostname: "mx.example.org", TLS: serverTLS(t), Logger: testLogger(t)},
		MaxMessageSize: 1 << 20,
		MaxRecipients:  10,
		SpoolDir:       t.TempDir(),
	}
	if o.cfg != nil {
		o.cfg(&e.cfg)
	}
	srv, err := smtpd.New(e.cfg, st, e.authn)
	must(t, err)
	e.srv = srv
	e.inbound = e.listen(func(ln net.Listener) error { return srv.ServeInbound(ln) })
	e.submission = e.listen(func(ln net.Listener) error { return srv.ServeSubmission(ln, false) })
	e.submissions = e.listen(func(ln net.Listener) error { return srv.ServeSubmission(ln, true) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		e.served.Wait()
		close(e.errs)
		for err := range e.errs {
			if !errors.Is(err, smtpd.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return e
}

func (e *env) listen(serve func(net.Listener) error) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(e.t, err)
	e.served.Add(1)
	go func() {
		defer e.served.Done()
		e.errs <- serve(ln)
	}()
	return ln.Addr().String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testLogger logs to the test output at the level of SMTPD_TEST_LOG
// (e.g. -8 for the protocol trace), warnings by default.
func testLogger(t *testing.T) *slog.Logger {
	lvl := slog.LevelWarn
	if v, err := strconv.Atoi(os.Getenv("SMTPD_TEST_LOG")); err == nil {
		lvl = slog.Level(v)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// serverTLS returns a TLS config with a self-signed certificate for
// localhost / 127.0.0.1.
func serverTLS(*testing.T) *tls.Config { return testkit.ServerTLS() }

// reply is one SMTP reply.
type reply struct {
	Code  int
	Lines []string // text after the code and separator
}

func (r reply) String() string {
	return fmt.Sprintf("%d %s", r.Code, strings.Join(r.Lines, " | "))
}

// client is a raw SMTP client for transcripts.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects and checks the 220 greeting.
func dial(t *testing.T, addr string) *client {
	t.Helper()
	c := dialNoGreet(t, addr)
	c.expect(220)
	return c
}

func dialNoGreet(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// dialTLS connects with TLS from the first byte (port 465).
func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	c := dialNoGreet(t, addr)
	c.startTLS()
	c.expect(220)
	return c
}

// startTLS runs a TLS handshake on the connection.
func (c *client) startTLS() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	must(c.t, tc.Handshake())
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one reply.
func (c *client) read() (reply, error) {
	var r reply
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return r, err
		}
		if !strings.HasSuffix(l, "\r\n") {
			return r, fmt.Errorf("reply line without CRLF: %q", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		if len(l) < 3 {
			return r, fmt.Errorf("short reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return r, fmt.Errorf("bad reply line %q", l)
		}
		r.Code = code
		if len(l) > 4 {
			r.Lines = append(r.Lines, l[4:])
		} else {
			r.Lines = append(r.Lines, "")
		}
		if len(l) == 3 || l[3] == ' ' {
			return r, nil
		}
	}
}

// expect reads one reply and checks its code (and, if given, that its
// last line starts with prefix).
func (c *client) expect(code int, prefix ...string) reply {
	c.t.Helper()
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("want %d, read error: %v", code, err)
	}
	if r.Code != code {
		c.t.Fatalf("want %d %v, got %v", code, prefix, r)
	}
	if len(prefix) > 0 && !strings.HasPrefix(r.Lines[len(r.Lines)-1], prefix[0]) {
		c.t.Fatalf("want %d %q, got %v", code, prefix[0], r)
	}
	return r
}

// cmd sends a command line and checks the reply.
func (c *client) cmd(line string, code int, prefix ...string) reply {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code, prefix...)
}

// expectClosed checks that the server closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.r.ReadString('\n')
	if err == nil {
		c.t.Fatalf("want connection closed, got %q", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("want connection closed, still open")
	}
}

// ehlo sends EHLO and returns the extension keywords.
func (c *client) ehlo(name string) map[string]string {
	c.t.Helper()
	r := c.cmd("EHLO "+name, 250)
	ext := map[string]string{}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
}

// login authenticates with AUTH PLAIN and an initial response.
func (c *client) login(user, pass string) {
	c.t.Helper()
	c.cmd("AUTH PLAIN "+plain(user, pass), 235, "2.7.0")
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func plain(user, pass string) string {
	return b64("\x00" + user + "\x00" + pass)
}

// inbox returns the messages in an account's INBOX, in UID order.
func (e *env) inbox(a mailstore.Account) [][]byte {
	return e.mailbox(a, "INBOX")
}

func (e *env) mailbox(a mailstore.Account, name string) [][]byte {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.st.GetMailbox(ctx, a.ID, name)
	must(e.t, err)
	ms, err := e.st.ListMessages(ctx, a.ID, mb.ID, nil)
	must(e.t, err)
	var out [][]byte
	for _, m := range ms {
		rc, err := e.st.OpenMessage(ctx, a.ID, mb.ID, m.UID, 0, -1)
		must(e.t, err)
		b, err := io.ReadAll(rc)
		rc.Close()
		must(e.t, err)
		out = append(out, b)
	}
	return out
}

// body returns a stored message without the trace fields we prepend
// (Return-Path: and Received:), checking that they are there.
func body(t *testing.T, stored []byte) (trace string, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(stored, []byte("Return-Path: <")) {
		t.Fatalf("stored message does not start with Return-Path: %q", stored[:min(len(stored), 80)])
	}
	i := bytes.Index(stored, []byte("\r\nReceived: "))
	if i < 0 {
		t.Fatalf("no Received: after Return-Path: %q", stored[:min(len(stored), 200)])
	}
	// The Received: field ends at the first line not starting with a tab.
	j := i + 2
	for {
		k := bytes.Index(stored[j:], []byte("\r\n"))
		if k < 0 {
			t.Fatalf("unterminated trace fields")
		}
		j += k + 2
		if j >= len(stored) || stored[j] != '\t' {
			break
		}
	}
	return string(stored[:j]), stored[j:]
}

// sendMail runs one inbound transaction and checks the final reply code.
func sendMail(t *testing.T, addr, from string, to []string, msg string, want int) reply {
	t.Helper()
	c := dial(t, addr)
	c.ehlo("client.example")
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

// proxyV1 returns a PROXY protocol v1 header claiming src.
func proxyV1(src string) string {
	return fmt.Sprintf("PROXY TCP4 %s 192.0.2.254 40000 25\r\n", src)
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

type smtpdConfig = smtpd.Config

const simpleMsg = "From: <sender@remote.example>\r\nTo: <alice@example.org>\r\nSubject: hello\r\n\r\nHello Alice.\r\n"

// dialErr tries to connect (and closes at once).
func dialErr(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return c, err
}
