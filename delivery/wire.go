package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// Bounds of a server's reply, which is network input. RFC 5321
// §4.5.3.1.5 caps a reply line at 512 octets with its CRLF; some servers
// exceed it with long explanations, so a line may have eight times that
// and no more. The longest multi-line replies seen in practice are EHLO
// lists and banners of a few dozen lines.
const (
	maxReplyLine  = 4096
	maxReplyLines = 128
)

// reply is one reply of the server: its code and the text of each line
// (without the code and the separator).
type reply struct {
	code  int
	lines []string
}

// errMalformed marks a reply that breaks RFC 5321 §4.2 or our bounds:
// the connection cannot be trusted any more.
var errMalformed = errors.New("malformed reply")

// readReply reads one reply (RFC 5321 §4.2): lines "NNN-text" and a last
// line "NNN text" or "NNN", every line with the same code, the code within
// RFC 5321's grammar (%x32-35 %x30-35 %x30-39). A bare LF ends a line
// too (lenient on what is received, RFC 5321 §4.5.3.1 notwithstanding).
func readReply(br *bufio.Reader) (*reply, error) {
	rp := &reply{}
	for {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: a line longer than %d octets", errMalformed, maxReplyLine)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && (len(b) > 0 || len(rp.lines) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' || line[2] > '9' {
			return nil, fmt.Errorf("%w: %q", errMalformed, clip(line))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if rp.code != 0 && code != rp.code {
			return nil, fmt.Errorf("%w: code %d within a reply of code %d", errMalformed, code, rp.code)
		}
		rp.code = code
		if len(rp.lines) == maxReplyLines {
			return nil, fmt.Errorf("%w: more than %d lines", errMalformed, maxReplyLines)
		}
		last := true
		if len(line) > 3 {
			switch line[3] {
			case '-':
				last = false
			case ' ':
			default:
				return nil, fmt.Errorf("%w: %q", errMalformed, clip(line))
			}
			line = line[4:]
		} else {
			line = ""
		}
		rp.lines = append(rp.lines, line)
		if last {
			return rp, nil
		}
	}
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// enhancedOf returns the enhanced status code at the start of the reply
// (RFC 2034 §4, RFC 3463 §2), or "" when there is none or its class is
// not the reply's.
func enhancedOf(code int, first string) string {
	f, _, _ := strings.Cut(first, " ")
	if e := enhanced(code, f); e == f {
		return f
	}
	return ""
}

// replyResult maps a reply to a result: 2xx delivered, 4xx pending, 5xx
// failed (RFC 5321 §4.2.1). The enhanced code, when given, starts every
// line (RFC 2034 §4): it is named once, and the lines are joined.
func replyResult(host string, rp *reply) *result {
	first := ""
	if len(rp.lines) > 0 {
		first = rp.lines[0]
	}
	ec := enhancedOf(rp.code, first)
	lines := rp.lines
	if ec != "" {
		lines = make([]string, len(rp.lines))
		for i, l := range rp.lines {
			lines[i] = strings.TrimPrefix(strings.TrimPrefix(l, ec), " ")
		}
	}
	text := oneLine(strings.Join(lines, "\n"))
	r := &result{remote: host, code: ec}
	switch {
	case ec != "":
		r.reply = strings.TrimSpace(fmt.Sprintf("%d %s %s", rp.code, ec, text))
	default:
		r.code = enhanced(rp.code, "")
		r.reply = strings.TrimSpace(fmt.Sprintf("%d %s", rp.code, text))
	}
	switch {
	case rp.code >= 500:
		r.state = mailstore.RcptFailed
	case rp.code >= 400:
		r.state = mailstore.RcptPending
	default:
		r.state = mailstore.RcptDelivered
	}
	return r
}

// replyError is a reply other than the one a command needed.
type replyError struct {
	rp *reply
}

func (e *replyError) Error() string {
	return fmt.Sprintf("unexpected reply %d %s", e.rp.code, oneLine(strings.Join(e.rp.lines, "\n")))
}

// clientConn is the client's side of an SMTP connection: commands out,
// replies in through a bounded reader. Every write is bounded by
// deadlineConn; every read by the timeout its command has.
type clientConn struct {
	nc  net.Conn // deadlineConn, or TLS over it
	raw net.Conn // the TCP connection, closed to abort
	br  *bufio.Reader
	ext map[string]string // EHLO keywords (upper case) and their parameters
}

func newClientConn(nc, raw net.Conn) *clientConn {
	return &clientConn{nc: nc, raw: raw, br: bufio.NewReaderSize(nc, maxReplyLine), ext: map[string]string{}}
}

// read reads the next reply, waiting at most timeout.
func (c *clientConn) read(timeout time.Duration) (*reply, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	return readReply(c.br)
}

// send writes one command line.
func (c *clientConn) send(line string) error {
	_, err := io.WriteString(c.nc, line+"\r\n")
	return err
}

// cmd sends a command and reads its reply.
func (c *clientConn) cmd(line string, timeout time.Duration) (*reply, error) {
	if err := c.send(line); err != nil {
		return nil, err
	}
	return c.read(timeout)
}

// sendGroup writes a group of commands with one write, in the background,
// and returns a function that waits for the write and returns its error
// (call it once the replies are read, before writing anything else). RFC
// 2920 §3.1: a client that reads replies only after its write has ended
// must keep each group within the TCP window or risk a deadlock; one that
// reads while it writes cannot deadlock, whatever the group's size. A
// failed write closes the connection, so that the reader stops too.
func (c *clientConn) sendGroup(cmds []string) (wait func() error) {
	n := 0
	for _, l := range cmds {
		n += len(l) + 2
	}
	b := make([]byte, 0, n)
	for _, l := range cmds {
		b = append(append(b, l...), '\r', '\n')
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.nc.Write(b)
		if err != nil {
			c.raw.Close()
		}
		done <- err
	}()
	var (
		waited bool
		werr   error
	)
	return func() error {
		if !waited {
			werr, waited = <-done, true
		}
		return werr
	}
}

// hasExt reports whether the server named an extension in its EHLO reply.
func (c *clientConn) hasExt(name string) bool {
	_, ok := c.ext[name]
	return ok
}

// parseEHLO keeps the keywords of an EHLO reply (RFC 5321 §4.1.1.1: the
// first line greets, each further line is a keyword and its parameters).
func (c *clientConn) parseEHLO(rp *reply) {
	c.ext = map[string]string{}
	for _, l := range rp.lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k != "" {
			c.ext[strings.ToUpper(k)] = v
		}
	}
}

