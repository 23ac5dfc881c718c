// Package frontend is what the SMTP, IMAP and POP3 servers share: the
// accept loop with PROXY protocol and connection limits, implicit TLS, the
// registry of open connections with its two-stage shutdown, a context per
// connection, one log vocabulary and the common metrics. A frontend is its
// protocol and nothing else: it implements Handler.
//
// Log keys (every frontend): conn (connection id), proto, remote (client
// address, "unknown" behind a PROXY UNKNOWN), proxy (the load balancer,
// when there is one), user, err. The protocol trace is at LevelTrace.
package frontend

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/internal/netutil"
)

// LevelTrace is the slog level of protocol traces (POSTRIDER_LOG_LEVEL=
// trace): command and reply lines, credentials masked, never message
// contents.
const LevelTrace = slog.Level(-8)

// TLSHandshakeTimeout bounds an implicit-TLS handshake.
const TLSHandshakeTimeout = 30 * time.Second

// refuseWriteTimeout bounds the write of a refusal.
const refuseWriteTimeout = 5 * time.Second

// Config is the configuration every frontend embeds.
type Config struct {
	// Hostname names the server in greetings.
	Hostname string
	// TLS enables STARTTLS/STLS and implicit-TLS listeners; nil disables.
	TLS *tls.Config
	// TrustedProxies are the networks whose connections must start with a
	// PROXY protocol (v1/v2) header.
	TrustedProxies []netip.Prefix
	// AllowInsecureAuth allows plaintext authentication without TLS from
	// clients other than loopback ones.
	AllowInsecureAuth bool
	// MaxConnsPerIP limits the open connections of one client address
	// (IPv6 per /64); MaxConns all of the server's. 0 means no limit.
	MaxConnsPerIP int
	MaxConns      int
	// Logger receives the logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics receives the common metrics (and the frontend's own); nil
	// keeps them unregistered.
	Metrics prometheus.Registerer
}

// Refusal says why a connection is refused before its greeting.
type Refusal int

const (
	RefusePerIP    Refusal = iota // the client's address has too many connections
	RefuseTotal                   // the server has too many connections
	RefuseShutdown                // the server is shutting down
)

func (r Refusal) String() string {
	switch r {
	case RefusePerIP:
		return "per_ip_limit"
	case RefuseTotal:
		return "limit"
	}
	return "shutdown"
}

// Handler is a protocol.
type Handler interface {
	// ServeConn runs one connection until it ends. The kit closes the
	// connection afterwards and releases its limits.
	ServeConn(c *Conn)
	// RefusalLine is the protocol's temporary refusal, written instead of
	// the greeting (with its line ending), e.g. "421 4.7.0 ...\r\n".
	RefusalLine(why Refusal) string
}

// Conn is one accepted connection as the kit hands it to a Handler.
type Conn struct {
	// ID names the connection in logs.
	ID string
	// Net is the connection to use: Raw, or the TLS connection over it on
	// an implicit-TLS listener.
	Net net.Conn
	// Raw is the accepted connection; closing it ends every read and write.
	Raw net.Conn
	// Peer is the client (its IP invalid when a PROXY header said UNKNOWN).
	Peer netutil.Peer
	// ImplicitTLS: the listener's connections start with TLS.
	ImplicitTLS bool
	// Role is the listener's role as given to ServeRole ("" from Serve):
	// one Server, and so one set of limits, can serve a protocol's
	// listeners of different roles (SMTP inbound and submission).
	Role string
	// Ctx ends when the connection ends and when the server's shutdown
	// runs out of time: every store call of the connection uses it.
	Ctx context.Context
	// Log carries conn, proto, remote (and proxy).
	Log *slog.Logger

	srv       *Server
	cancel    context.CancelFunc
	mu        sync.Mutex
	interrupt func()
	closing   bool
	open      prometheus.Gauge // where this connection counts in postrider_connections_open
}

// TLSStarted tells the kit that STARTTLS (or STLS) succeeded: the
// connection now counts as a TLS one among the open connections.
func (c *Conn) TLSStarted() {
	m := c.srv.metrics
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == m.openPlain {
		m.openPlain.Dec()
		m.openTLS.Inc()
		c.open = m.openTLS
	}
}

