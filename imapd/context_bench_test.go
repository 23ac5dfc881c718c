package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBenchContextUpdate (IMAPD_BENCH=1): the cost of update contexts
// (RFC 5267 §4) on a 100,000-message mailbox. Another session changes
// the flags of one message at a time; the measured session answers NOOP,
// which catches up and, with contexts, re-evaluates the changed message
// for each of them: without contexts, with a SEARCH context on UNSEEN
// (two thirds of the mailbox match) and with that and a SORT context by
// ARRIVAL over every message (100,000 keys kept).
func TestBenchContextUpdate(t *testing.T) {
	needBench(t)
	e := newEnv(t)
	const n = 100000
	seed100k(t, e, n)
	other := e.dial()
	other.login("alice")
	other.cmd("S", "SELECT INBOX")
	measure := func(name string, setup []string, wantLines int, bulk bool) {
		c := e.dial()
		c.login("alice")
		c.cmd("E", "ENABLE IMAP4rev2")
		c.cmd("S", "SELECT INBOX")
		for i, line := range setup {
			tag := fmt.Sprint("U", i)
			start := time.Now()
			r := c.cmd(tag, line)
			if !strings.HasPrefix(r[len(r)-1], tag+" OK") {
				t.Fatalf("%s: %q", line, r)
			}
			t.Logf("%s: %s took %v", name, line, time.Since(start))
		}
		var ds []time.Duration
		for i := 0; i < 40; i++ {
			// Toggle \Seen on a message that is in the UNSEEN result.
			uid := 1 + (i/2)*997
			if uid%3 == 0 {
				uid++
			}
			op := "+"
			if i%2 == 1 {
				op = "-"
			}
			other.cmd("F", fmt.Sprintf(`UID STORE %d %sFLAGS.SILENT (\Seen)`, uid, op))
			start := time.Now()
			r := c.cmd("X", "NOOP")
			ds = append(ds, time.Since(start))
			if len(r) != wantLines {
				t.Fatalf("%s: %q", name, r)
			}
		}
		t.Logf("%s: NOOP after one flag change on %d messages: p50 %v p99 %v", name, n, percentile(ds, .5), percentile(ds, .99))
		if !bulk {
			return
		}
		// The session's own change of every message: each context's
		// result changes by two thirds of the mailbox at once.
		for _, op := range []string{"+", "-"} {
			start := time.Now()
			r := c.cmd("B", "STORE 1:* "+op+`FLAGS.SILENT (\Seen)`)
			if len(r) != len(setup)+1 {
				t.Fatalf("%s: %d lines", name, len(r))
			}
			t.Logf("%s: STORE 1:* %sFLAGS.SILENT (\\Seen) with the updates: %v", name, op, time.Since(start))
		}
	}
	// FETCH, tagged OK, and one ESEARCH per context whose result changed.
	measure("no context", nil, 2, false)
	measure("SEARCH context", []string{"SEARCH RETURN (UPDATE COUNT) UNSEEN"}, 3, false)
	measure("SEARCH and SORT contexts", []string{"SEARCH RETURN (UPDATE COUNT) UNSEEN",
		"UID SORT RETURN (UPDATE COUNT) (ARRIVAL) UTF-8 UNSEEN"}, 4, true)
	// The same bulk changes without contexts (the mailbox is all unseen
	// now, as it was before the "-" step above).
	measure("no context, bulk", nil, 2, true)
}
