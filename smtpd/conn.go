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
	"net/netip"
	"sync"
	"time"

	"github.com/postrider/postrider/internal/netutil"
)

// guardConn is the net.Conn that go-smtp reads from and writes to. It sits
// between go-smtp and the socket and does, on our side, what go-smtp v0.25.1
// gets wrong or leaves out:
//
//   - Line discipline (RFC 5321 §2.3.8): go-smtp reads commands with
//     net/textproto, which accepts a bare LF as a line end and keeps a bare
//     CR inside a line. guardConn hands go-smtp one complete command line at
//     a time and closes the connection on any bare CR or LF in a command.
//     (Message data is checked in the session, see scan.go.)
//   - STARTTLS (RFC 3207): guardConn runs the TLS layer itself, so that go-smtp
//     only ever sees guardConn and the line discipline above also holds
//     inside TLS. Plaintext pipelined after STARTTLS is discarded
//     (RFC 3207 §4.2, CVE-2011-0411), and go-smtp's transaction state is reset
//     with a synthetic RSET whose reply is swallowed.
//   - Timeouts: a per-command timeout, and during DATA/BDAT a per-read
//     inactivity timeout plus a whole-message timeout (go-smtp's one
//     deadline, set before the DATA command, would cut off a slow but live
//     upload).
//   - Limits: command line length, error replies before disconnect,
//     connections per IP and in all, the minimum DATA/BDAT rate, and the
//     PROXY protocol header.
//   - Shutdown: a 421 to a client waiting between commands.
//
// To know what the bytes it hands over are, guardConn mirrors go-smtp's
// reader exactly: command lines, DATA content up to go-smtp's end-of-data
// state (entered only after go-smtp replied 354), BDAT chunks of the size
// go-smtp will read, and SASL response lines (after a 334 reply).
type guardConn struct {
	srv         *Server
	raw         net.Conn
	role        role
	implicitTLS bool
	id          string
	log         *slog.Logger
	start       time.Time

	initOnce  sync.Once
	initErr   error
	remote    netip.Addr
	limited   bool // holds a ConnLimiter slot
	closeOnce sync.Once

	mu            sync.Mutex // guards the fields below
	tr            net.Conn   // raw, or a *tls.Conn over raw
	tlsState      *tls.ConnectionState
	epoch         int // incremented at STARTTLS
	greetedEpoch  int // epoch of the last successful EHLO/HELO, -1 = none
	greetEHLO     bool
	idle          bool
	closing       bool // Shutdown: close at the next idle point
	closed        bool
	lastReply     int
	authenticated bool
	rawDataErr    error // bare CR/LF or NUL in the raw DATA stream

	wmu sync.Mutex // serialises writes; guards the write-side fields
	// Write-side state (reply filter).
	greetPending int // 1 = EHLO reply expected, 2 = HELO reply expected
	swallow      int // replies to drop (the synthetic RSET's)
	errCount     int
	wbuf         []byte

	// Read-side state, used only by the goroutine go-smtp reads from.
	buf         []byte
	r, w        int
	out         []byte // classified bytes not yet handed to go-smtp
	inject      []byte // synthetic input
	mode        readMode
	chunkLeft   int64
	dstate      int
	afterDATA   bool
	saslPending bool
	inBDAT      bool
	msgStart    time.Time
	msgBytes    int64  // octets read during the transfer that began at msgStart
	verb        string // verb of the last command handed over (metrics)
	dead        error  // a timeout during a transfer: the session is over
	deadReplied bool   // ... and its reply was written
	rawScan     rawScan
}

type readMode int

const (
	modeCommand readMode = iota
	modeData             // DATA content, up to and including the end marker
	modeChunk            // the octets of a BDAT chunk (RFC 3030 §2)
)

// errConnClosed wraps net.ErrClosed so that go-smtp ends the session
// quietly (it checks errors.Is(err, net.ErrClosed)).
var errConnClosed = fmt.Errorf("smtpd: connection closed by server: %w", net.ErrClosed)

