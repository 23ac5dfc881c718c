package pop3d_test

import (
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/pop3d"
)

// TestDatabaseOutage: a session that ends while the database is
// unreachable cannot release its maildrop lock then; once the database is
// back, a new login to the same maildrop succeeds at once instead of
// getting [IN-USE] until the lock expires (30 s here). Failures during the
// outage are [SYS/TEMP].
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver(testMsg("one", "hello\r\n"))
	proxy, purl := pgtest.NewProxy(t, e.url)
	st := pgtest.OpenStore(t, purl)
	n := e.start(st, func(c *pop3d.Config) { c.LockTTL = 30 * time.Second })

	c := dial(t, n.addr)
	c.login()
	c.ok("DELE 1")
	proxy.Down()
	// QUIT cannot expunge: the session ends with [SYS/TEMP], and its lock
	// is released (or not) before that reply is sent.
	c.run(`
		C: QUIT
		S: -ERR [SYS/TEMP] *
		S: <EOF>`)
	// Logging in fails the same way while the database is down.
	c2 := dial(t, n.addr)
	c2.ok("USER " + testUser)
	c2.expect("PASS "+testPass, "-ERR [SYS/TEMP] ")

	proxy.Up()
	c3 := dial(t, n.addr)
	c3.ok("USER " + testUser)
	if r := c3.cmd("PASS " + testPass); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login after the outage: %q, want +OK", r)
	}
	// Nothing was deleted by the failed QUIT.
	c3.expect("STAT", "+OK 1 ")
	c3.ok("QUIT")
}
