// Package imapd is Postrider's IMAP server: IMAP4rev2 (RFC 9051) and
// IMAP4rev1 (RFC 3501) with the extensions listed in commands.go, over
// the shared mail store. It owns the wire protocol: a bounded command
// parser, a per-connection state machine driven by a command table,
// response writers, and per-session mailbox views kept up to date from the
// store's change notifications, so that any number of stateless nodes serve
// the same mailboxes.
package imapd

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/netutil"
	"github.com/postrider/postrider/mailstore"
)

// Config configures a Server. Zero values take the defaults documented on
// each field.
type Config struct {
	// Hostname is named in the greeting; default: the host's name.
	Hostname string
	// TLS enables STARTTLS (and is required for implicit TLS listeners).
	TLS *tls.Config
	// TrustedProxies are the networks whose connections must start with a
	// PROXY protocol header.
	TrustedProxies []netip.Prefix
	// AllowInsecureAuth allows LOGIN/AUTHENTICATE without TLS from
	// non-loopback clients (loopback is always allowed).
	AllowInsecureAuth bool
	// MaxMessageSize bounds APPEND (advertised as APPENDLIMIT, RFC 7889);
	// default 50 MiB.
	MaxMessageSize int64
	// MaxConnsPerIP bounds concurrent connections per client IP (IPv6 per
	// /64); default 100, negative means unlimited.
	MaxConnsPerIP int
	// MaxConns bounds concurrent connections over all of this server's
	// listeners; beyond it a client gets "* BYE [UNAVAILABLE]" instead of
	// the greeting. 0 or negative means unlimited.
	MaxConns int
	// MaxConnsPerAccount bounds concurrent authenticated connections per
	// account on this node; default 50, negative means unlimited.
	MaxConnsPerAccount int
	// Logger receives the server's logs; default slog.Default().
	Logger *slog.Logger
	// Limits bound inputs and time; zero fields take defaults.
	Limits Limits
	// Metrics, when set, receives the server's Prometheus metrics
	// (postrider_imap_*).
	Metrics prometheus.Registerer
}

// Limits bound what one connection may send and how long it may take.
type Limits struct {
	MaxLineLength          int           // octets of one command line; default 65536 (RFC 7162 §4 asks ≥ 8192)
	MaxLiteralPreAuth      int64         // octets of one literal before login; default 2048
	MaxLiteral             int64         // octets of one in-memory literal after login (not APPEND); default 65536
	MaxCommandLiteralBytes int64         // octets of in-memory literals in one command; default 1 MiB
	MaxLiterals            int           // literals in one command; default 64
	MaxDepth               int           // nesting of lists and NOT/OR; default 16
	MaxSetRanges           int           // ranges in one sequence set; default 16384
	MaxErrorsPreAuth       int           // BAD replies before login until BYE; default 3
	MaxErrors              int           // consecutive BAD replies after login until BYE; default 20
	MaxAuthFailures        int           // failed LOGIN/AUTHENTICATE until BYE; default 3
	PreAuthTimeout         time.Duration // to send each command before login; default 30 s
	IdleTimeout            time.Duration // inactivity after login, and IDLE; default 30 min (RFC 9051 §5.4)
	WriteTimeout           time.Duration // for each write to the client; default 5 min
	FetchBatch             int           // messages fetched from the store at a time; default 256
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxLineLength, 65536)
	def64(&l.MaxLiteralPreAuth, 2048)
	def64(&l.MaxLiteral, 65536)
	def64(&l.MaxCommandLiteralBytes, 1<<20)
	def(&l.MaxLiterals, 64)
	def(&l.MaxDepth, 16)
	def(&l.MaxSetRanges, 16384)
	def(&l.MaxErrorsPreAuth, 3)
	def(&l.MaxErrors, 20)
	def(&l.MaxAuthFailures, 3)
	defDur(&l.PreAuthTimeout, 30*time.Second)
	defDur(&l.IdleTimeout, 30*time.Minute)
	defDur(&l.WriteTimeout, 5*time.Minute)
	def(&l.FetchBatch, 256)
}