func newGuardConn(s *Server, raw net.Conn, r role, implicitTLS bool) *guardConn {
	c := &guardConn{
		srv: s, raw: raw, tr: raw, role: r, implicitTLS: implicitTLS,
		id: newID(), start: time.Now(), greetedEpoch: -1,
		buf: make([]byte, readBufferSize),
	}
	c.log = s.log.With("conn", c.id, "role", c.roleLabel())
	return c
}

func (c *guardConn) roleLabel() string {
	if c.role == roleInbound {
		return "inbound"
	}
	if c.implicitTLS {
		return "submissions"
	}
	return "submission"
}

// ensureInit reads the PROXY header (through the listener's conn), applies
// the per-IP limit and does the implicit TLS handshake, once, on the
// connection's own goroutine (so the accept loop never blocks).
func (c *guardConn) ensureInit() error {
	c.initOnce.Do(func() { c.initErr = c.init() })
	return c.initErr
}

func (c *guardConn) init() error {
	peer := netutil.PeerOf(c.raw) // reads the PROXY header if required
	c.remote = peer.IP
	if netutil.HeaderFailed(c.raw) {
		// A trusted proxy's connection without a valid header: never fall
		// back to the proxy's own (perhaps loopback) address.
		connRejected.WithLabelValues("proxy_header").Inc()
		c.log.Warn("connection without a valid PROXY header from a trusted proxy", "proxy", peer.Proxy.String())
		c.closeTransport()
		return errConnClosed
	}
	c.log = c.log.With(peer.LogAttrs()...)
	if err := c.srv.limiter.Acquire(c.remote); err != nil {
		reason, text := "per_ip_limit", "Too many connections from your address, try again later"
		if errors.Is(err, netutil.ErrGlobalLimit) {
			reason, text = "global_limit", "Too many connections, try again later"
		}
		connRejected.WithLabelValues(reason).Inc()
		c.log.Warn("connection refused", "err", err)
		// On port 465 the refusal is sent inside TLS (RFC 8314 §3.3): a
		// client cannot read anything else.
		if !c.implicitTLS || c.handshake() == nil {
			// RFC 5321 §3.1: 421 instead of the greeting, then close.
			c.writeRaw("421 4.7.0 " + c.srv.cfg.Hostname + " " + text)
		}
		c.closeTransport()
		return errConnClosed
	}
	c.limited = true
	if c.implicitTLS {
		if err := c.handshake(); err != nil {
			return err
		}
	}
	c.log.Debug("connection opened")
	return nil
}

