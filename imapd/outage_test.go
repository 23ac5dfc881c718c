package imapd

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestDatabaseOutage: while the database is unreachable, commands and
// logins fail with NO [UNAVAILABLE] (RFC 5530 §3: try again later), not
// SERVERBUG, and the session keeps working once the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy, purl := pgtest.NewProxy(t, e.url)
	st := pgtest.OpenStore(t, purl)
	e.auth = auth.New(st, auth.Options{Argon2: cheapArgon, Logger: testLogger(t)})
	_, addr := e.startServer(st)

	c := dialAddr(t, addr)
	c.login("alice")
	if r := c.cmd("S", "SELECT INBOX"); r[len(r)-1] != "S OK [READ-WRITE] SELECT completed" {
		t.Fatalf("SELECT: %q", r)
	}
	proxy.Down()
	for _, cmd := range []string{"STATUS Sent (MESSAGES)", "CREATE Projects", "NOOP"} {
		r := c.cmd("D", cmd)
		last := r[len(r)-1]
		if cmd == "NOOP" {
			// NOOP touches no store; the catch-up after it fails
			// quietly, and the session stays.
			if last != "D OK NOOP completed" {
				t.Errorf("%s during the outage: %q", cmd, r)
			}
			continue
		}
		if !strings.HasPrefix(last, "D NO [UNAVAILABLE] ") {
			t.Errorf("%s during the outage: %q, want NO [UNAVAILABLE]", cmd, r)
		}
	}
	c2 := dialAddr(t, addr)
	if r := c2.cmd("L", "LOGIN bob@"+testDomain+" pw-bob"); !strings.HasPrefix(r[len(r)-1], "L NO [UNAVAILABLE] ") {
		t.Errorf("LOGIN during the outage: %q, want NO [UNAVAILABLE]", r)
	}

	proxy.Up()
	if r := c.cmd("A", "CREATE Projects"); !matchLine(r[len(r)-1], strings.ReplaceAll(createdOK, "$T", "A")) {
		t.Errorf("CREATE after the outage: %q", r)
	}
	c2.login("bob")
}

// TestIdleThroughOutage: a catch-up that fails in IDLE because the
// database is away (a failover) does not end IDLE with a tagged NO the
// client did not ask for; the session keeps idling and shows the changes
// once the database is back.
func TestIdleThroughOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	proxy, purl := pgtest.NewProxy(t, e.url)
	st := pgtest.OpenStore(t, purl)
	_, addr := e.startServer(st)

	c := dialAddr(t, addr)
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.send("I IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	proxy.Down()
	// A write on this node that fails without telling whether it
	// committed wakes the node's sessions to catch up, which they cannot.
	inbox := e.mailbox("alice", "INBOX")
	if _, err := st.Append(context.Background(), e.accts["alice"].ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader(testMessage("during", "x"))); err == nil {
		t.Fatal("Append through a downed database succeeded")
	}
	c.conn.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if l, err := c.br.ReadString('\n'); err == nil {
		t.Fatalf("IDLE during the outage sent %q", l)
	}
	proxy.Up()
	e.deliver("alice", "INBOX", testMessage("after", "x"))
	if l := c.line(); l != "* 1 EXISTS" {
		t.Fatalf("IDLE after the outage: %q, want * 1 EXISTS", l)
	}
	c.send("DONE")
	if r := c.until("I"); !strings.HasPrefix(r[len(r)-1], "I OK") {
		t.Fatalf("DONE: %q", r)
	}
}
