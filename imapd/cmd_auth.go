package imapd

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// errAnswered tells complete that the handler has already sent the tagged
// response (STARTTLS must answer before the handshake).
var errAnswered = errors.New("imapd: command already answered")

// maxSASLSteps bounds the challenge/response rounds of one AUTHENTICATE.
const maxSASLSteps = 8

// STARTTLS (RFC 9051 §6.2.1). Anything the client pipelined after the
// command is discarded with the plaintext input buffer, so that it cannot be
// injected into the TLS session (CVE-2011-0411 class).
func cmdStartTLS(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	if c.srv.cfg.TLS == nil || c.tlsOn {
		return errBad("STARTTLS not available")
	}
	c.w.str(cx.tag + " OK Begin TLS negotiation now\r\n")
	if err := c.w.flush(); err != nil {
		return errClosed
	}
	if n := c.br.Buffered(); n > 0 {
		c.log.Warn("discarding plaintext sent after STARTTLS", "octets", n)
	}
	c.br.Reset(connReader{c})
	if err := c.handshake(); err != nil {
		c.log.Debug("STARTTLS handshake failed", "err", err)
		return errClosed
	}
	return errAnswered
}

// LOGIN (RFC 9051 §6.2.3).
func cmdLogin(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	user, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	pass, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if !c.plaintextAuthAllowed() {
		return errNo(codePrivacy, "Use STARTTLS first")
	}
	acct, err := c.srv.auth.Authenticate(authContext(c.ctx, c.log), user, pass, c.remote)
	if err != nil {
		return c.authFailed(err)
	}
	return c.loggedIn(cx, acct)
}

// AUTHENTICATE (RFC 9051 §6.2.2) with SASL-IR (RFC 4959).
func cmdAuthenticate(c *conn, cx *cmdCtx) error {
	if err := c.p.sp(); err != nil {
		return err
	}
	mech, err := c.p.atom()
	if err != nil {
		return err
	}
	mech = strings.ToUpper(mech)
	var ir []byte
	if c.p.accept(' ') {
		// SASL-IR: "=" is an empty initial response.
		s := c.p.scan(func(b byte) bool { return b != ' ' })
		if s == "=" {
			ir = []byte{}
		} else if ir, err = base64.StdEncoding.DecodeString(s); err != nil || s == "" {
			return errBad("Invalid base64 initial response")
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	known := false
	for _, m := range c.srv.auth.Mechanisms() {
		known = known || strings.EqualFold(m, mech)
	}
	if !known {
		return errNo(codeCannot, "Unsupported authentication mechanism")
	}
	if !c.plaintextAuthAllowed() {
		return errNo(codePrivacy, "Use STARTTLS first")
	}
	s, err := c.srv.auth.NewSASL(mech, c.remote)
	if err != nil {
		return err
	}
	resp := ir
	for step := 0; ; step++ {
		chal, done, err := s.Next(authContext(c.ctx, c.log), resp)
		if err != nil {
			return c.authFailed(err)
		}
		if done {
			return c.loggedIn(cx, s.Account())
		}
		if step >= maxSASLSteps {
			return errBad("Too many authentication steps")
		}
		if err := c.continueReq(base64.StdEncoding.EncodeToString(chal)); err != nil {
			return err
		}
		c.p.done = false
		if err := c.p.readLine(); err != nil {
			return err
		}
		c.p.done = true
		line := string(c.p.line)
		if line == "*" {
			return errBad("Authentication cancelled")
		}
		if resp, err = base64.StdEncoding.DecodeString(line); err != nil {
			return errBad("Invalid base64 response")
		}
	}
}

// authFailed answers a failed login, disconnecting after too many.
func (c *conn) authFailed(err error) error {
	switch c.srv.auth.failure(err) {
	case authThrottled:
		c.log.Info("login throttled")
		c.fc.Metrics().Auth("throttled")
		return errNo(codeUnavailable, "Too many failed logins; try again later")
	case authInvalid:
		c.authFailures++
		c.log.Info("login failed")
		c.fc.Metrics().Auth("failed")
		if c.authFailures >= c.srv.limits.MaxAuthFailures {
			c.w.str("* BYE Too many failed logins\r\n")
			c.state = stateLogout
		}
		return errNo(codeAuthFailed, "Invalid credentials")
	}
	if errors.Is(err, mailstore.ErrUnavailable) {
		c.log.Warn("authentication failed: store unavailable", "err", err)
		return errNo(codeUnavailable, "Authentication temporarily unavailable, try again later")
	}
	c.log.Error("authentication error", "err", err)
	return errInternal
}

// loggedIn completes a successful login; the tagged OK carries the new
// capabilities (RFC 9051 §6.2.3).
func (c *conn) loggedIn(cx *cmdCtx, acct mailstore.Account) error {
	if err := c.login(acct); err != nil {
		return err
	}
	cx.okCode = "CAPABILITY " + c.capabilities()
	cx.okText = "Logged in"
	return nil
}
