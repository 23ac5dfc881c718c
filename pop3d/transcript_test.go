package pop3d_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

func TestGreetingAndCapa(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	c := dialRaw(t, n.addr)
	// RFC 1939 §4 greeting without an APOP timestamp (no "<...>").
	c.run(`
		S: +OK pop.example.org Postrider POP3 server ready
		C: CAPA
		S: +OK Capability list follows
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: PIPELINING
		S: EXPIRE NEVER
		S: UTF8 USER
		S: AUTH-RESP-CODE
		S: USER
		S: SASL PLAIN LOGIN
		S: STLS
		S: IMPLEMENTATION Postrider
		S: .
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS ` + testPass + `
		S: +OK Maildrop locked and ready, 0 messages
		C: CAPA
		S: +OK Capability list follows
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: PIPELINING
		S: EXPIRE NEVER
		S: UTF8 USER
		S: IMPLEMENTATION Postrider
		S: .
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (0 messages deleted)
		S: <EOF>
	`)
}

func TestLoginFailures(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.run(`
		C: PASS x
		S: -ERR Send USER first
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS wrong
		S: -ERR [AUTH] Invalid user name or password
		C: STAT
		S: -ERR Command not valid in this state
		C: USER nobody@example.org
		S: +OK Send your password
		C: PASS ` + testPass + `
		S: -ERR [AUTH] Invalid user name or password
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS ` + testPass + `x
		S: -ERR [AUTH] Invalid user name or password, closing connection
		S: <EOF>
	`)
	// A password with spaces (RFC 1939 §7) works.
	e.addAccount("bob@example.org", "with two  spaces")
	c = dial(t, n.addr)
	c.run(`
		C: USER bob@example.org
		S: +OK Send your password
		C: PASS with two  spaces
		S: +OK Maildrop locked and ready, 0 messages
		C: QUIT
		S: +OK *
	`)
}

func TestCommandsInWrongState(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	for _, cmd := range []string{"STAT", "LIST", "UIDL", "RETR 1", "TOP 1 0", "DELE 1", "RSET", "NOOP"} {
		c.expect(cmd, "-ERR Command not valid in this state")
	}
	c = dial(t, n.addr)
	c.login()
	for _, cmd := range []string{"USER x", "PASS y", "AUTH PLAIN", "STLS", "UTF8", "APOP a b"} {
		c.expect(cmd, "-ERR Command not valid in this state")
	}
	for range 3 {
		c.expect("NOOP x", "-ERR NOOP takes no arguments")
	}
	// The error budget (10) is spent: the next error closes.
	c.run(`
		C: FOO
		S: -ERR Unknown command; too many errors, closing connection
		S: <EOF>
	`)
}

