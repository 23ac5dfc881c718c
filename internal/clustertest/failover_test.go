package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDir finds a directory with PostgreSQL's server programs (initdb,
// pg_ctl, pg_basebackup), newest version first; "" when there is none.
func pgBinDir() string {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(versions[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(versions[j])))
		return vi > vj
	})
	for _, d := range append(dirs, versions...) {
		ok := true
		for _, p := range []string{"initdb", "pg_ctl", "pg_basebackup"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

// pgServer is a throw-away PostgreSQL cluster of the failover test.
type pgServer struct {
	bin, dir, data, port string
	uid, gid             int // run as (PostgreSQL refuses root); -1: ourselves
}

func (s *pgServer) run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if s.uid >= 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", filepath.Join(s.bin, name)}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		t.Fatalf("%s %v: %v\n%s\n%s", name, args, err, out, log)
	}
}

// start runs the server with opts on its port.
func (s *pgServer) start(t *testing.T, opts string) {
	t.Helper()
	o := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %s -c unix_socket_directories=%s -c max_connections=100 -c shared_buffers=32MB -c fsync=off %s",
		s.port, s.dir, opts)
	s.run(t, "pg_ctl", "-D", s.data, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "-o", o, "start")
}

// TestDatabaseFailover runs two nodes on a two-host database URL
// (target_session_attrs=read-write) over a primary with a synchronous
// streaming standby; under SMTP and IMAP load the primary is stopped
// (immediate: as a crash) and the standby promoted. SMTP must answer 4xx,
// never 5xx, while no primary is reachable; /readyz must fail; every
// acknowledged message and flag change must be on the new primary; IDLE on
// one node must see what the other does after the failover. It reports
// the seconds until deliveries succeed again.
func TestDatabaseFailover(t *testing.T) {
	bin := pgBinDir()
	if bin == "" {
		t.Skip("failover test needs PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup: Debian's postgresql package)")
	}
	base, err := os.MkdirTemp("", "postrider-failover-")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := osuser.Lookup("postgres")
		if err != nil {
			os.RemoveAll(base)
			t.Skip("failover test runs PostgreSQL as the postgres user, which does not exist")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	mk := func(name string) *pgServer {
		s := &pgServer{bin: bin, dir: filepath.Join(base, name), port: portOf(freePort(t)), uid: uid, gid: gid}
		s.data = filepath.Join(s.dir, "data")
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			_ = os.Chown(base, uid, gid)
			_ = os.Chown(s.dir, uid, gid)
		}
		return s
	}
	primary, standby := mk("primary"), mk("standby")
	t.Cleanup(func() {
		for _, s := range []*pgServer{primary, standby} {
			cmd := exec.Command(filepath.Join(bin, "pg_ctl"), "-D", s.data, "-m", "immediate", "stop")
			if uid >= 0 {
				cmd = exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bin, "pg_ctl"), "-D", s.data, "-m", "immediate", "stop")
			}
			_ = cmd.Run()
		}
		os.RemoveAll(base)
	})

	primary.run(t, "initdb", "-D", primary.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C")
	// Synchronous replication: a commit returns only once the standby
	// has its WAL, so what was acknowledged survives losing the primary.
	primary.start(t, "-c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on -c synchronous_standby_names=*")
	standby.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres", "-D", standby.data, "-R", "-X", "stream", "-c", "fast")
	// The standby gets no synchronous_standby_names: promoted, it has no
	// standby of its own to wait for.
	standby.start(t, "-c hot_standby=on")
	primaryURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", primary.port)
	waitSync(t, primaryURL)

	dbURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%s,127.0.0.1:%s/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
		primary.port, standby.port)
	setupAccount(t, dbURL)
	a := newNode(t, "nodeA", dbURL, "POSTRIDER_SHUTDOWN_TIMEOUT=5s")
	b := newNode(t, "nodeB", dbURL, "POSTRIDER_SHUTDOWN_TIMEOUT=5s")
	nodes := []*node{a, b}

	idle := startIdle(t, a.addrs["IMAP"])
	smtpL := startSMTPLoad(2, directClientIP, "failover", func(w, attempt int) string { return nodes[(w+attempt)%2].addrs["SMTP"] })
	imapL := startIMAPLoad(1, directClientIP, func(int, int) string { return b.addrs["IMAP"] })
	time.Sleep(2 * time.Second)

	before := len(smtpL.ackedIDs())
	smtpL.mu.Lock()
	tempBefore := smtpL.tempErrs
	smtpL.mu.Unlock()
	stopped := time.Now()
	primary.run(t, "pg_ctl", "-D", primary.data, "-m", "immediate", "stop")
	// While no primary is reachable, /readyz fails on both nodes.
	for _, n := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for n.ready() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still answers 200 with the primary stopped", n.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	unready := time.Since(stopped)
	// No primary for a while, as while a failover manager notices (Patroni
	// waits out its leader lease): SMTP must keep answering 4xx, and no
	// 250 can come, since nothing can commit.
	holdUntil := time.Now().Add(3 * time.Second)
	// POP3 says "try again later" (RFC 3206 §4 [SYS/TEMP]).
	if l := pop3Login(t, a); !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
		t.Errorf("POP3 login with no primary: %q, want -ERR [SYS/TEMP]", l)
	}
	time.Sleep(time.Until(holdUntil))
	promoteAt := time.Now()
	for id, at := range smtpL.ackedIDs() {
		// (A reply to a commit made just before the stop may still be on
		// its way: a second's grace on a busy machine.)
		if at.After(stopped.Add(time.Second)) && at.Before(promoteAt) {
			t.Errorf("%s acknowledged %v after the primary stopped, with no primary", id, at.Sub(stopped))
		}
	}
	standby.run(t, "pg_ctl", "-D", standby.data, "-w", "promote")

	var recovered time.Time
	deadline := time.Now().Add(30 * time.Second)
	for recovered.IsZero() && time.Now().Before(deadline) {
		for _, at := range smtpL.ackedIDs() {
			if at.After(promoteAt) && (recovered.IsZero() || at.Before(recovered)) {
				recovered = at
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if recovered.IsZero() {
		t.Fatalf("no delivery succeeded within 30 s of the promotion: %s\n%s", smtpL.summary(), a.logs())
	}
	time.Sleep(2 * time.Second) // load on the new primary
	smtpL.halt()
	imapL.halt()
	for _, n := range nodes {
		if err := n.waitReady(10 * time.Second); err != nil {
			t.Errorf("%s after the failover: %v", n.name, err)
		}
	}

	newPrimaryURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", standby.port)
	lost, unacked := checkDeliveries(t, newPrimaryURL, smtpL)
	// Flag changes commit asynchronously by design (synchronous_commit
	// off: mailstore/postgres/functions/pr_store_flags.sql), so the last
	// of them before the crash may not have reached the standby: counted
	// and reported, not failed. Messages commit synchronously: none may
	// be lost (checkDeliveries).
	flagsLost := checkFlags(t, directClientIP, b.addrs["IMAP"], imapL, false)
	smtpL.mu.Lock()
	tempDuring := smtpL.tempErrs - tempBefore
	smtpL.mu.Unlock()

	// Cross-node IDLE after the failover: node A's listener is on the
	// new primary, so a delivery and a flag change on node B reach the
	// session idling on node A.
	total := countMessages(t, newPrimaryURL)
	idleKept := idle.alive()
	if !idleKept {
		t.Logf("the IDLE session opened before the failover ended (%q); checking with a new one", idle.last())
		idle = startIdle(t, a.addrs["IMAP"])
	}
	deliverOnce(t, directClientIP, b.addrs["SMTP"], "after-failover@client.test")
	idle.wait(t, fmt.Sprintf("* %d EXISTS", total+1))
	c := dialMust(t, directClientIP, b.addrs["IMAP"])
	c.do("", "* OK")
	c.do(`a LOGIN `+user+` "`+password+`"`, "a OK")
	c.do("b SELECT INBOX", "b OK")
	c.do(fmt.Sprintf(`c STORE %d +FLAGS (\Flagged)`, total+1), "c OK")
	idle.wait(t, fmt.Sprintf("* %d FETCH", total+1))

	t.Logf("failover: /readyz failed on both nodes %.2f s after the primary stopped; the standby was promoted %.2f s after; deliveries succeeded again %.2f s after the promotion (%.2f s after the primary stopped)",
		unready.Seconds(), promoteAt.Sub(stopped).Seconds(), recovered.Sub(promoteAt).Seconds(), recovered.Sub(stopped).Seconds())
	t.Logf("failover: %d acknowledged before the stop; %s; %d SMTP temporary errors from the stop on; lost %d; unacknowledged but stored %d",
		before, smtpL.summary(), tempDuring, lost, unacked)
	t.Logf("failover: %s; acknowledged \\Seen changes lost: %d (asynchronous commit)", imapL.summary(), flagsLost)
	t.Logf("failover: IDLE on nodeA (the session opened before the failover: %v) saw the delivery and the flag change made on nodeB after it", idleKept)
}

// pop3Login logs in to n's POP3 and returns the reply to PASS.
func pop3Login(t *testing.T, n *node) string {
	t.Helper()
	c := dialMust(t, directClientIP, n.addrs["POP3"])
	c.do("", "+OK")
	c.do("USER "+user, "+OK")
	if err := c.send("PASS " + password); err != nil {
		t.Fatal(err)
	}
	l, err := c.line(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// waitSync waits until the primary has a synchronous standby.
func waitSync(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, url)
		if err == nil {
			var n int
			err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").Scan(&n)
			c.Close(context.Background())
			if err == nil && n > 0 {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("the standby did not become synchronous within 30 s")
}

func countMessages(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// idleSession is an IMAP session in IDLE whose lines are read in the
// background (under load it receives a stream of EXISTS and FETCH).
type idleSession struct {
	mu    sync.Mutex
	lines []string
	done  bool
}

func startIdle(t *testing.T, addr string) *idleSession {
	t.Helper()
	c := dialMust(t, directClientIP, addr)
	c.do("", "* OK")
	c.do(`a LOGIN `+user+` "`+password+`"`, "a OK")
	c.do("b SELECT INBOX", "b OK")
	c.do("c IDLE", "+ ")
	s := &idleSession{}
	go func() {
		for {
			l, err := c.line(5 * time.Minute)
			s.mu.Lock()
			if err != nil {
				s.done = true
				s.mu.Unlock()
				return
			}
			s.lines = append(s.lines, l)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *idleSession) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.done
}

func (s *idleSession) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) == 0 {
		return ""
	}
	return s.lines[len(s.lines)-1]
}

// wait waits up to 15 s for a line starting with prefix.
func (s *idleSession) wait(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, l := range s.lines {
			if strings.HasPrefix(l, prefix) {
				s.mu.Unlock()
				return
			}
		}
		done := s.done
		s.mu.Unlock()
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("IDLE did not see %q (last line %q)", prefix, s.last())
}
