package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// Measurements for docs/BENCHMARKS.md. They are skipped unless
// IMAPD_BENCH=1, as they take minutes and load the machine:
//
//	IMAPD_BENCH=1 go test -run 'TestBench' -v -timeout 30m ./imapd/
//
// IMAPD_BENCH_CONNS sets the number of idle connections of the memory
// measurement (default 10000).

func needBench(t *testing.T) {
	if os.Getenv("IMAPD_BENCH") == "" {
		t.Skip("set IMAPD_BENCH=1 to run measurements")
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// TestBenchIdleLatency: a client in IDLE on node A; 1,000 events (500
// deliveries and 500 flag changes) made through node B, each timed from
// the commit returning on B to the untagged response arriving on A.
func TestBenchIdleLatency(t *testing.T) {
	needBench(t)
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("seed", "x\r\n"))
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	a.send("I IDLE")
	a.line()
	b := dialAddr(t, addrB)
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	inbox := e.mailbox("alice", "INBOX")
	ctx := context.Background()
	msg := testMessage("latency", "x\r\n")
	var deliveries, flags []time.Duration
	for i := 0; i < 1000; i++ {
		var start time.Time
		if i%2 == 0 {
			start = time.Now()
			if _, err := stB.Append(ctx, e.accts["alice"].ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader(msg)); err != nil {
				t.Fatal(err)
			}
		} else {
			op := "+"
			if i%4 == 3 {
				op = "-"
			}
			b.send(fmt.Sprintf("B%d STORE 1 %sFLAGS.SILENT (\\Flagged)", i, op))
			start = time.Now()
			b.until(fmt.Sprintf("B%d", i))
		}
		l := a.line()
		d := time.Since(start)
		if i%2 == 0 {
			if !strings.HasSuffix(l, " EXISTS") {
				t.Fatalf("event %d: %q", i, l)
			}
			deliveries = append(deliveries, d)
			// IMAP4rev1 session: the new message is \Recent here.
			if r := a.line(); !strings.HasSuffix(r, " RECENT") {
				t.Fatalf("event %d: %q after EXISTS", i, r)
			}
		} else {
			if !strings.Contains(l, "FETCH (UID 1 FLAGS") {
				t.Fatalf("event %d: %q", i, l)
			}
			flags = append(flags, d)
		}
	}
	all := append(slices.Clone(deliveries), flags...)
	t.Logf("IDLE latency across two nodes, %d events: p50 %v  p99 %v  max %v", len(all), percentile(all, .5), percentile(all, .99), percentile(all, 1))
	t.Logf("  deliveries: p50 %v p99 %v; flag changes: p50 %v p99 %v", percentile(deliveries, .5), percentile(deliveries, .99), percentile(flags, .5), percentile(flags, .99))
}

// seed100k fills alice's INBOX with n messages sharing one content, in SQL
// (the same fixture shortcut as mailstore/postgres's benchmarks: n Append
// calls would take minutes).
func seed100k(t *testing.T, e *testEnv, n int) mailstore.Mailbox {
	st := e.store.(*postgres.Store)
	e.deliver("alice", "INBOX", testMessage("seed", strings.Repeat("x", 2000)+"\r\n"))
	mb := e.mailbox("alice", "INBOX")
	ctx := context.Background()
	_, err := st.Pool().Exec(ctx, `
		WITH c AS (SELECT content_id, size FROM messages WHERE mailbox_id = $1 AND uid = 1),
		ins AS (
			INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
			SELECT $1, g, g + 1, g + 1, (CASE WHEN g % 3 = 0 THEN 1 ELSE 0 END)::smallint,
			       CASE WHEN g % 50 = 0 THEN ARRAY['$Forwarded'] ELSE '{}' END,
			       now() - g * interval '1 minute', c.size, c.size, c.content_id
			  FROM c, generate_series(2, $2::int) g),
		r AS (UPDATE contents SET refcount = refcount + $2 - 1 WHERE id = (SELECT content_id FROM c)),
		q AS (UPDATE accounts SET quota_used = quota_used + ($2 - 1) * (SELECT size FROM c) WHERE id = $3),
		w AS (INSERT INTO mailbox_recent (mailbox_id, recent_uid) VALUES ($1, $2 + 1)
		      ON CONFLICT (mailbox_id) DO UPDATE SET recent_uid = EXCLUDED.recent_uid)
		UPDATE mailboxes SET uidnext = $2 + 1, highestmodseq = $2 + 1, msg_count = $2,
			msg_size = $2 * (SELECT size FROM c), msg_unseen = $2 - $2 / 3 WHERE id = $1`, mb.ID, n, e.accts["alice"].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `VACUUM ANALYZE messages`); err != nil {
		t.Fatal(err)
	}
	return e.mailbox("alice", "INBOX")
}

func timeCmd(t *testing.T, c *tclient, runs int, line string, check func([]string)) []time.Duration {
	var ds []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		r := c.cmd("X", line)
		ds = append(ds, time.Since(start))
		check(r)
	}
	return ds
}

