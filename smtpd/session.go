package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	sasl "github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/mailstore"
)

// session is one go-smtp session (from the first EHLO/HELO to the end of
// the connection). Its methods run on the connection's goroutine, except
// Data for BDAT, which go-smtp runs on a goroutine of its own; mu guards the
// transaction against a concurrent RSET.
type session struct {
	srv  *Server
	gc   *guardConn
	conn *smtp.Conn
	log  *slog.Logger

	mu        sync.Mutex
	account   *mailstore.Account // after AUTH (submission)
	addresses []string           // the account's own addresses, lower case
	tx        *transaction
	spool     spool // reused across messages
}

// transaction is one MAIL ... DATA/BDAT sequence.
type transaction struct {
	from     string // reverse-path; "" is the null path (RFC 5321 §4.5.5)
	utf8     bool   // SMTPUTF8 (RFC 6531 §3.4)
	body     smtp.BodyType
	size     int64 // SIZE= (RFC 1870 §6), 0 when not given
	ret      smtp.DSNReturn
	envID    string
	rcpts    []txRcpt
	accounts []int64 // distinct accounts, in order of first appearance
}

type txRcpt struct {
	addr    string
	notify  []smtp.DSNNotify
	orcptTy smtp.DSNAddressType
	orcpt   string
}

func (s *session) Reset() {
	s.mu.Lock()
	s.tx = nil
	s.mu.Unlock()
}

func (s *session) Logout() error { return nil }

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if !s.gc.greetedSinceTLS() {
		// RFC 3207 §4.2: after STARTTLS the client must greet again.
		return replyErr(503, 5, 5, 1, "Send EHLO first (RFC 3207 §4.2)")
	}
	s.mu.Lock()
	busy, acct := s.tx != nil, s.account
	s.mu.Unlock()
	if busy {
		return replyErr(503, 5, 5, 1, "Nested MAIL command (RFC 5321 §4.1.4)")
	}
	sub := s.gc.role == roleSubmission
	if sub && acct == nil {
		return replyErr(530, 5, 7, 0, "Authentication required (RFC 4954 §6)")
	}
	if opts == nil {
		opts = &smtp.MailOptions{}
	}
	if from != "" {
		if _, err := parseAddress(from, opts.UTF8); err != nil {
			return senderSyntaxReply(err)
		}
	}
	if sub {
		if from == "" || !s.owns(from) {
			rcptRejected.WithLabelValues("sender_not_owned").Inc()
			return replyErr(553, 5, 7, 1, "Sender address not owned by the authenticated user")
		}
	}
	tx := &transaction{from: from, utf8: opts.UTF8, body: opts.Body, size: opts.Size, ret: opts.Return, envID: opts.EnvelopeID}
	s.mu.Lock()
	s.tx = tx
	s.mu.Unlock()
	return nil
}

// Rcpt adds a recipient (RFC 5321 §4.1.1.3) if the store resolves it.
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.mu.Lock()
	tx := s.tx
	s.mu.Unlock()
	if tx == nil {
		return replyErr(503, 5, 5, 1, "MAIL first (RFC 5321 §4.1.4)")
	}
	if opts == nil {
		opts = &smtp.RcptOptions{}
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.DeliverTimeout)
	defer cancel()
	accounts, err := s.resolve(ctx, to, tx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx != tx {
		return replyErr(503, 5, 5, 1, "Transaction was reset")
	}
	tx.rcpts = append(tx.rcpts, txRcpt{addr: to, notify: opts.Notify, orcptTy: opts.OriginalRecipientType, orcpt: opts.OriginalRecipient})
	for _, a := range accounts {
		dup := false
		for _, have := range tx.accounts {
			if have == a {
				dup = true
				break
			}
		}
		if !dup {
			tx.accounts = append(tx.accounts, a)
		}
	}
	return nil
}

// resolve applies the relay rules and quota check to one recipient and
// returns the accounts it delivers to.
func (s *session) resolve(ctx context.Context, to string, tx *transaction) ([]int64, error) {
	sub := s.gc.role == roleSubmission
	denied := func() error {
		if sub {
			rcptRejected.WithLabelValues("outbound_disabled").Inc()
			return replyErr(554, 5, 7, 1, "Outbound delivery is not enabled on this server; only local recipients are accepted")
		}
		rcptRejected.WithLabelValues("relay_denied").Inc()
		return replyErr(554, 5, 7, 1, "Relay access denied")
	}
	a, err := parseAddress(to, tx.utf8)
	if err != nil {
		rcptRejected.WithLabelValues("syntax").Inc()
		return nil, recipientSyntaxReply(err)
	}
	if a.literal {
		// Address literals (RFC 5321 §4.1.3) never name our domains.
		return nil, denied()
	}
	var accts []mailstore.Account
	if a.domain == barePostmasterDomain && strings.EqualFold(a.local, "postmaster") {
		accts, err = s.resolvePostmaster(ctx)
	} else {
		accts, err = s.srv.rcache.resolve(ctx, s.srv.store, a.local+"@"+a.domain)
	}
	switch {
	case err == nil:
	case errors.Is(err, mailstore.ErrNotLocalDomain):
		return nil, denied()
	case errors.Is(err, mailstore.ErrInvalidAddress), errors.Is(err, mailstore.ErrNoSuchRecipient):
		// A local part the store cannot hold ("user%host", quoted
		// strings): unknown user if the domain is ours, else relay.
		if errors.Is(err, mailstore.ErrInvalidAddress) {
			local, lerr := s.srv.store.IsLocalDomain(ctx, a.domain)
			if lerr != nil {
				return nil, s.storeFailure("is local domain", lerr)
			}
			if !local {
				return nil, denied()
			}
		}
		rcptRejected.WithLabelValues("unknown_user").Inc()
		return nil, replyErr(550, 5, 1, 1, "No such user here")
	default:
		return nil, s.storeFailure("resolve recipient", err)
	}
	ids := make([]int64, 0, len(accts))
	for _, acct := range accts {
		if acct.QuotaLimit > 0 {
			used, limit, err := s.srv.store.QuotaUsage(ctx, acct.ID)
			if err != nil {
				return nil, s.storeFailure("quota usage", err)
			}
			if limit > 0 && (used >= limit || used+tx.size > limit) {
				rcptRejected.WithLabelValues("over_quota").Inc()
				return nil, replyErr(552, 5, 2, 2, "Mailbox full: quota exceeded")
			}
		}
		ids = append(ids, acct.ID)
	}
	if len(ids) == 0 {
		rcptRejected.WithLabelValues("unknown_user").Inc()
		return nil, replyErr(550, 5, 1, 1, "No such user here")
	}
	return ids, nil
}

