// Package smtpd is Postrider's SMTP server: inbound mail exchange (port 25,
// RFC 5321) and authenticated message submission (587 with STARTTLS and 465
// with implicit TLS, RFC 6409, RFC 8314). Accepted mail goes straight into
// the mail store, in one transaction per message, and is acknowledged only
// after that transaction committed.
//
// The package owns its wire layer, on the shared frontend kit
// (internal/frontend: accept loop, PROXY protocol, connection limits,
// implicit TLS, shutdown): the command loop with its line discipline,
// replies and pipelining (conn.go), the command table (commands.go), MAIL
// and RCPT parameters (params.go), AUTH (authcmd.go), STARTTLS, and the
// DATA and BDAT readers with the rules against SMTP smuggling
// (transfer.go). The session logic is in session.go (MAIL/RCPT policy),
// address.go, data.go and scan.go (checks, spool, delivery), identity.go
// (submission header checks) and replies.go (errors turned into replies).
package smtpd

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"net"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// LevelTrace is the slog level of the protocol trace: every command and
// reply line, with AUTH data masked; message content is never logged.
const LevelTrace = frontend.LevelTrace

// ErrServerClosed is returned by the Serve methods after Shutdown. It wraps
// net.ErrClosed.
var ErrServerClosed = frontend.ErrServerClosed

type role int

const (
	roleInbound role = iota
	roleSubmission
)

// Listener roles, as logs and metrics name them.
const (
	labelInbound     = "inbound"
	labelSubmission  = "submission"
	labelSubmissions = "submissions" // implicit TLS (RFC 8314 §3.3)
)

// Store is what SMTP needs of the mail store: recipient resolution and
// the sender's addresses (the directory), quota usage, delivery (local
// copies and the outbound queue), the DKIM keys that sign submitted mail
// and the cluster's SRS secret.
type Store interface {
	Resolve(ctx context.Context, address string) (mailstore.Resolution, error)
	IsLocalDomain(ctx context.Context, name string) (bool, error)
	ListDomains(ctx context.Context) ([]string, error)
	AccountAddresses(ctx context.Context, accountID int64) ([]string, error)
	Quota(ctx context.Context, accountID int64) (mailstore.Quota, error)
	ListMailboxes(ctx context.Context, accountID int64) ([]mailstore.Mailbox, error) // the Junk mailbox (inboundauth.go)
	Deliver(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error)
	mailauth.DKIMKeySource
	ClusterSecret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
}

// Server serves SMTP on any number of listeners. All of them share one
// frontend.Server, so MaxConns and MaxConnsPerIP count the connections of
// every role together.
type Server struct {
	cfg    Config
	store  Store
	authn  *auth.Authenticator
	fe     *frontend.Server
	rcache resolveCache
	signer *mailauth.DKIMSigner
	srs    srsKey
}

// New builds a server. authn may be nil only if no submission listener is
// served (AUTH is then never offered).
func New(cfg Config, store Store, authn *auth.Authenticator) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("smtpd: nil store")
	}
	s := &Server{cfg: cfg, store: store, authn: authn}
	s.signer = mailauth.NewDKIMSigner(store, mailauth.DKIMSignerOptions{Logger: cfg.Logger})
	s.fe, err = frontend.NewServer("smtp", cfg.Config, handler{s})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ServeInbound serves the mail exchanger role (port 25): no AUTH, RCPT only
// for local recipients (and the external targets of their aliases, and
// the bounces of mail we forwarded): never a relay. It returns ErrServerClosed after Shutdown.
func (s *Server) ServeInbound(ln net.Listener) error {
	return s.serve(ln, false, labelInbound)
}

// ServeSubmission serves message submission: STARTTLS on 587
// (implicitTLS false) or TLS from the first byte on 465 (RFC 8314 §3.3).
// It returns ErrServerClosed after Shutdown.
func (s *Server) ServeSubmission(ln net.Listener, implicitTLS bool) error {
	if s.authn == nil {
		return errors.New("smtpd: submission needs an authenticator")
	}
	if implicitTLS {
		return s.serve(ln, true, labelSubmissions)
	}
	return s.serve(ln, false, labelSubmission)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool, role string) error {
	return s.fe.ServeRole(ln, implicitTLS, role)
}

// Shutdown stops accepting connections, sends 421 to clients waiting for a
// command (RFC 5321 §3.8) and lets transfers and deliveries in progress
// finish (their connections close before the next command) until ctx is
// done; then it closes every connection and cancels store calls.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.fe.Shutdown(ctx)
}

// handler is the frontend kit's view of the server.
type handler struct{ s *Server }

func (h handler) ServeConn(fc *frontend.Conn) {
	newConn(h.s, fc).serve()
}

// RefusalLine is the reply instead of the greeting when the server cannot
// take the connection (RFC 5321 §3.1: 421, then close).
func (h handler) RefusalLine(why frontend.Refusal) string {
	host := h.s.cfg.Hostname
	switch why {
	case frontend.RefusePerIP:
		return "421 4.7.0 " + host + " Too many connections from your address, try again later\r\n"
	case frontend.RefuseTotal:
		return "421 4.7.0 " + host + " Too many connections, try again later\r\n"
	}
	return "421 4.3.2 " + host + " Service shutting down, try again later\r\n"
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a random 16-character identifier (messages).
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
