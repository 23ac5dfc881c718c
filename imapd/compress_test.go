package imapd

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// zconn is the client side of a compressed connection (RFC 4978): it
// deflates what the test sends, with a sync flush per write, and inflates
// what the server sends.
type zconn struct {
	net.Conn
	r io.Reader
	w *flate.Writer
}

func (z *zconn) Read(b []byte) (int, error) { return z.r.Read(b) }
func (z *zconn) Write(b []byte) (int, error) {
	n, err := z.w.Write(b)
	if err == nil {
		err = z.w.Flush()
	}
	return n, err
}

// compress switches the client to DEFLATE after the server's OK.
func (c *tclient) compress() *zconn {
	c.t.Helper()
	if r := c.cmd("Z", "COMPRESS DEFLATE"); len(r) != 1 || r[0] != "Z OK DEFLATE active" {
		c.t.Fatalf("COMPRESS: %q", r)
	}
	w, _ := flate.NewWriter(c.conn, flate.DefaultCompression)
	z := &zconn{Conn: c.conn, r: flate.NewReader(c.br), w: w}
	c.conn, c.br = z, bufio.NewReader(z)
	return z
}

// TestTranscriptCompress: COMPRESS only after login (RFC 4978 §5
// command-auth), then every command and response compressed, literals in
// both directions, and NO [COMPRESSIONACTIVE] for a second COMPRESS.
func TestTranscriptCompress(t *testing.T) {
	e := newEnv(t)
	body := testMessage("deflated", strings.Repeat("Lorem ipsum dolor sit amet. ", 400)+"\r\n")
	e.deliver("alice", "INBOX", body)
	c := e.dial()
	c.run([]step{{"COMPRESS DEFLATE", []string{"$T BAD Log in first"}}})
	c.login("alice")
	if caps := c.cmd("C", "CAPABILITY")[0]; !strings.Contains(caps+" ", " COMPRESS=DEFLATE ") {
		t.Errorf("CAPABILITY lacks COMPRESS=DEFLATE: %s", caps)
	}
	c.run([]step{
		{"COMPRESS LZW", []string{"$T BAD Unknown compression mechanism"}},
		{"COMPRESS", []string{"$T BAD Missing arguments"}},
		{"COMPRESS DEFLATE extra", []string{"re:$T BAD .*"}},
	})
	c.compress()
	msg := testMessage("appended compressed", "z\r\n")
	c.run([]step{{"COMPRESS DEFLATE", []string{"$T NO [COMPRESSIONACTIVE] DEFLATE is already active"}}})
	if r := c.cmd("E", "EXAMINE INBOX"); !strings.HasPrefix(r[len(r)-1], "E OK [READ-ONLY]") {
		t.Fatalf("EXAMINE: %q", r)
	}
	c.run([]step{
		{"FETCH 1 (BODY.PEEK[])", []string{"* 1 FETCH (BODY[] " + lit(body) + ")", "$T OK FETCH completed"}},
		{fmt.Sprintf("APPEND Drafts {%d+}\r\n%s", len(msg), msg), []string{`re:$T OK \[APPENDUID \d+ 1\] APPEND completed`}},
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
	// A synchronizing literal: the continuation request comes compressed.
	c.send(fmt.Sprintf("A APPEND Drafts {%d}", len(msg)))
	if l := c.line(); l != "+ Ready for literal data" {
		t.Fatalf("continuation: %q", l)
	}
	c.send(msg)
	check(t, "APPEND", c.until("A"), []string{`re:A OK \[APPENDUID \d+ 2\] APPEND completed`})
	c.run([]step{{"LOGOUT", []string{"re:\\* BYE .*", "$T OK LOGOUT completed"}}})
	c.eof()
}

// TestCompressTLS: compression above TLS (RFC 4978 §3): STARTTLS, login,
// COMPRESS, then the deflate stream inside the TLS session.
func TestCompressTLS(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("over tls", "t\r\n"))
	c := e.dial()
	c.run([]step{{"STARTTLS", []string{"$T OK Begin TLS negotiation now"}}})
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	c.login("alice")
	c.compress()
	c.run([]step{
		{"STARTTLS", []string{"$T BAD Already logged in"}},
		{"STATUS INBOX (MESSAGES)", []string{"* STATUS INBOX (MESSAGES 1)", "$T OK STATUS completed"}},
	})
}

// TestCompressIdle: IDLE on a compressed connection sends each update as
// it happens, flushed (RFC 4978 §4), and goes on idling.
func TestCompressIdle(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("one", "1\r\n"))
	c := e.dial()
	c.login("alice")
	c.compress()
	c.cmd("S", "SELECT INBOX")
	c.send("I IDLE")
	if l := c.line(); l != "+ idling" {
		t.Fatalf("IDLE: %q", l)
	}
	for i := 2; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprintf("m%d", i), "x\r\n"))
		check(t, "update in IDLE", []string{c.line(), c.line()}, []string{fmt.Sprintf("* %d EXISTS", i), "re:\\* \\d+ RECENT"})
	}
	c.send("DONE")
	check(t, "DONE", c.until("I"), []string{"I OK IDLE completed"})
	c.run([]step{{"NOOP", []string{"$T OK NOOP completed"}}})
}

