package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailstore"
)

// connState is the IMAP connection state (RFC 9051 §3); the values are bits
// so that the command table can name sets of states.
type connState uint8

const (
	stateNotAuth connState = 1 << iota
	stateAuth
	stateSelected
	stateLogout
)

// readBufSize is the size of a connection's input buffer, kept small
// because every idle connection holds one. Longer command lines are
// assembled in the parser's line buffer (dropped again after the command),
// and large literals are read past the buffer straight into the reader's
// destination.
const readBufSize = 1024

// conn is one client connection.
type conn struct {
	srv *Server
	fc  *frontend.Conn
	// ctx is the connection's lifetime: every store call of the session
	// runs under it, so the queries of a connection that ended (or of a
	// server shutting down) are cancelled.
	ctx         context.Context
	cancel      context.CancelFunc
	id          string
	log         *slog.Logger
	raw         net.Conn // the accepted connection; never changes
	nc          net.Conn // raw, or the TLS connection over it (guarded by mu)
	implicitTLS bool
	tlsOn       bool
	remote      netip.Addr

	br *bufio.Reader
	w  respWriter
	p  parser

	state        connState
	acct         mailstore.Account
	acctSlot     bool
	authFailures int
	bad          int // consecutive BAD replies

	// Extensions enabled by ENABLE or implicitly (RFC 5161, RFC 7162 §3.1).
	rev2, condstore, qresync, utf8 bool

	sel *selected // the selected mailbox in stateSelected

	cmdDeadline time.Time // before login: when the current command must be in

	mu          sync.Mutex
	waiting     bool // blocked reading the start of a command
	interrupted bool // Shutdown asked the connection to end
	woken       bool // IDLE's waker saw a change notification

	// onWake, when set (IDLE on a compressed connection, compress.go),
	// handles a wake-up within the read instead of failing it with
	// errWoken. Used only by the connection's goroutine.
	onWake func() error
}

// cmdCtx is the context of one command being executed.
type cmdCtx struct {
	tag    string
	name   string // upper case, without "UID"
	uid    bool   // the UID form of the command
	okCode string // response code of the tagged OK
	okText string // text of the tagged OK; default "<name> completed"
	// refresh makes the session catch up with the store before the tagged
	// response even when no notification arrived (NOOP, CHECK, own writes).
	refresh bool
	start   time.Time
}

var errInterrupted = errors.New("imapd: interrupted by shutdown")

// pastDeadline makes a blocked read return at once.
var pastDeadline = time.Unix(1, 0)

// connReader reads from the connection with the deadline of the current
// state: a fixed one per command before login, an inactivity timeout after.
type connReader struct{ c *conn }

func (r connReader) Read(b []byte) (int, error) {
	c := r.c
	for {
		c.mu.Lock()
		if c.interrupted && c.waiting {
			c.mu.Unlock()
			return 0, errInterrupted
		}
		if c.woken {
			if c.onWake == nil {
				c.mu.Unlock()
				return 0, errWoken
			}
			c.woken = false
			c.mu.Unlock()
			if err := c.onWake(); err != nil {
				return 0, err
			}
			continue
		}
		dl := c.cmdDeadline
		if c.state != stateNotAuth {
			dl = time.Now().Add(c.srv.limits.IdleTimeout)
		}
		nc := c.nc
		_ = nc.SetReadDeadline(dl)
		c.mu.Unlock()
		n, err := nc.Read(b)
		if n == 0 && c.onWake != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.isWoken() {
			continue // the waker cut the read short: handle the wake-up
		}
		return n, err
	}
}

func (c *conn) isWoken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.woken
}

// connWriter writes to the connection with a per-write deadline.
type connWriter struct{ c *conn }

func (w connWriter) Write(b []byte) (int, error) {
	w.c.mu.Lock()
	nc := w.c.nc
	w.c.mu.Unlock()
	_ = nc.SetWriteDeadline(time.Now().Add(w.c.srv.limits.WriteTimeout))
	return nc.Write(b)
}

func (c *conn) init() {
	c.br = bufio.NewReaderSize(connReader{c}, readBufSize)
	c.w.dst = connWriter{c}
	c.p.c = c
}

// interrupt is called by Shutdown: a connection waiting for a command is
// woken at once; one executing a command notices when it next waits.
func (c *conn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.interrupted = true
	if c.waiting {
		_ = c.raw.SetReadDeadline(pastDeadline)
	}
}

func (c *conn) setWaiting(w bool) {
	c.mu.Lock()
	c.waiting = w
	c.mu.Unlock()
}

