package pop3d_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

// BenchmarkPipelinedDownload is what ../shared/bench/pop3-download.py
// measures (issue 12), in one process: a maildrop of pipeMessages messages
// of about 10 KB; each iteration logs in, sends every RETR in one write
// (RFC 2449 §6.6 PIPELINING), reads until every terminator has arrived and
// quits. allocs/op and B/op are per download of the whole maildrop (the
// client allocates nothing per message); msg-allocs is allocs/op divided
// by the number of messages.
//
//	go test -run XXX -bench PipelinedDownload -benchmem ./pop3d/
func BenchmarkPipelinedDownload(b *testing.B) {
	const pipeMessages = 1000
	e := newEnv(b)
	ctx := context.Background()
	for i := range pipeMessages {
		if _, err := e.st.Deliver(ctx, &mailstore.Delivery{MailFrom: "bench@example.net",
			Recipients: []mailstore.Recipient{{AccountID: e.acc.ID}},
			Body:       strings.NewReader(benchBody(i, 9_000+(i%5)*1_000))}); err != nil {
			b.Fatal(err)
		}
	}
	n := e.start(nil, func(c *pop3d.Config) {
		c.TLS = nil
		c.MarkSeenOnRetr = false // every iteration does the same work
		c.Logger = slog.New(slog.DiscardHandler)
	})
	var cmds bytes.Buffer
	for i := range pipeMessages {
		fmt.Fprintf(&cmds, "RETR %d\r\n", i+1)
	}
	buf := make([]byte, 1<<20)
	var octets int64
	b.ResetTimer()
	b.ReportAllocs()
	start, cpu0 := time.Now(), cpuTime()
	for range b.N {
		got, err := pipelinedDownload(n.addr, cmds.Bytes(), pipeMessages, buf)
		if err != nil {
			b.Fatal(err)
		}
		octets += got
	}
	b.ReportMetric(float64(octets)/1e6/time.Since(start).Seconds(), "MB/s")
	// CPU time of this process (server and client) per download: a figure
	// that does not depend on what else the machine runs.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	b.SetBytes(octets / int64(b.N))
}

// pipelinedDownload logs in (waiting for the previous session's lock to be
// released), sends cmds in one write and reads until want terminators have
// arrived, as pop3-download.py does; it returns the octets received.
func pipelinedDownload(addr string, cmds []byte, want int, buf []byte) (int64, error) {
	var conn net.Conn
	var err error
	for try := 0; ; try++ {
		if conn, err = net.Dial("tcp", addr); err != nil {
			return 0, err
		}
		_, _ = io.WriteString(conn, "USER "+testUser+"\r\nPASS "+testPass+"\r\nSTAT\r\n")
		k, err := readLines(conn, buf, 4)
		if err != nil {
			conn.Close()
			return 0, err
		}
		if bytes.Contains(buf[:k], []byte("+OK "+strconv.Itoa(want)+" ")) {
			break
		}
		conn.Close()
		if try > 100 || !bytes.Contains(buf[:k], []byte("IN-USE")) {
			return 0, fmt.Errorf("login: %q", buf[:k])
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()
	if _, err := conn.Write(cmds); err != nil {
		return 0, err
	}
	var total int64
	done := 0
	var tail [4]byte // the last octets of the previous read
	tl := 0
	for done < want {
		k, err := conn.Read(buf[4:])
		if err != nil {
			return total, err
		}
		total += int64(k)
		// Count terminators, also across reads.
		copy(buf[4-tl:4], tail[:tl])
		p := buf[4-tl : 4+k]
		done += bytes.Count(p, []byte("\r\n.\r\n"))
		tl = copy(tail[:], p[max(0, len(p)-4):])
	}
	_, _ = io.WriteString(conn, "QUIT\r\n")
	_, _ = readLines(conn, buf, 1)
	return total, nil
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readLines reads until n CRLFs arrived and returns the octets read.
func readLines(c net.Conn, buf []byte, n int) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	k := 0
	for bytes.Count(buf[:k], []byte("\r\n")) < n {
		m, err := c.Read(buf[k:])
		k += m
		if err != nil {
			return k, err
		}
	}
	return k, nil
}
