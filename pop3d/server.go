package pop3d

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
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/netutil"
	"github.com/postrider/postrider/mailstore"
)

// Limits and defaults, all in one place.
const (
	// MaxLineLength bounds a command line including its CRLF (RFC 2449 §4).
	MaxLineLength = 255
	// MaxSASLLineLength bounds a client's SASL response line (RFC 5034 §4:
	// base64 of at most auth.MaxSASLResponse octets, plus CRLF).
	MaxSASLLineLength = (auth.MaxSASLResponse+2)/3*4 + 2
	// MaxSASLSteps bounds the challenges of one AUTH exchange.
	MaxSASLSteps = 8
	// MaxAuthFailures is the number of failed logins after which the
	// connection is closed (the auth module throttles across connections).
	MaxAuthFailures = 3

	DefaultMaxErrors       = 10
	DefaultMaxConnsPerIP   = 20
	DefaultLockTTL         = 30 * time.Second
	DefaultPreLoginTimeout = 60 * time.Second
	// DefaultIdleTimeout is RFC 1939 §3's minimum autologout timer.
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultWriteTimeout = 2 * time.Minute
	tlsHandshakeTimeout = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown; it wraps
// net.ErrClosed like the other frontends' (a normal end for the caller).
var ErrServerClosed = fmt.Errorf("pop3d: server closed: %w", net.ErrClosed)

// Config configures a Server. Zero values select the defaults above.
type Config struct {
	// Hostname is used in the greeting.
	Hostname string
	// TLS enables STLS (RFC 2595 §4) and implicit-TLS listeners.
	TLS *tls.Config
	// TrustedProxies are the networks whose connections must start with a
	// PROXY protocol header.
	TrustedProxies []netip.Prefix
	// AllowInsecureAuth allows USER/PASS and SASL PLAIN/LOGIN without TLS
	// from non-loopback clients.
	AllowInsecureAuth bool
	// MaxConnsPerIP limits concurrent connections per client address (IPv6
	// per /64); 0 means DefaultMaxConnsPerIP, negative means no limit.
	MaxConnsPerIP int
	// MaxConns limits concurrent connections over all of this server's
	// listeners; beyond it a client gets "-ERR [SYS/TEMP]" instead of the
	// greeting. 0 or negative means no limit.
	MaxConns int
	// KeepDeleted makes messages deleted by POP3 clients disappear from
	// POP3 only (HiddenKeyword) instead of being expunged from INBOX.
	KeepDeleted bool
	// MarkSeenOnRetr sets \Seen on messages retrieved with RETR.
	MarkSeenOnRetr bool
	// LockTTL is the lifetime of the maildrop lock (see lease.go); a dead
	// node blocks the user for at most this long. LockRenewInterval (default
	// LockTTL/3) is how often a live session renews it.
	LockTTL           time.Duration
	LockRenewInterval time.Duration
	// PreLoginTimeout and IdleTimeout bound the wait for a command before
	// and after login; WriteTimeout bounds each write to a stalled client.
	PreLoginTimeout time.Duration
	IdleTimeout     time.Duration
	WriteTimeout    time.Duration
	// MaxErrors is the number of failed commands after which the
	// connection is closed.
	MaxErrors int
	// NodeID names this node in lock holders (default: host name and pid).
	NodeID string
	// Logger receives the logs; protocol traces are at LevelTrace.
	Logger *slog.Logger
}

// LevelTrace is the slog level of protocol traces (commands with
// credentials masked and first lines of responses; never message content).
const LevelTrace = slog.LevelDebug - 4

// Server is a POP3 server over a mailstore. It is safe for concurrent use;
// Serve may be called for several listeners.
type Server struct {
	cfg     Config
	store   mailstore.Store
	authn   *auth.Authenticator
	log     *slog.Logger
	limiter *netutil.ConnLimiter

	baseCtx context.Context
	cancel  context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	shutting  atomic.Bool
	wg        sync.WaitGroup

	idPrefix string
	nextID   atomic.Uint64

	orphans orphanLeases // maildrop locks ended sessions could not release (lease.go)
}

// New returns a server; call Serve to accept connections.
func New(cfg Config, store mailstore.Store, authn *auth.Authenticator) (*Server, error) {
	if store == nil || authn == nil {
		return nil, errors.New("pop3d: store and authenticator are required")
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		cfg.Hostname = h
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.LockRenewInterval <= 0 || cfg.LockRenewInterval >= cfg.LockTTL {
		cfg.LockRenewInterval = cfg.LockTTL / 3
	}
	if cfg.PreLoginTimeout <= 0 {
		cfg.PreLoginTimeout = DefaultPreLoginTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.Hostname + ":" + strconv.Itoa(os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg,
		store:     store,
		authn:     authn,
		log:       cfg.Logger,
		limiter:   netutil.NewConnLimiter(cfg.MaxConnsPerIP, cfg.MaxConns),
		baseCtx:   ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		idPrefix:  "p" + hex.EncodeToString(b[:]),
	}, nil
}

// Serve accepts connections on ln until Shutdown. With implicitTLS every
// connection starts with a TLS handshake (port 995, RFC 8314 §3.3).
// Connections from Config.TrustedProxies must start with a PROXY header.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if implicitTLS && s.cfg.TLS == nil {
		return errors.New("pop3d: implicit TLS listener without a TLS configuration")
	}
	ln = netutil.ProxyListener(ln, s.cfg.TrustedProxies)
	s.mu.Lock()
	if s.shutting.Load() {
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
	kind := "plain"
	if implicitTLS {
		kind = "tls"
	}
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Running out of file descriptors and the like: wait and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("pop3: accept failed; retrying", slog.Any("error", err), slog.Duration("in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1) // under mu, so never after Shutdown started waiting
		s.mu.Unlock()
		go s.handle(c, kind)
	}
}

func (s *Server) handle(c net.Conn, kind string) {
	defer s.wg.Done()
	// PeerOf reads the PROXY header of trusted peers (bounded by
	// netutil.ProxyHeaderTimeout).
	peer := netutil.PeerOf(c)
	remote := peer.IP
	log := s.log.With(peer.LogAttrs()...)
	if netutil.HeaderFailed(c) {
		mConnections.WithLabelValues(kind, "proxy_header").Inc()
		log.Warn("pop3: connection without a valid PROXY header from a trusted proxy")
		c.Close()
		return
	}
	if err := s.limiter.Acquire(remote); err != nil {
		result, text := "limited", "Too many connections from your address, try again later"
		if errors.Is(err, netutil.ErrGlobalLimit) {
			result, text = "limited_global", "Too many connections, try again later"
		}
		mConnections.WithLabelValues(kind, result).Inc()
		log.Warn("pop3: connection refused", slog.Any("err", err))
		s.refuse(c, kind == "tls", "-ERR [SYS/TEMP] "+text+"\r\n")
		return
	}
	defer s.limiter.Release(remote)
	conn := c
	if kind == "tls" {
		tc, err := s.handshake(c)
		if err != nil {
			mConnections.WithLabelValues(kind, "tls_failed").Inc()
			log.Debug("pop3: TLS handshake failed", slog.Any("err", err))
			c.Close()
			return
		}
		conn = tc
	}
	mConnections.WithLabelValues(kind, "served").Inc()
	mActive.Inc()
	defer mActive.Dec()
	sess := newSession(s, c, conn, peer, kind == "tls")
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		_, _ = conn.Write([]byte("-ERR [SYS/TEMP] Server shutting down, try again later\r\n"))
		conn.Close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	sess.serve()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

// handshake runs the server side of an implicit-TLS handshake on c.
func (s *Server) handshake(c net.Conn) (*tls.Conn, error) {
	tc := tls.Server(c, s.cfg.TLS)
	_ = c.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(s.baseCtx); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// refuse sends a connection its refusal instead of the greeting (RFC 3206
// §4 SYS/TEMP: a temporary condition) and closes it. On an implicit-TLS
// listener the refusal goes inside TLS, where the client can read it.
func (s *Server) refuse(c net.Conn, implicitTLS bool, line string) {
	defer c.Close()
	conn := c
	if implicitTLS {
		tc, err := s.handshake(c)
		if err != nil {
			return
		}
		conn = tc
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = conn.Write([]byte(line))
}

// Shutdown stops accepting connections, tells idle clients that the server
// is going away ("-ERR", without committing their deletions, as for any
// connection closed without QUIT), lets commands in progress (a RETR
// download, a QUIT commit) finish, and waits for the sessions to end. When
// ctx ends first, the remaining connections are closed and their store
// operations cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.interrupt()
	}
	s.mu.Unlock()
	return netutil.Drain(ctx, &s.wg, s.cancel, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for sess := range s.sessions {
			sess.raw.Close()
		}
	})
}
