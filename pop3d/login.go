package pop3d

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/mailstore"
)

// errInsecure refuses plaintext authentication on a connection that is
// neither TLS nor loopback (RFC 2595 §2.3; RFC 3206 §5 [AUTH]).
func (s *session) errInsecure() error {
	s.fc.Metrics().Auth("insecure")
	return errReply("AUTH", "Plaintext authentication is not allowed without TLS; use STLS (or port 995) first")
}

// cmdUser implements USER (RFC 1939 §7). The reply never says whether the
// user exists.
func (s *session) cmdUser(c *Command) error {
	if len(c.Args) != 1 {
		return errReply("", "Usage: USER name")
	}
	if !s.plaintextOK() {
		return s.errInsecure()
	}
	s.user, s.hasUser = c.Args[0], true
	return s.ok("Send your password")
}

// cmdPass implements PASS (RFC 1939 §7). The password is the rest of the
// line after "PASS ", spaces included (RFC 1939 §7 allows that).
func (s *session) cmdPass(c *Command) error {
	if !s.hasUser {
		return errReply("", "Send USER first")
	}
	user := s.user
	s.user, s.hasUser = "", false
	if c.Rest == "" {
		return errReply("", "Usage: PASS password")
	}
	if !s.plaintextOK() {
		return s.errInsecure()
	}
	ctx := auth.ContextWithLogger(s.ctx, s.log)
	acc, err := s.srv.authn.Authenticate(ctx, user, c.Rest, s.remote)
	if err != nil {
		return s.authFailed(err)
	}
	return s.startTransaction(acc, "USER")
}

// authFailed maps an authentication error to the reply (RFC 3206: [AUTH]
// for bad credentials, as AUTH-RESP-CODE promises; [SYS/TEMP] for
// throttling and temporary failures).
func (s *session) authFailed(err error) error {
	var te *auth.ThrottledError
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		s.fc.Metrics().Auth("failed")
		s.authFailures++
		s.log.Info("login failed")
		return &replyError{code: "AUTH", text: "Invalid user name or password", noCount: true,
			close: s.authFailures >= MaxAuthFailures}
	case errors.As(err, &te):
		s.fc.Metrics().Auth("throttled")
		s.authFailures++
		secs := int((te.RetryAfter + time.Second - 1) / time.Second)
		return &replyError{code: "SYS/TEMP", text: fmt.Sprintf("Too many failed logins, try again in %d seconds", secs),
			noCount: true, close: s.authFailures >= MaxAuthFailures}
	case errors.Is(err, auth.ErrMalformed):
		s.fc.Metrics().Auth("malformed")
		s.authFailures++
		return &replyError{code: "AUTH", text: "Malformed SASL response", noCount: true,
			close: s.authFailures >= MaxAuthFailures}
	}
	s.fc.Metrics().Auth("error")
	if errors.Is(err, mailstore.ErrUnavailable) {
		s.log.Warn("authentication failed: store unavailable", slog.Any("err", err))
		return &replyError{code: "SYS/TEMP", text: "Authentication temporarily unavailable, try again later", noCount: true}
	}
	s.log.Error("authentication error", slog.Any("err", err))
	return &replyError{code: "SYS/TEMP", text: "Authentication temporarily unavailable, try again later", noCount: true}
}

// startTransaction locks the maildrop, snapshots it and enters the
// TRANSACTION state (RFC 1939 §4). A maildrop locked elsewhere in the
// cluster gives [IN-USE] (RFC 2449 §8.1.2) and the session stays in the
// AUTHORIZATION state.
func (s *session) startTransaction(acc mailstore.Account, method string) error {
	l, ok, err := acquireLease(s.ctx, s.srv.store, &s.srv.orphans, acc.ID, s.srv.cfg.NodeID, s.srv.cfg.LockTTL, s.srv.cfg.LockRenewInterval, s.log)
	if err != nil {
		s.fc.Metrics().Auth("error")
		return fmt.Errorf("lock maildrop of account %d: %w", acc.ID, err)
	}
	if !ok {
		s.fc.Metrics().Auth("in_use")
		s.log.Info("maildrop in use", slog.Int64("account", acc.ID))
		return &replyError{code: "IN-USE", text: "Maildrop is in use by another POP3 session, try again later", noCount: true}
	}
	md, err := loadMaildrop(s.ctx, s.srv.store, acc.ID)
	if err != nil {
		l.start(nil)
		l.release()
		s.fc.Metrics().Auth("error")
		return err
	}
	s.acc, s.md, s.lease = acc, md, l
	s.ra.changes, s.ra.cancel = s.srv.store.Subscribe(acc.ID)
	s.state = stateTransaction
	s.lastSeenFlush = time.Now()
	s.log = s.log.With(slog.Int64("account", acc.ID))
	raw := s.raw
	l.start(func() {
		mLockLost.Inc()
		raw.Close() // the session ends without UPDATE
	})
	s.fc.Metrics().Auth("ok")
	s.log.Info("logged in", slog.String("user", acc.Address), slog.String("method", method),
		slog.Bool("tls", s.tls), slog.Bool("utf8", s.utf8), slog.Int("messages", len(md.msgs)))
	return s.ok(fmt.Sprintf("Maildrop locked and ready, %d messages", len(md.msgs)))
}