func (c *conn) isInterrupted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interrupted
}

// serve runs the connection until logout, error or shutdown.
func (c *conn) serve() {
	defer c.cleanup()
	c.w.str("* OK [CAPABILITY ")
	c.w.str(c.capabilities())
	c.w.str("] ")
	c.w.str(c.srv.cfg.Hostname)
	c.w.str(" Postrider IMAP ready\r\n")
	for c.state != stateLogout {
		if err := c.serveCommand(); err != nil {
			c.log.Debug("connection ending", "err", err, "write_err", c.w.err)
			break
		}
	}
}

func (c *conn) cleanup() {
	_ = c.w.release()
	c.unselect()
	if c.acctSlot {
		c.srv.releaseAccount(c.acct.ID)
	}
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	nc.Close()
	c.cancel()
}

// handshake runs the server side of a TLS handshake on the raw connection.
func (c *conn) handshake() error {
	tc := tls.Server(c.raw, c.srv.cfg.TLS)
	_ = c.raw.SetDeadline(time.Now().Add(c.srv.limits.PreAuthTimeout))
	err := tc.HandshakeContext(c.ctx)
	_ = c.raw.SetDeadline(time.Time{})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nc = tc
	c.tlsOn = true
	c.mu.Unlock()
	c.fc.TLSStarted()
	return nil
}

// serveCommand reads and executes one command. A non-nil error ends the
// connection.
func (c *conn) serveCommand() error {
	if c.br.Buffered() == 0 {
		// Nothing pipelined: send what is buffered before waiting.
		if err := c.w.release(); err != nil {
			return errClosed
		}
	}
	if c.state == stateNotAuth {
		c.cmdDeadline = time.Now().Add(c.srv.limits.PreAuthTimeout)
	}
	c.setWaiting(true)
	err := c.p.begin()
	c.setWaiting(false)
	if err != nil {
		return c.readFailed(err)
	}
	if c.isInterrupted() {
		return c.bye(codeUnavailable, "Server shutting down")
	}
	tag, err := c.p.tag()
	if err == nil && !c.p.accept(' ') {
		err = errBad("Missing command")
	}
	if err != nil {
		// Not even "tag SP": not an IMAP client, or a broken one.
		if c.state == stateNotAuth {
			return c.bye("", "Invalid command; closing")
		}
		return c.complete(&cmdCtx{tag: "*"}, err)
	}
	cx := &cmdCtx{tag: tag, start: time.Now()}
	cx.name, err = c.p.atom()
	cx.name = strings.ToUpper(cx.name)
	if err == nil && cx.name == "UID" {
		if err = c.p.sp(); err == nil {
			cx.name, err = c.p.atom()
			cx.name = strings.ToUpper(cx.name)
			cx.uid = true
		}
	}
	if err != nil {
		return c.complete(cx, errBad("Invalid command"))
	}
	cmd := commands[cx.name]
	switch {
	case cmd == nil || (cx.uid && !cmd.uid):
		err = errBad("Unknown command")
	case cmd.states&c.state == 0:
		err = c.stateError(cmd)
	default:
		c.traceCommand(cx)
		c.log.Debug("command", "tag", tag, "cmd", cx.name, "uid", cx.uid)
		err = cmd.run(c, cx)
	}
	return c.complete(cx, err)
}

func (c *conn) stateError(cmd *command) error {
	switch {
	case c.state == stateNotAuth:
		return errBad("Log in first")
	case cmd.states == stateNotAuth:
		return errBad("Already logged in")
	case cmd.states == stateSelected:
		return errBad("No mailbox selected")
	}
	return errBad("Command not allowed in this state")
}

// readFailed handles a failure to read the start of a command.
func (c *conn) readFailed(err error) error {
	var pe *protoError
	if errors.As(err, &pe) {
		return c.bye(pe.code, pe.text)
	}
	if pe := inflateError(err); pe != nil {
		c.log.Debug("bad compressed input", "err", err)
		return c.bye(pe.code, pe.text)
	}
	switch {
	case errors.Is(err, errInterrupted) || c.isInterrupted():
		return c.bye(codeUnavailable, "Server shutting down")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return c.bye("", "Autologout; idle for too long")
	}
	c.log.Debug("read failed", "err", err)
	return errClosed
}

