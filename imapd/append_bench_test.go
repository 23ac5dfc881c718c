package imapd

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestBenchAppend measures APPEND throughput (IMAPD_BENCH=1): 4 clients
// each storing 250 messages of 2 KB, first with one APPEND per message,
// then (when MULTIAPPEND is offered) with APPENDs of 50 messages each.
//
//	IMAPD_BENCH=1 go test -run 'TestBenchAppend$' -v ./imapd/
func TestBenchAppend(t *testing.T) {
	needBench(t)
	e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount, c.MaxConnsPerIP = -1, 0 })
	const clients, perClient, batch = 4, 250, 50
	msg := testMessage("bench", strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 30))
	run := func(name string, per int) {
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < clients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := e.dial()
				c.login("alice")
				for n := 0; n < perClient; n += per {
					var b strings.Builder
					b.WriteString("a APPEND INBOX")
					for k := 0; k < per; k++ {
						b.WriteString(" " + nsl(msg))
					}
					c.send(b.String())
					if r := c.until("a"); !strings.HasPrefix(r[len(r)-1], "a OK") {
						t.Errorf("%s: %q", name, r[len(r)-1])
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		t.Logf("%s: %d messages of %d octets by %d clients in %v: %.0f messages/s", name, clients*perClient, len(msg), clients,
			d.Round(time.Millisecond), float64(clients*perClient)/d.Seconds())
	}
	run("one message per APPEND", 1)
	c := e.dial()
	if caps := c.cmd("C", "CAPABILITY"); strings.Contains(caps[0], " MULTIAPPEND") {
		run(fmt.Sprintf("%d messages per APPEND (MULTIAPPEND)", batch), batch)
	}
}