// TestBenchLargeMailbox: SELECT, UID FETCH CHANGEDSINCE after 10 changes
// and SELECT QRESYNC after 10 expunges on a 100,000-message mailbox,
// measured at the client over a real socket.
func TestBenchLargeMailbox(t *testing.T) {
	needBench(t)
	e := newEnv(t)
	const n = 100000
	mb := seed100k(t, e, n)
	c := e.dial()
	c.login("alice")
	c.cmd("E", "ENABLE QRESYNC")
	lastOK := func(r []string) {
		if !strings.HasPrefix(r[len(r)-1], "X OK") {
			t.Fatalf("%q", r[len(r)-1])
		}
	}
	sel := timeCmd(t, c, 30, "SELECT INBOX", func(r []string) {
		lastOK(r)
		if !slices.Contains(r, fmt.Sprintf("* %d EXISTS", n)) {
			t.Fatalf("%q", r[:3])
		}
	})
	t.Logf("SELECT of %d messages: p50 %v p99 %v", n, percentile(sel, .5), percentile(sel, .99))

	since := mb.HighestModSeq
	other := e.dial()
	other.login("alice")
	other.cmd("S", "SELECT INBOX")
	for i := 0; i < 10; i++ {
		other.cmd("F", fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Flagged)", 1000+i*777))
	}
	c.cmd("N", "NOOP")
	cs := timeCmd(t, c, 30, fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", since), func(r []string) {
		lastOK(r)
		if len(r) != 11 {
			t.Fatalf("%d lines", len(r))
		}
	})
	t.Logf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE) after 10 changes: p50 %v p99 %v", percentile(cs, .5), percentile(cs, .99))

	r := c.cmd("S", "SELECT INBOX")
	var hms uint64
	for _, l := range r {
		if m := regexp.MustCompile(`HIGHESTMODSEQ (\d+)`).FindStringSubmatch(l); m != nil {
			hms, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	for i := 0; i < 10; i++ {
		other.cmd("D", fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Deleted)", 5000+i*333))
	}
	other.cmd("E", "EXPUNGE")
	c.cmd("U", "UNSELECT")
	qr := timeCmd(t, c, 30, fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity, hms), func(r []string) {
		lastOK(r)
		found := false
		for _, l := range r {
			found = found || strings.HasPrefix(l, "* VANISHED (EARLIER) ")
		}
		if !found {
			t.Fatalf("no VANISHED in %q", r[len(r)-3:])
		}
	})
	t.Logf("SELECT (QRESYNC) after 10 expunges: p50 %v p99 %v", percentile(qr, .5), percentile(qr, .99))
}

