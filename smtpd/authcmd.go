package smtpd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/postrider/postrider/auth"
)

// cmdAuth runs a SASL exchange (RFC 4954 §4) with the auth module's PLAIN
// and LOGIN: only on submission, only where plaintext credentials may go.
func cmdAuth(c *conn, arg string) {
	s := c.sess
	switch {
	case c.role != roleSubmission:
		c.reply(replyErr(502, 5, 5, 1, "AUTH is not available on this port; use submission"))
		return
	case !c.fc.PlaintextAuthOK(c.tls() != nil):
		c.fc.Metrics().Auth("insecure")
		c.reply(replyErr(538, 5, 7, 11, "Encryption required for requested authentication mechanism (RFC 4954 §6)"))
		return
	case s.account != nil:
		c.reply(replyErr(503, 5, 5, 1, "Already authenticated (RFC 4954 §4)"))
		return
	case s.tx != nil:
		c.reply(replyErr(503, 5, 5, 1, "AUTH not permitted during a mail transaction (RFC 4954 §4)"))
		return
	}
	mech, initial, hasInitial := strings.Cut(strings.TrimSpace(arg), " ")
	if mech == "" {
		c.reply(replyErr(501, 5, 5, 4, "Syntax: AUTH mechanism [initial-response]"))
		return
	}
	ss, err := c.srv.authn.NewSASL(mech, c.fc.Peer.IP)
	if err != nil {
		c.reply(replyErr(504, 5, 5, 4, "Unrecognized authentication type"))
		return
	}
	var resp []byte
	if hasInitial {
		// RFC 4954 §4: "=" is an empty initial response.
		if resp, err = decodeSASL(initial); err != nil {
			c.fc.Metrics().Auth("malformed")
			c.reply(errSASLBase64)
			return
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	ctx = auth.ContextWithLogger(ctx, c.log)
	for {
		challenge, done, err := ss.Next(ctx, resp)
		if err != nil {
			c.reply(s.authFailed(err))
			return
		}
		if done {
			break
		}
		c.send(334, base64.StdEncoding.EncodeToString(challenge))
		line, err := c.readLine(maxAuthLine, false)
		if err != nil {
			c.commandFailed(err)
			c.close()
			return
		}
		c.trace("C: <SASL response>")
		if string(line) == "*" {
			// RFC 4954 §4: the client cancelled the exchange.
			c.fc.Metrics().Auth("cancelled")
			c.reply(replyErr(501, 5, 7, 0, "Authentication cancelled"))
			return
		}
		if resp, err = decodeSASL(string(line)); err != nil {
			c.fc.Metrics().Auth("malformed")
			c.reply(errSASLBase64)
			return
		}
	}
	acct := ss.Account()
	addrs, err := c.srv.store.AccountAddresses(ctx, acct.ID)
	if err != nil {
		c.fc.Metrics().Auth("error")
		c.log.Error("store failure", "op", "account addresses", "err", err)
		c.reply(replyErr(454, 4, 7, 0, "Temporary authentication failure"))
		return
	}
	own := make([]string, 0, len(addrs)+1)
	own = append(own, strings.ToLower(acct.Address))
	for _, ad := range addrs {
		own = append(own, strings.ToLower(ad))
	}
	s.account, s.addresses = &acct, own
	c.log = c.log.With("user", acct.Address)
	c.fc.Metrics().Auth("ok")
	c.log.Info("authenticated")
	c.reply(replyErr(235, 2, 7, 0, "Authentication successful")) // RFC 4954 §6
}

// errSASLBase64: RFC 4954 §4, a response that is not base64 is 501 5.5.2.
var errSASLBase64 = replyErr(501, 5, 5, 2, "Invalid base64 data (RFC 4954 §4)")

// decodeSASL decodes a base64 client response; "=" is the empty one.
func decodeSASL(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	if s == "" {
		return nil, errors.New("empty response")
	}
	return base64.StdEncoding.DecodeString(s)
}

// authFailed maps an error of the SASL exchange to its reply and counts it.
func (s *session) authFailed(err error) *reply {
	m := s.c.fc.Metrics()
	var te *auth.ThrottledError
	switch {
	case errors.As(err, &te):
		m.Auth("throttled")
		return replyErr(454, 4, 7, 0, fmt.Sprintf("Too many failed logins, try again in %d seconds", int(te.RetryAfter.Seconds())+1))
	case errors.Is(err, auth.ErrInvalidCredentials):
		m.Auth("failed")
		return replyErr(535, 5, 7, 8, "Authentication credentials invalid (RFC 4954 §6)")
	case errors.Is(err, auth.ErrMalformed):
		m.Auth("malformed")
		return replyErr(501, 5, 5, 2, "Malformed authentication response")
	}
	m.Auth("error")
	s.c.log.Error("authentication failure", "err", err)
	return replyErr(454, 4, 7, 0, "Temporary authentication failure")
}
