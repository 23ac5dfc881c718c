// Package mailauthtest runs a DNS server for tests of mail
// authentication: on a loopback UDP port, from records the test sets,
// reached through internal/dnsr like the real one.
package mailauthtest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/postrider/postrider/internal/dnsr"
)

// DNS is an authoritative server for whatever names the test gives
// records: an unknown name is NXDOMAIN, a known name without records of
// the type asked is an empty answer (NODATA).
type DNS struct {
	t    testing.TB
	addr string
	srv  *dns.Server

	mu       sync.Mutex
	rrs      map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	queries  atomic.Int64
	stopped  bool
}

// NewDNS starts a server on 127.0.0.1; it stops with the test.
func NewDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{t: t, addr: pc.LocalAddr().String(), rrs: map[string][]dns.RR{}, servfail: map[string]bool{}}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = d.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(d.Stop)
	return d
}

// Addr is the server's "host:port".
func (d *DNS) Addr() string { return d.addr }

// Resolver returns a resolver that asks only this server.
func (d *DNS) Resolver() *net.Resolver {
	r, err := dnsr.New(d.addr)
	if err != nil {
		d.t.Fatal(err)
	}
	return r
}

// Queries counts the queries answered so far.
func (d *DNS) Queries() int64 { return d.queries.Load() }

// Stop shuts the server down: queries then find no server (a DNS outage).
func (d *DNS) Stop() {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.stopped = true
	d.mu.Unlock()
	_ = d.srv.Shutdown()
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

func (d *DNS) add(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := rr.Header().Name
	d.rrs[n] = append(d.rrs[n], rr)
}

func (d *DNS) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: 60}
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
		d.add(&dns.TXT{Hdr: d.hdr(name, dns.TypeTXT), Txt: parts})
	}
}

// IP adds A or AAAA records.
func (d *DNS) IP(name string, ips ...string) {
	for _, s := range ips {
		a := netip.MustParseAddr(s)
		if a.Is4() {
			d.add(&dns.A{Hdr: d.hdr(name, dns.TypeA), A: net.IP(a.AsSlice())})
		} else {
			d.add(&dns.AAAA{Hdr: d.hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	}
}

// MX adds an MX record.
func (d *DNS) MX(name, host string, pref uint16) {
	d.add(&dns.MX{Hdr: d.hdr(name, dns.TypeMX), Preference: pref, Mx: fqdn(host)})
}

// ServFail makes every query for name answer SERVFAIL.
func (d *DNS) ServFail(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.servfail[fqdn(name)] = true
}

func (d *DNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	d.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	qq := q.Question[0]
	name := strings.ToLower(qq.Name)
	d.mu.Lock()
	rrs, known := d.rrs[name]
	fail := d.servfail[name]
	d.mu.Unlock()
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == qq.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), false)
	}
	_ = w.WriteMsg(m)
}