// handshake runs the server side of a TLS handshake on raw.
func (c *guardConn) handshake() error {
	tc := tls.Server(c.raw, c.srv.cfg.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		connRejected.WithLabelValues("tls_handshake").Inc()
		c.log.Info("TLS handshake failed", "err", err)
		c.closeTransport()
		return errConnClosed
	}
	st := tc.ConnectionState()
	c.mu.Lock()
	c.tr, c.tlsState = tc, &st
	c.epoch++
	c.mu.Unlock()
	c.log.Debug("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	return nil
}

// Read hands go-smtp the next classified bytes.
func (c *guardConn) Read(p []byte) (int, error) {
	if err := c.ensureInit(); err != nil {
		return 0, err
	}
	if c.deadReplied {
		// The reply to a timed-out transfer is out: end the session.
		c.closeTransport()
		return 0, errConnClosed
	}
	for {
		if len(c.inject) > 0 {
			n := copy(p, c.inject)
			c.inject = c.inject[n:]
			return n, nil
		}
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.afterDATA {
			// go-smtp reads message content only after it replied 354.
			c.afterDATA = false
			if c.takeLastReply() == 354 {
				c.mode, c.dstate, c.msgStart, c.msgBytes = modeData, dsBeginLine, time.Now(), 0
				c.verb = "MESSAGE"
				c.setRawErr(nil)
				c.rawScan = rawScan{}
			}
		}
		switch c.mode {
		case modeData:
			if c.r == c.w {
				if err := c.fillData(); err != nil {
					return 0, err
				}
				continue
			}
			n, end := scanDataEnd(&c.dstate, c.buf[c.r:c.w])
			if err := c.rawScan.scan(c.buf[c.r : c.r+n]); err != nil && c.rawErr() == nil {
				// Seen before go-smtp's dot-unstuffing, which can hide a
				// bare CR (".\r\r\n" comes out as "\r\n"); see session.Data.
				c.setRawErr(err)
			}
			c.out = c.buf[c.r : c.r+n]
			c.r += n
			if end {
				c.mode = modeCommand
			}
		case modeChunk:
			if c.chunkLeft == 0 {
				c.mode = modeCommand
				continue
			}
			if c.r == c.w {
				if err := c.fillData(); err != nil {
					return 0, err
				}
				continue
			}
			n := min(int64(c.w-c.r), c.chunkLeft)
			c.out = c.buf[c.r : c.r+int(n)]
			c.r += int(n)
			c.chunkLeft -= n
		default:
			if err := c.nextCommand(); err != nil {
				return 0, err
			}
		}
	}
}

// fillData reads message content; a timeout ends the session once the
// reply to the transfer has been written. Nothing of the message is
// stored: go-smtp's reader fails, so the session never delivers it.
func (c *guardConn) fillData() error {
	deadline, slow := c.dataDeadline()
	n, err := c.fillN(deadline)
	c.msgBytes += int64(n)
	if errors.Is(err, io.EOF) {
		// The client closed the connection (or half-closed it) before the
		// end of the DATA content or of the BDAT chunk it announced. A
		// plain io.EOF here would end go-smtp's BDAT io.Copy as if the
		// chunk were complete, and BDAT LAST would be delivered and
		// acknowledged (RFC 3030 §2: a chunk is exactly its size). This
		// error fails the transfer on every path; nothing is stored.
		c.log.Info("connection closed during message transfer")
		c.dead = errTransferCut
		return c.dead
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// An *smtp.SMTPError, so that go-smtp's BDAT path replies with
		// it instead of "554 ... read tcp ...: i/o timeout".
		if slow {
			c.log.Info("message transfer below the minimum rate", "octets", c.msgBytes,
				"elapsed", time.Since(c.msgStart).Round(time.Millisecond), "min_rate", c.srv.cfg.MinDataRate)
			c.dead = errTransferTooSlow
		} else {
			c.log.Info("timeout during message transfer")
			c.dead = errTransferTimeout
		}
		return c.dead
	}
	return err
}

var (
	errTransferTimeout = replyErr(421, 4, 4, 2, "Timeout while receiving the message, closing connection")
	errTransferTooSlow = replyErr(421, 4, 4, 2, "Message transfer too slow, closing connection")
)

// errTransferCut: the connection ended in the middle of a message transfer.
// An *smtp.SMTPError like errTransferTimeout, for the same reason; nobody
// is left to read the reply.
var errTransferCut = replyErr(451, 4, 4, 2, "Connection closed during the message transfer")

// dataDeadline is when the next read of message content must have
// returned: the earliest of DataTimeout of inactivity, MessageTimeout
// after the transfer began, and the minimum-rate deadline. The last gives
// the transfer DataTimeout of credit plus one second for every MinDataRate
// octets received (as Postfix's smtpd_min_data_rate extends its per-request
// deadline); slow reports that it is the one that applies.
func (c *guardConn) dataDeadline() (deadline time.Time, slow bool) {
	cfg := &c.srv.cfg
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

// fill reads more input into buf.
func (c *guardConn) fill(deadline time.Time) error {
	_, err := c.fillN(deadline)
	return err
}

// fillN is fill that also returns how many octets it read.
func (c *guardConn) fillN(deadline time.Time) (int, error) {
	if c.dead != nil {
		return 0, c.dead
	}
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	// About to wait for the client: send what is buffered (RFC 2920 §3.1).
	if err := c.flush(); err != nil {
		return 0, err
	}
	tr := c.transport()
	_ = tr.SetReadDeadline(deadline)
	n, err := tr.Read(c.buf[c.w:])
	c.w += n
	if c.isClosed() {
		return n, errConnClosed
	}
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = errors.New("smtpd: empty read")
	}
	return 0, err
}

// nextCommand classifies the next command line, reading until it is
// complete.
func (c *guardConn) nextCommand() error {
	for {
		pending := c.buf[c.r:c.w]
		limit := maxCommandLine
		if c.saslPending || hasPrefixFold(pending, "AUTH ") {
			limit = maxAuthLine
		}
		if i := bytes.IndexByte(pending, '\n'); i >= 0 {
			if i+1 > limit {
				return c.refuseLongLine()
			}
			line := pending[:i+1]
			c.r += i + 1
			return c.command(line)
		}
		// A CR not followed by LF can be refused without waiting for the
		// line to end.
		if j := bytes.IndexByte(pending, '\r'); j >= 0 && j+1 < len(pending) {
			return c.refuseBareNewline()
		}
		if len(pending) >= limit {
			return c.refuseLongLine()
		}
		idle := len(pending) == 0
		if idle && !c.setIdle(true) {
			// Shutdown is under way: tell the client (RFC 5321 §3.8).
			c.writeReply("421 4.3.2 " + c.srv.cfg.Hostname + " Service shutting down, try again later")
			c.closeTransport()
			return errConnClosed
		}
		err := c.fill(time.Now().Add(c.srv.cfg.CommandTimeout))
		if idle {
			c.setIdle(false)
		}
		if err != nil {
			return err
		}
	}
}

// command checks one command line (with its CRLF) and decides what go-smtp
// will do with the bytes that follow it.
func (c *guardConn) command(line []byte) error {
	if !validLine(line) {
		return c.refuseBareNewline()
	}
	text := line[:len(line)-2]
	prev := c.takeLastReply()
	if c.saslPending && prev == 334 {
		// A SASL response (RFC 4954 §4), never a command.
		c.trace("C: <SASL response>")
		c.out = line
		return nil
	}
	c.saslPending = false
	verb := commandVerb(text)
	c.verb = verb
	c.trace("C: " + maskCommand(verb, text))
	if c.srv.cfg.TLS != nil && hasPrefixFold(text, "STARTTLS") {
		c.verb = "STARTTLS"
		return c.startTLS(text)
	}
	if verb != "BDAT" {
		c.inBDAT = false
	}
	switch verb {
	case "DATA":
		c.afterDATA = true
	case "BDAT":
		if size, last, ok := bdatChunkSize(string(text)); ok {
			c.mode, c.chunkLeft = modeChunk, size
			if !c.inBDAT {
				c.msgStart, c.msgBytes = time.Now(), 0
				c.setRawErr(nil) // only DATA uses the raw check
			}
			c.inBDAT = !last
		}
	case "RCPT":
		line = rewriteBarePostmaster(line)
	case "AUTH":
		c.saslPending = true
	case "EHLO":
		c.setGreetPending(1)
	case "HELO":
		c.setGreetPending(2)
	}
	c.out = line
	return nil
}

// refuseLongLine ends the connection on an over-long command line (the
// rest of the line cannot be told from the next command).
func (c *guardConn) refuseLongLine() error {
	lineTooLong.Inc()
	c.writeReply("500 5.5.2 Line too long (RFC 5321 §4.5.3.1.4), closing connection")
	c.closeTransport()
	return errConnClosed
}

// refuseBareNewline ends the connection on a bare CR or LF in a command
// line: RFC 5321 §2.3.8 allows CR and LF only together as CRLF, and a
// server that guesses where such a line ends is open to SMTP smuggling
// (CVE-2023-51764 class).
func (c *guardConn) refuseBareNewline() error {
	bareNewline.WithLabelValues("command").Inc()
	c.log.Info("bare CR or LF in a command line; closing")
	c.writeReply("500 5.5.2 Bare CR or LF in command line (RFC 5321 §2.3.8), closing connection")
	c.closeTransport()
	return errConnClosed
}

// startTLS answers STARTTLS (RFC 3207 §4) and switches to TLS.
func (c *guardConn) startTLS(text []byte) error {
	switch {
	case len(text) != len("STARTTLS"):
		c.writeReply("501 5.5.4 Syntax error: STARTTLS takes no parameters (RFC 3207 §4)")
		return nil
	case c.TLS() != nil:
		c.writeReply("503 5.5.1 TLS already active")
		return nil
	case c.isAuthenticated():
		c.writeReply("503 5.5.1 STARTTLS not permitted after AUTH")
		return nil
	}
	c.writeReply("220 2.0.0 Ready to start TLS")
	if err := c.flush(); err != nil {
		c.closeTransport()
		return errConnClosed
	}
	// RFC 3207 §4.2: nothing the client sent before TLS is in place may
	// be acted on afterwards (CVE-2011-0411).
	if n := c.w - c.r; n > 0 {
		discardedPlaintext.Add(float64(n))
		c.log.Info("discarded plaintext pipelined after STARTTLS", "bytes", n)
	}
	c.r, c.w = 0, 0
	if err := c.handshake(); err != nil {
		return err
	}
	// "discard any knowledge obtained from the client" (RFC 3207 §4.2):
	// reset go-smtp's transaction as if by RSET, and swallow its reply.
	// EHLO is required again (see session.Mail).
	c.inject = []byte("RSET\r\n")
	c.wmu.Lock()
	c.swallow++
	c.wmu.Unlock()
	return nil
}

func (c *guardConn) transport() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tr
}

