// Package testdns is an authoritative DNS server for tests: it answers
// from records given in zone-file syntax, on a loopback UDP and TCP port,
// so that tests of MX routing, SPF, DKIM, DMARC and MTA-STS never reach
// the internet. Point internal/dnsr (POSTRIDER_DNS_RESOLVER) at Addr.
package testdns

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server answers queries from its records.
type Server struct {
	// Addr is "127.0.0.1:port", the same port for UDP and TCP.
	Addr string

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by lower-case FQDN
	fail    map[string]bool     // names answered with SERVFAIL
	down    bool                // every query answered with SERVFAIL
	queries map[string]int      // "name TYPE" -> count
	udp     *dns.Server
	tcp     *dns.Server
}

// Start runs a server until the test ends. records are zone-file lines
// (e.g. `example.test. 300 IN MX 10 mx.example.test.`); names without a
// final dot are made absolute.
func Start(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{rrs: map[string][]dns.RR{}, fail: map[string]bool{}, queries: map[string]int{}}
	for _, r := range records {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	// One port for both: bind UDP first, then TCP on the same port,
	// retrying when TCP's is taken.
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	s.Addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	var started sync.WaitGroup
	started.Add(2)
	s.udp.NotifyStartedFunc = started.Done
	s.tcp.NotifyStartedFunc = started.Done
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	started.Wait()
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	return s
}

// Add adds one record in zone-file syntax.
func (s *Server) Add(record string) error {
	rr, err := dns.NewRR(record)
	if err != nil {
		return fmt.Errorf("testdns: %q: %w", record, err)
	}
	if rr == nil {
		return fmt.Errorf("testdns: %q: no record", record)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(dns.Fqdn(rr.Header().Name))
	rr.Header().Name = name
	s.rrs[name] = append(s.rrs[name], rr)
	return nil
}

// Remove deletes every record of name (of type qtype, or all when qtype
// is 0).
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	var keep []dns.RR
	for _, rr := range s.rrs[name] {
		if qtype != 0 && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	s.rrs[name] = keep
}

// Fail makes queries for name answer SERVFAIL (a broken zone) until
// called again with false.
func (s *Server) Fail(name string, fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[strings.ToLower(dns.Fqdn(name))] = fail
}

// Down makes every query answer SERVFAIL (a resolver outage).
func (s *Server) Down(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Queries counts the queries for name of type qtype (e.g. dns.TypeMX).
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[strings.ToLower(dns.Fqdn(name))+" "+dns.TypeToString[qtype]]
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name+" "+dns.TypeToString[q.Qtype]]++
	switch {
	case s.down || s.fail[name]:
		m.Rcode = dns.RcodeServerFailure
	default:
		rrs, exists := s.rrs[name]
		exists = exists && len(rrs) > 0
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if t == q.Qtype || (t == dns.TypeCNAME && q.Qtype != dns.TypeCNAME) {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if !exists && !s.hasBelow(name) {
			m.Rcode = dns.RcodeNameError // RFC 8020: NXDOMAIN only when nothing exists at or below
		}
	}
	s.mu.Unlock()
	if w.LocalAddr().Network() == "udp" {
		// Big answers (RSA DKIM keys) are truncated and go to TCP, as in
		// real life (RFC 1035 §4.2.1, RFC 6891 §6.2.3).
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// hasBelow reports whether some record lives under name (an empty
// non-terminal, e.g. _domainkey.example.test).
func (s *Server) hasBelow(name string) bool {
	for n, rrs := range s.rrs {
		if len(rrs) > 0 && strings.HasSuffix(n, "."+name) {
			return true
		}
	}
	return false
}
