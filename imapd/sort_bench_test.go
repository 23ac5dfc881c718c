package imapd

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestBenchSortThread measures SORT and THREAD at the client over a real
// socket (IMAPD_BENCH=1): on 10,000 distinct messages (threads of 10,
// subjects with Re: prefixes, Date and References), the first run with
// the node's content cache cold and then warm; and on seed100k's 100,000
// messages, which share one content (so only the session's own work and
// the store's batching show).
func TestBenchSortThread(t *testing.T) {
	needBench(t)
	e := newEnv(t)
	const n = 10000
	mb := e.mailbox("alice", "INBOX")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				th, k := i/10, i%10
				subj := fmt.Sprintf("topic %d", th*7919%n)
				refs := ""
				if k > 0 {
					subj = "Re: " + subj
					for j := 0; j < k; j++ {
						refs += fmt.Sprintf(" <t%d.%d@bench>", th, j)
					}
				}
				m := sortMsg{from: fmt.Sprintf("User %d <u%d@x.org>", i%97, i%89), to: "alice@example.org",
					subject: subj, date: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i*7%n) * time.Minute).Format(time.RFC1123Z),
					id: fmt.Sprintf("<t%d.%d@bench>", th, k), refs: strings.TrimSpace(refs), bodyLen: 500 + i%3000}
				if _, err := e.store.Append(context.Background(), e.accts["alice"].ID, mb.ID, mailstore.Flags{}, time.Now(), strings.NewReader(m.String())); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// What the first SORT costs in the store: the contents of all
	// messages through MessageContents (parse results and the octets of
	// small messages, into the node's cache), against FetchDetails (parse
	// results alone, no cache), each on a store of its own (cold).
	acct := e.accts["alice"].ID
	for _, how := range []string{"MessageContents", "FetchDetails"} {
		st := pgtest.OpenStore(t, e.url)
		start := time.Now()
		if how == "FetchDetails" {
			if _, err := st.FetchDetails(context.Background(), acct, mb.ID, nil); err != nil {
				t.Fatal(err)
			}
		} else {
			for u := 1; u <= n; u += 256 {
				refs := make([]mailstore.ContentRef, 0, 256)
				for k := u; k < u+256 && k <= n; k++ {
					refs = append(refs, mailstore.ContentRef{UID: uint32(k)})
				}
				if _, err := st.MessageContents(context.Background(), acct, mb.ID, refs); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Logf("%s of %d messages, cold: %v", how, n, time.Since(start))
	}
	// A second node on a store of its own, whose content cache is cold.
	st2 := pgtest.OpenStore(t, e.url)
	_, addr := e.startServer(st2)
	c := dialAddr(t, addr)
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	check := func(prefix string) func([]string) {
		return func(r []string) {
			if len(r) != 2 || !strings.HasPrefix(r[0], prefix) || !strings.HasPrefix(r[1], "X OK") {
				t.Fatalf("%.200q", r)
			}
		}
	}
	cmds := []struct{ line, prefix string }{
		{"SORT (SUBJECT) UTF-8 ALL", "* SORT 1 "},
		{"SORT (REVERSE DATE) UTF-8 ALL", "* SORT "},
		{"SORT (DISPLAYFROM SIZE) UTF-8 ALL", "* SORT "},
		{"SORT (ARRIVAL) UTF-8 ALL", "* SORT "},
		{"SORT RETURN (MIN COUNT) (FROM) UTF-8 ALL", `* ESEARCH (TAG "X") MIN `},
		{"THREAD REFERENCES UTF-8 ALL", "* THREAD ("},
		{"THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD ("},
	}
	pg := st2
	for _, cm := range cmds {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cold := timeCmd(t, c, 1, cm.line, check(cm.prefix))
		runtime.ReadMemStats(&after)
		warm := timeCmd(t, c, 10, cm.line, check(cm.prefix))
		t.Logf("%d messages: %-40s first %v, then p50 %v p99 %v (first run allocated %d MB)", n, cm.line, cold[0],
			percentile(warm, .5), percentile(warm, .99), (after.TotalAlloc-before.TotalAlloc)>>20)
	}
	hits, misses, bytes, entries := pg.ContentCacheStats()
	t.Logf("content cache: %d hits %d misses, %d MB in %d entries", hits, misses, bytes>>20, entries)

	e2 := newEnv(t)
	seed100k(t, e2, 100000)
	c2 := e2.dial()
	c2.login("alice")
	c2.cmd("S", "SELECT INBOX")
	for _, cm := range cmds {
		ds := timeCmd(t, c2, 5, cm.line, check(strings.Split(cm.prefix, " 1")[0]))
		t.Logf("100000 messages of one content: %-40s p50 %v max %v", cm.line, percentile(ds, .5), percentile(ds, 1))
	}
}