// complete turns the outcome of a command into its tagged response: the one
// place where protocol errors become NO/BAD/BYE and internal errors are
// logged and hidden (RFC 9051 §7.1).
func (c *conn) complete(cx *cmdCtx, err error) error {
	var pe *protoError
	if err != nil {
		if errors.Is(err, errAnswered) {
			c.observe(cx, statusOK, cx.start)
			return nil
		}
		var fe *fatalError
		if errors.As(err, &fe) {
			if pe := storeError(fe.err); pe == nil || pe.status != statusBYE {
				c.log.Error("response failed; closing", "cmd", cx.name, "err", fe.err)
			}
			return errClosed
		}
		var ioe *ioError
		if errors.As(err, &ioe) {
			return c.readFailed(ioe.err)
		}
		if errors.Is(err, errClosed) || c.w.err != nil {
			return errClosed
		}
		if pe = storeError(err); pe == nil {
			c.log.Error("command failed", "cmd", cx.name, "err", err)
			pe = errInternal.(*protoError)
		}
		if pe.status != statusBYE {
			if derr := c.p.discard(); derr != nil {
				if errors.As(derr, &ioe) {
					return errClosed
				}
				pe = storeError(derr)
			}
		}
		if pe.status == statusBYE {
			c.observe(cx, statusBYE, cx.start)
			return c.bye(pe.code, pe.text)
		}
	}
	defer func() {
		status := statusOK
		if pe != nil {
			status = pe.status
		}
		c.observe(cx, status, cx.start)
		c.traceReply(cx, pe)
	}()
	if c.state == stateSelected && (pe == nil || pe.status == statusNO) {
		if uerr := c.sendUpdates(cx); uerr != nil {
			if e := storeError(uerr); e != nil && e.status == statusBYE {
				return c.bye(e.code, e.text)
			}
			if errors.Is(uerr, mailstore.ErrNoSuchMailbox) {
				return c.bye(codeNonexistent, "Selected mailbox was deleted; closing")
			}
			c.log.Error("catching up with changes failed", "err", uerr)
		}
	}
	c.w.str(cx.tag)
	if pe == nil {
		c.w.str(" OK ")
		if cx.okCode != "" {
			c.w.str("[" + cx.okCode + "] ")
		}
		if cx.okText == "" {
			cx.okText = cx.name + " completed"
			if cx.uid {
				cx.okText = "UID " + cx.okText
			}
		}
		c.w.str(cx.okText)
		c.w.crlf()
		c.bad = 0
	} else {
		c.w.sp()
		c.w.str(pe.status)
		c.w.sp()
		if pe.code != "" {
			c.w.str("[" + pe.code + "] ")
		}
		c.w.str(pe.text)
		c.w.crlf()
		if pe.status == statusBAD {
			c.bad++
			limit := c.srv.limits.MaxErrors
			if c.state == stateNotAuth {
				limit = c.srv.limits.MaxErrorsPreAuth
			}
			if c.bad >= limit {
				return c.bye("", "Too many invalid commands")
			}
		}
	}
	if c.w.err != nil {
		return errClosed
	}
	return nil
}

// bye sends an untagged BYE and ends the connection (RFC 9051 §7.1.5).
func (c *conn) bye(code, text string) error {
	c.w.str("* BYE ")
	if code != "" {
		c.w.str("[" + code + "] ")
	}
	c.w.str(text)
	c.w.crlf()
	_ = c.w.flush()
	c.state = stateLogout
	return errClosed
}

// continueReq sends a command continuation request and flushes.
func (c *conn) continueReq(text string) error {
	c.w.str("+ ")
	c.w.str(text)
	c.w.crlf()
	if err := c.w.flush(); err != nil {
		return errClosed
	}
	return nil
}

// ok writes an untagged OK with a response code.
func (c *conn) untaggedOK(code, text string) {
	c.w.str("* OK [")
	c.w.str(code)
	c.w.str("] ")
	c.w.str(text)
	c.w.crlf()
}

// utf8Names reports whether mailbox names are exchanged as UTF-8 rather
// than modified UTF-7 (RFC 9051 §5.1, RFC 6855 §3).
func (c *conn) utf8Names() bool { return c.rev2 || c.utf8 }

// login moves to the authenticated state.
func (c *conn) login(acct mailstore.Account) error {
	if !c.srv.acquireAccount(acct.ID) {
		c.log.Warn("too many connections for account", "account", acct.ID)
		c.fc.Metrics().Auth("limit")
		return errNo(codeLimit, "Too many connections for this account")
	}
	acct.PasswordHash = "" // not needed, and not to be kept in memory
	c.acct, c.acctSlot, c.state = acct, true, stateAuth
	c.log = c.log.With("account", acct.ID)
	c.log.Info("logged in", "tls", c.tlsOn)
	c.fc.Metrics().Auth("ok")
	return nil
}
