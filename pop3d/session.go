package pop3d

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailstore"
)

// state is a POP3 session state (RFC 1939 §3). UPDATE is entered only
// inside QUIT, so it never needs a table entry.
type state uint8

const (
	stateAuthorization state = 1 << iota
	stateTransaction
)

// Session-level errors.
var (
	errLineTooLong = errors.New("line too long")
	errShutdown    = errors.New("server shutting down")
)

// replyError is a protocol error: it becomes exactly one "-ERR" line, in
// one place (session.fail). code is an RFC 2449 §8 / RFC 3206 response
// code without brackets, or "".
type replyError struct {
	code    string
	text    string
	noCount bool // not the client's fault: does not count towards MaxErrors
	close   bool // close the connection after the reply
}

func (e *replyError) Error() string { return e.text }

// errReply is the common client error, counted towards MaxErrors.
func errReply(code, text string) *replyError { return &replyError{code: code, text: text} }

// abortError ends the connection without a reply: the client is gone, or a
// multi-line response was cut short and nothing else can tell the client
// that the data is incomplete (RFC 1939 §3 has no way to abort one).
type abortError struct{ err error }

func (e *abortError) Error() string { return "connection aborted: " + e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// deadlineWriter sets a write deadline before every write, so a client
// that stops reading cannot hold a session (and its lock) forever while a
// slow but live client can download a large message.
type deadlineWriter struct {
	c net.Conn
	d time.Duration
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

type session struct {
	srv    *Server
	fc     *frontend.Conn
	raw    net.Conn // the accepted connection: deadlines, interrupt, close
	conn   net.Conn // raw, or the TLS layer over it
	r      *bufio.Reader
	w      *bufio.Writer // small, or a large one while sending messages read ahead
	small  *bufio.Writer
	id     string
	log    *slog.Logger
	remote netip.Addr
	tls    bool
	ctx    context.Context
	cancel context.CancelFunc

	state        state
	utf8         bool // RFC 6856 §2 UTF8 mode
	user         string
	hasUser      bool
	errors       int
	authFailures int
	closing      bool

	acc           mailstore.Account
	md            *maildrop
	lease         *lease
	copyBuf       []byte
	cmd           Command         // the command being run
	args          [MaxArgs]string // its arguments' storage
	line          []byte          // scratch for response lines
	stuffAt       []int           // scratch for writeWhole
	ra            readahead       // the next messages, read ahead (RETR)
	pendingSeen   int             // messages retrieved whose \Seen is not yet stored
	lastSeenFlush time.Time
}

// seenFlushInterval is how often \Seen marks of retrieved messages are
// written during a long session; QUIT and disconnect write the rest.
const seenFlushInterval = 30 * time.Second

func newSession(srv *Server, c *frontend.Conn) *session {
	ctx, cancel := context.WithCancel(c.Ctx)
	s := &session{
		srv:    srv,
		fc:     c,
		raw:    c.Raw,
		conn:   c.Net,
		id:     c.ID,
		remote: c.Peer.IP,
		tls:    c.ImplicitTLS,
		ctx:    ctx,
		cancel: cancel,
		state:  stateAuthorization,
		log:    c.Log,
	}
	s.r = bufio.NewReaderSize(s.conn, 4096)
	s.small = bufio.NewWriterSize(deadlineWriter{s.conn, srv.cfg.WriteTimeout}, smallWriteBuffer)
	s.w = s.small
	return s
}

// A session answers through its own small output buffer; while it sends
// messages read ahead it borrows a large one, so that a pipelined download
// leaves in a few large writes (one per 256 KiB, or when no command is
// waiting) and an idle session holds only the small one.
const (
	smallWriteBuffer = 32 << 10
	largeWriteBuffer = 64 << 10
)

var largeWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, largeWriteBuffer) }}

// growWriter switches to a large output buffer.
func (s *session) growWriter() {
	if s.w != s.small {
		return
	}
	if s.small.Buffered() > 0 {
		_ = s.small.Flush() // a write error shows again on the next write
	}
	w := largeWriters.Get().(*bufio.Writer)
	w.Reset(deadlineWriter{s.conn, s.srv.cfg.WriteTimeout})
	s.w = w
}

// shrinkWriter gives the large output buffer back once it is flushed and
// nothing read ahead is left to send.
func (s *session) shrinkWriter(force bool) {
	if s.w == s.small || !force && (s.w.Buffered() > 0 || s.ra.cur != nil || s.ra.next != nil) {
		return
	}
	s.w.Reset(nil)
	largeWriters.Put(s.w)
	s.w = s.small
}

