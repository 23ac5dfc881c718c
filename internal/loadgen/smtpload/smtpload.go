// Package smtpload is an SMTP load generator: a number of concurrent
// sessions each send messages of a given size over real SMTP, with
// pipelining (RFC 2920) and, when the server offers CHUNKING, BDAT
// (RFC 3030 §4.2: MAIL, RCPT and BDAT LAST with the whole message in one
// write, one round trip per message). It measures from the first connect
// until the last 250.
package smtpload

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options describe one run.
type Options struct {
	Addr     string // host:port of the SMTP server
	Sessions int    // concurrent sessions (default 10)
	Messages int    // messages in all (default 1000)
	Size     int    // octets per message, headers included (default 10240)
	From     string // envelope sender
	To       string // recipient
	// Helo is the EHLO argument (default "loadgen.invalid").
	Helo string
	// NoChunking forces DATA even if the server offers CHUNKING.
	NoChunking bool
	// Username and Password, when Username is set, log each session in
	// with AUTH PLAIN (RFC 4954, RFC 4616) after EHLO: a submission load.
	// The load generator only talks to loopback servers, which accept
	// plaintext authentication without TLS.
	Username, Password string
}

// Result is what a run measured.
type Result struct {
	Sessions  int
	Sent      int           // messages acknowledged with 250
	Failed    int           // messages refused
	Bytes     int64         // message octets acknowledged
	Duration  time.Duration // first connect to last 250
	PerSecond float64
	P50, P99  time.Duration // per-message latency (send to 250)
	Mode      string        // "BDAT" or "DATA"
	FirstErr  string        // first refusal or error, if any
}

func (r Result) String() string {
	s := fmt.Sprintf("%d messages (%d refused) of %d bytes in %v over %d sessions using %s: %.0f msgs/s, %.1f MB/s; latency p50 %v p99 %v",
		r.Sent, r.Failed, r.sizeEach(), r.Duration.Round(time.Millisecond), r.Sessions, r.Mode, r.PerSecond,
		float64(r.Bytes)/r.Duration.Seconds()/1e6, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond))
	if r.FirstErr != "" {
		s += "; first error: " + r.FirstErr
	}
	return s
}

func (r Result) sizeEach() int64 {
	if r.Sent == 0 {
		return 0
	}
	return r.Bytes / int64(r.Sent)
}

// Run sends the messages and reports. It fails if no message could be
// sent at all or a session could not be set up.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Sessions <= 0 {
		o.Sessions = 10
	}
	if o.Messages <= 0 {
		o.Messages = 1000
	}
	if o.Size <= 0 {
		o.Size = 10240
	}
	if o.Helo == "" {
		o.Helo = "loadgen.invalid"
	}
	if o.Addr == "" || o.To == "" {
		return Result{}, errors.New("smtpload: Addr and To are required")
	}
	if strings.ContainsAny(o.From+o.To+o.Helo+o.Username+o.Password, "\r\n<>\x00") {
		return Result{}, errors.New("smtpload: invalid From, To or Helo")
	}
	if o.Sessions > o.Messages {
		o.Sessions = o.Messages
	}
	var next atomic.Int64
	var mu sync.Mutex
	res := Result{Sessions: o.Sessions}
	var lats []time.Duration
	var setupErr error
	var wg sync.WaitGroup
	start := time.Now()
	var last atomic.Int64
	for i := 0; i < o.Sessions; i++ {
		wg.Add(1)
		go func(sess int) {
			defer wg.Done()
			st, err := runSession(ctx, o, sess, &next, &last)
			mu.Lock()
			defer mu.Unlock()
			res.Sent += st.sent
			res.Failed += st.failed
			res.Bytes += st.bytes
			lats = append(lats, st.lats...)
			if st.mode != "" {
				res.Mode = st.mode
			}
			if res.FirstErr == "" && st.firstErr != "" {
				res.FirstErr = st.firstErr
			}
			if err != nil && setupErr == nil {
				setupErr = err
			}
		}(i)
	}
	wg.Wait()
	if l := last.Load(); l > 0 {
		res.Duration = time.Duration(l - start.UnixNano())
	} else {
		res.Duration = time.Since(start)
	}
	if res.Duration > 0 {
		res.PerSecond = float64(res.Sent) / res.Duration.Seconds()
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	if n := len(lats); n > 0 {
		res.P50, res.P99 = lats[n/2], lats[min(n-1, n*99/100)]
	}
	if setupErr != nil {
		return res, setupErr
	}
	if res.Sent == 0 {
		return res, fmt.Errorf("smtpload: no message accepted: %s", res.FirstErr)
	}
	return res, nil
}

type sessionStats struct {
	sent, failed int
	bytes        int64
	lats         []time.Duration
	mode         string
	firstErr     string
}

