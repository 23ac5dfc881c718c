package delivery

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postrider/postrider/mailstore"
)

// policyServer serves a domain's MTA-STS policy over HTTPS on ip.
type policyServer struct {
	srv     *http.Server
	policy  atomic.Value // string
	fetches atomic.Int64
}

func (w *world) servePolicy(t *testing.T, domain, policy string) *policyServer {
	t.Helper()
	ip := w.net.addr()
	ps := &policyServer{}
	ps.policy.Store(policy)
	cert := w.ca.issue(t, "mta-sts."+domain)
	ps.srv = &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts."+domain {
				http.NotFound(rw, r)
				return
			}
			ps.fetches.Add(1)
			rw.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(rw, ps.policy.Load().(string))
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{*cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln := w.net.listen(t, ip)
	go func() { _ = ps.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { ps.srv.Close() })
	w.zone.add(t, "mta-sts."+domain+". A "+ip, "_mta-sts."+domain+`. TXT "v=STSv1; id=20260301"`)
	return ps
}

func (w *world) stsConfig() Config {
	cfg := w.config()
	cfg.HTTPSPort = w.net.port
	return cfg
}

func TestMTASTSEnforceNeverInClear(t *testing.T) {
	w := newWorld(t)
	other := newCA(t) // a CA the sender does not trust
	ip1, ip2, ip3 := w.net.addr(), w.net.addr(), w.net.addr()
	bad := startReceiver(t, w.net, ip1, other.issue(t, "mx1.sts.test"), false)   // untrusted certificate
	plain := startReceiver(t, w.net, ip2, nil, false)                            // no STARTTLS
	rogue := startReceiver(t, w.net, ip3, w.ca.issue(t, "mx.rogue.test"), false) // valid, but not in the policy
	w.zone.add(t,
		"sts.test. MX 10 mx1.sts.test.", "sts.test. MX 20 mx2.sts.test.", "sts.test. MX 30 mx.rogue.test.",
		"mx1.sts.test. A "+ip1, "mx2.sts.test. A "+ip2, "mx.rogue.test. A "+ip3)
	w.servePolicy(t, "sts.test", "version: STSv1\r\nmode: enforce\r\nmx: *.sts.test\r\nmax_age: 86400\r\n")
	id := w.enqueue("alice@sender.test", nil, "bob@sts.test")
	e := w.engine(w.stsConfig())
	e.RunOnce(bg)

	for name, r := range map[string]*receiver{"untrusted": bad, "plain": plain, "rogue": rogue} {
		if m := r.messages(); len(m) != 0 {
			t.Errorf("%s receiver got mail under an enforce policy: %+v", name, m)
		}
	}
	if n := rogue.accepts.Load(); n != 0 {
		t.Errorf("a host outside the policy was contacted %d times", n)
	}
	it, ok := w.item(id)
	if !ok || it.Recipients[0].State != mailstore.RcptPending {
		t.Fatalf("want pending, got %+v", it)
	}
	if r := it.Recipients[0]; !strings.HasPrefix(r.LastCode, "4.7.") {
		t.Errorf("last reply %q %q", r.LastCode, r.LastReply)
	}
	if len(w.dsns()) != 0 {
		t.Error("DSN for a policy failure")
	}
}

func TestMTASTSEnforceValidCertDelivers(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, w.ca.issue(t, "mx.good.test"), false)
	w.zone.add(t, "good.test. MX 10 mx.good.test.", "mx.good.test. A "+ip)
	ps := w.servePolicy(t, "good.test", "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n")
	w.enqueue("alice@sender.test", nil, "bob@good.test")
	w.enqueue("alice@sender.test", nil, "carol@good.test")
	e := w.engine(w.stsConfig())
	e.RunOnce(bg)
	m := rcv.messages()
	if len(m) != 2 || !m[0].TLS {
		t.Fatalf("want two messages over TLS, got %+v", m)
	}
	if got := testutil.ToFloat64(e.metrics.connections.WithLabelValues("tls")); got != 1 {
		t.Errorf("tls connections %v", got)
	}
	if n := ps.fetches.Load(); n != 1 {
		t.Errorf("policy fetched %d times, want once (cached)", n)
	}
}

func TestMTASTSTestingModeDelivers(t *testing.T) {
	w := newWorld(t)
	other := newCA(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, other.issue(t, "mx.testing.test"), false)
	w.zone.add(t, "testing.test. MX 10 mx.testing.test.", "mx.testing.test. A "+ip)
	w.servePolicy(t, "testing.test", "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 600\n")
	id := w.enqueue("alice@sender.test", nil, "bob@testing.test")
	w.engine(w.stsConfig()).RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("not delivered in testing mode")
	}
	if m := rcv.messages(); len(m) != 1 || !m[0].TLS {
		t.Fatalf("got %+v", m)
	}
}

