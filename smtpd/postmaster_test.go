package smtpd_test

import (
	"context"
	"strings"
	"testing"
)

// RFC 5321 §4.5.1: "RCPT TO:<Postmaster>" without a domain must be
// accepted and reach the server's postmaster.
func TestBarePostmaster(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	// No postmaster alias yet: the first local domain that takes
	// postmaster@ is catchall.example, whose catch-all is bob.
	c.cmd("RCPT TO:<Postmaster>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: via catch-all\r\n\r\nx\r\n.\r\n")
	c.expect(250)
	c.cmd("QUIT", 221)
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Fatalf("bob (catch-all) has %d messages, want 1", n)
	}

	// postmaster@example.org (the parent domain of the host name
	// mx.example.org) is preferred once it exists.
	if err := e.st.CreateAlias(context.Background(), "postmaster@example.org", "carol@example.org"); err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"RCPT TO:<Postmaster>", "RCPT TO: <postmaster>", "RCPT TO:<POSTMASTER> NOTIFY=NEVER"} {
		c = dial(t, e.inbound)
		c.ehlo("client.example")
		c.cmd("MAIL FROM:<sender@remote.example>", 250)
		c.cmd(rcpt, 250)
		c.cmd("DATA", 354)
		c.send("Subject: to the postmaster\r\n\r\n" + rcpt + "\r\n.\r\n")
		c.expect(250)
		c.cmd("QUIT", 221)
	}
	got := e.inbox(e.carol)
	if len(got) != 3 {
		t.Fatalf("carol (postmaster) has %d messages, want 3", len(got))
	}
	if !strings.Contains(string(got[0]), "to the postmaster") {
		t.Fatalf("unexpected message: %q", got[0])
	}
	// Other local parts without a domain stay a syntax error.
	c = dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice>", 501)
}
