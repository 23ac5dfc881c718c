package pop3d_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/pop3d"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSASL(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	plain := b64("\x00" + testUser + "\x00" + testPass)
	cases := []struct{ name, script string }{
		{"mechanism list", `
			C: AUTH
			S: +OK Supported mechanisms follow
			S: PLAIN
			S: LOGIN
			S: .`},
		{"PLAIN with initial response", `
			C: AUTH PLAIN ` + plain + `
			S: +OK Maildrop locked and ready, 0 messages
			C: QUIT
			S: +OK *`},
		{"plain lower case, no initial response", `
			C: AUTH plain
			S: + 
			C: ` + plain + `
			S: +OK Maildrop locked and ready, 0 messages
			C: QUIT
			S: +OK *`},
		{"LOGIN", `
			C: AUTH LOGIN
			S: + ` + b64("Username:") + `
			C: ` + b64(testUser) + `
			S: + ` + b64("Password:") + `
			C: ` + b64(testPass) + `
			S: +OK Maildrop locked and ready, 0 messages
			C: QUIT
			S: +OK *`},
		{"LOGIN with initial response", `
			C: AUTH LOGIN ` + b64(testUser) + `
			S: + ` + b64("Password:") + `
			C: ` + b64(testPass) + `
			S: +OK Maildrop locked and ready, 0 messages
			C: QUIT
			S: +OK *`},
		{"cancel", `
			C: AUTH PLAIN
			S: + 
			C: *
			S: -ERR Authentication cancelled
			C: AUTH LOGIN
			S: + *
			C: *
			S: -ERR Authentication cancelled`},
		{"bad base64 and empty initial response", `
			C: AUTH PLAIN !!!
			S: -ERR Invalid base64 in authentication response
			C: AUTH PLAIN =
			S: -ERR [AUTH] Malformed SASL response`},
		{"wrong password", `
			C: AUTH PLAIN ` + b64("\x00"+testUser+"\x00nope") + `
			S: -ERR [AUTH] Invalid user name or password`},
		{"other identity", `
			C: AUTH PLAIN ` + b64("bob@example.org\x00"+testUser+"\x00"+testPass) + `
			S: -ERR [AUTH] Invalid user name or password`},
		{"unknown mechanism", `
			C: AUTH CRAM-MD5
			S: -ERR Unsupported authentication mechanism
			C: AUTH PLAIN a b
			S: -ERR Usage: AUTH mechanism [initial-response]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dial(t, n.addr).run(tc.script)
		})
	}
	// An over-long SASL response closes the connection.
	c := dial(t, n.addr)
	c.ok("USER " + testUser) // unrelated state is fine
	c.send("AUTH PLAIN")
	c.line()
	c.send(strings.Repeat("QUFB", 1000))
	c.run(`
		S: -ERR Authentication response too long, closing connection
		S: <EOF>
	`)
}

func TestThrottledLogin(t *testing.T) {
	e := newEnv(t)
	e.authOpts.Throttle = auth.ThrottlePolicy{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond,
		PairFree: 1, PairBlock: 2, AccountMaxDelay: time.Millisecond}
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.run(`
		C: USER ` + testUser + `
		S: +OK *
		C: PASS bad1
		S: -ERR [AUTH] Invalid user name or password
		C: USER ` + testUser + `
		S: +OK *
		C: PASS bad2
		S: -ERR [AUTH] Invalid user name or password
		C: USER ` + testUser + `
		S: +OK *
		C: PASS ` + testPass + `
		S: -ERR [SYS/TEMP] Too many failed logins, try again in *
		S: <EOF>
	`)
}

// TestSTLS covers RFC 2595 §4, including plaintext pipelined after STLS
// (which must be discarded, CVE-2011-0411 class).
func TestSTLS(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.send("STLS", "USER "+testUser) // the USER is an injection attempt
	if l := c.line(); l != "+OK Begin TLS negotiation" {
		t.Fatal(l)
	}
	startTLS(t, c)
	c.run(`
		C: PASS ` + testPass + `
		S: -ERR Send USER first
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
		S: IMPLEMENTATION Postrider
		S: .
		C: STLS
		S: -ERR Already using TLS
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS ` + testPass + `
		S: +OK Maildrop locked and ready, 0 messages
		C: QUIT
		S: +OK *
	`)
	// Without a TLS configuration there is no STLS.
	n2 := e.start(nil, func(c *pop3d.Config) { c.TLS = nil })
	dial(t, n2.addr).run(`
		C: STLS
		S: -ERR STLS is not available
	`)
}

func startTLS(t *testing.T, c *client) {
	t.Helper()
	_, pool := testTLS()
	tc := tls.Client(c.c, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.c = tc
	c.r = bufio.NewReader(tc)
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("x", "y\r\n"))
	n := e.start(nil, nil)
	c := dialTLS(t, n.tlsAddr)
	c.run(`
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
		S: IMPLEMENTATION Postrider
		S: .
		C: AUTH PLAIN ` + b64("\x00"+testUser+"\x00"+testPass) + `
		S: +OK Maildrop locked and ready, 1 messages
		C: QUIT
		S: +OK *
	`)
}

// TestInsecureAuth checks the plaintext policy for a non-loopback client:
// the test connects on 127.0.0.1 as a trusted proxy whose PROXY header
// says the client is 192.0.2.1 (no traffic leaves the machine).
func TestInsecureAuth(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, func(c *pop3d.Config) { c.TrustedProxies = loopbackPrefix })
	c := dialRaw(t, n.addr)
	c.send(strings.TrimSuffix(proxyV1("192.0.2.1"), "\r\n"))
	c.run(`
		S: +OK *
		C: CAPA
		S: +OK Capability list follows
		S: TOP
		S: UIDL
		S: RESP-CODES
		S: PIPELINING
		S: EXPIRE NEVER
		S: UTF8 USER
		S: AUTH-RESP-CODE
		S: STLS
		S: IMPLEMENTATION Postrider
		S: .
		C: USER ` + testUser + `
		S: -ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS (or port 995) first
		C: PASS ` + testPass + `
		S: -ERR Send USER first
		C: AUTH PLAIN ` + b64("\x00"+testUser+"\x00"+testPass) + `
		S: -ERR [AUTH] Plaintext authentication is not allowed without TLS; use STLS (or port 995) first
		C: AUTH LOGIN
		S: -ERR [AUTH] *
		C: AUTH
		S: +OK Supported mechanisms follow
		S: .
		C: STLS
		S: +OK Begin TLS negotiation
	`)
	startTLS(t, c)
	c.login()
	c.ok("QUIT")

	// A connection from a trusted proxy without a PROXY header is refused.
	c = dialRaw(t, n.addr)
	c.send("CAPA")
	c.eof()

	// The implicit-TLS listener takes the PROXY header before the TLS
	// handshake; over TLS the non-loopback client may log in.
	c = dialRaw(t, n.tlsAddr)
	c.send(strings.TrimSuffix(proxyV1("192.0.2.1"), "\r\n"))
	startTLS(t, c)
	c.run(`
		S: +OK *
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS ` + testPass + `
		S: +OK Maildrop locked and ready, 0 messages
		C: QUIT
		S: +OK *
	`)

	// With AllowInsecureAuth the same client may log in in plaintext.
	n2 := e.start(nil, func(c *pop3d.Config) {
		c.TrustedProxies = loopbackPrefix
		c.AllowInsecureAuth = true
	})
	c = dialRaw(t, n2.addr)
	c.send(strings.TrimSuffix(proxyV1("192.0.2.1"), "\r\n"))
	c.line()
	c.login()
	c.ok("QUIT")
}
