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
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailstore"
)

// Config configures a Server. Zero values take the defaults documented on
// each field.
type Config struct {
	// Config holds what every frontend shares: Hostname (greeting; default
	// the host's name), TLS (STARTTLS and implicit-TLS listeners),
	// TrustedProxies, AllowInsecureAuth (LOGIN/AUTHENTICATE without TLS
	// from non-loopback clients), MaxConnsPerIP and MaxConns (0: no
	// limit), Logger and Metrics (the kit's common metrics and
	// postrider_imap_*).
	frontend.Config
	// MaxMessageSize bounds APPEND (advertised as APPENDLIMIT, RFC 7889);
	// default 50 MiB.
	MaxMessageSize int64
	// MaxConnsPerAccount bounds concurrent authenticated connections per
	// account on this node; default 50, negative means unlimited.
	MaxConnsPerAccount int
	// Limits bound inputs and time; zero fields take defaults.
	Limits Limits
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

// Store is what IMAP needs of the mail store: the account's mailboxes, their
// messages and changes, and the account's quota (APPEND, RFC 9208 QUOTA).
type Store interface {
	mailstore.Mailboxes
	mailstore.Messages
	mailstore.ChangeFeed
	mailstore.Metadata
	Quota(ctx context.Context, accountID int64) (mailstore.Quota, error)
	DeletedSize(ctx context.Context, accountID, mailboxID int64) (int64, error)
}

// Server serves IMAP on any number of listeners. The accept loop, limits,
// PROXY protocol, implicit TLS, registry and shutdown are the shared kit's
// (internal/frontend); this package is the protocol.
type Server struct {
	cfg     Config
	limits  Limits
	store   Store
	auth    authenticator
	log     *slog.Logger
	metrics *metrics
	fe      *frontend.Server

	mu        sync.Mutex
	acctConns map[int64]int
}

// New creates a server. authn must not be nil.
func New(cfg Config, store Store, authn *auth.Authenticator) (*Server, error) {
	if store == nil || authn == nil {
		return nil, errors.New("imapd: store and authenticator are required")
	}
	return newServer(cfg, store, authAdapter{authn})
}

func newServer(cfg Config, store Store, authn authenticator) (*Server, error) {
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
	s := &Server{
		cfg:       cfg,
		limits:    cfg.Limits,
		store:     store,
		auth:      authn,
		metrics:   m,
		acctConns: make(map[int64]int),
	}
	fe, err := frontend.NewServer("imap", cfg.Config, s)
	if err != nil {
		return nil, fmt.Errorf("imapd: %w", err)
	}
	s.fe, s.log = fe, fe.Log()
	return s, nil
}

// ErrServerClosed is returned by Serve after Shutdown; it wraps net.ErrClosed
// like the other frontends' (the serve loop treats it as a normal end).
var ErrServerClosed = frontend.ErrServerClosed

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. With implicitTLS every connection starts with a TLS
// handshake (port 993, RFC 8314).
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	return s.fe.Serve(ln, implicitTLS)
}

// RefusalLine is the kit's refusal instead of the greeting: BYE (RFC 9051
// §7.1.5) with UNAVAILABLE, a temporary condition (RFC 5530 §3).
func (s *Server) RefusalLine(why frontend.Refusal) string {
	switch why {
	case frontend.RefusePerIP:
		return "* BYE [UNAVAILABLE] Too many connections from your address\r\n"
	case frontend.RefuseTotal:
		return "* BYE [UNAVAILABLE] Too many connections; try again later\r\n"
	}
	return "* BYE [UNAVAILABLE] Server shutting down\r\n"
}

// ServeConn runs one IMAP connection (the kit's Handler).
func (s *Server) ServeConn(fc *frontend.Conn) {
	c := s.newConn(fc)
	fc.OnShutdown(c.interrupt)
	c.serve()
}

func (s *Server) newConn(fc *frontend.Conn) *conn {
	c := &conn{
		srv:         s,
		fc:          fc,
		id:          fc.ID,
		raw:         fc.Raw,
		nc:          fc.Net,
		implicitTLS: fc.ImplicitTLS,
		tlsOn:       fc.ImplicitTLS,
		remote:      fc.Peer.IP,
		state:       stateNotAuth,
		log:         fc.Log,
	}
	c.ctx, c.cancel = context.WithCancel(fc.Ctx)
	c.init()
	return c
}

// OpenConns is the number of connections being served.
func (s *Server) OpenConns() int { return s.fe.OpenConns() }

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
	return s.fe.Shutdown(ctx)
}
