// Package mailauthtest helps tests of mail authentication: records for
// the shared test DNS server (internal/testdns) and DKIM keys that sign
// and publish themselves.
package mailauthtest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/postrider/postrider/internal/dnsr"
	"github.com/postrider/postrider/internal/testdns"
)

// DNS is a testdns.Server with helpers for the records of SPF, DKIM and
// DMARC. An unknown name is NXDOMAIN; Down(true) is an outage (SERVFAIL).
type DNS struct {
	*testdns.Server
	t testing.TB
}

// NewDNS starts a server on 127.0.0.1; it stops with the test.
func NewDNS(t testing.TB) *DNS {
	t.Helper()
	return &DNS{Server: testdns.Start(t), t: t}
}

// Resolver returns a resolver that asks only this server.
func (d *DNS) Resolver() *net.Resolver { return Resolver(d.t, d.Addr) }

// Resolver returns a resolver that asks only addr ("host:port").
func Resolver(t testing.TB, addr string) *net.Resolver {
	r, err := dnsr.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// GoneResolver returns a resolver whose server is gone: a loopback UDP
// port nobody listens on (every query fails at once).
func GoneResolver(t testing.TB) *net.Resolver {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return Resolver(t, addr)
}

func (d *DNS) add(rr string) {
	d.t.Helper()
	if err := d.Add(rr); err != nil {
		d.t.Fatal(err)
	}
}

// TXT adds one TXT record per text; a text longer than 255 octets is
// split into several strings of one record (RFC 7208 §3.3, RFC 6376
// §3.6.2.2).
func (d *DNS) TXT(name string, texts ...string) {
	for _, s := range texts {
		var parts []string
		for len(s) > 255 {
			parts, s = append(parts, s[:255]), s[255:]
		}
		parts = append(parts, s)
		for i, p := range parts {
			p = strings.ReplaceAll(p, `\`, `\\`)
			parts[i] = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
		}
		d.add(fmt.Sprintf("%s. 60 IN TXT %s", name, strings.Join(parts, " ")))
	}
}

// IP adds A or AAAA records.
func (d *DNS) IP(name string, ips ...string) {
	for _, s := range ips {
		t := "A"
		if netip.MustParseAddr(s).Is6() {
			t = "AAAA"
		}
		d.add(fmt.Sprintf("%s. 60 IN %s %s", name, t, s))
	}
}

// MX adds an MX record.
func (d *DNS) MX(name, host string, pref uint16) {
	d.add(fmt.Sprintf("%s. 60 IN MX %d %s.", name, pref, host))
}

// ServFail makes every query for name answer SERVFAIL.
func (d *DNS) ServFail(name string) { d.Fail(name, true) }
