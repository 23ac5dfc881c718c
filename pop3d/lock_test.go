package pop3d_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/pop3d"
)

const inUse = "-ERR [IN-USE] Maildrop is in use by another POP3 session, try again later"

// TestClusterLock runs two nodes, each on its own store handle (its own
// connection pool) on one database: one POP3 session per maildrop across
// the cluster, and the same UIDLs on both nodes.
func TestClusterLock(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	e.appendRaw("Subject: b\n\nb\n")
	a := e.start(nil, nil)
	b := e.start(pgtest.OpenStore(t, e.url), nil)

	ca := dial(t, a.addr)
	ca.login()
	uidlA := ca.multi("UIDL")
	listA := ca.multi("LIST")

	cb := dial(t, b.addr)
	cb.run(`
		C: USER ` + testUser + `
		S: +OK Send your password
		C: PASS ` + testPass + `
		S: ` + inUse + `
		C: AUTH PLAIN ` + b64("\x00"+testUser+"\x00"+testPass) + `
		S: ` + inUse + `
	`)
	// Also on the same node.
	ca2 := dial(t, a.addr)
	ca2.ok("USER " + testUser)
	ca2.expect("PASS "+testPass, inUse)

	ca.ok("QUIT")
	// The session that was refused stays in AUTHORIZATION and may retry.
	cb.login()
	if got := cb.multi("UIDL"); strings.Join(got, "|") != strings.Join(uidlA, "|") {
		t.Fatalf("UIDL differs between nodes: %q vs %q", got, uidlA)
	}
	if got := cb.multi("LIST"); strings.Join(got, "|") != strings.Join(listA, "|") {
		t.Fatalf("LIST differs between nodes: %q vs %q", got, listA)
	}
	cb.ok("QUIT")
}

// TestLockRenewed: a session idle for longer than the lock's TTL keeps it.
func TestLockRenewed(t *testing.T) {
	e := newEnv(t)
	a := e.start(nil, func(c *pop3d.Config) { c.LockTTL = time.Second })
	b := e.start(pgtest.OpenStore(t, e.url), nil)
	ca := dial(t, a.addr)
	ca.login()
	time.Sleep(2500 * time.Millisecond)
	cb := dial(t, b.addr)
	cb.ok("USER " + testUser)
	cb.expect("PASS "+testPass, inUse)
	ca.ok("NOOP")
}

// TestLockReleasedOnDisconnect: a client that vanishes without QUIT frees
// the maildrop at once, not after the TTL.
func TestLockReleasedOnDisconnect(t *testing.T) {
	e := newEnv(t)
	cfg := func(c *pop3d.Config) { c.LockTTL = time.Minute }
	a := e.start(nil, cfg)
	b := e.start(pgtest.OpenStore(t, e.url), cfg)
	ca := dial(t, a.addr)
	ca.login()
	ca.c.Close()
	start := time.Now()
	loginWhenFree(t, b.addr).ok("QUIT")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("lock released after %v", d)
	}
}

// TestDeadNodeLease: a lease abandoned by a node that died (never
// renewed, never released) blocks the maildrop only until its TTL ends.
func TestDeadNodeLease(t *testing.T) {
	e := newEnv(t)
	n := e.start(nil, nil)
	const ttl = 2 * time.Second
	ok, err := e.st.AcquireLease(context.Background(), "pop3:"+strconv.FormatInt(e.acc.ID, 10), "dead-node/0123", ttl)
	if err != nil || !ok {
		t.Fatalf("AcquireLease: %v %v", ok, err)
	}
	start := time.Now()
	c := dial(t, n.addr)
	c.ok("USER " + testUser)
	c.expect("PASS "+testPass, inUse)
	c = loginWhenFree(t, n.addr)
	d := time.Since(start)
	if d < ttl-200*time.Millisecond || d > ttl+3*time.Second {
		t.Fatalf("login possible after %v, TTL %v", d, ttl)
	}
	c.ok("QUIT")
}

// TestNodeKilled: node A dies while one of its sessions holds the lock (its
// database handle goes away, so it can neither renew nor release). Node B
// gets the maildrop once the lease expires, and A's session, which can no
// longer prove it owns the maildrop, deletes nothing.
func TestNodeKilled(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	stA := pgtest.OpenStore(t, e.url)
	a := e.start(stA, nil) // LockTTL 2 s
	b := e.start(nil, nil)
	ca := dial(t, a.addr)
	ca.login()
	ca.ok("DELE 1")
	killed := time.Now()
	stA.Close()

	cb := dial(t, b.addr)
	cb.ok("USER " + testUser)
	cb.expect("PASS "+testPass, inUse)
	cb = loginWhenFree(t, b.addr)
	if d := time.Since(killed); d > 2*time.Second+3*time.Second {
		t.Fatalf("maildrop of a dead node blocked for %v", d)
	}
	// A's session cannot commit (its QUIT fails or it was already closed
	// because its lock was lost).
	ca.send("QUIT")
	_ = ca.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := ca.r.ReadString('\n'); err == nil && !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
		t.Fatalf("QUIT on the dead node: %q", l)
	}
	cb.run(`
		C: STAT
		S: +OK 1 *
		C: QUIT
		S: +OK *
	`)
	if got := len(e.messages()); got != 1 {
		t.Fatalf("%d messages, want 1", got)
	}
}

// A client that sends QUIT and logs in again at once, without waiting for
// the reply (pop3-download.py, a client's next poll), finds its previous
// session still committing in the UPDATE state: the login waits for the
// lock to be released instead of answering [IN-USE].
func TestLoginWaitsForQuittingSession(t *testing.T) {
	e := newEnv(t)
	e.deliver(testMsg("a", "a\r\n"))
	a := e.start(nil, func(c *pop3d.Config) { c.LockTTL = 30 * time.Second }) // waits up to 5 s
	first := dial(t, a.addr)
	first.login()
	second := dial(t, a.addr)
	second.ok("USER " + testUser)
	go func() {
		time.Sleep(300 * time.Millisecond) // the second login is waiting by now
		first.send("QUIT")
	}()
	second.ok("PASS " + testPass)
	second.ok("QUIT")
}
