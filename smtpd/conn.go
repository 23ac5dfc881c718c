package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/internal/frontend"
)

// conn is one SMTP connection: its transport, input buffer and reply
// writer, its greeting and TLS state, and the session that holds the mail
// transaction. Everything but the writer and the shutdown flags is used
// only by the connection's own goroutine.
type conn struct {
	srv       *Server
	cfg       *Config
	fc        *frontend.Conn
	role      role
	roleLabel string
	log       *slog.Logger
	sess      *session

	// Input: buf[r:w] is read but not yet consumed.
	buf  []byte
	r, w int

	helo string // the EHLO/HELO argument; "" = not greeted (since STARTTLS)
	ehlo bool   // the greeting was EHLO

	verb  string    // the command being served (metrics label)
	start time.Time // ... and when it began

	msgStart time.Time // the message transfer in progress began
	msgBytes int64     // octets read since msgStart
	dead     error     // the transfer failed in transport: reply and close

	wmu      sync.Mutex // the writer: out, errCount, closing the transport
	out      []byte
	errCount int

	mu       sync.Mutex // guards the fields below
	nc       net.Conn   // fc.Net, or the TLS connection after STARTTLS
	tlsState *tls.ConnectionState
	idle     bool // waiting for a command with nothing buffered
	closing  bool // Shutdown began: close before the next command
	closed   bool
}

// errConnClosed ends a connection the server closed.
var errConnClosed = fmt.Errorf("smtpd: connection closed: %w", net.ErrClosed)

// Command line errors; each ends the connection with a 500.
var (
	errLineTooLong = errors.New("command line too long")
	errBareNewline = errors.New("bare CR or LF in a command line")
)

func newConn(s *Server, fc *frontend.Conn) *conn {
	c := &conn{
		srv: s, cfg: &s.cfg, fc: fc, log: fc.Log, roleLabel: fc.Role,
		buf: make([]byte, readBufferSize), nc: fc.Net, verb: "CONNECT", start: time.Now(),
	}
	if fc.Role != labelInbound {
		c.role = roleSubmission
	}
	if tc, ok := fc.Net.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	c.sess = &session{srv: s, c: c}
	return c
}

// serve runs the connection: greeting, then commands until QUIT, an error
// that ends it, or shutdown.
func (c *conn) serve() {
	defer c.sess.release()
	defer c.close()
	c.fc.OnShutdown(c.onShutdown)
	// RFC 5321 §4.2: the greeting starts with our domain.
	c.sendf(220, "%s ESMTP Postrider", c.cfg.Hostname)
	for !c.isClosed() {
		line, err := c.readCommand()
		if err != nil {
			c.commandFailed(err)
			return
		}
		c.dispatch(string(line))
	}
}

// dispatch runs one command line (without its CRLF).
func (c *conn) dispatch(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	c.verb, c.start = metricVerb(verb), time.Now()
	c.trace("C: " + maskCommand(verb, line))
	cmd, ok := commands[verb]
	switch {
	case !ok:
		// RFC 5321 §4.2.4: 500 for a command not recognized.
		c.reply(replyErr(500, 5, 5, 2, "Command unrecognized"))
	case cmd.greeted && c.helo == "":
		// RFC 5321 §4.1.4 (and RFC 3207 §4.2 after STARTTLS).
		c.reply(replyErr(503, 5, 5, 1, "Send EHLO first (RFC 5321 §4.1.4)"))
	default:
		cmd.run(c, arg)
	}
}

// commandFailed ends the connection after a command could not be read.
func (c *conn) commandFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		lineTooLong.Inc()
		c.reply(replyErr(500, 5, 5, 2, "Line too long (RFC 5321 §4.5.3.1.4), closing connection"))
	case errors.Is(err, errBareNewline):
		// RFC 5321 §2.3.8 allows CR and LF only together as CRLF; a server
		// that guesses where such a line ends is open to SMTP smuggling
		// (CVE-2023-51764 class).
		bareNewline.WithLabelValues("command").Inc()
		c.log.Info("bare CR or LF in a command line; closing")
		c.reply(replyErr(500, 5, 5, 2, "Bare CR or LF in command line (RFC 5321 §2.3.8), closing connection"))
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 5321 §4.5.3.2.7: the server's timeout.
		c.reply(replyErr(421, 4, 4, 2, c.cfg.Hostname+" Timeout waiting for a command, closing connection"))
	}
}