func TestMaildropCommands(t *testing.T) {
	e := newEnv(t)
	m1 := testMsg("one", "Hello\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n")
	m2 := "Subject: bare lf\n\nline1\n.\nline3\n" // APPENDed with bare LF
	m3 := testMsg("three", "no final newline")
	m4 := testMsg("four", strings.Repeat("x", 80)+"\r\n")
	u1 := e.deliver(m1)
	u2 := e.appendRaw(m2)
	u3 := e.deliver(m3)
	u4 := e.deliver(m4)
	w1 := m1
	w2 := strings.ReplaceAll(m2, "\n", "\r\n")
	w3 := m3 + "\r\n"
	w4 := m4
	total := len(w1) + len(w2) + len(w3) + len(w4)
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.run(fmt.Sprintf(`
		C: STAT
		S: +OK 4 %[1]d
		C: LIST
		S: +OK 4 messages (%[1]d octets)
		S: 1 %[2]d
		S: 2 %[3]d
		S: 3 %[4]d
		S: 4 %[5]d
		S: .
		C: LIST 2
		S: +OK 2 %[3]d
		C: UIDL
		S: +OK Unique-ID listing follows
		S: 1 %[6]d.%[7]d
		S: 2 %[6]d.%[8]d
		S: 3 %[6]d.%[9]d
		S: 4 %[6]d.%[10]d
		S: .
		C: UIDL 3
		S: +OK 3 %[6]d.%[9]d
	`, total, len(w1), len(w2), len(w3), len(w4), e.inbox.UIDValidity, u1, u2, u3, u4))
	for i, want := range []string{w1, w2, w3, w4} {
		r := c.ok("RETR " + strconv.Itoa(i+1))
		if r != fmt.Sprintf("+OK %d octets", len(want)) {
			t.Errorf("RETR %d: %q", i+1, r)
		}
		if got := string(c.body()); got != want {
			t.Errorf("RETR %d: got %q, want %q", i+1, got, want)
		}
	}
	c.ok("TOP 1 2")
	if got, want := string(c.body()), strings.SplitAfter(m1, "\r\n\r\n")[0]+"Hello\r\n.dot line\r\n"; got != want {
		t.Errorf("TOP 1 2: got %q, want %q", got, want)
	}
	c.ok("TOP 2 0")
	if got, want := string(c.body()), "Subject: bare lf\r\n\r\n"; got != want {
		t.Errorf("TOP 2 0: got %q, want %q", got, want)
	}
	c.run(`
		C: RETR 5
		S: -ERR No such message
		C: RETR 0
		S: -ERR Invalid message number
		C: RETR x
		S: -ERR Invalid message number
		C: RETR 01
		S: -ERR Invalid message number
		C: TOP 1
		S: -ERR Usage: TOP msg n
		C: TOP 1 -1
		S: -ERR Invalid line count
		C: LIST 1 2
		S: -ERR Usage: LIST [msg]
		C: NOOP
		S: +OK
		C: STAT x
		S: -ERR STAT takes no arguments
	`)
}

func TestDeleRsetQuit(t *testing.T) {
	e := newEnv(t)
	var uids []uint32
	for i := range 3 {
		uids = append(uids, e.deliver(testMsg(fmt.Sprint("m", i), "body\r\n")))
	}
	size := len(testMsg("m0", "body\r\n"))
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.run(fmt.Sprintf(`
		C: DELE 2
		S: +OK Message 2 deleted
		C: DELE 2
		S: -ERR Message 2 is already deleted
		C: RETR 2
		S: -ERR Message 2 is already deleted
		C: LIST 2
		S: -ERR Message 2 is already deleted
		C: STAT
		S: +OK 2 %d
		C: LIST
		S: +OK 2 messages (%d octets)
		S: 1 %d
		S: 3 %d
		S: .
		C: UIDL
		S: +OK Unique-ID listing follows
		S: 1 *
		S: 3 *
		S: .
		C: RSET
		S: +OK Maildrop has 3 messages
		C: STAT
		S: +OK 3 %d
		C: DELE 1
		S: +OK Message 1 deleted
		C: DELE 3
		S: +OK Message 3 deleted
	`, 2*size, 2*size, size, size, 3*size))
	// Dropping the connection without QUIT deletes nothing (RFC 1939 §6).
	c.c.Close()
	c = loginWhenFree(t, n.addr)
	if got := len(e.messages()); got != 3 {
		t.Fatalf("after a dropped connection INBOX has %d messages, want 3", got)
	}
	c.run(`
		C: DELE 1
		S: +OK Message 1 deleted
		C: DELE 3
		S: +OK Message 3 deleted
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (2 messages deleted)
		S: <EOF>
	`)
	ms := e.messages()
	if len(ms) != 1 || ms[0].UID != uids[1] {
		t.Fatalf("after QUIT INBOX holds %+v, want only UID %d", ms, uids[1])
	}
}

func TestKeepDeleted(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	u2 := e.deliver(testMsg("b", "b\r\n"))
	n := e.start(nil, func(c *pop3d.Config) { c.KeepDeleted = true })
	c := dial(t, n.addr)
	c.login()
	c.ok("RETR 1")
	c.body()
	c.run(`
		C: DELE 1
		S: +OK Message 1 deleted
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (1 messages deleted)
	`)
	ms := e.messages()
	if len(ms) != 2 {
		t.Fatalf("KeepDeleted: INBOX has %d messages, want 2", len(ms))
	}
	if ms[0].Flags.System&mailstore.FlagSeen == 0 || len(ms[0].Flags.Keywords) != 1 || ms[0].Flags.Keywords[0] != pop3d.HiddenKeyword {
		t.Fatalf("hidden message flags %+v", ms[0].Flags)
	}
	// The next session no longer sees it; the other one keeps number 1.
	c = dial(t, n.addr)
	c.login()
	c.run(fmt.Sprintf(`
		C: UIDL
		S: +OK Unique-ID listing follows
		S: 1 %d.%d
		S: .
		C: QUIT
		S: +OK *
	`, e.inbox.UIDValidity, u2))
}

