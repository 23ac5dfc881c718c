package delivery

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawReceiver is an SMTP server written for these tests on a raw
// net.Listener, so that they see how commands arrive: which came together
// before any reply (a pipelined group), with how many reads, and which
// came before the reply to the command before them.
type rawReceiver struct {
	ext []string // EHLO keywords
	// hold: from the RSET or MAIL that opens a transaction to its DATA,
	// no reply is written until DATA has arrived (a pipelining check: a
	// client that waits for replies never gets there, and the receiver
	// records notPipelined after holdWait).
	hold      bool
	mailReply func(from string) string // "": 250
	rcptReply func(to string) string   // "": 250; may be multi-line
	// dataAnyway: 354 to DATA even when no RCPT was accepted (RFC 2920
	// §3.1 says a client must be ready for it).
	dataAnyway bool
	dataReply  string      // when set, the reply to every DATA
	tls        *tls.Config // STARTTLS offered when set
	auth       string      // "user:pass" taken by AUTH LOGIN when set

	mu           sync.Mutex
	accepts      int
	cmds         []string   // every command line, in order
	groups       [][]string // hold: each group of commands before its replies
	groupReads   []int      // hold: the reads of the connection that brought each group
	sentAhead    []string   // commands that came before the reply to the one before
	notPipelined bool
	msgs         []received
	loneDots     int    // data that was a single dot (no message)
	cutData      int    // connections closed in the middle of data
	authed       string // the user:pass AUTH LOGIN took
	open         []net.Conn
}

// dropAll closes every connection accepted so far, as a receiver's idle
// timeout would.
func (r *rawReceiver) dropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.open {
		c.Close()
	}
}

const holdWait = 10 * time.Second

func startRaw(t *testing.T, n *testNet, ip string, r *rawReceiver) *rawReceiver {
	t.Helper()
	ln := n.listen(t, ip)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.accepts++
			r.open = append(r.open, c)
			r.mu.Unlock()
			go r.serve(c)
		}
	}()
	return r
}

func (r *rawReceiver) snapshot() rawReceiver {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rawReceiver{accepts: r.accepts, cmds: r.cmds, groups: r.groups, groupReads: r.groupReads, sentAhead: r.sentAhead,
		notPipelined: r.notPipelined, msgs: r.msgs, loneDots: r.loneDots, cutData: r.cutData, authed: r.authed}
}

// countingConn counts the reads of a connection.
type countingConn struct {
	net.Conn
	reads int
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads++
	return c.Conn.Read(b)
}

type rawState struct {
	from   string
	mailOK bool
	rcpts  []string
}

func (r *rawReceiver) serve(nc net.Conn) {
	defer nc.Close()
	cc := &countingConn{Conn: nc}
	conn := net.Conn(cc)
	br := bufio.NewReader(conn)
	write := func(s string) bool {
		_, err := io.WriteString(conn, s+"\r\n")
		return err == nil
	}
	readLine := func(wait time.Duration) (string, error) {
		_ = nc.SetReadDeadline(time.Now().Add(wait))
		l, err := br.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	write("220 raw.test ESMTP")
	st := &rawState{}
	for {
		line, err := readLine(30 * time.Second)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.cmds = append(r.cmds, line)
		if br.Buffered() > 0 && !r.hold {
			r.sentAhead = append(r.sentAhead, line)
		}
		r.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch {
		case verb == "STARTTLS" && r.tls != nil:
			write("220 2.0.0 go ahead")
			tc := tls.Server(nc, r.tls)
			if tc.Handshake() != nil {
				return
			}
			cc = &countingConn{Conn: tc}
			conn, br = cc, bufio.NewReader(cc)
			continue
		case verb == "AUTH" && r.auth != "":
			if !r.login(line, write, readLine) {
				return
			}
			continue
		}
		replies := []string{r.handle(st, line)}
		data := verb == "DATA" && strings.HasPrefix(replies[0], "354")
		if r.hold && (verb == "MAIL" || verb == "RSET") {
			group, start := []string{line}, cc.reads
			for verb != "DATA" && !strings.HasPrefix(replies[len(replies)-1], "421") {
				line, err = readLine(holdWait)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					r.mu.Lock()
					r.notPipelined = true
					r.mu.Unlock()
					break
				}
				if err != nil {
					return
				}
				verb = strings.ToUpper(strings.Fields(line + " x")[0])
				group = append(group, line)
				replies = append(replies, r.handle(st, line))
				data = verb == "DATA" && strings.HasPrefix(replies[len(replies)-1], "354")
			}
			r.mu.Lock()
			r.cmds = append(r.cmds, group[1:]...)
			r.groups = append(r.groups, group)
			r.groupReads = append(r.groupReads, cc.reads-start+1)
			r.mu.Unlock()
		}
		if !write(strings.Join(replies, "\r\n")) || strings.HasPrefix(replies[len(replies)-1], "421") || verb == "QUIT" {
			return
		}
		if data && !r.readData(st, readLine, write) {
			return
		}
	}
}