// TestCompressGarbage: input that is not DEFLATE ends the session with a
// (compressed) BYE.
func TestCompressGarbage(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.login("alice")
	z := c.compress()
	c.run([]step{{"NOOP", []string{"$T OK NOOP completed"}}})
	// A block of the reserved type 3 (RFC 1951 §3.2.3): BFINAL 1, BTYPE 11.
	if _, err := z.Conn.Write([]byte{0x07, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if l := c.line(); l != "* BYE Invalid compressed data" {
		t.Fatalf("after garbage: %q", l)
	}
	c.eof()
}

// TestCompressBomb: the line and literal limits apply to the decompressed
// octets. A command line of 64 MB of "a" (about 64 KB compressed) is cut
// at the line limit with BYE [TOOBIG], and the server reads no more than
// it would of plain input.
func TestCompressBomb(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.login("alice")
	z := c.compress()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	go func() {
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		_, _ = z.w.Write([]byte("B NOOP "))
		for i := 0; i < 64; i++ {
			if _, err := z.w.Write(chunk); err != nil {
				return
			}
		}
		_ = z.w.Flush()
	}()
	if l := c.line(); l != "* BYE [TOOBIG] Command line too long" {
		t.Fatalf("bomb: %q", l)
	}
	c.eof()
	// Everything allocated meanwhile, client included (its 1 MB chunk and
	// 1.2 MB deflater), stays far below the 64 MB the line inflates to.
	runtime.ReadMemStats(&m1)
	if d := m1.TotalAlloc - m0.TotalAlloc; d > 16<<20 {
		t.Errorf("%d MB allocated while the server read the bomb", d>>20)
	} else {
		t.Logf("allocated while the server read the bomb: %d KB", d>>10)
	}

	// A literal over the limit is refused before a single octet of it.
	c = e.dial()
	c.login("alice")
	c.compress()
	c.send("L APPEND INBOX {99999999999+}")
	check(t, "huge literal", []string{c.line()}, []string{"* BYE [TOOBIG] Literal too large"})
	c.eof()
}

// TestCompressShutdown: Shutdown's BYE reaches compressed sessions, one
// waiting for a command and one in IDLE with a mailbox selected (whose
// wake-ups go through the inflater), compressed.
func TestCompressShutdown(t *testing.T) {
	e := newEnv(t)
	waiting := e.dial()
	waiting.login("alice")
	waiting.compress()
	idle := e.dial()
	idle.login("bob")
	idle.compress()
	idle.cmd("S", "SELECT INBOX")
	idle.send("I IDLE")
	check(t, "idle", []string{idle.line()}, []string{"+ idling"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*tclient{"waiting": waiting, "idle": idle} {
		check(t, name, []string{c.line()}, []string{"* BYE [UNAVAILABLE] Server shutting down"})
		c.eof()
	}
}

// TestCompressIdleMailboxDeleted: the selected mailbox deleted by another
// session while a compressed session idles on it: BYE [NONEXISTENT], sent
// from within the inflater's read.
func TestCompressIdleMailboxDeleted(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateMailbox(context.Background(), e.accts["alice"].ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	a := e.dial()
	a.login("alice")
	a.compress()
	a.cmd("S", "SELECT Work")
	a.send("I IDLE")
	check(t, "idle", []string{a.line()}, []string{"+ idling"})
	if err := e.store.DeleteMailbox(context.Background(), e.accts["alice"].ID, "Work"); err != nil {
		t.Fatal(err)
	}
	check(t, "bye", []string{a.line()}, []string{"* BYE [NONEXISTENT] Selected mailbox was deleted; closing"})
	a.eof()
}