func TestMarkSeen(t *testing.T) {
	for _, mark := range []bool{true, false} {
		t.Run(fmt.Sprint("mark=", mark), func(t *testing.T) {
			e := newEnv(t)
			e.deliver(testMsg("a", "a\r\n"))
			e.deliver(testMsg("b", "b\r\n"))
			e.deliver(testMsg("c", "c\r\n"))
			n := e.start(nil, func(c *pop3d.Config) { c.MarkSeenOnRetr = mark })
			c := dial(t, n.addr)
			c.login()
			c.ok("RETR 1")
			c.body()
			c.ok("TOP 2 1") // TOP never marks
			c.body()
			c.ok("RETR 3")
			c.body()
			c.ok("DELE 3") // retrieved and deleted: expunged, no need to mark
			c.ok("QUIT")
			ms := e.messages()
			if len(ms) != 2 {
				t.Fatalf("%d messages", len(ms))
			}
			if got := ms[0].Flags.System&mailstore.FlagSeen != 0; got != mark {
				t.Errorf("RETR 1: \\Seen=%v, want %v", got, mark)
			}
			if ms[1].Flags.System&mailstore.FlagSeen != 0 {
				t.Errorf("TOP set \\Seen")
			}
		})
	}
	// A dropped connection still marks what it downloaded.
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.ok("RETR 1")
	c.body()
	c.c.Close()
	waitFor(t, "\\Seen after disconnect", func() bool {
		ms := e.messages()
		return ms[0].Flags.System&mailstore.FlagSeen != 0
	})
}

func TestGarbageBeforeLogin(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	for _, junk := range []string{
		"GET / HTTP/1.1",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"EHLO mail.example.net",
		strings.Repeat("A", 300),
		"USER a\x00b",
	} {
		c := dial(t, n.addr)
		c.send(junk)
		if l := c.line(); !strings.HasPrefix(l, "-ERR ") || !strings.HasSuffix(l, ", closing connection") {
			t.Errorf("%q: got %q", junk, l)
		}
		c.eof()
	}
}

func TestLimitsAfterLogin(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, func(c *pop3d.Config) { c.MaxErrors = 3 })
	c := dial(t, n.addr)
	c.login()
	c.run(`
		C: ` + strings.Repeat("N", 300) + `
		S: -ERR Command line too long (limit 255 octets, RFC 2449)
		C: NOOP
		S: +OK
		C: XYZ
		S: -ERR Unknown command
		C: RETR 1
		S: -ERR No such message; too many errors, closing connection
		S: <EOF>
	`)
	// Exactly 255 octets with CRLF is accepted.
	c = dial(t, n.addr)
	c.login()
	c.expect("UIDL "+strings.Repeat("9", 255-7), "-ERR Invalid message number")
	c.expect("UIDL "+strings.Repeat("9", 256-7), "-ERR Command line too long")
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, func(c *pop3d.Config) {
		c.PreLoginTimeout = 300 * time.Millisecond
		c.IdleTimeout = 900 * time.Millisecond
	})
	c := dial(t, n.addr)
	start := time.Now()
	c.run(`
		S: -ERR Autologout: no command received for too long
		S: <EOF>
	`)
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("pre-login timeout took %v", d)
	}
	c = dial(t, n.addr)
	c.login()
	time.Sleep(500 * time.Millisecond) // longer than the pre-login timeout
	c.ok("NOOP")
	c.run(`
		S: -ERR Autologout: no command received for too long
		S: <EOF>
	`)
}

