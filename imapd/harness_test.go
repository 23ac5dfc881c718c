package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testkit"
	"github.com/postrider/postrider/mailstore"
)

// cheapArgon keeps password hashing fast in tests.
var cheapArgon = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

const testDomain = "example.org"

// testEnv is a real store on a fresh PostgreSQL database with two accounts
// and an IMAP server on a real 127.0.0.1 socket.
type testEnv struct {
	t     testing.TB
	url   string
	store mailstore.Store
	auth  *auth.Authenticator
	srv   *Server
	addr  string
	accts map[string]mailstore.Account // "alice", "bob"
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("IMAPD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t testing.TB, cfgFn ...func(*Config)) *testEnv {
	t.Helper()
	url := pgtest.NewDatabase(t)
	st := pgtest.OpenStore(t, url)
	e := &testEnv{t: t, url: url, store: st, accts: map[string]mailstore.Account{}}
	ctx := context.Background()
	if err := st.CreateDomain(ctx, testDomain); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		e.addAccount(u)
	}
	e.auth = auth.New(st, auth.Options{Argon2: cheapArgon, Logger: testLogger(t)})
	e.srv, e.addr = e.startServer(st, cfgFn...)
	return e
}

func (e *testEnv) addAccount(user string) mailstore.Account {
	return e.addAccountPassword(user, "pw-"+user)
}

func (e *testEnv) addAccountPassword(user, password string) mailstore.Account {
	e.t.Helper()
	h, err := cheapArgon.Hash(password)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := e.store.CreateAccount(context.Background(), user+"@"+testDomain, h)
	if err != nil {
		e.t.Fatal(err)
	}
	e.accts[user] = a
	return a
}

// startServer starts another server (node) on st.
func (e *testEnv) startServer(st mailstore.Store, cfgFn ...func(*Config)) (*Server, string) {
	e.t.Helper()
	cfg := Config{Config: frontend.Config{Hostname: "imap.test", Logger: testLogger(e.t), TLS: testTLSConfig(e.t)}}
	for _, f := range cfgFn {
		f(&cfg)
	}
	srv, err := New(cfg, st, e.auth)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go srv.Serve(ln, false)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, ln.Addr().String()
}

func testTLSConfig(testing.TB) *tls.Config { return testkit.ServerTLS() }

// deliver stores a message in a mailbox of user and returns its UID.
func (e *testEnv) deliver(user, mailbox, msg string, flags ...mailstore.SystemFlag) uint32 {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.GetMailbox(ctx, e.accts[user].ID, mailbox)
	if err != nil {
		e.t.Fatal(err)
	}
	var f mailstore.Flags
	for _, x := range flags {
		f.System |= x
	}
	res, err := e.store.Append(ctx, e.accts[user].ID, mb.ID, f, time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC), strings.NewReader(msg))
	if err != nil {
		e.t.Fatal(err)
	}
	return res.UID
}

func (e *testEnv) mailbox(user, name string) mailstore.Mailbox {
	e.t.Helper()
	mb, err := e.store.GetMailbox(context.Background(), e.accts[user].ID, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return mb
}

// claimRecent takes the \Recent status of a mailbox's messages, as an
// earlier session would have (for tests about something else).
func (e *testEnv) claimRecent(user, name string) {
	e.t.Helper()
	if _, err := e.store.ClaimRecent(context.Background(), e.accts[user].ID, e.mailbox(user, name).ID); err != nil {
		e.t.Fatal(err)
	}
}

// testMessage returns a small RFC 5322 message.
func testMessage(subject, body string) string {
	return "From: Alice <alice@example.org>\r\n" +
		"To: Bob <bob@example.org>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Fri, 01 Mar 2024 12:00:00 +0000\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n" +
		"\r\n" + body
}

// tclient is a raw IMAP client for transcript tests.
type tclient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (e *testEnv) dial() *tclient {
	e.t.Helper()
	return dialAddr(e.t, e.addr)
}

func dialAddr(t testing.TB, addr string) *tclient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := &tclient{t: t, conn: nc, br: bufio.NewReader(nc)}
	t.Cleanup(func() { nc.Close() })
	if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 IMAP4rev2") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

func (c *tclient) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

func (c *tclient) sendRaw(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// line reads one response line (without CRLF).
func (c *tclient) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

var literalSuffix = regexp.MustCompile(`~?\{(\d+)\}$`)

// response reads one logical response line: literals are read and kept in
// the line as "{n}\r\n<data>".
func (c *tclient) response() string {
	c.t.Helper()
	l := c.line()
	for {
		m := literalSuffix.FindStringSubmatch(l)
		if m == nil {
			return l
		}
		var n int
		fmt.Sscan(m[1], &n)
		buf := make([]byte, n)
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c.br, buf); err != nil {
			c.t.Fatalf("literal: %v", err)
		}
		l += "\r\n" + string(buf) + c.line()
	}
}

// eof checks that the server closed the connection.
func (c *tclient) eof() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := c.br.ReadString('\n'); err == nil {
		c.t.Fatalf("expected close, got %q", l)
	}
}

// cmd sends "tag line" and returns every line up to and including the
// tagged response.
func (c *tclient) cmd(tag, line string) []string {
	c.t.Helper()
	c.send(tag + " " + line)
	return c.until(tag)
}

// until reads lines up to the one tagged tag.
func (c *tclient) until(tag string) []string {
	c.t.Helper()
	var out []string
	for {
		l := c.response()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
		if len(out) > 100000 {
			c.t.Fatal("too many lines")
		}
	}
}

func (c *tclient) login(user string) {
	c.t.Helper()
	r := c.cmd("L", fmt.Sprintf("LOGIN %s@%s pw-%s", user, testDomain, user))
	if !strings.HasPrefix(r[len(r)-1], "L OK") {
		c.t.Fatalf("login: %q", r)
	}
}

// check matches lines against expectations: "re:" prefixes a regular
// expression; anything else must be equal.
func check(t testing.TB, ctxt string, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = matchLine(got[i], want[i])
	}
	if !ok {
		t.Fatalf("%s:\n got: %s\nwant: %s", ctxt, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func matchLine(got, want string) bool {
	if re, ok := strings.CutPrefix(want, "re:"); ok {
		return regexp.MustCompile("^(?:" + re + ")$").MatchString(got)
	}
	return got == want
}

// step is one transcript step: a command line (sent with its tag) and the
// expected lines, the tagged one last.
type step struct {
	send string
	want []string
}

// run plays a transcript. Tags are "T1", "T2", ...; want lines may use
// "$T" for the step's tag.
func (c *tclient) run(steps []step) {
	c.t.Helper()
	for i, s := range steps {
		tag := fmt.Sprintf("T%d", i+1)
		got := c.cmd(tag, s.send)
		want := make([]string, len(s.want))
		for j, w := range s.want {
			want[j] = strings.ReplaceAll(w, "$T", tag)
		}
		check(c.t, fmt.Sprintf("step %d %q", i+1, s.send), got, want)
	}
}
