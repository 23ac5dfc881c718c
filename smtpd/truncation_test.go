package smtpd_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/smtpd"
)

// A message whose transfer the client's connection cuts short (a clean
// close, a half-close or a reset) is never stored and never acknowledged,
// over DATA and over BDAT, in the first chunk or a later one, small or
// spooled to disk (issue 9: a BDAT ... LAST cut short was acknowledged with
// 250 and stored).
func TestTransferCutShort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpd.Config) { c.SpoolMemory = 64 << 10 }))
	type tcase struct {
		name string
		// send writes the transfer, cut short; it is called after RCPT.
		send func(c *client, msg string)
		size int
	}
	cut := func(msg string, n int) string { return msg[:n] }
	cases := []tcase{
		{"DATA small", func(c *client, msg string) {
			c.cmd("DATA", 354)
			c.send(cut(msg, 40))
		}, 1000},
		{"DATA without the end marker", func(c *client, msg string) {
			c.cmd("DATA", 354)
			c.send(msg) // every line, but no "."
		}, 1000},
		{"DATA spooled", func(c *client, msg string) {
			c.cmd("DATA", 354)
			c.send(cut(msg, 300_000))
		}, 900_000},
		{"BDAT LAST small", func(c *client, msg string) {
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), cut(msg, 40)))
		}, 1000},
		{"BDAT LAST all but one octet", func(c *client, msg string) {
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), cut(msg, len(msg)-1)))
		}, 1000},
		{"BDAT LAST spooled", func(c *client, msg string) {
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), cut(msg, 300_000)))
		}, 900_000},
		{"BDAT second chunk", func(c *client, msg string) {
			c.send(fmt.Sprintf("BDAT %d\r\n%s", 500, msg[:500]))
			c.expect(250)
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-500, msg[500:700]))
		}, 1000},
		{"BDAT complete chunks, no LAST", func(c *client, msg string) {
			c.send(fmt.Sprintf("BDAT %d\r\n%s", len(msg), msg))
			c.expect(250)
		}, 1000},
	}
	for _, tc := range cases {
		for _, how := range []string{"close", "half-close", "reset"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				before := len(e.inbox(e.alice))
				c := dial(t, e.inbound)
				c.ehlo("client.example")
				c.cmd("MAIL FROM:<s@remote.example>", 250)
				c.cmd("RCPT TO:<alice@example.org>", 250)
				msg := "Subject: cut\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n", tc.size/70)
				tc.send(c, msg)
				tcp := c.conn.(*net.TCPConn)
				switch how {
				case "close":
					tcp.Close()
				case "reset":
					tcp.SetLinger(0)
					tcp.Close()
				case "half-close":
					tcp.CloseWrite()
					_ = tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
					rest, _ := io.ReadAll(c.r)
					if strings.Contains(string(rest), "250 2.0.0") {
						t.Errorf("cut transfer acknowledged: %q", rest)
					}
				}
				waitConns(t, e)
				if n := len(e.inbox(e.alice)) - before; n != 0 {
					t.Fatalf("%d message(s) stored from a cut transfer", n)
				}
			})
		}
	}
	// The same transfers completed are stored.
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	msg := "Subject: whole\r\n\r\nall of it\r\n"
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg))
	c.expect(250, "2.0.0")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(msg + ".\r\n")
	c.expect(250, "2.0.0")
	if n := len(e.inbox(e.alice)); n != 2 {
		t.Fatalf("%d messages after two complete transfers, want 2", n)
	}
}

// waitConns waits until the server has finished with every connection.
func waitConns(t *testing.T, e *env) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if e.srv.OpenConns() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("server still holds connections")
}