// readCommand reads the next command line.
func (c *conn) readCommand() ([]byte, error) {
	return c.readLine(maxCommandLine, true)
}

// readLine returns the next line without its CRLF, valid until the next
// read. The line must end in CRLF and hold no other CR or LF (RFC 5321
// §2.3.8); it may be at most limit octets with its CRLF (maxCommandLine
// for a command, RFC 5321 §4.5.3.1.4, raised to maxAuthLine for AUTH and
// SASL responses, RFC 4954 §4). A command waits at most CommandTimeout;
// between commands the connection is idle, and Shutdown answers 421.
func (c *conn) readLine(limit int, command bool) ([]byte, error) {
	for {
		pending := c.buf[c.r:c.w]
		if command && hasPrefixFold(pending, "AUTH ") {
			limit = maxAuthLine
		}
		if i := bytes.IndexByte(pending, '\n'); i >= 0 {
			if i+1 > limit {
				return nil, errLineTooLong
			}
			line := pending[:i+1]
			c.r += i + 1
			if !validLine(line) {
				return nil, errBareNewline
			}
			return line[:i-1], nil
		}
		// A CR not followed by LF is refused without waiting for the end
		// of the line.
		if j := bytes.IndexByte(pending, '\r'); j >= 0 && j+1 < len(pending) {
			return nil, errBareNewline
		}
		if len(pending) >= limit {
			return nil, errLineTooLong
		}
		idle := command && len(pending) == 0
		if idle && !c.setIdle(true) {
			c.shutdownReply()
			return nil, errConnClosed
		}
		_, err := c.fill(time.Now().Add(c.cfg.CommandTimeout))
		if idle {
			c.setIdle(false)
		}
		if err != nil {
			return nil, err
		}
	}
}

// validLine reports whether line ends in CRLF and has no other CR or LF.
func validLine(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' {
		return false
	}
	return bytes.IndexByte(line[:n-2], '\r') < 0 && bytes.IndexByte(line[:n-2], '\n') < 0
}

// fill reads more input; before it waits for the client it sends the
// buffered replies (RFC 2920 §3.1: a pipelined group's replies go out
// together, when the server would otherwise wait).
func (c *conn) fill(deadline time.Time) (int, error) {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	nc := c.transport()
	_ = nc.SetReadDeadline(deadline)
	n, err := nc.Read(c.buf[c.w:])
	c.w += n
	if c.isClosed() {
		return 0, errConnClosed
	}
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

// beginTransfer starts the clock of a DATA or BDAT transfer.
func (c *conn) beginTransfer() {
	c.msgStart, c.msgBytes = time.Now(), 0
}

// fillData reads message content. A timeout or a connection cut short
// fails the transfer (c.dead): nothing is stored, and the connection
// closes after the reply.
func (c *conn) fillData() error {
	if c.dead != nil {
		return c.dead
	}
	deadline, slow := c.dataDeadline()
	n, err := c.fill(deadline)
	c.msgBytes += int64(n)
	if err == nil {
		return nil
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout() && slow:
		c.log.Info("message transfer below the minimum rate", "octets", c.msgBytes,
			"elapsed", time.Since(c.msgStart).Round(time.Millisecond), "min_rate", c.cfg.MinDataRate)
		c.dead = errTransferTooSlow
	case errors.As(err, &ne) && ne.Timeout():
		c.log.Info("timeout during message transfer")
		c.dead = errTransferTimeout
	default:
		// EOF (a close or half-close), a reset, or the server closing: the
		// transfer is cut short (RFC 3030 §2: a chunk is exactly its size;
		// DATA ends only with its end marker).
		c.log.Info("connection closed during message transfer", "err", err)
		c.dead = errTransferCut
	}
	return c.dead
}

// dataDeadline is when the next read of message content must have
// returned: the earliest of DataTimeout of inactivity, MessageTimeout
// after the transfer began, and the minimum-rate deadline. The last gives
// the transfer DataTimeout of credit plus one second for every MinDataRate
// octets received (as Postfix's smtpd_min_data_rate extends its per-request
// deadline); slow reports that it is the one that applies.
func (c *conn) dataDeadline() (deadline time.Time, slow bool) {
	cfg := c.cfg
	deadline = time.Now().Add(cfg.DataTimeout)
	if end := c.msgStart.Add(cfg.MessageTimeout); end.Before(deadline) {
		deadline = end
	}
	if cfg.MinDataRate > 0 {
		credit := cfg.DataTimeout + time.Duration(c.msgBytes)*time.Second/time.Duration(cfg.MinDataRate)
		if end := c.msgStart.Add(credit); end.Before(deadline) {
			return end, true
		}
	}
	return deadline, false
}

// reply writes a reply (buffered until the server waits for input).
func (c *conn) reply(r *reply) {
	c.send(r.code, r.String()[4:])
}

// sendf writes a one-line reply with a formatted text.
func (c *conn) sendf(code int, format string, args ...any) {
	c.send(code, fmt.Sprintf(format, args...))
}

// send writes a reply of one or more lines (RFC 5321 §4.2.1: "code-" on
// all but the last). It counts the command's result and the client's
// errors: after MaxErrors it closes the connection with 421.
func (c *conn) send(code int, lines ...string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	cs := strconv.Itoa(code)
	for i, l := range lines {
		sep := " "
		if i < len(lines)-1 {
			sep = "-"
		}
		c.out = append(c.out, cs+sep+l+"\r\n"...)
		c.trace("S: " + cs + sep + l)
	}
	c.fc.Metrics().Command(c.verb, strconv.Itoa(code/100)+"xx", time.Since(c.start))
	// 452 (too many recipients, RFC 5321 §4.5.3.1.10) is ordinary
	// pipelining behaviour, not a client error.
	if code >= 400 && code != 452 {
		c.errCount++
		if c.errCount == c.cfg.MaxErrors {
			tooManyErrors.Inc()
			c.log.Info("too many errors; closing")
			c.out = append(c.out, "421 4.7.0 "+c.cfg.Hostname+" Too many errors, closing connection\r\n"...)
			c.trace("S: 421 4.7.0 " + c.cfg.Hostname + " Too many errors, closing connection")
			c.closeLocked()
			return
		}
	}
	if len(c.out) >= writeFlushSize {
		_ = c.flushLocked()
	}
}

// writeFlushSize is the buffered reply size that forces a write.
const writeFlushSize = 4096

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *conn) flushLocked() error {
	if len(c.out) == 0 {
		return nil
	}
	nc := c.transport()
	_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := nc.Write(c.out)
	c.out = c.out[:0]
	if err != nil {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.fc.Raw.Close()
	}
	return err
}

