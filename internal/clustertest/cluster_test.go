package clustertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/internal/pgtest"
)

// cluster starts three nodes on a fresh database behind HAProxy.
func cluster(t *testing.T, extraEnv ...string) (string, []*node, *balancer) {
	t.Helper()
	haproxyBinary(t) // skip before building anything when it is missing
	db := pgtest.NewDatabase(t)
	setupAccount(t, db)
	// A drain longer than HAProxy needs to see /readyz fail twice (2 s
	// apart), so that a stopping node leaves rotation before it tells
	// its clients to go.
	env := append([]string{"POSTRIDER_SHUTDOWN_TIMEOUT=10s", "POSTRIDER_DRAIN_PERIOD=5s"}, extraEnv...)
	var nodes []*node
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, newNode(t, fmt.Sprintf("node%d", i), db, env...))
	}
	return db, nodes, startBalancer(t, nodes)
}

// mustLines is a lineClient that fails the test on errors.
type mustLines struct {
	t *testing.T
	*lineClient
}

func dialMust(t *testing.T, ip, addr string) *mustLines {
	t.Helper()
	c, err := dialLines(ip, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return &mustLines{t, c}
}

func (m *mustLines) do(line, prefix string) []string {
	m.t.Helper()
	if line != "" {
		if err := m.send(line); err != nil {
			m.t.Fatal(err)
		}
	}
	got, before, err := m.until(prefix, 15*time.Second)
	if err != nil {
		m.t.Fatal(err)
	}
	return append(before, got)
}

// authFailureKeys lists the keys failed logins are counted under.
func authFailureKeys(t *testing.T, dbURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var keys string
	if err := c.QueryRow(ctx, "SELECT coalesce(string_agg(key, ' '), '') FROM auth_failures").Scan(&keys); err != nil {
		t.Fatal(err)
	}
	return keys
}

func deliverOnce(t *testing.T, ip, addr, id string) {
	t.Helper()
	c, err := dialLines(ip, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	s := &smtpLoad{acked: map[string]time.Time{}}
	if err := expectCode(c, "greeting", "220"); err != nil {
		t.Fatal(err)
	}
	if err := c.send("EHLO client.test"); err != nil {
		t.Fatal(err)
	}
	if err := expectCode(c, "EHLO", "250"); err != nil {
		t.Fatal(err)
	}
	if err := s.deliver(c, id); err != nil {
		t.Fatalf("delivery of %s through %s: %v", id, addr, err)
	}
}

// TestClusterBehindHAProxy: SMTP in and IMAP/POP3 out through the
// balancer, whichever node serves them; IDLE on one node sees what the
// others do; the POP3 lock holds across nodes; the client's own address
// reaches the nodes' logs and login throttling through PROXY protocol v2.
func TestClusterBehindHAProxy(t *testing.T) {
	db, nodes, lb := cluster(t, "POSTRIDER_LOG_LEVEL=debug")

	idle := dialMust(t, directClientIP, nodes[0].addrs["IMAP"])
	idle.do("", "* OK")
	idle.do(`a LOGIN `+user+` "`+password+`"`, "a OK")
	idle.do("b SELECT INBOX", "b OK")
	idle.do("c IDLE", "+ ")

	// Three deliveries through the balancer (leastconn spreads them) and
	// one straight to node 2.
	for i := 1; i <= 3; i++ {
		deliverOnce(t, balancedClientIP, lb.front["smtp"], fmt.Sprintf("lb-%d@client.test", i))
		idle.do("", fmt.Sprintf("* %d EXISTS", i))
	}
	deliverOnce(t, directClientIP, nodes[1].addrs["SMTP"], "direct-4@client.test")
	idle.do("", "* 4 EXISTS")

	// Flag changes through the balancer and on nodes 2 and 3.
	for i, addr := range []string{lb.front["imap"], nodes[1].addrs["IMAP"], nodes[2].addrs["IMAP"]} {
		ip := directClientIP
		if i == 0 {
			ip = balancedClientIP
		}
		c := dialMust(t, ip, addr)
		c.do("", "* OK")
		c.do(`a LOGIN `+user+` "`+password+`"`, "a OK")
		sel := strings.Join(c.do("b SELECT INBOX", "b OK"), "\n")
		if !strings.Contains(sel, "* 4 EXISTS") {
			t.Fatalf("SELECT through %s:\n%s", addr, sel)
		}
		c.do(fmt.Sprintf(`c STORE %d +FLAGS (\Flagged)`, i+1), "c OK")
		got := strings.Join(idle.do("", fmt.Sprintf("* %d FETCH", i+1)), "\n")
		if !strings.Contains(got, `\Flagged`) {
			t.Fatalf("IDLE on node 1 after STORE on %s: %q", addr, got)
		}
		c.do("z LOGOUT", "z OK")
	}
	idle.do("DONE", "c OK")

	// POP3 through the balancer; every node then refuses a second session
	// for the maildrop (RFC 2449 §8.1.2 [IN-USE]), whichever holds it.
	pop := dialMust(t, balancedClientIP, lb.front["pop3"])
	pop.do("", "+OK")
	pop.do("USER "+user, "+OK")
	pop.do("PASS "+password, "+OK")
	if st := pop.do("STAT", "+OK"); !strings.HasPrefix(st[len(st)-1], "+OK 4 ") {
		t.Fatalf("STAT through the balancer: %q", st)
	}
	// (At once: a node waits a few seconds for a lock whose holder may
	// be quitting before it answers [IN-USE].)
	inUse := make(chan string, len(nodes))
	for _, n := range nodes {
		go func() { inUse <- secondPOP3(n) }()
	}
	for range nodes {
		if msg := <-inUse; msg != "" {
			t.Error(msg)
		}
	}
	pop.do("RETR 1", "+OK")
	pop.do("", ".")
	pop.do("QUIT", "+OK")

	// PROXY protocol: the nodes log the client's address, 127.0.0.23,
	// with HAProxy's as the proxy; direct clients appear as themselves.
	var viaLB, direct bool
	for _, n := range nodes {
		for _, l := range strings.Split(n.logs(), "\n") {
			if strings.Contains(l, `"remote":"`+balancedClientIP) && strings.Contains(l, `"proxy":"127.0.0.1`) {
				viaLB = true
			}
			if strings.Contains(l, `"remote":"`+directClientIP) && !strings.Contains(l, `"proxy"`) {
				direct = true
			}
		}
	}
	if !viaLB || !direct {
		t.Errorf("client addresses in the nodes' logs: through HAProxy %v, direct %v\n%s", viaLB, direct, nodes[0].logs())
	}
	// Throttling counts the failed login under the client's address, not
	// HAProxy's (auth/throttle.go: "ip:<client>" and "userip:..." keys).
	bad := dialMust(t, balancedClientIP, lb.front["imap"])
	bad.do("", "* OK")
	if r := bad.do(`a LOGIN `+user+` "wrong"`, "a "); !strings.HasPrefix(r[len(r)-1], "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password through the balancer: %q", r)
	}
	keys := authFailureKeys(t, db)
	if !strings.Contains(keys, "ip:"+balancedClientIP) || strings.Contains(keys, "127.0.0.1") {
		t.Errorf("failed login through HAProxy counted under %q, want the client's %s", keys, balancedClientIP)
	}

	// HAProxy logs each closed connection (option tcplog to the log
	// target).
	if !strings.Contains(lb.logs(), balancedClientIP+":") || !strings.Contains(lb.logs(), " smtp smtp/node") {
		t.Errorf("HAProxy did not log connections:\n%s", lb.logs())
	}
}

// secondPOP3 logs in to n's POP3 while the maildrop is locked elsewhere;
// it returns what went wrong, "" for the expected [IN-USE].
func secondPOP3(n *node) string {
	c, err := dialLines(directClientIP, n.addrs["POP3"])
	if err != nil {
		return err.Error()
	}
	defer c.close()
	for _, cmd := range []string{"", "USER " + user} {
		if cmd != "" {
			if err := c.send(cmd); err != nil {
				return err.Error()
			}
		}
		if l, err := c.line(10 * time.Second); err != nil || !strings.HasPrefix(l, "+OK") {
			return fmt.Sprintf("%s: POP3 %q: %q, %v", n.name, cmd, l, err)
		}
	}
	if err := c.send("PASS " + password); err != nil {
		return err.Error()
	}
	l, err := c.line(30 * time.Second)
	if err != nil || !strings.HasPrefix(l, "-ERR [IN-USE]") {
		return fmt.Sprintf("second POP3 session on %s: %q, %v", n.name, l, err)
	}
	return ""
}

// TestClusterNodeKilled: SIGKILL one node during a stream of SMTP
// deliveries through HAProxy. Every acknowledged message is stored
// exactly once, no message twice, and the clients carry on through the
// other nodes.
func TestClusterNodeKilled(t *testing.T) {
	db, nodes, lb := cluster(t)
	load := startSMTPLoad(4, balancedClientIP, "kill", func(int, int) string { return lb.front["smtp"] })
	time.Sleep(3 * time.Second)
	nodes[1].kill()
	killed := time.Now()
	t.Logf("SIGKILL node2 after %d acknowledged deliveries", len(load.ackedIDs()))
	time.Sleep(8 * time.Second)
	load.halt()

	var after int
	var lastAck time.Time
	for _, at := range load.ackedIDs() {
		if at.After(killed) {
			after++
		}
		if at.After(lastAck) {
			lastAck = at
		}
	}
	if after == 0 || lastAck.Before(killed.Add(6*time.Second)) {
		t.Errorf("clients did not carry on after the kill: %d acknowledged after it, the last %v after", after, lastAck.Sub(killed))
	}
	lost, unacked := checkDeliveries(t, db, load)
	t.Logf("node kill: %s; %d acknowledged after the kill; lost %d; unacknowledged but stored %d",
		load.summary(), after, lost, unacked)
}

// TestClusterRollingRestart: SIGTERM, wait, restart each node in turn
// under SMTP and IMAP load through HAProxy; no acknowledged message and no
// acknowledged flag change is lost.
func TestClusterRollingRestart(t *testing.T) {
	db, nodes, lb := cluster(t)
	smtpL := startSMTPLoad(2, balancedClientIP, "roll", func(int, int) string { return lb.front["smtp"] })
	imapL := startIMAPLoad(2, balancedClientIP, func(int, int) string { return lb.front["imap"] })
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		start := time.Now()
		downs := strings.Count(lb.logs(), "Server smtp/"+n.name+" is DOWN")
		ups := strings.Count(lb.logs(), "Server smtp/"+n.name+" is UP, reason: Layer7 check passed")
		// SIGTERM: the node fails /readyz and keeps serving for its drain
		// period, in which HAProxy takes it out (two failed checks 2 s
		// apart); then it tells its clients to go and exits. Restarted,
		// its /readyz check puts it back in rotation.
		n.term()
		lb.waitLog(t, "Server smtp/"+n.name+" is DOWN", downs+1, 15*time.Second)
		down := time.Since(start)
		n.waitExit(t)
		stopped := time.Since(start)
		n.start(t)
		lb.waitLog(t, "Server smtp/"+n.name+" is UP, reason: Layer7 check passed", ups+1, 15*time.Second)
		t.Logf("%s: out of rotation %v after SIGTERM, exited after %v, back in rotation after %v",
			n.name, down.Round(time.Millisecond), stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		if down > stopped {
			t.Errorf("%s left rotation only after it exited: no drain", n.name)
		}
	}
	time.Sleep(time.Second)
	smtpL.halt()
	imapL.halt()
	lost, unacked := checkDeliveries(t, db, smtpL)
	checkFlags(t, balancedClientIP, lb.front["imap"], imapL, true)
	if len(smtpL.ackedIDs()) == 0 || len(imapL.acked) == 0 {
		t.Fatalf("no load got through: %s; %s", smtpL.summary(), imapL.summary())
	}
	t.Logf("rolling restart: %s; lost %d; unacknowledged but stored %d", smtpL.summary(), lost, unacked)
	t.Logf("rolling restart: %s", imapL.summary())
}
