package frontend_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/internal/testkit"
)

// echo is a line protocol: greeting, then each line echoed until "QUIT".
type echo struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (e *echo) RefusalLine(why frontend.Refusal) string { return "BUSY " + why.String() + "\r\n" }

func (e *echo) ServeConn(c *frontend.Conn) {
	e.mu.Lock()
	e.ctxs = append(e.ctxs, c.Ctx)
	e.mu.Unlock()
	c.OnShutdown(func() { _ = c.Raw.SetReadDeadline(time.Unix(1, 0)) })
	w := bufio.NewWriter(c.Net)
	w.WriteString("HELLO " + c.Peer.ClientString() + "\r\n")
	w.Flush()
	r := bufio.NewReader(c.Net)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			if c.Closing() {
				c.Net.Write([]byte("BYE\r\n"))
			}
			return
		}
		if strings.TrimSpace(l) == "QUIT" {
			return
		}
		c.Metrics().Command("ECHO", "ok", time.Millisecond)
		w.WriteString(l)
		w.Flush()
	}
}

func start(t *testing.T, cfg frontend.Config, implicitTLS bool) (*frontend.Server, *echo, string) {
	t.Helper()
	h := &echo{}
	s, err := frontend.NewServer("echo", cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln, implicitTLS)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, h, ln.Addr().String()
}

func greet(t *testing.T, addr string) (*testkit.Conn, string) {
	t.Helper()
	c := testkit.Dial(t, addr)
	return c, c.Line()
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name          string
		perIP, total  int
		open, refused int
		reason        string
	}{
		{"unlimited", 0, 0, 30, 0, ""},
		{"per IP", 3, 0, 3, 1, "per_ip_limit"},
		{"total", 0, 2, 2, 1, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, addr := start(t, frontend.Config{MaxConnsPerIP: tc.perIP, MaxConns: tc.total}, false)
			var conns []*testkit.Conn
			for i := 0; i < tc.open; i++ {
				c, g := greet(t, addr)
				if !strings.HasPrefix(g, "HELLO 127.0.0.1") {
					t.Fatalf("connection %d: %q", i+1, g)
				}
				conns = append(conns, c)
			}
			if tc.refused > 0 {
				_, g := greet(t, addr)
				if g != "BUSY "+tc.reason {
					t.Fatalf("over the limit: %q", g)
				}
				// Closing one frees a slot.
				conns[0].Send("QUIT")
				deadline := time.Now().Add(5 * time.Second)
				for {
					_, g = greet(t, addr)
					if strings.HasPrefix(g, "HELLO") || time.Now().After(deadline) {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if !strings.HasPrefix(g, "HELLO") {
					t.Fatalf("after a close: %q", g)
				}
			}
			// The open ones still work.
			conns[len(conns)-1].Send("ping")
			conns[len(conns)-1].Expect("ping")
		})
	}
}

func TestShutdownAndContexts(t *testing.T) {
	s, h, addr := start(t, frontend.Config{}, false)
	c1, _ := greet(t, addr)
	c2, _ := greet(t, addr)
	c2.Send("QUIT")
	deadline := time.Now().Add(5 * time.Second)
	for s.OpenConns() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h.mu.Lock()
	ended, live := h.ctxs[1], h.ctxs[0]
	h.mu.Unlock()
	if ended.Err() == nil || live.Err() != nil {
		t.Fatalf("contexts: ended %v, live %v", ended.Err(), live.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c1.Expect("BYE")
	if live.Err() == nil {
		t.Error("connection context not done after Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestProxyUnknownAndTLS(t *testing.T) {
	_, _, addr := start(t, frontend.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, false)
	c := testkit.Dial(t, addr)
	c.Conn.Write([]byte("PROXY UNKNOWN\r\n"))
	if g := c.Line(); g != "HELLO unknown" {
		t.Fatalf("PROXY UNKNOWN: %q", g)
	}
	c = testkit.Dial(t, addr)
	c.Conn.Write([]byte("PROXY TCP4 192.0.2.7 127.0.0.1 5555 25\r\n"))
	if g := c.Line(); g != "HELLO 192.0.2.7" {
		t.Fatalf("PROXY TCP4: %q", g)
	}

	_, _, taddr := start(t, frontend.Config{TLS: testkit.ServerTLS()}, true)
	tc, err := tls.Dial("tcp", taddr, testkit.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	g, _ := bufio.NewReader(tc).ReadString('\n')
	if !strings.HasPrefix(g, "HELLO") {
		t.Fatalf("implicit TLS greeting %q", g)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, _, addr := start(t, frontend.Config{Metrics: reg, MaxConnsPerIP: 1}, false)
	c, _ := greet(t, addr)
	c.Send("x")
	c.Expect("x")
	greet(t, addr) // refused
	got := gather(t, reg)
	for _, want := range []string{
		`postrider_connections_total{proto="echo",tls="no"} 1`,
		`postrider_connections_refused_total{proto="echo",reason="per_ip_limit"} 1`,
		`postrider_commands_total{command="ECHO",proto="echo",result="ok"} 1`,
		`postrider_connections_open{proto="echo",tls="no"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s:\n%s", want, got)
		}
	}
	// A second frontend on the same registry shares the metrics.
	if _, err := frontend.NewServer("other", frontend.Config{Metrics: reg}, &echo{}); err != nil {
		t.Fatal(err)
	}
}

// gather renders a registry's metrics as "name{labels} value" lines.
func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Fprintf(&b, "%s{%s} %g\n", mf.GetName(), strings.Join(ls, ","), v)
		}
	}
	return b.String()
}

// roles records the role of each connection it serves.
type roles struct{ got chan string }

func (r *roles) RefusalLine(why frontend.Refusal) string { return "BUSY " + why.String() + "\r\n" }
func (r *roles) ServeConn(c *frontend.Conn) {
	r.got <- c.Role
	c.Net.Write([]byte("HELLO " + c.Role + "\r\n"))
	bufio.NewReader(c.Net).ReadString('\n')
}

// TestServeRole: one Server serves listeners of different roles, each
// connection knows its listener's role, and the limits span all of them.
func TestServeRole(t *testing.T) {
	h := &roles{got: make(chan string, 4)}
	s, err := frontend.NewServer("multi", frontend.Config{MaxConns: 2}, h)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, role := range []string{"inbound", "submission"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.ServeRole(ln, false, role)
		addrs = append(addrs, ln.Addr().String())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	_, g1 := greet(t, addrs[0])
	_, g2 := greet(t, addrs[1])
	if g1 != "HELLO inbound" || g2 != "HELLO submission" {
		t.Fatalf("greetings %q, %q", g1, g2)
	}
	if r1, r2 := <-h.got, <-h.got; r1 == r2 {
		t.Fatalf("roles %q, %q", r1, r2)
	}
	// The third connection is over MaxConns, whichever listener it uses.
	if _, g := greet(t, addrs[0]); g != "BUSY limit" {
		t.Fatalf("over the shared limit: %q", g)
	}
}