func (c *guardConn) takeLastReply() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.lastReply
	c.lastReply = 0
	return r
}

func (c *guardConn) setRawErr(err error) {
	c.mu.Lock()
	c.rawDataErr = err
	c.mu.Unlock()
}

func (c *guardConn) rawErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rawDataErr
}

// takeRawErr returns and clears the raw DATA check's result.
func (c *guardConn) takeRawErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.rawDataErr
	c.rawDataErr = nil
	return err
}

func (c *guardConn) setGreetPending(v int) {
	c.wmu.Lock()
	c.greetPending = v
	c.wmu.Unlock()
}

// setIdle marks the connection as waiting for a command; false if
// Shutdown asked it to close.
func (c *guardConn) setIdle(v bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v && c.closing {
		return false
	}
	c.idle = v
	return true
}

func (c *guardConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// TLS returns the TLS state, nil without TLS.
func (c *guardConn) TLS() *tls.ConnectionState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tlsState
}

// greetedSinceTLS reports whether EHLO/HELO succeeded since the last TLS
// change (RFC 3207 §4.2).
func (c *guardConn) greetedSinceTLS() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.greetedEpoch == c.epoch
}

// lastGreetEHLO reports whether the last successful greeting was EHLO.
func (c *guardConn) lastGreetEHLO() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.greetEHLO
}

func (c *guardConn) setAuthenticated() {
	c.mu.Lock()
	c.authenticated = true
	c.mu.Unlock()
}

func (c *guardConn) isAuthenticated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authenticated
}

// Close is called by go-smtp when the session ends.
func (c *guardConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeTransport()
		if c.limited {
			c.srv.limiter.Release(c.remote)
		}
		c.srv.removeConn(c)
		c.log.Debug("connection closed", "duration", time.Since(c.start).Round(time.Millisecond))
	})
	return nil
}

func (c *guardConn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *guardConn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Deadlines are managed by guardConn itself; go-smtp's are ignored.
func (c *guardConn) SetDeadline(time.Time) error      { return nil }
func (c *guardConn) SetReadDeadline(time.Time) error  { return nil }
func (c *guardConn) SetWriteDeadline(time.Time) error { return nil }