// OnShutdown registers what the first stage of Shutdown does to this
// connection: typically, tell a client waiting for a command that the
// server is going away, or mark the session to end after its command. It
// runs at once if the shutdown has already begun.
func (c *Conn) OnShutdown(f func()) {
	c.mu.Lock()
	c.interrupt = f
	closing := c.closing
	c.mu.Unlock()
	if closing && f != nil {
		f()
	}
}

// Closing reports whether the server is shutting down.
func (c *Conn) Closing() bool { return c.srv.closing.Load() }

// Config returns the server's configuration.
func (c *Conn) Config() *Config { return &c.srv.cfg }

// PlaintextAuthOK applies the insecure-auth rule: plaintext credentials
// are accepted over TLS, from loopback clients (an unknown client behind
// a proxy is not one), or everywhere with AllowInsecureAuth.
func (c *Conn) PlaintextAuthOK(tlsActive bool) bool {
	return tlsActive || c.srv.cfg.AllowInsecureAuth || c.Peer.IP.IsLoopback()
}

// Metrics are the frontend's common metrics.
func (c *Conn) Metrics() *Metrics { return c.srv.metrics }

// Server accepts connections for one protocol on any number of listeners.
type Server struct {
	proto   string
	cfg     Config
	h       Handler
	log     *slog.Logger
	limiter *netutil.ConnLimiter
	metrics *Metrics
	idBase  string
	nextID  atomic.Uint64

	ctx    context.Context // parent of every connection's; cancelled at the end of Shutdown
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   atomic.Bool
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{}
	wg        sync.WaitGroup
}

// ErrServerClosed is returned by Serve after Shutdown. It wraps
// net.ErrClosed: for the caller, a normal end.
var ErrServerClosed = fmt.Errorf("server closed: %w", net.ErrClosed)

// NewServer makes the server of one protocol ("smtp", "imap", "pop3": the
// proto label of logs and metrics).
func NewServer(proto string, cfg Config, h Handler) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConnsPerIP < 0 || cfg.MaxConns < 0 {
		return nil, errors.New("frontend: negative connection limit")
	}
	m, err := metricsFor(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	s := &Server{
		proto: proto, cfg: cfg, h: h,
		log:       cfg.Logger.With("proto", proto),
		limiter:   netutil.NewConnLimiter(cfg.MaxConnsPerIP, cfg.MaxConns),
		metrics:   m.forProto(proto),
		idBase:    proto[:1] + hex.EncodeToString(rnd[:]),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*Conn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Log is the server's logger (with proto).
func (s *Server) Log() *slog.Logger { return s.log }

// Metrics are the server's common metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Context is the server's: it ends when Shutdown has finished or run out
// of time.
func (s *Server) Context() context.Context { return s.ctx }

// Serve accepts connections on ln until Shutdown; it then returns
// ErrServerClosed. With implicitTLS every connection starts with a TLS
// handshake (RFC 8314).
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	return s.ServeRole(ln, implicitTLS, "")
}

// ServeRole is Serve for a listener with a role: every connection accepted
// on ln carries it in Conn.Role and in its logs ("role").
func (s *Server) ServeRole(ln net.Listener, implicitTLS bool, role string) error {
	if implicitTLS && s.cfg.TLS == nil {
		return fmt.Errorf("%s: an implicit-TLS listener needs a TLS configuration", s.proto)
	}
	ln = netutil.ProxyListener(ln, s.cfg.TrustedProxies)
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Transient (out of file descriptors, an aborted connection):
			// back off and go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.wg.Add(1) // under mu: never after Shutdown started waiting
		s.mu.Unlock()
		go s.handle(nc, implicitTLS, role)
	}
}

