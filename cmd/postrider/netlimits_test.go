package main_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
)

// The three protocols' implicit-TLS and plaintext listeners, with the first
// line each sends to a client it serves and to one it refuses for load.
var protoListeners = []struct {
	tlsName, plainName string
	greeting, refusal  string
}{
	{"SUBMISSIONS", "SMTP", "220 ", "421 4.7.0 "},
	{"IMAPS", "IMAP", "* OK ", "* BYE [UNAVAILABLE] "},
	{"POP3S", "POP3", "+OK ", "-ERR [SYS/TEMP] "},
}

// TestServeTLSOffersOnlyAEAD: every implicit-TLS listener of `postrider
// serve` refuses a TLS 1.2 client that offers only CBC suites with SHA-1
// MACs, and one that offers at most TLS 1.1, and serves a TLS 1.2 client
// offering AES-GCM or ChaCha20-Poly1305.
func TestServeTLSOffersOnlyAEAD(t *testing.T) {
	n := startNode(t, pgtest.NewDatabase(t))
	handshake := func(addr string, cfg *tls.Config) (*tls.Conn, error) {
		cfg.InsecureSkipVerify = true // the node's self-signed certificate
		d := &net.Dialer{Timeout: 5 * time.Second}
		return tls.DialWithDialer(d, "tcp", addr, cfg)
	}
	for _, p := range protoListeners {
		addr := n.addrs[p.tlsName]
		for _, tc := range []struct {
			name string
			cfg  *tls.Config
			ok   bool
		}{
			{"CBC-SHA only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}}, false},
			{"CBC-SHA256 only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false},
			{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
			{"AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
			{"ChaCha20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
			{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		} {
			c, err := handshake(addr, tc.cfg)
			if !tc.ok {
				if err == nil {
					st := c.ConnectionState()
					t.Errorf("%s %s: handshake succeeded with %s %s", p.tlsName, tc.name,
						tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
					c.Close()
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %s: %v", p.tlsName, tc.name, err)
				continue
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(l, p.greeting) {
				t.Errorf("%s %s: greeting %q %v", p.tlsName, tc.name, l, err)
			}
			c.Close()
		}
	}
}

// TestServeMaxConns: with POSTRIDER_MAX_CONNS=2 each protocol serves two
// connections over its two listeners (plaintext and implicit TLS) and
// refuses a third with its temporary error (over TLS on the TLS port),
// while the open ones keep working; closing one frees a slot.
func TestServeMaxConns(t *testing.T) {
	n := startNode(t, pgtest.NewDatabase(t), "POSTRIDER_MAX_CONNS=2", "POSTRIDER_MAX_CONNS_PER_IP=0")
	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	open := func(name string, useTLS bool) (conn, string) {
		t.Helper()
		var c net.Conn
		var err error
		if useTLS {
			c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.addrs[name], &tls.Config{InsecureSkipVerify: true})
		} else {
			c, err = net.DialTimeout("tcp", n.addrs[name], 5*time.Second)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: first line: %v", name, err)
		}
		return conn{c, r}, l
	}
	// cmd sends a harmless command and returns the reply's first line.
	cmd := func(cn conn, line string) string {
		t.Helper()
		cn.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := cn.c.Write([]byte(line + "\r\n")); err != nil {
			t.Fatal(err)
		}
		l, err := cn.r.ReadString('\n')
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return l
	}
	noop := map[string]struct{ cmd, ok string }{
		"SMTP": {"NOOP", "250 "}, "IMAP": {"a NOOP", "a OK"}, "POP3": {"CAPA", "+OK"},
	}
	for _, p := range protoListeners {
		t.Run(p.plainName, func(t *testing.T) {
			c1, g1 := open(p.plainName, false)
			_, g2 := open(p.tlsName, true)
			if !strings.HasPrefix(g1, p.greeting) || !strings.HasPrefix(g2, p.greeting) {
				t.Fatalf("greetings %q %q", g1, g2)
			}
			for _, useTLS := range []bool{false, true} {
				name := p.plainName
				if useTLS {
					name = p.tlsName
				}
				c3, g3 := open(name, useTLS)
				if !strings.HasPrefix(g3, p.refusal) || !strings.Contains(g3, "ry again later") {
					t.Errorf("%s: third connection got %q, want %q…try again later", name, g3, p.refusal)
				}
				c3.c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if l, err := c3.r.ReadString('\n'); err == nil {
					t.Errorf("%s: refused connection stays open: %q", name, l)
				}
			}
			if got := cmd(c1, noop[p.plainName].cmd); !strings.HasPrefix(got, noop[p.plainName].ok) {
				t.Errorf("open connection after refusals: %q", got)
			}
			c1.c.Close()
			// The server notices the close when its read fails: retry until
			// the slot is free.
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, g := open(p.plainName, false)
				if strings.HasPrefix(g, p.greeting) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("slot not freed: %q", g)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	if !strings.Contains(n.logs(), "connection refused") {
		t.Errorf("refusals not logged:\n%s", n.logs())
	}
}

// TestServeProxyUnknownIsRemote: a client that a trusted proxy (here on
// loopback) announces as unknown — "PROXY UNKNOWN" (v1) or a v2 LOCAL
// header — is a remote client: no plaintext authentication without TLS on
// any protocol, although the proxy itself is on loopback.
func TestServeProxyUnknownIsRemote(t *testing.T) {
	n := startNode(t, pgtest.NewDatabase(t), "POSTRIDER_TRUSTED_PROXIES=127.0.0.0/8")
	headers := map[string]string{
		"v1": "PROXY UNKNOWN\r\n",
		"v2": "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", // LOCAL, no addresses
	}
	for _, v := range []string{"v1", "v2"} {
		dial := func(name string) *lineConn {
			l := dialLines(t, n.addrs[name])
			l.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := l.c.Write([]byte(headers[v])); err != nil {
				t.Fatal(err)
			}
			return l
		}
		smtp := dial("SUBMISSION")
		smtp.until("220 ", 10*time.Second)
		smtp.send("EHLO client.example")
		for _, l := range smtp.until("250 ", 10*time.Second) {
			if strings.Contains(l, "AUTH") {
				t.Errorf("%s SMTP: AUTH offered without TLS: %q", v, l)
			}
		}
		smtp.send("AUTH PLAIN AGFAYgBj")
		if l := smtp.until("", 10*time.Second)[0]; !strings.HasPrefix(l, "538 ") {
			t.Errorf("%s SMTP: AUTH without TLS: %q", v, l)
		}

		imap := dial("IMAP")
		if g := imap.until("* OK", 10*time.Second)[0]; !strings.Contains(g, "LOGINDISABLED") || strings.Contains(g, "AUTH=") {
			t.Errorf("%s IMAP: greeting %q", v, g)
		}
		imap.send("a LOGIN a@b.example pw")
		if l := imap.until("a ", 10*time.Second); !strings.HasPrefix(l[len(l)-1], "a NO [PRIVACYREQUIRED]") {
			t.Errorf("%s IMAP: LOGIN without TLS: %q", v, l)
		}

		pop := dial("POP3")
		pop.until("+OK", 10*time.Second)
		pop.send("USER a@b.example")
		if l := pop.until("", 10*time.Second)[0]; !strings.HasPrefix(l, "-ERR [AUTH] Plaintext") {
			t.Errorf("%s POP3: USER without TLS: %q", v, l)
		}
	}
	logged := map[string]bool{}
	for _, l := range strings.Split(n.logs(), "\n") {
		if m := regexpProto.FindStringSubmatch(l); m != nil && strings.Contains(l, `"remote":"unknown","proxy":"127.0.0.1"`) {
			logged[m[1]] = true
		}
	}
	for _, proto := range []string{"smtp", "imap", "pop3"} {
		if !logged[proto] {
			t.Errorf("no %s log line with remote=unknown and the proxy's address:\n%s", proto, n.logs())
		}
	}
}

var regexpProto = regexp.MustCompile(`"proto":"(smtp|imap|pop3)"`)

// TestServeMaxConnsPerIP: POSTRIDER_MAX_CONNS_PER_IP=N lets one address
// have N connections per protocol and refuses the next; 0 means unlimited
// on every protocol (60 connections, more than the default 50).
func TestServeMaxConnsPerIP(t *testing.T) {
	url := pgtest.NewDatabase(t)
	greet := func(addr string) (net.Conn, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		return c, l
	}
	for _, tc := range []struct {
		perIP string
		open  int
		limit bool
	}{{"2", 2, true}, {"0", 60, false}} {
		t.Run("MAX_CONNS_PER_IP="+tc.perIP, func(t *testing.T) {
			n := startNode(t, url, "POSTRIDER_MAX_CONNS_PER_IP="+tc.perIP, "POSTRIDER_MAX_CONNS=0")
			for _, p := range protoListeners {
				for i := 0; i < tc.open; i++ {
					if _, g := greet(n.addrs[p.plainName]); !strings.HasPrefix(g, p.greeting) {
						t.Fatalf("%s connection %d: %q", p.plainName, i+1, g)
					}
				}
				if tc.limit {
					if _, g := greet(n.addrs[p.plainName]); !strings.HasPrefix(g, p.refusal) {
						t.Errorf("%s connection %d: %q, want %q", p.plainName, tc.open+1, g, p.refusal)
					}
				}
			}
			n.stop(t)
		})
	}
}
