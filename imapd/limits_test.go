package imapd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Every input is bounded: line length, literal size (small before login),
// literals per command, nesting depth, sequence-set size.
func TestLimitsInput(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Limits.MaxLineLength = 1000
		c.Limits.MaxLiterals = 3
		c.Limits.MaxSetRanges = 10
		c.Limits.MaxDepth = 5
	})

	// A line longer than the limit: BYE.
	c := e.dial()
	c.send("a LOGIN " + strings.Repeat("x", 2000) + " y")
	check(t, "long line", []string{c.line()}, []string{"* BYE [TOOBIG] Command line too long"})
	c.eof()

	// A synchronizing literal over the pre-login limit is refused without
	// a continuation request; the connection goes on.
	c = e.dial()
	c.run([]step{
		{"LOGIN {5000}", []string{"$T NO [TOOBIG] Literal too large"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
	// A non-synchronizing one is already on its way: BYE.
	c.send("a LOGIN {5000+}")
	check(t, "literal+", []string{c.line()}, []string{"* BYE [TOOBIG] Literal too large"})
	c.eof()

	c = e.dial()
	c.login("alice")
	c.run([]step{
		{"SELECT INBOX", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:$T OK \\[READ-WRITE\\] SELECT completed"}},
		// Too many literals in one command.
		{"SEARCH SUBJECT {1+}\r\na SUBJECT {1+}\r\nb SUBJECT {1+}\r\nc SUBJECT {1+}\r\nd", []string{"$T BAD Too many literals in one command"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
		// Nesting depth.
		{"SEARCH ((((((ALL))))))", []string{"$T BAD Too deeply nested"}},
		{"SEARCH NOT NOT NOT NOT NOT NOT ALL", []string{"$T BAD Too deeply nested"}},
		{"SEARCH ((((ALL))))", []string{"* SEARCH", "$T OK SEARCH completed"}},
		// Sequence-set size.
		{"UID FETCH 1,2,3,4,5,6,7,8,9,10,11 FLAGS", []string{"$T BAD Sequence set too large"}},
		{"UID FETCH 1,2,3,4,5,6,7,8,9,10 FLAGS", []string{"$T OK UID FETCH completed"}},
		// A non-synchronizing literal after an error is skipped, not run.
		{"FOO {12+}\r\nT99 LOGOUT\r\n", []string{"$T BAD Unknown command"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
}

// Timeouts: a command must come within PreAuthTimeout before login;
// inactivity after login ends the session after IdleTimeout.
func TestLimitsTimeouts(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Limits.PreAuthTimeout = 300 * time.Millisecond
		c.Limits.IdleTimeout = 600 * time.Millisecond
	})
	c := e.dial()
	start := time.Now()
	c.sendRaw("a NOOP") // never finished
	check(t, "pre-auth", []string{c.line()}, []string{"* BYE Autologout; idle for too long"})
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("pre-auth timeout after %v", d)
	}
	c.eof()

	c = e.dial()
	c.login("alice")
	time.Sleep(300 * time.Millisecond)
	c.run([]step{{"NOOP", []string{"$T OK NOOP completed"}}}) // still alive
	start = time.Now()
	check(t, "idle", []string{c.line()}, []string{"* BYE Autologout; idle for too long"})
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("idle timeout after %v", d)
	}
}

// Connections per IP and per account.
func TestLimitsConnections(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MaxConnsPerIP = 3
		c.MaxConnsPerAccount = 1
	})
	a := e.dial()
	a.login("alice")
	b := e.dial()
	b.run([]step{{"LOGIN alice@example.org pw-alice", []string{"$T NO [LIMIT] Too many connections for this account"}}})
	b.login("bob")
	e.dial()
	// The fourth connection from 127.0.0.1 is refused.
	nc := dialRaw(t, e.addr)
	check(t, "per ip", []string{nc.line()}, []string{"* BYE [UNAVAILABLE] Too many connections from your address"})
	nc.eof()
	// Slots are released on logout.
	a.run([]step{{"LOGOUT", []string{"* BYE Logging out", "$T OK LOGOUT completed"}}})
	a.eof()
	waitFor(t, func() bool { return e.srv.acctCount(e.accts["alice"].ID) == 0 })
	d := e.dial()
	d.login("alice")
}

func dialRaw(t *testing.T, addr string) *tclient {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &tclient{t: t, conn: nc, br: bufio.NewReader(nc)}
}

func dialTry(addr string) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		nc.Close()
	}
	return nc, err
}

func (s *Server) acctCount(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acctConns[id]
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// Shutdown says BYE to waiting and idling clients and finishes.
func TestShutdown(t *testing.T) {
	e := newEnv(t)
	waiting := e.dial()
	waiting.login("alice")
	idle := e.dial()
	idle.login("bob")
	idle.send("I IDLE")
	check(t, "idle", []string{idle.line()}, []string{"+ idling"})
	pre := e.dial()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*tclient{"waiting": waiting, "idle": idle, "pre": pre} {
		check(t, name, []string{c.line()}, []string{"* BYE [UNAVAILABLE] Server shutting down"})
		c.eof()
	}
	if _, err := dialTry(e.addr); err == nil {
		t.Fatal("listener still accepting")
	}
}

// Prometheus metrics count connections, commands by result and logins.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Metrics = reg })
	c := e.dial()
	c.run([]step{
		{"LOGIN alice@example.org nope", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"LOGIN alice@example.org pw-alice", []string{"re:$T OK .*"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
		{"FETCH 1 FLAGS", []string{"$T BAD No mailbox selected"}},
		{"BOGUS", []string{"$T BAD Unknown command"}},
	})
	for metric, want := range map[string]float64{
		`postrider_connections_total{proto="imap",tls="no"}`:                    1,
		`postrider_connections_open{proto="imap",tls="no"}`:                     1,
		`postrider_commands_total{command="LOGIN",proto="imap",result="no"}`:    1,
		`postrider_commands_total{command="LOGIN",proto="imap",result="ok"}`:    1,
		`postrider_commands_total{command="NOOP",proto="imap",result="ok"}`:     1,
		`postrider_commands_total{command="FETCH",proto="imap",result="bad"}`:   1,
		`postrider_commands_total{command="unknown",proto="imap",result="bad"}`: 1,
		`postrider_auth_total{proto="imap",result="ok"}`:                        1,
		`postrider_auth_total{proto="imap",result="failed"}`:                    1,
	} {
		if got := metricValue(t, reg, metric); got != want {
			t.Errorf("%s = %v, want %v", metric, got, want)
		}
	}
}

// metricValue finds a counter or gauge by name and labels in text form.
func metricValue(t *testing.T, reg *prometheus.Registry, metric string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var parts []string
				for _, l := range m.GetLabel() {
					parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				name += "{" + strings.Join(parts, ",") + "}"
			}
			if name != metric {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}