func TestOpportunisticTLSAnyCertificate(t *testing.T) {
	w := newWorld(t)
	other := newCA(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, other.issue(t, "whatever.invalid"), false)
	w.zone.add(t, "opp.test. MX 10 mx.opp.test.", "mx.opp.test. A "+ip)
	w.enqueue("alice@sender.test", nil, "bob@opp.test")
	w.engine(w.config()).RunOnce(bg)
	if m := rcv.messages(); len(m) != 1 || !m[0].TLS || m[0].Helo != "out.sender.test" {
		t.Fatalf("want one message over STARTTLS with our EHLO name, got %+v", m)
	}
}

func TestSTSCacheKeepsEnforcingWhenFetchFails(t *testing.T) {
	w := newWorld(t)
	ps := w.servePolicy(t, "keep.test", "version: STSv1\nmode: enforce\nmx: mx.keep.test\nmax_age: 86400\n")
	e := w.engine(w.stsConfig())
	p := e.sts.Policy(bg, "keep.test")
	if p == nil || p.Mode != STSEnforce {
		t.Fatalf("policy %+v", p)
	}
	// Same id: the cache answers.
	if e.sts.Policy(bg, "keep.test") == nil || ps.fetches.Load() != 1 {
		t.Fatalf("fetches %d", ps.fetches.Load())
	}
	// A new id with a broken policy server: the cached policy stays.
	ps.policy.Store("garbage")
	w.zone.Remove("_mta-sts.keep.test", dns.TypeTXT)
	w.zone.add(t, `_mta-sts.keep.test. TXT "v=STSv1; id=2"`)
	if p := e.sts.Policy(bg, "keep.test"); p == nil || p.Mode != STSEnforce || ps.fetches.Load() != 2 {
		t.Fatalf("after a failed re-fetch: %+v, fetches %d", p, ps.fetches.Load())
	}
	// A new id with a good policy: it replaces the old one.
	ps.policy.Store("version: STSv1\nmode: testing\nmx: mx.keep.test\nmax_age: 86400\n")
	w.zone.Remove("_mta-sts.keep.test", dns.TypeTXT)
	w.zone.add(t, `_mta-sts.keep.test. TXT "v=STSv1; id=3"`)
	if p := e.sts.Policy(bg, "keep.test"); p == nil || p.Mode != STSTesting {
		t.Fatalf("new id: %+v", p)
	}
	// Expired (max_age passed) and unreachable: no policy.
	ps.srv.Close()
	w.clock.advance(86401 * time.Second)
	w.zone.Remove("_mta-sts.keep.test", dns.TypeTXT)
	w.zone.add(t, `_mta-sts.keep.test. TXT "v=STSv1; id=4"`)
	if p := e.sts.Policy(bg, "keep.test"); p != nil {
		t.Fatalf("expired policy still used: %+v", p)
	}
}

func (w *world) relayConfig(host string, withAuth bool) Config {
	cfg := w.config()
	cfg.RelayHost = net.JoinHostPort(host, strconv.Itoa(w.net.port))
	if withAuth {
		cfg.RelayUsername, cfg.RelayPassword = "relayuser", "relaypass"
	}
	return cfg
}

func TestSmarthostWithAuth(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, w.ca.issue(t, "relay.test"), false)
	rcv.mechs = []string{"PLAIN"}
	w.zone.add(t, "relay.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "a@one.test", "b@two.test")
	w.engine(w.relayConfig("relay.test", true)).RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("still queued")
	}
	m := rcv.messages()
	if len(m) != 1 || len(m[0].Rcpts) != 2 || !m[0].TLS || m[0].Auth != "relayuser:relaypass" {
		t.Fatalf("relay got %+v", m)
	}
}

func TestSmarthostCredentialsNeverInClear(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.mechs = []string{"PLAIN"}
	rcv.srv.AllowInsecureAuth = true // it would take them: we must not give them
	w.zone.add(t, "plainrelay.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "a@one.test")
	w.engine(w.relayConfig("plainrelay.test", true)).RunOnce(bg)
	it, ok := w.item(id)
	if !ok || it.Recipients[0].State != mailstore.RcptPending || it.Recipients[0].LastCode != "4.7.10" {
		t.Fatalf("want pending 4.7.10, got %+v", it)
	}
	if m := rcv.messages(); len(m) != 0 {
		t.Fatalf("sent through a relay without TLS: %+v", m)
	}
}

func TestSmarthostCertificateMustMatch(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, w.ca.issue(t, "someone-else.test"), false)
	rcv.mechs = []string{"PLAIN"}
	w.zone.add(t, "relay2.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "a@one.test")
	w.engine(w.relayConfig("relay2.test", true)).RunOnce(bg)
	if it, ok := w.item(id); !ok || it.Recipients[0].LastCode != "4.7.5" {
		t.Fatalf("want pending 4.7.5, got %+v", it)
	}
	if len(rcv.messages()) != 0 {
		t.Fatal("credentials sent to a relay whose certificate is not its own")
	}
}

func TestSmarthostWithoutAuthOpportunistic(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	id := w.enqueue("alice@sender.test", nil, "a@one.test")
	w.engine(w.relayConfig(ip, false)).RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("still queued")
	}
	if m := rcv.messages(); len(m) != 1 || m[0].Auth != "" {
		t.Fatalf("got %+v", m)
	}
}
