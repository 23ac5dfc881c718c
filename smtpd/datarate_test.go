package smtpd_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDataMinRate: a DATA or BDAT transfer that stays live (no read waits
// as long as DataTimeout, and the whole-message timeout is far) but
// averages less than MinDataRate once its DataTimeout of credit is used up
// is cut off with 421 4.4.2 and nothing is stored; a transfer above the
// rate is accepted.
func TestDataMinRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.DataTimeout = time.Second // the credit, and the inactivity timeout
		c.MinDataRate = 200         // octets per second
	}))
	begin := func() *client {
		c := dial(t, e.inbound)
		c.ehlo("client.example")
		c.cmd("MAIL FROM:<sender@remote.example>", 250)
		c.cmd("RCPT TO:<alice@example.org>", 250)
		return c
	}
	// trickle sends 11 octets every 100 ms (about 110 octets/s, half the
	// minimum; each read waits far less than DataTimeout) until the
	// server stops reading or 10 s have passed, then returns the reply.
	trickle := func(c *client) reply {
		t.Helper()
		stop := time.Now().Add(10 * time.Second)
		for time.Now().Before(stop) {
			if _, err := c.conn.Write([]byte("slow line\r\n")); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		r, err := c.read()
		if err != nil {
			t.Fatalf("no reply to a slow transfer: %v", err)
		}
		return r
	}
	t.Run("DATA", func(t *testing.T) {
		c := begin()
		c.cmd("DATA", 354)
		c.send(simpleMsg)
		if r := trickle(c); !strings.HasPrefix(r.String(), "421 4.4.2 Message transfer too slow") {
			t.Fatalf("slow DATA: %v, want 421 4.4.2 Message transfer too slow", r)
		}
		c.expectClosed()
	})
	t.Run("BDAT", func(t *testing.T) {
		c := begin()
		c.send(fmt.Sprintf("BDAT %d LAST\r\n", 100000) + simpleMsg)
		if r := trickle(c); !strings.HasPrefix(r.String(), "421 4.4.2 Message transfer too slow") {
			t.Fatalf("slow BDAT: %v, want 421 4.4.2 Message transfer too slow", r)
		}
		c.expectClosed()
	})
	t.Run("fast enough", func(t *testing.T) {
		c := begin()
		c.cmd("DATA", 354)
		c.send(simpleMsg + strings.Repeat("a fast line of message text\r\n", 2000) + ".\r\n")
		c.expect(250)
	})
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages, want only the fast one", n)
	}
}
