package imapd

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// nsl is a non-synchronizing literal announcement and its data.
func nsl(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }

// MULTIAPPEND (RFC 3502): several messages in one command with their own
// flags and dates, synchronizing and not, APPENDUID with a UID set (RFC
// 4315 §3), EXISTS for the selected mailbox, and every refusal storing
// nothing: TRYCREATE, TOOBIG, an empty message, a syntax error after the
// second message, too many messages, the quota exceeded by the total.
func TestMultiAppendTranscript(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 1 << 20 })
	inbox := e.mailbox("alice", "INBOX")
	m1, m2, m3 := testMessage("one", "first\r\n"), testMessage("two", "second\r\n"), testMessage("three", "third\r\n")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.send(`A1 APPEND INBOX (\Seen) ` + nsl(m1) + ` (\Flagged $Work) "05-Jan-2024 10:00:00 +0100" ` + nsl(m2) + " " + nsl(m3))
	check(t, "multiappend", c.until("A1"), []string{"* 3 EXISTS", "* 3 RECENT",
		`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work)`,
		`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Work \*)] Flags permitted`,
		fmt.Sprintf("A1 OK [APPENDUID %d 1:3] APPEND completed", inbox.UIDValidity)})
	c.run([]step{
		{"FETCH 1:3 (UID FLAGS INTERNALDATE BODY.PEEK[])", []string{
			`re:\* 1 FETCH \(UID 1 FLAGS \(\\Recent \\Seen\) INTERNALDATE "[^"]+" BODY\[\] ` + regexpQuote(lit(m1)) + `\)`,
			`* 2 FETCH (UID 2 FLAGS (\Recent \Flagged $Work) INTERNALDATE "05-Jan-2024 09:00:00 +0000" BODY[] ` + lit(m2) + `)`,
			`re:\* 3 FETCH \(UID 3 FLAGS \(\\Recent\) INTERNALDATE "[^"]+" BODY\[\] ` + regexpQuote(lit(m3)) + `\)`,
			"$T OK FETCH completed"}},
	})

	// Synchronizing literals: a continuation for each message.
	c.send(fmt.Sprintf("A2 APPEND INBOX {%d}", len(m1)))
	check(t, "cont 1", []string{c.line()}, []string{"+ Ready for literal data"})
	c.sendRaw(m1 + fmt.Sprintf(" (\\Draft) {%d}\r\n", len(m2)))
	check(t, "cont 2", []string{c.line()}, []string{"+ Ready for literal data"})
	c.sendRaw(m2 + "\r\n")
	check(t, "sync multiappend", c.until("A2"), []string{"* 5 EXISTS", "* 5 RECENT",
		fmt.Sprintf("A2 OK [APPENDUID %d 4:5] APPEND completed", inbox.UIDValidity)})

	// Refusals: nothing of any message is stored.
	c.run([]step{
		{"APPEND Nowhere " + nsl(m1) + " " + nsl(m2), []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"APPEND INBOX " + nsl(m1) + " {1048577}", []string{"$T NO [TOOBIG] Message exceeds APPENDLIMIT"}},
		{"APPEND INBOX " + nsl(m1) + " {0}", []string{"$T NO [CANNOT] Empty message"}},
		{"APPEND INBOX " + nsl(m1) + " " + nsl(m2) + " GARBAGE", []string{"$T BAD Expected a message literal"}},
		{"APPEND INBOX " + nsl(m1) + "GARBAGE", []string{"$T BAD Unexpected data after the message"}},
		{"APPEND INBOX " + nsl(m1) + " (\\Bogus) " + nsl(m2), []string{`re:$T BAD .*`}},
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
	if n := e.messages("alice", "INBOX"); n != 5 {
		t.Fatalf("after refused APPENDs: %d messages, want 5", n)
	}

	// Too many messages: the 101st is refused before it is sent.
	var b strings.Builder
	b.WriteString("A3 APPEND Archive")
	for i := 0; i < 101; i++ {
		b.WriteString(" " + nsl(testMessage(fmt.Sprint("m", i), "x\r\n")))
	}
	c.send(b.String())
	check(t, "101 messages", c.until("A3"), []string{"A3 NO [LIMIT] Too many messages in one APPEND (at most 100)"})
	if n := e.messages("alice", "Archive"); n != 0 {
		t.Fatalf("after 101 messages: %d stored, want 0", n)
	}
	b.Reset()
	b.WriteString("A4 APPEND Archive")
	for i := 0; i < 100; i++ {
		b.WriteString(" " + nsl(testMessage(fmt.Sprint("m", i), "x\r\n")))
	}
	c.send(b.String())
	if r := c.until("A4"); !strings.HasPrefix(r[len(r)-1], "A4 OK [APPENDUID ") || !strings.Contains(r[len(r)-1], " 1:100]") {
		t.Fatalf("100 messages: %q", r)
	}
}

// The quota is checked over the total of the messages: each fits, the
// three together do not. Synchronizing literals are refused before the
// third is sent; non-synchronizing ones by the store, which keeps none.
func TestMultiAppendQuota(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	msg := testMessage("q", strings.Repeat("y", 3000)+"\r\n")
	used, _, err := e.store.QuotaUsage(ctx, e.accts["alice"].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetQuota(ctx, e.accts["alice"].ID, used+int64(2*len(msg)+100)); err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	c.login("alice")
	c.run([]step{
		{"APPEND INBOX " + nsl(msg) + " " + nsl(msg) + " " + nsl(msg), []string{"$T NO [OVERQUOTA] Quota exceeded"}},
	})
	c.send(fmt.Sprintf("A1 APPEND INBOX {%d}", len(msg)))
	c.line()
	c.sendRaw(msg + fmt.Sprintf(" {%d}\r\n", len(msg)))
	c.line()
	c.sendRaw(msg + fmt.Sprintf(" {%d}\r\n", len(msg)))
	check(t, "third sync literal", c.until("A1"), []string{"A1 NO [OVERQUOTA] Quota exceeded"})
	if n := e.messages("alice", "INBOX"); n != 0 {
		t.Fatalf("over quota: %d messages stored, want 0", n)
	}
	c.run([]step{
		{"APPEND INBOX " + nsl(msg) + " " + nsl(msg), []string{`re:T1 OK \[APPENDUID \d+ 1:2\] APPEND completed`}},
	})
}

// A MULTIAPPEND cut short by the client (close, reset or half-close) in
// the middle of its third message stores nothing of any message, small or
// streamed (larger than a store chunk), synchronizing or not.
func TestMultiAppendTruncated(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 4 << 20 })
	for _, size := range []int{2000, 600_000} {
		for _, sync := range []bool{false, true} {
			for _, how := range []string{"close", "half-close", "reset"} {
				t.Run(fmt.Sprintf("%d/sync=%v/%s", size, sync, how), func(t *testing.T) {
					before := e.messages("alice", "INBOX")
					c := e.dial()
					c.login("alice")
					msg := testMessage("cut", strings.Repeat("z", size)+"\r\n")
					ann := func() string {
						if sync {
							return fmt.Sprintf("{%d}", len(msg))
						}
						return fmt.Sprintf("{%d+}", len(msg))
					}
					c.send("b APPEND INBOX " + ann())
					for i := 0; i < 3; i++ {
						if sync {
							if l := c.line(); !strings.HasPrefix(l, "+ ") {
								t.Fatalf("continuation %d: %q", i+1, l)
							}
						}
						if i == 2 {
							c.sendRaw(msg[:len(msg)/2])
							break
						}
						c.sendRaw(msg + " " + ann() + "\r\n")
					}
					tcp := c.conn.(*net.TCPConn)
					var replies []string
					switch how {
					case "close":
						tcp.Close()
					case "reset":
						tcp.SetLinger(0)
						tcp.Close()
					case "half-close":
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
							t.Errorf("cut MULTIAPPEND acknowledged: %q", l)
						}
					}
					waitFor(t, func() bool { return e.srv.OpenConns() == 0 })
					if n := e.messages("alice", "INBOX") - before; n != 0 {
						t.Fatalf("%d message(s) stored from a cut MULTIAPPEND", n)
					}
				})
			}
		}
	}
	// The same command completed stores all three.
	c := e.dial()
	c.login("alice")
	msg := testMessage("whole", strings.Repeat("z", 600_000)+"\r\n")
	c.send("b APPEND INBOX " + nsl(msg) + " " + nsl(msg) + " " + nsl(msg))
	if r := c.until("b"); !strings.HasPrefix(r[len(r)-1], "b OK") {
		t.Fatalf("complete MULTIAPPEND: %q", r)
	}
	if n := e.messages("alice", "INBOX"); n != 3 {
		t.Fatalf("after a complete MULTIAPPEND: %d messages, want 3", n)
	}
}