// handle runs on the connection's own goroutine, so that a slow PROXY
// header or TLS handshake never holds up the accept loop.
func (s *Server) handle(nc net.Conn, implicitTLS bool, role string) {
	defer s.wg.Done()
	id := fmt.Sprintf("%s-%d", s.idBase, s.nextID.Add(1))
	peer := netutil.PeerOf(nc) // reads a trusted proxy's header (bounded)
	log := s.log.With("conn", id).With(peer.LogAttrs()...)
	if role != "" {
		log = log.With("role", role)
	}
	tlsLabel := "no"
	if implicitTLS {
		tlsLabel = "yes"
	}
	if netutil.HeaderFailed(nc) {
		s.metrics.refused.WithLabelValues("proxy_header").Inc()
		log.Warn("connection without a valid PROXY header from a trusted proxy")
		nc.Close()
		return
	}
	if err := s.limiter.Acquire(peer.IP); err != nil {
		why := RefusePerIP
		if errors.Is(err, netutil.ErrGlobalLimit) {
			why = RefuseTotal
		}
		s.metrics.refused.WithLabelValues(why.String()).Inc()
		log.Warn("connection refused", "err", err)
		s.refuse(nc, implicitTLS, why)
		return
	}
	defer s.limiter.Release(peer.IP)
	conn := nc
	if implicitTLS {
		tc, err := s.handshake(nc)
		if err != nil {
			s.metrics.refused.WithLabelValues("tls_handshake").Inc()
			log.Debug("TLS handshake failed", "err", err)
			nc.Close()
			return
		}
		conn = tc
	}
	c := &Conn{ID: id, Net: conn, Raw: nc, Peer: peer, ImplicitTLS: implicitTLS, Role: role, Log: log, srv: s, open: s.metrics.openPlain}
	if implicitTLS {
		c.open = s.metrics.openTLS
	}
	c.Ctx, c.cancel = context.WithCancel(s.ctx)
	defer c.cancel()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		s.writeRefusal(conn, RefuseShutdown)
		conn.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.metrics.connections.WithLabelValues(tlsLabel).Inc()
	c.open.Inc()
	log.Debug("connected", "tls", implicitTLS)
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.mu.Lock()
		open := c.open
		c.mu.Unlock()
		open.Dec()
		conn.Close()
		log.Debug("disconnected")
	}()
	s.h.ServeConn(c)
}

func (s *Server) handshake(nc net.Conn) (*tls.Conn, error) {
	tc := tls.Server(nc, s.cfg.TLS)
	ctx, cancel := context.WithTimeout(s.ctx, TLSHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// refuse tells a connection it cannot be served now and closes it. On an
// implicit-TLS listener the refusal goes inside TLS, where the client can
// read it.
func (s *Server) refuse(nc net.Conn, implicitTLS bool, why Refusal) {
	defer nc.Close()
	conn := nc
	if implicitTLS {
		tc, err := s.handshake(nc)
		if err != nil {
			return
		}
		conn = tc
	}
	s.writeRefusal(conn, why)
}

func (s *Server) writeRefusal(conn net.Conn, why Refusal) {
	_ = conn.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = conn.Write([]byte(s.h.RefusalLine(why)))
}

// Shutdown is the two-stage stop: it closes the listeners and runs every
// connection's OnShutdown function (the protocol tells waiting clients
// and lets commands in progress finish), then waits for the connections
// to end. If ctx ends first, the remaining connections are closed and
// their contexts (store calls) cancelled; ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		c.closing = true
		f := c.interrupt
		c.mu.Unlock()
		if f != nil {
			f()
		}
	}
	return netutil.Drain(ctx, &s.wg, s.cancel, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			c.Raw.Close()
		}
	})
}

// OpenConns is the number of connections being served.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// DetachedConn returns a Conn over nc that the server does not track (no
// limits, no registry, no shutdown): for harnesses, such as fuzz targets,
// that drive a Handler's session code without a listener.
func (s *Server) DetachedConn(nc net.Conn) *Conn {
	c := &Conn{ID: s.idBase + "-detached", Net: nc, Raw: nc, Peer: netutil.PeerOf(nc), Log: s.log, srv: s}
	c.Ctx, c.cancel = context.WithCancel(s.ctx)
	return c
}