// Server serves IMAP on any number of listeners.
type Server struct {
	cfg     Config
	limits  Limits
	store   mailstore.Store
	auth    authenticator
	log     *slog.Logger
	idBase  string
	metrics *metrics

	ipLimit *netutil.ConnLimiter

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	acctConns map[int64]int

	nextID   atomic.Uint64
	closing  atomic.Bool
	done     chan struct{} // closed when Shutdown starts
	ctx      context.Context
	cancel   context.CancelFunc
	connWG   sync.WaitGroup
	doneOnce sync.Once
}

// New creates a server. authn must not be nil.
func New(cfg Config, store mailstore.Store, authn *auth.Authenticator) (*Server, error) {
	if store == nil || authn == nil {
		return nil, errors.New("imapd: store and authenticator are required")
	}
	return newServer(cfg, store, authAdapter{authn})
}

func newServer(cfg Config, store mailstore.Store, authn authenticator) (*Server, error) {
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		cfg.Hostname = h
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 50 << 20
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = 100
	}
	if cfg.MaxConnsPerAccount == 0 {
		cfg.MaxConnsPerAccount = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Limits.setDefaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("imapd: registering metrics: %w", err)
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:       cfg,
		limits:    cfg.Limits,
		store:     store,
		auth:      authn,
		metrics:   m,
		log:       cfg.Logger.With("proto", "imap"),
		idBase:    hex.EncodeToString(rnd[:]),
		ipLimit:   netutil.NewConnLimiter(cfg.MaxConnsPerIP, cfg.MaxConns),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		acctConns: make(map[int64]int),
		done:      make(chan struct{}),
		ctx:       ctx,
		cancel:    cancel,
	}, nil
}

// ErrServerClosed is returned by Serve after Shutdown; it wraps net.ErrClosed
// like the other frontends' (the serve loop treats it as a normal end).
var ErrServerClosed = fmt.Errorf("imapd: server closed: %w", net.ErrClosed)

// Serve accepts connections on ln until Shutdown. With implicitTLS every
// connection starts with a TLS handshake (port 993, RFC 8314).
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	if implicitTLS && s.cfg.TLS == nil {
		return errors.New("imapd: implicit TLS needs Config.TLS")
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
			// Transient (too many open files, aborted handshake, a PROXY
			// header that failed): back off and go on.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := s.newConn(nc, implicitTLS)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

func (s *Server) newConn(nc net.Conn, implicitTLS bool) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		nc.Close()
		return nil
	}
	id := fmt.Sprintf("%s-%d", s.idBase, s.nextID.Add(1))
	c := &conn{
		srv:         s,
		id:          id,
		raw:         nc,
		nc:          nc,
		implicitTLS: implicitTLS,
		state:       stateNotAuth,
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.log = s.log.With("conn", id)
	c.init()
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.metrics.connections.Inc()
	s.metrics.active.Inc()
	return c
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.active.Dec()
	s.connWG.Done()
}

// acquireAccount takes a per-account connection slot.
func (s *Server) acquireAccount(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.MaxConnsPerAccount > 0 && s.acctConns[id] >= s.cfg.MaxConnsPerAccount {
		return false
	}
	s.acctConns[id]++
	return true
}

func (s *Server) releaseAccount(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acctConns[id] <= 1 {
		delete(s.acctConns, id)
	} else {
		s.acctConns[id]--
	}
}

// Shutdown stops accepting connections and says BYE to every client: at
// once to those waiting for a command or in IDLE, after their current
// command to the others. When ctx ends first, remaining connections are
// cancelled and closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	s.doneOnce.Do(func() { close(s.done) })
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.interrupt()
	}
	s.mu.Unlock()
	return netutil.Drain(ctx, &s.connWG, s.cancel, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			c.raw.Close()
		}
	})
}
