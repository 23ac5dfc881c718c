// Package testkit holds what the tests of every frontend share: a TLS
// certificate for 127.0.0.1, cheap password hashing, and a line-based
// client for protocol transcripts. Only tests import it.
package testkit

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/selfsigned"
)

// CheapArgon makes password hashing fast in tests.
var CheapArgon = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32}

// Names the test certificate is valid for.
var certNames = []string{"localhost", "127.0.0.1", "::1", "imap.test", "mx.example.org", "mx.test.example"}

var testCert = sync.OnceValue(func() *selfsigned.Cert {
	c, err := selfsigned.New("localhost", certNames, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return c
})

// ServerTLS returns a server configuration with a self-signed certificate
// for localhost and 127.0.0.1 (the same certificate in every call).
func ServerTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testCert().TLS}, MinVersion: tls.VersionTLS12}
}

// RootCAs trusts the certificate of ServerTLS.
func RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(testCert().TLS.Leaf)
	return p
}

// ClientTLS is a client configuration that trusts ServerTLS's certificate.
func ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: RootCAs(), ServerName: "localhost"}
}

// Conn is a line-based protocol client for transcripts: every read has a
// deadline, so a missing reply fails the test instead of hanging it.
type Conn struct {
	T    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// Dial connects to addr on loopback.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &Conn{T: t, Conn: c, R: bufio.NewReader(c)}
}

// Send writes line with CRLF.
func (c *Conn) Send(line string) {
	c.T.Helper()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.Conn, line+"\r\n"); err != nil {
		c.T.Fatalf("send %q: %v", line, err)
	}
}

// Line reads one line, without its CRLF.
func (c *Conn) Line() string {
	c.T.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := c.R.ReadString('\n')
	if err != nil {
		c.T.Fatalf("read: %v (partial %q)", err, l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// Until reads lines until one starts with prefix and returns it.
func (c *Conn) Until(prefix string) string {
	c.T.Helper()
	for {
		if l := c.Line(); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// Expect reads one line and fails unless it starts with prefix.
func (c *Conn) Expect(prefix string) string {
	c.T.Helper()
	l := c.Line()
	if !strings.HasPrefix(l, prefix) {
		c.T.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

// handedOut holds the addresses FreeAddr gave: the kernel may offer a port
// again once its listener is closed, and two listeners of one node (or of
// two nodes) on the same port made a test fail with "address already in
// use".
var handedOut sync.Map

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on now,
// never the same one twice in a test process, for a server a test starts
// in another process (which must bind it itself).
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no unused port after 100 tries")
	return ""
}
