// Package smtpd is Postrider's SMTP server: inbound mail exchange (port 25,
// RFC 5321) and authenticated message submission (587 with STARTTLS and 465
// with implicit TLS, RFC 6409, RFC 8314). Accepted mail goes straight into
// the mail store, in one transaction per message, and is acknowledged only
// after that transaction committed.
//
// The protocol engine is github.com/emersion/go-smtp. What it gets wrong
// or leaves out for a hostile Internet is handled here: the line discipline
// and STARTTLS (conn.go), message data checks and spooling (data.go,
// scan.go), address and relay rules (address.go), and reply codes that
// survive error wrapping (replies.go).
package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"

	smtp "github.com/emersion/go-smtp"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/netutil"
	"github.com/postrider/postrider/mailstore"
)

// LevelTrace is the slog level of the protocol trace (commands and replies,
// with AUTH data masked; message content is never logged).
const LevelTrace = slog.Level(-8)

// ErrServerClosed is returned by the Serve methods after Shutdown. It wraps
// net.ErrClosed.
var ErrServerClosed = fmt.Errorf("smtpd: server closed: %w", net.ErrClosed)

type role int

const (
	roleInbound role = iota
	roleSubmission
)

// Server serves SMTP on any number of listeners.
type Server struct {
	cfg     Config
	store   mailstore.Store
	authn   *auth.Authenticator
	log     *slog.Logger
	limiter *netutil.ConnLimiter
	engine  *smtp.Server
	rcache  resolveCache

	// ctx is the parent of every store call; cancelled when Shutdown's
	// context ends.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*guardConn]struct{}
	shutdown  bool
	connWG    sync.WaitGroup
}

// New builds a server. authn may be nil only if no submission listener is
// served (AUTH is then never offered).
func New(cfg Config, store mailstore.Store, authn *auth.Authenticator) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("smtpd: nil store")
	}
	s := &Server{
		cfg: cfg, store: store, authn: authn, log: cfg.Logger,
		limiter:   netutil.NewConnLimiter(cfg.MaxConnsPerIP, cfg.MaxConns),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*guardConn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	e := smtp.NewServer(smtp.BackendFunc(s.newSession))
	e.Domain = cfg.Hostname
	e.MaxMessageBytes = cfg.MaxMessageSize
	e.MaxRecipients = cfg.MaxRecipients
	// Line length, timeouts and TLS are guardConn's business: go-smtp's
	// line limit would also apply inside DATA, and its single read deadline
	// would cut off slow uploads. TLSConfig stays nil: go-smtp must never
	// see TLS, or it would read past guardConn's line discipline.
	e.MaxLineLength = 0
	e.ReadTimeout, e.WriteTimeout = 0, 0
	// Whether AUTH is offered is decided per session (session.AuthMechanisms
	// and session.Auth) since go-smtp cannot see TLS.
	e.AllowInsecureAuth = true
	e.EnableSMTPUTF8 = true // RFC 6531
	e.EnableDSN = true      // RFC 3461: parameters are kept with the delivery
	e.ErrorLog = log.New(slogWriter{cfg.Logger}, "", 0)
	s.engine = e
	return s, nil
}

// ServeInbound serves the mail exchanger role (port 25): no AUTH, RCPT only
// for local recipients. It returns ErrServerClosed after Shutdown.
func (s *Server) ServeInbound(ln net.Listener) error {
	return s.serve(ln, roleInbound, false)
}

// ServeSubmission serves message submission: STARTTLS on 587
// (implicitTLS false) or TLS from the first byte on 465 (RFC 8314 §3.3).
// It returns ErrServerClosed after Shutdown.
func (s *Server) ServeSubmission(ln net.Listener, implicitTLS bool) error {
	if implicitTLS && s.cfg.TLS == nil {
		return errors.New("smtpd: implicit TLS needs a TLS configuration")
	}
	if s.authn == nil {
		return errors.New("smtpd: submission needs an authenticator")
	}
	return s.serve(ln, roleSubmission, implicitTLS)
}

func (s *Server) serve(ln net.Listener, r role, implicitTLS bool) error {
	gl := &guardListener{Listener: netutil.ProxyListener(ln, s.cfg.TrustedProxies), srv: s, role: r, implicitTLS: implicitTLS}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[gl] = struct{}{}
	s.mu.Unlock()
	err := s.engine.Serve(gl)
	s.mu.Lock()
	delete(s.listeners, gl)
	down := s.shutdown
	s.mu.Unlock()
	if down {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting connections, sends 421 to clients waiting for a
// command (RFC 5321 §3.8) and lets transfers and deliveries in progress
// finish (their connections close at the next command) until ctx is done;
// then it closes every connection and cancels store calls.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*guardConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		go c.beginShutdown()
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for c := range s.conns {
			c.closeTransport()
		}
		s.mu.Unlock()
	}
	s.cancel()
	if cerr := s.engine.Close(); cerr != nil && !errors.Is(cerr, smtp.ErrServerClosed) && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	return err
}

func (s *Server) addConn(c *guardConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	return true
}

func (s *Server) removeConn(c *guardConn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok {
		connsActive.WithLabelValues(c.roleLabel()).Dec()
		s.connWG.Done()
	}
}

// newSession is go-smtp's backend: called at the first EHLO/HELO.
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	gc, ok := c.Conn().(*guardConn)
	if !ok {
		return nil, errors.New("smtpd: unexpected connection type")
	}
	return &session{srv: s, gc: gc, conn: c, log: gc.log}, nil
}

// guardListener wraps accepted connections in guardConns.
type guardListener struct {
	net.Listener
	srv         *Server
	role        role
	implicitTLS bool
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := newGuardConn(l.srv, raw, l.role, l.implicitTLS)
		if !l.srv.addConn(c) {
			raw.Close()
			continue
		}
		connsTotal.WithLabelValues(c.roleLabel()).Inc()
		connsActive.WithLabelValues(c.roleLabel()).Inc()
		return c, nil
	}
}

// slogWriter adapts go-smtp's error log to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("smtp engine", "detail", strings.TrimSpace(string(p)))
	return len(p), nil
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a random 16-character identifier (connections, messages).
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
