package smtpd_test

import (
	"testing"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestDatabaseOutage: while the database is unreachable, a message, a new
// recipient and a login get temporary replies (451 4.3.0, 454 4.7.0),
// never 250 and never a permanent 5xx; the same session delivers once the
// database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	var proxy *pgtest.Proxy
	e := newEnv(t, func(o *envOpts) {
		o.storeAt = func(url string) mailstore.Store {
			var purl string
			proxy, purl = pgtest.NewProxy(t, url)
			return pgtest.OpenStore(t, purl)
		}
	})
	c := dial(t, e.inbound)
	c.ehlo("remote.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	proxy.Down()
	c.send("Subject: outage\r\n\r\nbody\r\n.\r\n")
	c.expect(451, "4.3.0 ")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 451, "4.3.0 ")
	c.cmd("RSET", 250)

	s := dial(t, e.submission)
	s.ehlo("client.example")
	s.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 454, "4.7.0 ")

	proxy.Up()
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: after\r\n\r\nbody\r\n.\r\n")
	c.expect(250)
	s.login("alice@example.org", alicePass)
	if n := len(e.inbox(e.alice)); n != 0 {
		t.Errorf("alice has %d messages; the one sent during the outage was refused", n)
	}
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
}
