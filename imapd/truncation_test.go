package imapd

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// An APPEND whose literal is cut short by the client's connection ending
// (a clean close, a half-close or a reset) stores nothing and is never
// acknowledged, whatever the literal's kind and size and wherever it is cut
// (issue 9: every one of these was stored as a truncated message).
func TestAppendTruncated(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 4 << 20 })
	cases := []struct {
		name      string
		size, cut int
		announce  string // printf format of the literal announcement
		utf8      bool
	}{
		{"synchronizing", 1000, 35, "{%d}", false},
		{"non-synchronizing", 1000, 35, "{%d+}", false},
		{"all but one octet", 1000, 999, "{%d+}", false},
		{"every octet, no end of line", 1000, 1000, "{%d+}", false},
		{"100 KB of 1 MB", 1 << 20, 100_000, "{%d+}", false},
		{"300 KB of 1 MB", 1 << 20, 300_000, "{%d}", false},
		{"one chunk of 1 MB", 1 << 20, 256 << 10, "{%d+}", false},
		{"literal8", 1000, 500, "~{%d+}", false},
		{"UTF8 literal8", 1000, 500, "~{%d+}", true},
	}
	for _, tc := range cases {
		for _, how := range []string{"close", "half-close", "reset"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				before := e.messages("alice", "INBOX")
				c := e.dial()
				c.login("alice")
				if tc.utf8 {
					c.cmd("E", "ENABLE UTF8=ACCEPT")
				}
				msg := strings.Repeat("x", tc.size)
				msg = "Subject: cut\r\n\r\n" + msg[len("Subject: cut\r\n\r\n"):]
				head := "b APPEND INBOX " + fmt.Sprintf(tc.announce, tc.size)
				if tc.utf8 {
					head = "b APPEND INBOX UTF8 (" + fmt.Sprintf(tc.announce, tc.size)
				}
				c.send(head)
				if strings.HasPrefix(tc.announce, "{") && !strings.Contains(tc.announce, "+") {
					if l := c.line(); !strings.HasPrefix(l, "+ ") {
						t.Fatalf("continuation: %q", l)
					}
				}
				c.sendRaw(msg[:tc.cut])
				tcp := c.conn.(*net.TCPConn)
				var replies []string
				switch how {
				case "close":
					tcp.Close()
				case "reset":
					tcp.SetLinger(0)
					tcp.Close()
				case "half-close":
					// The client says it will send nothing more and
					// keeps reading: it must see no tagged OK.
					tcp.CloseWrite()
					tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
					for {
						l, err := c.br.ReadString('\n')
						if l != "" {
							replies = append(replies, l)
						}
						if err != nil {
							break
						}
					}
				}
				for _, l := range replies {
					if strings.HasPrefix(l, "b OK") {
						t.Errorf("cut APPEND acknowledged: %q", l)
					}
				}
				waitFor(t, func() bool { return e.srv.OpenConns() == 0 })
				if n := e.messages("alice", "INBOX") - before; n != 0 {
					t.Fatalf("%d message(s) stored from a cut APPEND", n)
				}
			})
		}
	}
	// The same command completed is stored: the test can see a message.
	c := e.dial()
	c.login("alice")
	c.send("b APPEND INBOX {1000+}")
	c.sendRaw("Subject: whole\r\n\r\n" + strings.Repeat("y", 1000-len("Subject: whole\r\n\r\n")) + "\r\n")
	if r := c.until("b"); !strings.HasPrefix(r[len(r)-1], "b OK") {
		t.Fatalf("complete APPEND: %q", r)
	}
	if n := e.messages("alice", "INBOX"); n != 1 {
		t.Fatalf("after a complete APPEND: %d messages, want 1", n)
	}
}

// messages counts the messages in a user's mailbox, from the store.
func (e *testEnv) messages(user, mailbox string) uint32 {
	e.t.Helper()
	st, err := e.store.MailboxStatus(context.Background(), e.accts[user].ID, e.mailbox(user, mailbox).ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Messages
}
