package pop3d_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

// The download benchmark (issue 4): every client downloads a maildrop of
// benchMessages messages of benchMessageLen octets — LIST, UIDL, RETR of
// every message, DELE of every message, QUIT — with benchClients clients
// at once, each on its own account. The maildrops hold the same messages
// (one multi-recipient delivery each, so the store keeps one copy).
//
//	POP3_BENCH=1 go test -run TestDownloadBenchmark -v ./pop3d/
//	go test -run XXX -bench Download50MB -benchtime 1x ./pop3d/
//
// Three rounds: one client alone downloads and deletes its maildrop; then
// the concurrent clients' "cold" round is the node's first login on their
// maildrops and keeps the messages; their "warm" round is a second login
// that does the whole sequence, including DELE and QUIT. Heap growth is the largest increase of the live
// heap (sampled after a forced GC every 250 ms) over the baseline before
// the round; the clients run in the same process and allocate little, so
// the figure is an upper bound of the server's.
//
// POP3_BENCH_MESSAGES=100 runs a smaller maildrop (same message size) as a
// quick check of the harness.
const (
	benchClients    = 10
	benchMessages   = 1000
	benchMessageLen = 50_000 // 1,000 of them: 50 MB
)

func benchCount() int {
	if n, err := strconv.Atoi(os.Getenv("POP3_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return benchMessages
}

type benchResult struct {
	clients    int
	octets     int64
	elapsed    time.Duration
	heapGrowth uint64 // live heap, bytes
	peakHeap   uint64 // HeapAlloc peak (garbage included), bytes over baseline
	allocPerMB float64
}

func (r benchResult) mbps() float64 { return float64(r.octets) / 1e6 / r.elapsed.Seconds() }

func (r benchResult) String() string {
	return fmt.Sprintf("%d client(s), %.1f MB in %v: %.1f MB/s; live heap growth %.2f MB, peak heap growth %.1f MB, %.0f KB allocated per MB sent",
		r.clients, float64(r.octets)/1e6, r.elapsed.Round(time.Millisecond), r.mbps(),
		float64(r.heapGrowth)/1e6, float64(r.peakHeap)/1e6, r.allocPerMB)
}

// benchBody returns message i of about size octets: a header and base64-like
// lines of 76 characters, as attachments look.
func benchBody(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: Bench <bench@example.net>\r\nTo: bench@example.org\r\nSubject: message %d\r\nMessage-ID: <%d.bench@example.net>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	r := rand.New(rand.NewPCG(uint64(i), 42))
	line := make([]byte, 78)
	line[76], line[77] = '\r', '\n'
	for b.Len()+78 <= size {
		for j := range 76 {
			line[j] = alphabet[r.IntN(64)]
		}
		b.Write(line)
	}
	return b.String()
}

type benchEnv struct {
	e    *env
	addr string
	accs []mailstore.Account // the benchClients concurrent clients
	solo mailstore.Account   // one more maildrop, for the single-client round
}

func setupBench(tb testing.TB) *benchEnv {
	e := newEnv(tb)
	be := &benchEnv{e: e}
	ctx := context.Background()
	var rcpts []mailstore.Recipient
	for i := range benchClients {
		acc := e.addAccount(fmt.Sprintf("bench%d@example.org", i), testPass)
		be.accs = append(be.accs, acc)
		rcpts = append(rcpts, mailstore.Recipient{AccountID: acc.ID})
	}
	be.solo = e.addAccount("solo@example.org", testPass)
	rcpts = append(rcpts, mailstore.Recipient{AccountID: be.solo.ID})
	start := time.Now()
	for i := range benchCount() {
		if _, err := e.st.Deliver(ctx, &mailstore.Delivery{MailFrom: "bench@example.net", Recipients: rcpts,
			Body: strings.NewReader(benchBody(i, benchMessageLen))}); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Logf("delivered %d messages to %d accounts in %v", benchCount(), benchClients, time.Since(start).Round(time.Millisecond))
	n := e.start(nil, func(c *pop3d.Config) {
		c.TLS = nil
		c.MaxConnsPerIP = 0 // no limit
		c.LockTTL = 30 * time.Second
		c.Logger = nil // default logger: the benchmark measures, it does not trace
	})
	be.addr = n.addr
	return be
}

// benchClient runs one download session; it allocates O(1) per message.
func benchClient(addr, user string, dele bool) (int64, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	w := bufio.NewWriter(conn)
	line := func() (string, error) {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return "", err
		}
		if len(l) < 3 || l[0] != '+' {
			return "", fmt.Errorf("server said %q", l)
		}
		return string(l), nil
	}
	cmd := func(s string) (string, error) {
		w.WriteString(s)
		w.WriteString("\r\n")
		if err := w.Flush(); err != nil {
			return "", err
		}
		return line()
	}
	// multi consumes a multi-line body and returns its unstuffed size.
	multi := func() (int64, error) {
		var n int64
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				return 0, err
			}
			if len(l) == 3 && l[0] == '.' {
				return n, nil
			}
			if l[0] == '.' {
				l = l[1:]
			}
			n += int64(len(l))
		}
	}
	if _, err := line(); err != nil {
		return 0, err
	}
	if _, err := cmd("USER " + user); err != nil {
		return 0, err
	}
	if _, err := cmd("PASS " + testPass); err != nil {
		return 0, err
	}
	if _, err := cmd("LIST"); err != nil {
		return 0, err
	}
	sizes := make([]int64, 0, 1024)
	for {
		l, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if string(l) == ".\r\n" {
			break
		}
		f := strings.Fields(string(l))
		sz, _ := strconv.ParseInt(f[1], 10, 64)
		sizes = append(sizes, sz)
	}
	if _, err := cmd("UIDL"); err != nil {
		return 0, err
	}
	if _, err := multi(); err != nil {
		return 0, err
	}
	var total int64
	var buf []byte
	for i := range sizes {
		if _, err := cmd("RETR " + strconv.Itoa(i+1)); err != nil {
			return 0, err
		}
		n, err := multi()
		if err != nil {
			return 0, err
		}
		if n != sizes[i] {
			return 0, fmt.Errorf("message %d: LIST %d, RETR %d", i+1, sizes[i], n)
		}
		total += n
	}
	if dele {
		// Pipelined (RFC 2449 §6.6).
		for i := range sizes {
			buf = strconv.AppendInt(append(buf[:0], "DELE "...), int64(i+1), 10)
			buf = append(buf, '\r', '\n')
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			return 0, err
		}
		for range sizes {
			if _, err := line(); err != nil {
				return 0, err
			}
		}
	}
	if _, err := cmd("QUIT"); err != nil {
		return 0, err
	}
	return total, nil
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// run runs one session per account at once and measures them.
func (be *benchEnv) run(tb testing.TB, accs []mailstore.Account, dele bool) benchResult {
	base := liveHeap()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := make(chan struct{})
	var maxLive, maxPeak uint64
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(25 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var m runtime.MemStats
			if i%10 == 9 {
				maxLive = max(maxLive, liveHeap())
				continue
			}
			runtime.ReadMemStats(&m)
			maxPeak = max(maxPeak, m.HeapAlloc)
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var octets int64
	var firstErr error
	for _, acc := range accs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := benchClient(be.addr, acc.Address, dele)
			mu.Lock()
			defer mu.Unlock()
			octets += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	sampler.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	sub := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	return benchResult{
		clients:    len(accs),
		octets:     octets,
		elapsed:    elapsed,
		heapGrowth: sub(maxLive, base),
		peakHeap:   sub(maxPeak, base),
		allocPerMB: float64(after.TotalAlloc-before.TotalAlloc) / 1e3 / (float64(octets) / 1e6),
	}
}

func TestDownloadBenchmark(t *testing.T) {
	if os.Getenv("POP3_BENCH") == "" {
		t.Skip("set POP3_BENCH=1 to run the download benchmark")
	}
	be := setupBench(t)
	solo := be.run(t, []mailstore.Account{be.solo}, true)
	t.Logf("one client, cold (LIST, UIDL, RETR all, DELE all, QUIT): %v", solo)
	cold := be.run(t, be.accs, false)
	t.Logf("cold (first login; LIST, UIDL, RETR all, QUIT): %v", cold)
	warm := be.run(t, be.accs, true)
	t.Logf("warm (LIST, UIDL, RETR all, DELE all, QUIT): %v", warm)
	for _, acc := range append(be.accs, be.solo) {
		if ms, _ := be.e.st.ListMessages(context.Background(), acc.ID, mustInbox(t, be.e, acc.ID), nil); len(ms) != 0 {
			t.Fatalf("%s still has %d messages", acc.Address, len(ms))
		}
	}
}

func mustInbox(t testing.TB, e *env, accountID int64) int64 {
	mb, err := e.st.GetMailbox(context.Background(), accountID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb.ID
}

// BenchmarkDownload50MB is the same measurement as a Go benchmark (each
// iteration delivers fresh maildrops, untimed, then downloads them cold).
func BenchmarkDownload50MB(b *testing.B) {
	for range b.N {
		b.StopTimer()
		be := setupBench(b)
		b.StartTimer()
		r := be.run(b, be.accs, true)
		b.ReportMetric(r.mbps(), "MB/s")
		b.ReportMetric(float64(r.heapGrowth)/1e6, "MB-live-heap-growth")
		b.Log(r)
	}
}