// dotWriter writes a message as DATA content (RFC 5321 §4.5.2): a line
// that begins with a dot gets another, every line ends in CRLF (a bare LF
// becomes CRLF; a bare CR is data), and Close adds the final dot line and
// flushes. It does what textproto's DotWriter does, a line at a time
// instead of an octet at a time: that one was the delivery engine's
// largest cost of its own per message.
type dotWriter struct {
	w     *bufio.Writer
	state int
}

const (
	dotBegin     = iota // nothing written yet
	dotBeginLine        // at the start of a line
	dotCR               // just after a CR (perhaps the end of a line)
	dotData             // within a line
)

func (d *dotWriter) Write(b []byte) (int, error) {
	n := len(b)
	var err error
	keep := func(e error) {
		if err == nil {
			err = e
		}
	}
	for len(b) > 0 {
		switch d.state {
		case dotBegin, dotBeginLine:
			d.state = dotData
			if b[0] == '.' {
				keep(d.w.WriteByte('.'))
			}
		case dotCR:
			d.state = dotData
			if b[0] == '\n' {
				keep(d.w.WriteByte('\n'))
				d.state = dotBeginLine
				b = b[1:]
				continue
			}
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			_, e := d.w.Write(b)
			keep(e)
			if b[len(b)-1] == '\r' {
				d.state = dotCR
			}
			break
		}
		if i > 0 && b[i-1] == '\r' {
			_, e := d.w.Write(b[:i+1])
			keep(e)
		} else {
			_, e := d.w.Write(b[:i])
			keep(e)
			_, e = d.w.WriteString("\r\n")
			keep(e)
		}
		d.state = dotBeginLine
		b = b[i+1:]
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close ends the content with the final dot line (after a CRLF unless
// the last line ended) and flushes.
func (d *dotWriter) Close() error {
	var end string
	switch d.state {
	case dotBeginLine:
		end = ".\r\n"
	case dotCR:
		end = "\n.\r\n"
	default:
		end = "\r\n.\r\n"
	}
	if _, err := d.w.WriteString(end); err != nil {
		return err
	}
	return d.w.Flush()
}