// owns reports whether the authenticated account may use addr as sender:
// one of its addresses, compared case-insensitively, with a +tag allowed.
func (s *session) owns(addr string) bool {
	s.mu.Lock()
	own := s.addresses
	s.mu.Unlock()
	a := strings.ToLower(addr)
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return false
	}
	local, domain := a[:at], a[at+1:]
	if i := strings.Index(local, mailstore.SubaddressDelimiter); i > 0 {
		local = local[:i]
	}
	a = local + "@" + strings.TrimSuffix(domain, ".")
	for _, o := range own {
		if o == a {
			return true
		}
	}
	return false
}

func (s *session) storeFailure(op string, err error) error {
	s.log.Error("store failure", "op", op, "err", err)
	return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later")
}

// AuthMechanisms lists the SASL mechanisms offered in EHLO: none on
// inbound; on submission only when plaintext AUTH is permitted (TLS,
// loopback or AllowInsecureAuth; RFC 4954 §4 and RFC 8314).
func (s *session) AuthMechanisms() []string {
	if s.gc.role != roleSubmission || !s.plainAuthAllowed() {
		return nil
	}
	return auth.Mechanisms()
}

func (s *session) plainAuthAllowed() bool {
	return s.gc.TLS() != nil || s.gc.remote.IsLoopback() || s.srv.cfg.AllowInsecureAuth
}

// Auth starts a SASL exchange (RFC 4954 §4).
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.gc.role != roleSubmission {
		return nil, replyErr(502, 5, 5, 1, "AUTH is not available on this port; use submission")
	}
	if !s.plainAuthAllowed() {
		return nil, replyErr(538, 5, 7, 11, "Encryption required for requested authentication mechanism (RFC 4954 §6)")
	}
	s.mu.Lock()
	busy := s.tx != nil
	s.mu.Unlock()
	if busy {
		return nil, replyErr(503, 5, 5, 1, "AUTH not permitted during a mail transaction (RFC 4954 §4)")
	}
	ss, err := s.srv.authn.NewSASL(mech, s.gc.remote)
	if err != nil {
		return nil, replyErr(504, 5, 5, 4, "Unrecognized authentication type")
	}
	return &saslAdapter{s: s, ss: ss}, nil
}

// saslAdapter runs an auth.SASLSession as go-sasl's Server.
type saslAdapter struct {
	s  *session
	ss auth.SASLSession
}

func (a *saslAdapter) Next(response []byte) ([]byte, bool, error) {
	s := a.s
	ctx, cancel := context.WithTimeout(auth.ContextWithLogger(s.srv.ctx, s.log), s.srv.cfg.DeliverTimeout)
	defer cancel()
	challenge, done, err := a.ss.Next(ctx, response)
	var te *auth.ThrottledError
	switch {
	case err == nil && !done:
		return challenge, false, nil
	case err == nil:
	case errors.As(err, &te):
		authAttempts.WithLabelValues("throttled").Inc()
		return nil, false, replyErr(454, 4, 7, 0, fmt.Sprintf("Too many failed logins, try again in %d seconds", int(te.RetryAfter.Seconds())+1))
	case errors.Is(err, auth.ErrInvalidCredentials):
		authAttempts.WithLabelValues("invalid").Inc()
		return nil, false, replyErr(535, 5, 7, 8, "Authentication credentials invalid (RFC 4954 §6)")
	case errors.Is(err, auth.ErrMalformed):
		authAttempts.WithLabelValues("malformed").Inc()
		return nil, false, replyErr(501, 5, 5, 2, "Malformed authentication response")
	default:
		authAttempts.WithLabelValues("error").Inc()
		s.log.Error("authentication failure", "err", err)
		return nil, false, replyErr(454, 4, 7, 0, "Temporary authentication failure")
	}
	acct := a.ss.Account()
	addrs, err := s.srv.store.AccountAddresses(ctx, acct.ID)
	if err != nil {
		authAttempts.WithLabelValues("error").Inc()
		s.log.Error("store failure", "op", "account addresses", "err", err)
		return nil, false, replyErr(454, 4, 7, 0, "Temporary authentication failure")
	}
	own := make([]string, 0, len(addrs)+1)
	own = append(own, strings.ToLower(acct.Address))
	for _, ad := range addrs {
		own = append(own, strings.ToLower(ad))
	}
	s.mu.Lock()
	s.account, s.addresses = &acct, own
	s.log = s.log.With("user", acct.Address)
	s.mu.Unlock()
	s.gc.setAuthenticated()
	authAttempts.WithLabelValues("ok").Inc()
	s.log.Info("authenticated")
	return nil, true, nil
}
