package smtpd

import (
	"context"
	"crypto/tls"
	"strconv"
	"strings"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/frontend"
)

// command is an entry of the command table.
type command struct {
	run func(c *conn, arg string)
	// greeted: allowed only after EHLO/HELO (RFC 5321 §4.1.4), again after
	// STARTTLS (RFC 3207 §4.2).
	greeted bool
}

// commands is the command table (RFC 5321 §4.1.1 and extensions). The
// transaction states (MAIL, then RCPT, then DATA/BDAT) are the session's.
var commands map[string]command

func init() {
	commands = map[string]command{
		"EHLO":     {run: cmdEhlo},
		"HELO":     {run: cmdHelo},
		"MAIL":     {run: cmdMail, greeted: true},
		"RCPT":     {run: cmdRcpt, greeted: true},
		"DATA":     {run: cmdData, greeted: true},
		"BDAT":     {run: cmdBdat}, // RFC 3030; checks the greeting after reading the chunk
		"RSET":     {run: cmdRset},
		"NOOP":     {run: cmdNoop},
		"QUIT":     {run: cmdQuit},
		"VRFY":     {run: cmdVrfy},
		"HELP":     {run: cmdHelp},
		"EXPN":     {run: cmdNotImplemented},
		"STARTTLS": {run: cmdStartTLS},            // RFC 3207
		"AUTH":     {run: cmdAuth, greeted: true}, // RFC 4954
	}
}

// cmdEhlo answers EHLO (RFC 5321 §4.1.1.1) with the extensions.
func cmdEhlo(c *conn, arg string) {
	if !c.greet(arg, true) {
		return
	}
	ext := []string{
		c.cfg.Hostname + " Hello " + c.helo,
		"PIPELINING",          // RFC 2920
		"8BITMIME",            // RFC 6152
		"ENHANCEDSTATUSCODES", // RFC 2034
		"CHUNKING",            // RFC 3030
		"SMTPUTF8",            // RFC 6531
		"DSN",                 // RFC 3461: the parameters are kept with the delivery
		"SIZE " + strconv.FormatInt(c.cfg.MaxMessageSize, 10), // RFC 1870
		"LIMITS RCPTMAX=" + strconv.Itoa(c.cfg.MaxRecipients), // RFC 9422
	}
	st := c.tls()
	if c.cfg.TLS != nil && st == nil {
		ext = append(ext, "STARTTLS") // RFC 3207 §4
	}
	// AUTH only on submission, and only where plaintext credentials may
	// go (RFC 4954 §4, RFC 8314).
	if c.role == roleSubmission && c.fc.PlaintextAuthOK(st != nil) {
		ext = append(ext, "AUTH "+strings.Join(auth.Mechanisms(), " "))
	}
	c.send(250, ext...)
}

// cmdHelo answers HELO (RFC 5321 §4.1.1.1).
func cmdHelo(c *conn, arg string) {
	if c.greet(arg, false) {
		c.sendf(250, "%s Hello %s", c.cfg.Hostname, c.helo)
	}
}

// greet records an EHLO/HELO argument; like RSET it ends any transaction
// (RFC 5321 §4.1.4).
func (c *conn) greet(arg string, ehlo bool) bool {
	name, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
	if name == "" {
		c.reply(replyErr(501, 5, 5, 4, "Domain or address literal required (RFC 5321 §4.1.1.1)"))
		return false
	}
	if len(name) > maxHelo {
		name = name[:maxHelo]
	}
	c.sess.Reset()
	c.helo, c.ehlo = name, ehlo
	return true
}

func cmdRset(c *conn, arg string) {
	c.sess.Reset()
	c.reply(replyErr(250, 2, 0, 0, "OK"))
}

func cmdNoop(c *conn, arg string) {
	c.reply(replyErr(250, 2, 0, 0, "OK"))
}

func cmdQuit(c *conn, arg string) {
	c.sendf(221, "2.0.0 %s Service closing transmission channel", c.cfg.Hostname)
	c.close()
}

// cmdVrfy never tells which users exist (RFC 5321 §3.5.3: 252).
func cmdVrfy(c *conn, arg string) {
	c.reply(replyErr(252, 2, 5, 0, "Cannot VRFY user, but will accept message and attempt delivery"))
}

func cmdHelp(c *conn, arg string) {
	c.reply(replyErr(214, 2, 0, 0, "See RFC 5321"))
}

// cmdNotImplemented: a command we know but do not offer (RFC 5321 §4.2.4).
func cmdNotImplemented(c *conn, arg string) {
	c.reply(replyErr(502, 5, 5, 1, "Command not implemented"))
}

// cmdStartTLS answers STARTTLS (RFC 3207 §4) and switches to TLS.
func cmdStartTLS(c *conn, arg string) {
	switch {
	case c.cfg.TLS == nil:
		cmdNotImplemented(c, arg)
		return
	case arg != "":
		c.reply(replyErr(501, 5, 5, 4, "Syntax error: STARTTLS takes no parameters (RFC 3207 §4)"))
		return
	case c.tls() != nil:
		c.reply(replyErr(503, 5, 5, 1, "TLS already active"))
		return
	case c.sess.account != nil:
		c.reply(replyErr(503, 5, 5, 1, "STARTTLS not permitted after AUTH"))
		return
	}
	c.reply(replyErr(220, 2, 0, 0, "Ready to start TLS"))
	if c.flush() != nil {
		c.close()
		return
	}
	// RFC 3207 §4.2: nothing the client sent before TLS is in place may
	// be acted on afterwards (CVE-2011-0411).
	if n := c.w - c.r; n > 0 {
		discardedPlaintext.Add(float64(n))
		c.log.Info("discarded plaintext pipelined after STARTTLS", "bytes", n)
	}
	c.r, c.w = 0, 0
	tc := tls.Server(c.fc.Raw, c.cfg.TLS)
	ctx, cancel := context.WithTimeout(c.fc.Ctx, frontend.TLSHandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Info("STARTTLS handshake failed", "err", err)
		c.close()
		return
	}
	st := tc.ConnectionState()
	c.mu.Lock()
	c.nc, c.tlsState = tc, &st
	c.mu.Unlock()
	c.fc.TLSStarted()
	c.log.Debug("TLS established", "version", tls.VersionName(st.Version), "cipher", tls.CipherSuiteName(st.CipherSuite))
	// "discard any knowledge obtained from the client" (RFC 3207 §4.2):
	// the transaction, and the greeting (EHLO is required again).
	c.sess.Reset()
	c.helo, c.ehlo = "", false
}
