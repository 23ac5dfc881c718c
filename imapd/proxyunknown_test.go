package imapd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestProxyUnknownThrottleBucket: failed logins of clients that a trusted
// proxy announces as unknown ("PROXY UNKNOWN") are counted for the auth
// throttle under the one "unknown" client bucket, never under the proxy's
// own address (which every client behind it shares); the per-account key
// is kept as for any client.
func TestProxyUnknownThrottleBucket(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.AllowInsecureAuth = true // so that LOGIN reaches the throttle without TLS
	})
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "PROXY UNKNOWN\r\n")
	c := &tclient{t: t, conn: nc, br: bufio.NewReader(nc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	c.run([]step{{"LOGIN alice@example.org wrong", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}}})
	keys := []string{"ip:unknown", "ip:127.0.0.1", "userip:alice@example.org|unknown", "userip:alice@example.org|127.0.0.1", "user:alice@example.org"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := e.store.AuthFailures(ctx, keys, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"ip:unknown": 1, "userip:alice@example.org|unknown": 1, "user:alice@example.org": 1}
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("failures under %q = %d, want %d (all: %v)", k, got[k], want[k], got)
		}
	}
}