func TestPipelining(t *testing.T) {
	e := newEnv(t)
	var msgs []string
	for i := range 5 {
		m := testMsg(fmt.Sprint("p", i), strings.Repeat(fmt.Sprintf(".line %d\r\n", i), 100))
		msgs = append(msgs, m)
		e.deliver(m)
	}
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	// Everything in one write (RFC 2449 §6.6), login included.
	var cmds []string
	cmds = append(cmds, "CAPA", "USER "+testUser, "PASS "+testPass, "STAT")
	for i := range msgs {
		cmds = append(cmds, fmt.Sprintf("RETR %d", i+1), fmt.Sprintf("DELE %d", i+1))
	}
	cmds = append(cmds, "STAT", "QUIT")
	c.send(cmds...)
	c.body() // CAPA's list after its +OK
	if l := c.line(); l != "+OK Send your password" {
		t.Fatal(l)
	}
	if l := c.line(); !strings.HasPrefix(l, "+OK Maildrop locked") {
		t.Fatal(l)
	}
	if l := c.line(); !strings.HasPrefix(l, "+OK 5 ") {
		t.Fatal(l)
	}
	for i, m := range msgs {
		if l := c.line(); l != fmt.Sprintf("+OK %d octets", len(m)) {
			t.Fatal(l)
		}
		if got := string(c.body()); got != m {
			t.Fatalf("RETR %d mismatch", i+1)
		}
		if l := c.line(); l != fmt.Sprintf("+OK Message %d deleted", i+1) {
			t.Fatal(l)
		}
	}
	c.run(`
		S: +OK 0 0
		S: +OK pop.example.org POP3 server signing off (5 messages deleted)
		S: <EOF>
	`)
	if got := len(e.messages()); got != 0 {
		t.Fatalf("%d messages left", got)
	}
}

func TestPerIPLimit(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, func(c *pop3d.Config) { c.MaxConnsPerIP = 2 })
	dial(t, n.addr)
	b := dial(t, n.addr)
	c := dialRaw(t, n.addr)
	c.run(`
		S: -ERR [SYS/TEMP] Too many connections from your address, try again later
		S: <EOF>
	`)
	b.ok("QUIT")
	waitFor(t, "a free slot", func() bool {
		c := dialRaw(t, n.addr)
		return strings.HasPrefix(c.line(), "+OK")
	})
}

func TestUTF8(t *testing.T) {
	e := newEnv(t)
	e.addAccount("jose@example.org", "contraseña ñ")
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.run(`
		C: UTF8
		S: +OK UTF8 mode enabled
		C: USER jose@example.org
		S: +OK Send your password
		C: PASS contraseña ñ
		S: +OK Maildrop locked and ready, 0 messages
		C: QUIT
		S: +OK *
	`)
	// Invalid UTF-8 is not a command line.
	c = dial(t, n.addr)
	c.send("USER \xff\xfe")
	if l := c.line(); !strings.HasPrefix(l, "-ERR Invalid command line") {
		t.Fatal(l)
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	n := e.start(nil, nil)
	idle := dial(t, n.addr)
	busy := dial(t, n.addr)
	busy.login()
	busy.ok("DELE 1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{idle, busy} {
		c.run(`
			S: -ERR [SYS/TEMP] Server shutting down, try again later
			S: <EOF>
		`)
	}
	// No QUIT, so nothing was deleted.
	if got := len(e.messages()); got != 1 {
		t.Fatalf("%d messages after shutdown, want 1", got)
	}
	if c, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Shutdown")
	}
}

// loginWhenFree logs in as soon as the maildrop lock is free.
func loginWhenFree(t testing.TB, addr string) *client {
	t.Helper()
	var c *client
	waitFor(t, "the maildrop lock", func() bool {
		c = dial(t, addr)
		c.ok("USER " + testUser)
		r := c.cmd("PASS " + testPass)
		if strings.HasPrefix(r, "-ERR [IN-USE]") {
			c.c.Close()
			return false
		}
		if !strings.HasPrefix(r, "+OK") {
			t.Fatalf("PASS: %q", r)
		}
		return true
	})
	return c
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