// cmdAuth implements AUTH (RFC 5034 §4) through the shared auth module.
// Without arguments it lists the mechanisms (the pre-RFC 5034 form some
// clients still send).
func (s *session) cmdAuth(c *Command) error {
	if len(c.Args) == 0 {
		s.writeLine("+OK Supported mechanisms follow")
		for _, m := range s.mechanisms() {
			s.writeLine(m)
		}
		s.writeLine(".")
		return nil
	}
	if len(c.Args) > 2 {
		return errReply("", "Usage: AUTH mechanism [initial-response]")
	}
	mech := strings.ToUpper(c.Args[0])
	offered := false
	for _, m := range s.mechanisms() {
		offered = offered || m == mech
	}
	if !offered {
		if isPlaintextMech(mech) {
			return s.errInsecure()
		}
		return errReply("", "Unsupported authentication mechanism")
	}
	sasl, err := s.srv.authn.NewSASL(mech, s.remote)
	if err != nil {
		return errReply("", "Unsupported authentication mechanism")
	}
	var resp []byte // nil: no initial response yet
	if len(c.Args) == 2 {
		// RFC 5034 §4: "=" is an empty initial response.
		if resp, err = decodeSASL(c.Args[1]); err != nil {
			return err
		}
	}
	ctx := auth.ContextWithLogger(s.ctx, s.log)
	for step := 0; ; step++ {
		challenge, done, err := sasl.Next(ctx, resp)
		if err != nil {
			return s.authFailed(err)
		}
		if done {
			return s.startTransaction(sasl.Account(), "AUTH "+mech)
		}
		if step >= MaxSASLSteps {
			return errReply("AUTH", "Authentication exchange too long")
		}
		// RFC 5034 §4: a challenge is "+" SP base64; the client answers
		// with a base64 line, or "*" to cancel.
		s.writeLine("+ " + base64.StdEncoding.EncodeToString(challenge))
		if err := s.w.Flush(); err != nil {
			return &abortError{err}
		}
		line, err := s.readLine(MaxSASLLineLength)
		if errors.Is(err, errLineTooLong) {
			return &replyError{text: "Authentication response too long", close: true}
		}
		if err != nil {
			return &abortError{err}
		}
		s.trace("C", "****")
		if line == "*" {
			return errReply("", "Authentication cancelled")
		}
		if resp, err = decodeSASL(line); err != nil {
			return err
		}
	}
}

// decodeSASL decodes one base64 client response ("=" is empty, RFC 5034
// §4), never returning nil on success.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errReply("", "Invalid base64 in authentication response")
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// cmdStls implements STLS (RFC 2595 §4). Anything the client pipelined
// after STLS is discarded unread: it was sent in plaintext and must not be
// executed as if it came over TLS (CVE-2011-0411 class). The server also
// forgets what it learnt before TLS: the USER name and UTF8 mode.
func (s *session) cmdStls(c *Command) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if s.tls {
		return errReply("", "Already using TLS")
	}
	if s.srv.cfg.TLS == nil {
		return errReply("", "STLS is not available")
	}
	s.writeLine("+OK Begin TLS negotiation")
	if err := s.w.Flush(); err != nil {
		return &abortError{err}
	}
	if n := s.r.Buffered(); n > 0 {
		_, _ = s.r.Discard(n)
		s.log.Info("discarded plaintext pipelined after STLS", slog.Int("octets", n))
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLS)
	_ = s.conn.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		return &abortError{fmt.Errorf("STLS handshake: %w", err)}
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.conn = tc
	s.r.Reset(tc)
	s.w.Reset(deadlineWriter{tc, s.srv.cfg.WriteTimeout})
	s.tls = true
	s.fc.TLSStarted()
	s.user, s.hasUser, s.utf8 = "", false, false
	return nil
}
