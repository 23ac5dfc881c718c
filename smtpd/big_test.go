package smtpd_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBigMessageMemory sends a 48 MB message (DATA, then BDAT in 1 MB
// chunks) and checks that the server's heap stays bounded while it is
// received, spooled and delivered: the message is never held in memory.
func TestBigMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 96 MB")
	}
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.MaxMessageSize = 50 << 20 }))
	const lines = 48 << 20 / 78
	hdr := "From: <s@remote.example>\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	line := strings.Repeat("QUJD", 19) + "\r\n"
	size := len(hdr) + lines*len(line)
	want := sha256.New()
	want.Write([]byte(hdr))
	for i := 0; i < lines; i++ {
		want.Write([]byte(line))
	}

	// The live heap (as of the last GC) is sampled while the messages
	// go through; garbage is not counted.
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	readLive := func() uint64 { metrics.Read(live); return live[0].Value.Uint64() }
	runtime.GC()
	base := readLive()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if v := readLive(); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()
	gen := func() io.Reader {
		return io.MultiReader(strings.NewReader(hdr), &repeatReader{line: line, n: lines})
	}

	c := dial(t, e.inbound)
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Minute))
	c.ehlo("client.example")
	w := bufio.NewWriterSize(c.conn, 64<<10)
	// DATA
	c.cmd("MAIL FROM:<s@remote.example> SIZE="+fmt.Sprint(size), 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	_, err := io.Copy(w, gen())
	must(t, err)
	w.WriteString(".\r\n")
	must(t, w.Flush())
	c.expect(250)
	// BDAT in 1 MB chunks
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 250)
	src := gen()
	for sent := 0; sent < size; {
		n := min(1<<20, size-sent)
		last := ""
		if sent+n == size {
			last = " LAST"
		}
		fmt.Fprintf(w, "BDAT %d%s\r\n", n, last)
		_, err := io.CopyN(w, src, int64(n))
		must(t, err)
		must(t, w.Flush())
		c.expect(250)
		sent += n
	}
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	t.Logf("two %d MB messages: live heap %.1f MB before, peak growth %.1f MB", size>>20, float64(base)/(1<<20), float64(growth)/(1<<20))
	if growth > 8<<20 {
		t.Errorf("live heap grew by %.1f MB while receiving", float64(growth)/(1<<20))
	}

	for _, who := range []string{"alice", "bob"} {
		acct := e.alice
		if who == "bob" {
			acct = e.bob
		}
		ctx := context.Background()
		mb, err := e.st.GetMailbox(ctx, acct.ID, "INBOX")
		must(t, err)
		ms, err := e.st.ListMessages(ctx, acct.ID, mb.ID, nil)
		must(t, err)
		if len(ms) != 1 {
			t.Fatalf("%s has %d messages", who, len(ms))
		}
		rc, err := e.st.OpenMessage(ctx, acct.ID, mb.ID, ms[0].UID, 0, -1)
		must(t, err)
		br := bufio.NewReader(rc)
		// Skip the two trace fields (Return-Path and a folded Received).
		for {
			l, err := br.ReadString('\n')
			must(t, err)
			if strings.HasPrefix(l, "From: ") {
				got := sha256.New()
				got.Write([]byte(l))
				_, err := io.Copy(got, br)
				must(t, err)
				if fmt.Sprintf("%x", got.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
					t.Errorf("%s: stored content differs", who)
				}
				break
			}
		}
		rc.Close()
	}
}

// repeatReader yields line n times without allocating.
type repeatReader struct {
	line string
	n    int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	k := 0
	for k < len(p) && r.n > 0 {
		c := copy(p[k:], r.line[r.off:])
		k += c
		r.off += c
		if r.off == len(r.line) {
			r.off = 0
			r.n--
		}
	}
	if k == 0 {
		return 0, io.EOF
	}
	return k, nil
}