// interrupt makes a blocked read return (Shutdown); the session then says
// goodbye. It is safe to call from another goroutine.
func (s *session) interrupt() {
	_ = s.raw.SetReadDeadline(time.Unix(1, 0))
}

func (s *session) serve() {
	defer s.cleanup()
	s.log.Debug("connected", slog.Bool("tls", s.tls))
	// RFC 1939 §4 greeting. It carries no APOP timestamp: APOP is not
	// offered (it needs the plaintext password on the server).
	s.writeLine("+OK " + s.srv.cfg.Hostname + " Postrider POP3 server ready")
	for !s.closing {
		// RFC 2449 §6.6 PIPELINING: answer everything the client sent,
		// then flush once.
		if s.r.Buffered() == 0 {
			if err := s.w.Flush(); err != nil {
				return
			}
			s.shrinkWriter(false)
		}
		s.maybeFlushSeen()
		line, err := s.readLine(MaxLineLength)
		if errors.Is(err, errLineTooLong) {
			if s.state == stateAuthorization {
				// Garbage before login: say so and close.
				s.fail(&replyError{text: "Command line too long", close: true})
			} else {
				s.fail(errReply("", "Command line too long (limit 255 octets, RFC 2449)"))
			}
			continue
		}
		if err != nil {
			s.readFailed(err)
			return
		}
		s.dispatch(line)
	}
}

