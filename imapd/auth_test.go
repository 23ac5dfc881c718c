package imapd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"net/netip"
)

const capsPreAuth = "IMAP4rev1 IMAP4rev2 STARTTLS AUTH=PLAIN AUTH=LOGIN SASL-IR LITERAL+ ID ENABLE IDLE UNSELECT NAMESPACE UIDPLUS MULTIAPPEND CATENATE MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE ESEARCH SEARCHRES SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC STATUS=SIZE APPENDLIMIT=52428800 BINARY UTF8=ACCEPT OBJECTID SAVEDATE PREVIEW METADATA METADATA-SERVER LIST-METADATA QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE"
const capsPostAuth = "IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE UNSELECT NAMESPACE UIDPLUS MULTIAPPEND CATENATE MOVE CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE ESEARCH SEARCHRES SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC STATUS=SIZE APPENDLIMIT=52428800 BINARY UTF8=ACCEPT OBJECTID SAVEDATE PREVIEW METADATA METADATA-SERVER LIST-METADATA QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// RFC 9051 §6.1, §6.2: commands valid in any state and login.
func TestTranscriptNotAuthenticated(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.run([]step{
		{"CAPABILITY", []string{"* CAPABILITY " + capsPreAuth, "$T OK CAPABILITY completed"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
		{`ID ("name" "test" "version" "1")`, []string{`* ID ("name" "Postrider")`, "$T OK ID completed"}},
		{"ID NIL", []string{`* ID ("name" "Postrider")`, "$T OK ID completed"}},
		{"SELECT INBOX", []string{"$T BAD Log in first"}},
		{"LOGIN alice@example.org wrong", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"LOGIN alice@example.org pw-alice", []string{"$T OK [CAPABILITY " + capsPostAuth + "] Logged in"}},
		{"LOGIN alice@example.org pw-alice", []string{"$T BAD Already logged in"}},
		{"ENABLE CONDSTORE X-UNKNOWN", []string{"* ENABLED CONDSTORE", "$T OK ENABLE completed"}},
		{"ENABLE CONDSTORE QRESYNC", []string{"* ENABLED QRESYNC", "$T OK ENABLE completed"}},
		{"NAMESPACE", []string{`* NAMESPACE (("" "/")) NIL NIL`, "$T OK NAMESPACE completed"}},
		{"FETCH 1 FLAGS", []string{"$T BAD No mailbox selected"}},
		{"BLURDYBLOOP", []string{"$T BAD Unknown command"}},
		{"UID NOOP", []string{"$T BAD Unknown command"}},
		{"LOGOUT", []string{"* BYE Logging out", "$T OK LOGOUT completed"}},
	})
	c.eof()
}

// Quoted strings and literals as LOGIN arguments (RFC 9051 §4.3), and
// LITERAL+ (RFC 7888).
func TestTranscriptLoginLiterals(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.send(`a LOGIN {17}`)
	check(t, "continuation", []string{c.line()}, []string{"+ Ready for literal data"})
	c.send(`alice@example.org "pw-alice"`)
	check(t, "login", c.until("a"), []string{"re:a OK \\[CAPABILITY .*\\] Logged in"})

	c = e.dial()
	c.send("b LOGIN {15+}\r\nbob@example.org {6+}\r\npw-bob")
	check(t, "literal+", c.until("b"), []string{"re:b OK \\[CAPABILITY .*\\] Logged in"})
}

// AUTHENTICATE PLAIN and LOGIN, with and without SASL-IR (RFC 9051 §6.2.2,
// RFC 4959).
func TestTranscriptAuthenticate(t *testing.T) {
	e := newEnv(t)
	plain := b64("\x00alice@example.org\x00pw-alice")

	c := e.dial()
	c.run([]step{{"AUTHENTICATE PLAIN " + plain, []string{"re:$T OK \\[CAPABILITY .*\\] Logged in"}}})

	c = e.dial()
	c.send("a AUTHENTICATE PLAIN")
	check(t, "challenge", []string{c.line()}, []string{"+ "})
	c.send(plain)
	check(t, "plain", c.until("a"), []string{"re:a OK \\[CAPABILITY .*\\] Logged in"})

	c = e.dial()
	c.send("a AUTHENTICATE LOGIN")
	check(t, "user", []string{c.line()}, []string{"+ " + b64("Username:")})
	c.send(b64("bob@example.org"))
	check(t, "pass", []string{c.line()}, []string{"+ " + b64("Password:")})
	c.send(b64("pw-bob"))
	check(t, "login", c.until("a"), []string{"re:a OK \\[CAPABILITY .*\\] Logged in"})

	c = e.dial()
	c.send("a AUTHENTICATE PLAIN")
	c.line()
	c.send("*")
	check(t, "cancel", c.until("a"), []string{"a BAD Authentication cancelled"})
	c.run([]step{
		{"AUTHENTICATE PLAIN !!!", []string{"$T BAD Invalid base64 initial response"}},
		{"AUTHENTICATE CRAM-MD5", []string{"$T NO [CANNOT] Unsupported authentication mechanism"}},
	})
	c = e.dial()
	c.run([]step{
		{"AUTHENTICATE PLAIN " + b64("\x00alice@example.org\x00nope"), []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"AUTHENTICATE PLAIN =", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
	})
}

// Three failed logins end the connection.
func TestTranscriptTooManyAuthFailures(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.run([]step{
		{"LOGIN nobody@example.org x", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"LOGIN nobody@example.org x", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"LOGIN nobody@example.org x", []string{"* BYE Too many failed logins", "$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
	})
	c.eof()
}

// STARTTLS (RFC 9051 §6.2.1): plaintext pipelined after the command is
// discarded, not executed inside TLS.
func TestTranscriptStartTLS(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.sendRaw("a STARTTLS\r\nb LOGIN alice@example.org pw-alice\r\n")
	check(t, "starttls", []string{c.line()}, []string{"a OK Begin TLS negotiation now"})
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tcl := &tclient{t: t, conn: tc, br: bufio.NewReader(tc)}
	// The injected "b LOGIN" must not have run: we are not logged in.
	tcl.run([]step{
		{"SELECT INBOX", []string{"$T BAD Log in first"}},
		{"CAPABILITY", []string{"* CAPABILITY " + strings.Replace(capsPreAuth, "STARTTLS ", "", 1), "$T OK CAPABILITY completed"}},
		{"STARTTLS", []string{"$T BAD STARTTLS not available"}},
		{"LOGIN alice@example.org pw-alice", []string{"re:$T OK \\[CAPABILITY .*\\] Logged in"}},
	})
}

// Implicit TLS (port 993).
func TestImplicitTLS(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln, true)
	tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &tclient{t: t, conn: tc, br: bufio.NewReader(tc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN") {
		t.Fatalf("greeting %q", g)
	}
	c.login("alice")
}

// dialProxied connects through the PROXY protocol as if from src, so that
// the server sees a non-loopback client.
func dialProxied(t *testing.T, addr string, src string) *tclient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_, port, _ := net.SplitHostPort(addr)
	fmt.Fprintf(nc, "PROXY TCP4 %s 127.0.0.1 40000 %s\r\n", src, port)
	c := &tclient{t: t, conn: nc, br: bufio.NewReader(nc)}
	return c
}

// Without TLS, a non-loopback client may not send passwords (RFC 9051
// §6.2.3 LOGINDISABLED); a trusted proxy's PROXY header sets the client
// address.
func TestTranscriptLoginDisabled(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	c := dialProxied(t, e.addr, "203.0.113.7")
	if g := c.line(); !strings.Contains(g, "STARTTLS LOGINDISABLED") || strings.Contains(g, "AUTH=") {
		t.Fatalf("greeting %q", g)
	}
	c.run([]step{
		{"LOGIN alice@example.org pw-alice", []string{"$T NO [PRIVACYREQUIRED] Use STARTTLS first"}},
		{"AUTHENTICATE PLAIN " + b64("\x00alice@example.org\x00pw-alice"), []string{"$T NO [PRIVACYREQUIRED] Use STARTTLS first"}},
	})
	// A connection from the proxy without the header is refused by the
	// listener wrapper (the header is required from trusted networks).
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "a CAPABILITY\r\n")
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := bufio.NewReader(nc).ReadString('\n'); err == nil {
		t.Fatalf("unexpected reply without PROXY header: %q", l)
	}
}

// Garbage before login ends the connection (RFC 9051 §7.1.5 BYE).
func TestTranscriptGarbagePreAuth(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.sendRaw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n")
	check(t, "binary", []string{c.line()}, []string{"* BYE Invalid command; closing"})
	c.eof()

	c = e.dial()
	c.send("GET / HTTP/1.1")
	check(t, "http 1", []string{c.line()}, []string{"GET BAD Unknown command"})
	c.send("Host: example.org")
	check(t, "http 2", []string{c.line()}, []string{"Host: BAD Unknown command"})
	c.send("")
	check(t, "http 3", []string{c.line()}, []string{"* BYE Invalid command; closing"})
	c.eof()

	c = e.dial()
	c.run([]step{
		{"FOO", []string{"$T BAD Unknown command"}},
		{"BAR", []string{"$T BAD Unknown command"}},
	})
	c.send("T3 BAZ")
	check(t, "third", []string{c.line(), c.line()}, []string{"T3 BAD Unknown command", "* BYE Too many invalid commands"})
	c.eof()
}
