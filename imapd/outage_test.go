package imapd

import (
	"strings"
	"testing"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/pgtest"
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
