package pop3d

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
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
	DefaultLockTTL         = 30 * time.Second
	DefaultPreLoginTimeout = 60 * time.Second
	// DefaultIdleTimeout is RFC 1939 §3's minimum autologout timer.
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultWriteTimeout = 2 * time.Minute
	// DefaultReadAheadMemory bounds the buffers of messages read ahead by
	// all sessions together (see Config.ReadAheadMemory).
	DefaultReadAheadMemory = 2 << 20
	tlsHandshakeTimeout    = 30 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown; it wraps
// net.ErrClosed like the other frontends' (a normal end for the caller).
var ErrServerClosed = frontend.ErrServerClosed

// Config configures a Server. Zero values select the defaults above.
type Config struct {
	// Config holds what every frontend shares: Hostname (greeting), TLS
	// (STLS, RFC 2595 §4, and implicit-TLS listeners), TrustedProxies,
	// AllowInsecureAuth (USER/PASS and SASL PLAIN/LOGIN without TLS from
	// non-loopback clients), MaxConnsPerIP and MaxConns (0: no limit),
	// Logger (protocol traces at LevelTrace) and Metrics.
	frontend.Config
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
	// ReadAheadMemory bounds the octets of the messages all sessions
	// together hold read ahead for RETR (readahead.go): a download alone
	// reads up to 1 MiB per store call, two at a time; when many sessions
	// download at once each reads less, down to 64 KiB, which every
	// session may use whatever the budget.
	ReadAheadMemory int64
	// NodeID names this node in lock holders (default: host name and pid).
	NodeID string
}

// LevelTrace is the slog level of protocol traces (commands with
// credentials masked and first lines of responses; never message content).
const LevelTrace = frontend.LevelTrace

// Store is what POP3 needs of the mail store: INBOX, its messages, the
// cluster lease that makes the maildrop exclusive, and change
// notifications (they drop messages read ahead, see readahead.go).
type Store interface {
	GetMailbox(ctx context.Context, accountID int64, name string) (mailstore.Mailbox, error)
	mailstore.Messages
	mailstore.Leases
	Subscribe(accountID int64) (ch <-chan struct{}, cancel func())
}

// Server is a POP3 server over a mailstore. It is safe for concurrent use;
// Serve may be called for several listeners. The accept loop, limits,
// PROXY protocol, implicit TLS and shutdown are the shared kit's
// (internal/frontend); this package is the protocol.
type Server struct {
	cfg   Config
	store Store
	authn *auth.Authenticator
	log   *slog.Logger
	fe    *frontend.Server

	orphans orphanLeases // maildrop locks ended sessions could not release (lease.go)
	ahead   aheadBudget  // read-ahead buffers of all sessions (aheadbudget.go)
}

// New returns a server; call Serve to accept connections.
func New(cfg Config, store Store, authn *auth.Authenticator) (*Server, error) {
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
	if cfg.ReadAheadMemory <= 0 {
		cfg.ReadAheadMemory = DefaultReadAheadMemory
	}
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.Hostname + ":" + strconv.Itoa(os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, store: store, authn: authn}
	s.ahead.max = cfg.ReadAheadMemory
	fe, err := frontend.NewServer("pop3", cfg.Config, s)
	if err != nil {
		return nil, fmt.Errorf("pop3d: %w", err)
	}
	s.fe, s.log = fe, fe.Log()
	return s, nil
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. With implicitTLS every connection starts with a TLS
// handshake (port 995, RFC 8314 §3.3). Connections from
// Config.TrustedProxies must start with a PROXY header.
func (s *Server) Serve(ln net.Listener, implicitTLS bool) error {
	return s.fe.Serve(ln, implicitTLS)
}

// RefusalLine is the kit's refusal before the greeting: a temporary
// condition (RFC 3206 §4 SYS/TEMP).
func (s *Server) RefusalLine(why frontend.Refusal) string {
	switch why {
	case frontend.RefusePerIP:
		return "-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n"
	case frontend.RefuseTotal:
		return "-ERR [SYS/TEMP] Too many connections, try again later\r\n"
	}
	return "-ERR [SYS/TEMP] Server shutting down, try again later\r\n"
}

// ServeConn runs one POP3 session (the kit's Handler).
func (s *Server) ServeConn(c *frontend.Conn) {
	sess := newSession(s, c)
	c.OnShutdown(sess.interrupt)
	sess.serve()
}

// Shutdown stops accepting connections, tells idle clients that the server
// is going away ("-ERR", without committing their deletions, as for any
// connection closed without QUIT), lets commands in progress (a RETR
// download, a QUIT commit) finish, and waits for the sessions to end. When
// ctx ends first, the remaining connections are closed and their store
// operations cancelled.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.fe.Shutdown(ctx)
}