// TestBenchIdleMemory: server memory per authenticated connection in IDLE,
// plain and TLS. The clients run in a child process so that only the
// server's memory is counted.
func TestBenchIdleMemory(t *testing.T) {
	needBench(t)
	conns := 10000
	if s := os.Getenv("IMAPD_BENCH_CONNS"); s != "" {
		conns, _ = strconv.Atoi(s)
	}
	e := newEnv(t, func(c *Config) { c.MaxConnsPerIP, c.MaxConnsPerAccount = 0, -1 })
	lnTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(lnTLS, true)
	for _, mode := range []struct {
		name, addr string
		tls        bool
	}{{"plain", e.addr, false}, {"TLS", lnTLS.Addr().String(), true}} {
		for _, selectInbox := range []bool{false, true} {
			before := memNow()
			cmd := exec.Command(os.Args[0], "-test.run=^TestIdleMemoryClientHelper$", "-test.v")
			cmd.Env = append(os.Environ(), "IMAPD_MEM_CLIENT_ADDR="+mode.addr, fmt.Sprintf("IMAPD_MEM_CLIENT_N=%d", conns),
				fmt.Sprintf("IMAPD_MEM_CLIENT_TLS=%v", mode.tls), fmt.Sprintf("IMAPD_MEM_CLIENT_SELECT=%v", selectInbox))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			ready := false
			for sc.Scan() {
				if sc.Text() == "READY" {
					ready = true
					break
				}
			}
			if !ready {
				t.Fatal("client helper failed")
			}
			time.Sleep(2 * time.Second)
			after := memNow()
			if p := os.Getenv("IMAPD_BENCH_HEAPPROFILE"); p != "" {
				f, _ := os.Create(fmt.Sprintf("%s.%s.%v", p, mode.name, selectInbox))
				pprof.WriteHeapProfile(f)
				f.Close()
			}
			state := "authenticated"
			if selectInbox {
				state = "selected INBOX"
			}
			t.Logf("%s, %s, %d connections in IDLE: heap+stacks %.1f KB/conn (heap %.1f, stacks %.1f), RSS %.1f KB/conn, goroutines %d",
				mode.name, state, conns, float64(after.heapStack-before.heapStack)/float64(conns)/1024,
				float64(after.heap-before.heap)/float64(conns)/1024, float64(after.stack-before.stack)/float64(conns)/1024,
				float64(after.rss-before.rss)/float64(conns)/1024, runtime.NumGoroutine())
			stdin.Close()
			go io.Copy(io.Discard, stdout)
			cmd.Wait()
			waitFor(t, func() bool { return e.srv.OpenConns() == 0 })
		}
	}
}

type memSample struct{ heapStack, heap, stack, rss uint64 }

// memNow samples memory after a few collections: the runtime shrinks
// goroutine stacks by half per collection, and an idle connection sees many
// (at least one every two minutes), so this is its steady state.
func memNow() memSample {
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{heapStack: ms.HeapInuse + ms.StackInuse, heap: ms.HeapInuse, stack: ms.StackInuse}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b); m != nil {
			kb, _ := strconv.ParseUint(string(m[1]), 10, 64)
			s.rss = kb * 1024
		}
	}
	return s
}

// TestIdleMemoryClientHelper is the client side of TestBenchIdleMemory,
// run in a child process.
func TestIdleMemoryClientHelper(t *testing.T) {
	addr := os.Getenv("IMAPD_MEM_CLIENT_ADDR")
	if addr == "" {
		t.Skip("helper process only")
	}
	n, _ := strconv.Atoi(os.Getenv("IMAPD_MEM_CLIENT_N"))
	useTLS := os.Getenv("IMAPD_MEM_CLIENT_TLS") == "true"
	sel := os.Getenv("IMAPD_MEM_CLIENT_SELECT") == "true"
	var keep []net.Conn
	for i := 0; i < n; i++ {
		var nc net.Conn
		var err error
		if useTLS {
			nc, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		} else {
			nc, err = net.Dial("tcp", addr)
		}
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReaderSize(nc, 512)
		readUntil := func(prefix string) {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
			}
		}
		readUntil("* OK")
		fmt.Fprintf(nc, "a LOGIN alice@example.org pw-alice\r\n")
		readUntil("a OK")
		if sel {
			fmt.Fprintf(nc, "s SELECT INBOX\r\n")
			readUntil("s OK")
		}
		fmt.Fprintf(nc, "i IDLE\r\n")
		readUntil("+ ")
		keep = append(keep, nc)
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	for _, nc := range keep {
		nc.Close()
	}
}