// handle answers one command.
func (r *rawReceiver) handle(st *rawState, line string) string {
	verb := strings.ToUpper(strings.Fields(line + " x")[0])
	arg := func(prefix string) string {
		a := line[min(len(prefix), len(line)):]
		if i := strings.IndexByte(a, '>'); i >= 0 {
			a = a[:i]
		}
		return strings.TrimPrefix(a, "<")
	}
	switch verb {
	case "EHLO":
		lines := append([]string{"raw.test"}, r.ext...)
		if r.tls != nil {
			lines = append(lines, "STARTTLS")
		}
		if r.auth != "" {
			lines = append(lines, "AUTH LOGIN")
		}
		var out []string
		for i, l := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			out = append(out, "250"+sep+l)
		}
		return strings.Join(out, "\r\n")
	case "HELO", "NOOP":
		return "250 2.0.0 ok"
	case "RSET":
		*st = rawState{}
		return "250 2.0.0 ok"
	case "MAIL":
		*st = rawState{from: arg("MAIL FROM:")}
		if r.mailReply != nil {
			if rep := r.mailReply(st.from); rep != "" {
				return rep
			}
		}
		st.mailOK = true
		return "250 2.1.0 ok"
	case "RCPT":
		to := arg("RCPT TO:")
		if r.rcptReply != nil {
			if rep := r.rcptReply(to); rep != "" {
				return rep
			}
		}
		if !st.mailOK {
			return "503 5.5.1 MAIL first"
		}
		st.rcpts = append(st.rcpts, to)
		return "250 2.1.5 ok"
	case "DATA":
		if r.dataReply != "" {
			return r.dataReply
		}
		if len(st.rcpts) == 0 && !r.dataAnyway {
			return "554 5.5.1 no valid recipients"
		}
		return "354 go ahead"
	case "QUIT":
		return "221 2.0.0 bye"
	}
	return "500 5.5.2 unknown command"
}

// readData reads a message to its final dot, undoing the dot-stuffing.
func (r *rawReceiver) readData(st *rawState, readLine func(time.Duration) (string, error), write func(string) bool) bool {
	var b strings.Builder
	for {
		l, err := readLine(30 * time.Second)
		if err != nil {
			r.mu.Lock()
			r.cutData++
			r.mu.Unlock()
			return false
		}
		if l == "." {
			break
		}
		b.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(st.rcpts) == 0 {
		r.loneDots++
		*st = rawState{}
		return write("554 5.5.1 no valid recipients")
	}
	r.msgs = append(r.msgs, received{From: st.from, Rcpts: st.rcpts, Data: b.String()})
	*st = rawState{}
	return write("250 2.0.0 queued")
}

// login runs AUTH LOGIN (with or without an initial response).
func (r *rawReceiver) login(line string, write func(string) bool, readLine func(time.Duration) (string, error)) bool {
	f := strings.Fields(line)
	if len(f) < 2 || !strings.EqualFold(f[1], "LOGIN") {
		return write("504 5.5.4 only LOGIN")
	}
	var user string
	if len(f) == 3 {
		b, _ := base64.StdEncoding.DecodeString(f[2])
		user = string(b)
	} else {
		write("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
		l, err := readLine(30 * time.Second)
		if err != nil {
			return false
		}
		b, _ := base64.StdEncoding.DecodeString(l)
		user = string(b)
	}
	write("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
	l, err := readLine(30 * time.Second)
	if err != nil {
		return false
	}
	pass, _ := base64.StdEncoding.DecodeString(l)
	if user+":"+string(pass) != r.auth {
		return write("535 5.7.8 bad credentials")
	}
	r.mu.Lock()
	r.authed = user + ":" + string(pass)
	r.mu.Unlock()
	return write("235 2.7.0 ok")
}