// readLine reads one line of at most max octets including its line ending
// (CRLF; a bare LF is tolerated from clients), without the ending.
func (s *session) readLine(max int) (string, error) {
	timeout := s.srv.cfg.PreLoginTimeout
	if s.state == stateTransaction {
		timeout = s.srv.cfg.IdleTimeout // RFC 1939 §3 autologout timer
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	if s.fc.Closing() {
		return "", errShutdown
	}
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || err == nil && len(line) > max {
		if err != nil && s.state == stateTransaction {
			if err := s.skipLine(); err != nil {
				return "", err
			}
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// skipLine discards the rest of an over-long line (at most 1 MiB).
func (s *session) skipLine() error {
	for range 256 {
		_, err := s.r.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
	return errLineTooLong
}

func (s *session) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errShutdown) || s.fc.Closing():
		s.bye("-ERR [SYS/TEMP] Server shutting down, try again later")
	case errors.As(err, &ne) && ne.Timeout():
		// RFC 1939 §3: the autologout timer closes the connection without
		// entering the UPDATE state.
		s.bye("-ERR Autologout: no command received for too long")
	case errors.Is(err, io.EOF):
		s.log.Debug("client closed the connection")
	default:
		s.log.Debug("read failed", slog.Any("err", err))
	}
}

// bye sends a last line to a client that may not be reading any more.
func (s *session) bye(line string) {
	s.trace("S", line)
	_ = s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, _ = s.w.WriteString(line + "\r\n")
	_ = s.w.Flush()
}

func (s *session) dispatch(line string) {
	start := time.Now()
	cmd := &s.cmd
	err := parseCommand(line, cmd, &s.args)
	if err != nil {
		s.trace("C", "<invalid command line>")
		if s.state == stateAuthorization {
			// Garbage before login (not a POP3 client): answer and close.
			s.fail(&replyError{text: "Invalid command line", close: true})
		} else {
			s.fail(errReply("", "Invalid command line: "+err.Error()))
		}
		s.fc.Metrics().Command("invalid", "err", -1)
		return
	}
	s.traceCommand(cmd)
	name := metricName(cmd.Name)
	def, ok := commands[cmd.Name]
	switch {
	case !ok && s.state == stateAuthorization:
		err = &replyError{text: "Unknown command", close: true}
	case !ok:
		err = errReply("", "Unknown command")
	case def.states&s.state == 0:
		err = errReply("", "Command not valid in this state")
	default:
		err = def.fn(s, cmd)
	}
	result := "ok"
	if err != nil {
		result = "err"
		s.fail(err)
	}
	s.fc.Metrics().Command(name, result, time.Since(start))
}

// fail turns an error into the "-ERR" reply: the one place where errors
// become wire responses.
func (s *session) fail(err error) {
	var re *replyError
	var ae *abortError
	switch {
	case errors.As(err, &re):
	case errors.As(err, &ae):
		s.log.Debug("closing connection", slog.Any("err", ae.err))
		s.closing = true
		return
	case errors.Is(err, mailstore.ErrUnavailable):
		// RFC 3206 §4 SYS/TEMP: the database is down, not a bug.
		s.log.Warn("command failed: store unavailable", slog.Any("err", err))
		re = &replyError{code: "SYS/TEMP", text: "Mail store temporarily unavailable, try again later", noCount: true}
	default:
		// Internal errors are logged with the connection id and never
		// shown to the client (RFC 3206 §4 SYS/TEMP: try again later).
		s.log.Error("command failed", slog.Any("err", err))
		re = &replyError{code: "SYS/TEMP", text: "Internal server error, try again later", noCount: true}
	}
	text := re.text
	closing := re.close
	if !re.noCount {
		s.errors++
		if s.errors >= s.srv.cfg.MaxErrors {
			text += "; too many errors"
			closing = true
		}
	}
	if closing {
		text += ", closing connection"
	}
	line := "-ERR "
	if re.code != "" {
		line += "[" + re.code + "] "
	}
	s.writeLine(line + text)
	if closing {
		s.closing = true
	}
}

// writeLine sends one response line (the first line of a response, or one
// line of a multi-line response that never starts with ".").
func (s *session) writeLine(line string) {
	s.trace("S", line)
	_, _ = s.w.WriteString(line)
	_, _ = s.w.Write(crlf)
}

// writeLineBytes is writeLine for a line built in a scratch buffer.
func (s *session) writeLineBytes(line []byte) {
	if s.log.Enabled(s.ctx, LevelTrace) {
		s.trace("S", string(line))
	}
	_, _ = s.w.Write(line)
	_, _ = s.w.Write(crlf)
}

// ok sends "+OK text".
func (s *session) ok(text string) error {
	if text == "" {
		s.writeLine("+OK")
	} else {
		s.writeLine("+OK " + text)
	}
	return nil
}

func (s *session) trace(dir, line string) {
	if s.log.Enabled(s.ctx, LevelTrace) {
		s.log.Log(s.ctx, LevelTrace, dir+": "+line)
	}
}

// traceCommand logs a command with its credentials masked.
func (s *session) traceCommand(c *Command) {
	if !s.log.Enabled(s.ctx, LevelTrace) {
		return
	}
	switch c.Name {
	case "PASS":
		s.trace("C", "PASS ****")
	case "AUTH":
		if len(c.Args) > 1 {
			s.trace("C", "AUTH "+c.Args[0]+" ****")
			return
		}
		s.trace("C", strings.TrimSpace("AUTH "+c.Rest))
	default:
		s.trace("C", strings.TrimSpace(c.Name+" "+c.Rest))
	}
}

// cleanup runs when the connection ends, however it ends. The lock is
// released before the last reply (QUIT's "+OK", a closing "-ERR") is
// flushed, so a client that reconnects as soon as it sees that reply finds
// the maildrop free.
func (s *session) cleanup() {
	s.ra.stop()
	if s.state == stateTransaction {
		// Ended without QUIT: nothing is deleted (RFC 1939 §6), but what
		// was downloaded is marked \Seen.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
		if err := s.flushSeen(ctx, false); err != nil {
			s.log.Warn("cannot mark retrieved messages seen", slog.Any("err", err))
		}
		cancel()
	}
	s.releaseLease()
	_ = s.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = s.w.Flush()
	s.shrinkWriter(true)
	s.conn.Close()
	s.cancel()
	s.log.Debug("disconnected")
}

// releaseLease gives the maildrop lock back, once.
func (s *session) releaseLease() {
	if s.lease != nil {
		s.lease.release()
		s.lease = nil
	}
}

// plaintextOK reports whether USER/PASS and SASL PLAIN/LOGIN are allowed:
// over TLS, from loopback, or when configured (RFC 2595 §2.3, RFC 8314).
func (s *session) plaintextOK() bool {
	return s.fc.PlaintextAuthOK(s.tls)
}

// mechanisms returns the SASL mechanisms offered on this connection.
func (s *session) mechanisms() []string {
	var out []string
	for _, m := range auth.Mechanisms() {
		if isPlaintextMech(m) && !s.plaintextOK() {
			continue
		}
		out = append(out, m)
	}
	return out
}

// isPlaintextMech reports whether a mechanism sends the password in the
// clear (so it needs TLS like USER/PASS).
func isPlaintextMech(m string) bool {
	return m == "PLAIN" || m == "LOGIN"
}