// onShutdown is the first stage of the kit's Shutdown: a client waiting
// for a command gets 421 now (RFC 5321 §3.8); one in the middle of a
// command (a transfer, a delivery) gets it before its next command.
func (c *conn) onShutdown() {
	c.mu.Lock()
	c.closing = true
	idle := c.idle && !c.closed
	c.mu.Unlock()
	if idle {
		c.shutdownReply()
	}
}

func (c *conn) shutdownReply() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	line := "421 4.3.2 " + c.cfg.Hostname + " Service shutting down, try again later"
	c.out = append(c.out, line+"\r\n"...)
	c.trace("S: " + line)
	c.closeLocked()
}

// setIdle marks the connection as waiting for a command; false if
// Shutdown asked it to close.
func (c *conn) setIdle(v bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v && c.closing {
		return false
	}
	c.idle = v
	return true
}

// close sends what is buffered and closes the connection (with a TLS
// close_notify).
func (c *conn) close() {
	if c.wmu.TryLock() {
		defer c.wmu.Unlock()
		c.closeLocked()
		return
	}
	// A write is blocked: just close.
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.fc.Raw.Close()
}

func (c *conn) closeLocked() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	nc := c.nc
	c.mu.Unlock()
	if already {
		return
	}
	_ = nc.SetWriteDeadline(time.Now().Add(shutdownWriteTimeout))
	_ = c.flushLocked()
	if tc, ok := nc.(*tls.Conn); ok {
		_ = tc.Close()
	}
	_ = c.fc.Raw.Close()
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) transport() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// tls returns the TLS state, nil without TLS.
func (c *conn) tls() *tls.ConnectionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tlsState
}

// trace logs a protocol line at LevelTrace.
func (c *conn) trace(msg string) {
	if c.log.Enabled(context.Background(), LevelTrace) {
		c.log.Log(context.Background(), LevelTrace, msg)
	}
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// maskCommand renders a command line for the protocol trace without
// secrets: an AUTH initial response is masked.
func maskCommand(verb, line string) string {
	if verb == "AUTH" {
		f := strings.Fields(line)
		if len(f) > 2 {
			return f[0] + " " + f[1] + " <initial response>"
		}
	}
	return line
}
