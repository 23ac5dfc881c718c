package smtpd_test

import (
	"net/netip"
	"strings"
	"testing"
)

// TestProxyUnknownClient: a client that a trusted proxy on loopback
// announces as unknown ("PROXY UNKNOWN") is a remote client: no AUTH
// without TLS on submission, and its mail's Received: field says the
// address is unknown instead of naming the proxy or "invalid IP".
func TestProxyUnknownClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.TrustedProxies = []netip.Prefix{mustPrefix("127.0.0.0/8")}
	}))
	c := dialNoGreet(t, e.submission)
	c.send("PROXY UNKNOWN\r\n")
	c.expect(220)
	if ext := c.ehlo("client.example"); ext["AUTH"] != "" {
		t.Errorf("AUTH offered without TLS to an unknown client: %q", ext["AUTH"])
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 538, "5.7.11")

	c = dialNoGreet(t, e.inbound)
	c.send("PROXY UNKNOWN\r\n")
	c.expect(220)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	got := e.inbox(e.alice)
	if len(got) != 1 {
		t.Fatalf("alice has %d messages", len(got))
	}
	trace, _ := body(t, got[0])
	if !strings.Contains(trace, "Received: from client.example (unknown address)") || strings.Contains(trace, "127.0.0.1") {
		t.Errorf("trace fields:\n%s", trace)
	}
}