func runSession(ctx context.Context, o Options, sess int, next, last *atomic.Int64) (st sessionStats, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return st, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(conn)
	w := bufio.NewWriterSize(conn, o.Size+4096)
	if _, _, err := readReply(r); err != nil {
		return st, fmt.Errorf("greeting: %w", err)
	}
	fmt.Fprintf(w, "EHLO %s\r\n", o.Helo)
	if err := w.Flush(); err != nil {
		return st, err
	}
	code, lines, err := readReply(r)
	if err != nil || code != 250 {
		return st, fmt.Errorf("EHLO: %d %v %v", code, lines, err)
	}
	if o.Username != "" {
		cred := base64.StdEncoding.EncodeToString([]byte("\x00" + o.Username + "\x00" + o.Password))
		fmt.Fprintf(w, "AUTH PLAIN %s\r\n", cred)
		if err := w.Flush(); err != nil {
			return st, err
		}
		code, lines, err := readReply(r)
		if err != nil || code != 235 {
			return st, fmt.Errorf("AUTH: %d %v %v", code, lines, err)
		}
	}
	chunking := false
	for _, l := range lines {
		if strings.EqualFold(strings.TrimSpace(l), "CHUNKING") {
			chunking = !o.NoChunking
		}
	}
	st.mode = "DATA"
	if chunking {
		st.mode = "BDAT"
	}
	for {
		n := next.Add(1)
		if n > int64(o.Messages) {
			break
		}
		msg := message(o, sess, n)
		t0 := time.Now()
		ok, detail, err := sendOne(w, r, o, msg, chunking)
		if err != nil {
			return st, err
		}
		if ok {
			st.sent++
			st.bytes += int64(len(msg))
			st.lats = append(st.lats, time.Since(t0))
			now := time.Now().UnixNano()
			for {
				l := last.Load()
				if now <= l || last.CompareAndSwap(l, now) {
					break
				}
			}
		} else {
			st.failed++
			if st.firstErr == "" {
				st.firstErr = detail
			}
		}
	}
	fmt.Fprintf(w, "QUIT\r\n")
	_ = w.Flush()
	_, _, _ = readReply(r)
	return st, nil
}

// sendOne sends one message, pipelined; it reports whether it got 250.
func sendOne(w *bufio.Writer, r *bufio.Reader, o Options, msg []byte, chunking bool) (bool, string, error) {
	fmt.Fprintf(w, "MAIL FROM:<%s> SIZE=%d\r\nRCPT TO:<%s>\r\n", o.From, len(msg), o.To)
	if chunking {
		fmt.Fprintf(w, "BDAT %d LAST\r\n", len(msg))
		w.Write(msg)
		if err := w.Flush(); err != nil {
			return false, "", err
		}
		return collect(r, 3)
	}
	w.WriteString("DATA\r\n")
	if err := w.Flush(); err != nil {
		return false, "", err
	}
	var refused string
	for i := 0; i < 3; i++ {
		code, lines, err := readReply(r)
		if err != nil {
			return false, "", err
		}
		want := 250
		if i == 2 {
			want = 354
		}
		if code != want && refused == "" {
			refused = fmt.Sprintf("%d %s", code, strings.Join(lines, " "))
		}
		if i == 2 && code != 354 {
			return false, refused, nil
		}
	}
	w.Write(msg) // the message has no line starting with "." (see message)
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		return false, "", err
	}
	ok, detail, err := collect(r, 1)
	if refused != "" {
		detail = refused
	}
	return ok && refused == "", detail, err
}

// collect reads n replies; ok if all are 2xx.
func collect(r *bufio.Reader, n int) (bool, string, error) {
	ok, detail := true, ""
	for i := 0; i < n; i++ {
		code, lines, err := readReply(r)
		if err != nil {
			return false, "", err
		}
		if code/100 != 2 && ok {
			ok, detail = false, fmt.Sprintf("%d %s", code, strings.Join(lines, " "))
		}
	}
	return ok, detail, nil
}

// readReply reads one (possibly multi-line) reply.
func readReply(r *bufio.Reader) (int, []string, error) {
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, lines, err
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 3 {
			return 0, lines, fmt.Errorf("bad reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			return 0, lines, fmt.Errorf("bad reply line %q", l)
		}
		lines = append(lines, strings.TrimSpace(l[min(4, len(l)):]))
		if len(l) == 3 || l[3] != '-' {
			return code, lines, nil
		}
	}
}

// message builds a message of exactly o.Size octets (at least its
// headers), CRLF lines of at most 154 characters, none starting with ".".
func message(o Options, sess int, n int64) []byte {
	hdr := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: load %d-%d\r\nMessage-ID: <%d.%d.%d@loadgen.invalid>\r\nDate: %s\r\n\r\n",
		o.From, o.To, sess, n, time.Now().UnixNano(), sess, n, time.Now().Format(time.RFC1123Z))
	b := make([]byte, 0, max(o.Size, len(hdr)))
	b = append(b, hdr...)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	k := int(n)
	line := func(width int) {
		for j := 0; j < width; j++ {
			b = append(b, alphabet[(k+j)%len(alphabet)])
		}
		b = append(b, '\r', '\n')
		k++
	}
	for o.Size-len(b) > 156 {
		line(76)
	}
	if left := o.Size - len(b); left >= 2 {
		line(left - 2) // at most 154 characters
	}
	return b
}
