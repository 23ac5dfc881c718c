package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// Timeouts of the SMTP client (RFC 5321 §4.5.3.2.1 to .6 give minimums
// of 5 minutes for the greeting, MAIL and RCPT, 2 for DATA, 3 per data
// block and 10 for the final dot; a receiver slower than ours is rare,
// and a stuck one must not hold a worker for an hour).
const (
	dialTimeout      = 30 * time.Second
	greetingTimeout  = 5 * time.Minute
	commandTimeout   = 5 * time.Minute
	tlsTimeout       = time.Minute
	dataInitTimeout  = 2 * time.Minute
	dataBlockTimeout = 3 * time.Minute
	finalDotTimeout  = 10 * time.Minute
)

// target is one address to connect to, with what the connection must do.
type target struct {
	host string // MX or relay host name (Remote-MTA, TLS server name)
	addr string // ip:port
	// tls: opportunistic (STARTTLS when offered, any certificate), or
	// required with a certificate verified for verifyName.
	requireTLS  bool
	verifyName  string // "" with requireTLS false: no verification
	implicitTLS bool   // TLS from the first octet (a relay on port 465)
	// reportOnly: verify for verifyName but only report a failure (MTA-STS
	// testing mode, RFC 8461 §5).
	reportOnly bool
	noTLS      bool // a retry in clear after a failed opportunistic handshake
	user, pass string
}

// session is one open SMTP connection.
type session struct {
	c          *clientConn
	raw        net.Conn
	host, addr string
	tlsVersion string // "" in clear
	tlsFailed  error  // reportOnly: why verification failed
	stop       func() bool
	smtputf8   bool
	dsn        bool  // the receiver offers DSN (RFC 3461)
	eightBit   bool  // the receiver offers 8BITMIME (RFC 6152)
	pipelining bool  // the receiver offers PIPELINING (RFC 2920)
	size       int64 // the receiver's SIZE limit; 0: none given
	// dirty: a transaction was begun on the connection, so the next one
	// starts with RSET (RFC 5321 §4.1.1.5).
	dirty bool
	// broken: the connection failed after a transaction's results were
	// known; the next transaction fails at once with this.
	broken  *result
	bw      *bufio.Writer // message content (sendBody), made at the first
	copyBuf []byte        // sendBody's, made at the first
	sent    int           // transactions over this connection (connCache)
}

// errOpportunisticTLS marks a failed opportunistic handshake: the same
// address is tried again in clear (RFC 7435 §3).
var errOpportunisticTLS = errors.New("opportunistic TLS handshake failed")

// dial opens a session: TCP, the greeting, EHLO with our host name,
// STARTTLS when offered (or required), EHLO again and AUTH when the
// target has credentials. A failure returns a result for every recipient
// of the connection (a temporary one: another host or a later attempt may
// do better).
//
// The whole client is ours (clientConn), not go-smtp's: its client has no
// PIPELINING, says EHLO "localhost" before STARTTLS, and cannot take over
// a connection whose opening another reader has buffered. AUTH is ours
// too, over go-sasl's mechanisms: handing the connection to go-smtp for
// AUTH alone would mean two readers and two EHLO states on one
// connection.
func dial(ctx context.Context, t target, hostname string, roots *x509.CertPool, src []netip.Addr) (*session, *result, error) {
	d := net.Dialer{Timeout: dialTimeout}
	if ap, err := netip.ParseAddrPort(t.addr); err == nil {
		for _, a := range src {
			if a.Is4() == ap.Addr().Unmap().Is4() {
				d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
			}
		}
	}
	raw, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, tempResult("4.4.1", fmt.Sprintf("connect to %s[%s]: %s", t.host, t.addr, errText(err))), nil
	}
	s := &session{raw: raw, host: t.host, addr: t.addr}
	s.stop = context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(r *result) (*session, *result, error) {
		s.close()
		return nil, r, nil
	}
	conn := net.Conn(&deadlineConn{Conn: raw})
	tconf := s.tlsConfig(t, roots)

	if t.implicitTLS {
		tc := tls.Client(conn, tconf)
		if err := handshake(tc); err != nil {
			return fail(tempResult("4.7.5", fmt.Sprintf("TLS with %s[%s]: %s", t.host, t.addr, errText(err))))
		}
		s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
		s.c = newClientConn(tc, raw)
		if r := s.c.greet(t); r != nil {
			return fail(r)
		}
		if r := s.c.hello(hostname, t); r != nil {
			return fail(r)
		}
	} else {
		s.c = newClientConn(conn, raw)
		starttls, r := plainOpening(s.c, hostname, t)
		if r != nil {
			return fail(r)
		}
		switch {
		case starttls:
			tc := tls.Client(conn, tconf)
			if err := handshake(tc); err != nil {
				if !t.requireTLS {
					s.close()
					return nil, nil, errOpportunisticTLS
				}
				return fail(tempResult("4.7.5", fmt.Sprintf("TLS with %s[%s]: %s", t.host, t.addr, errText(err))))
			}
			s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
			// RFC 3207 §4.2: everything learnt in clear is forgotten;
			// EHLO again.
			s.c = newClientConn(tc, raw)
			if r := s.c.hello(hostname, t); r != nil {
				return fail(r)
			}
		case t.requireTLS:
			return fail(tempResult("4.7.10", fmt.Sprintf("%s[%s] does not offer STARTTLS, which is required", t.host, t.addr)))
		}
	}

	s.smtputf8 = s.c.hasExt("SMTPUTF8")
	s.dsn = s.c.hasExt("DSN")
	s.eightBit = s.c.hasExt("8BITMIME")
	s.pipelining = s.c.hasExt("PIPELINING")
	if n, err := strconv.ParseInt(s.c.ext["SIZE"], 10, 64); err == nil && n > 0 {
		s.size = n // RFC 1870 §4: 0 or no number means no fixed limit
	}
	if t.user != "" {
		if s.tlsVersion == "" {
			// Never send credentials in clear.
			return fail(tempResult("4.7.10", "relay "+t.host+" offers no TLS; credentials not sent"))
		}
		mechs := strings.Fields(strings.ToUpper(s.c.ext["AUTH"]))
		var a sasl.Client
		switch {
		case slices.Contains(mechs, "PLAIN"):
			a = sasl.NewPlainClient("", t.user, t.pass)
		case slices.Contains(mechs, "LOGIN"):
			a = sasl.NewLoginClient(t.user, t.pass)
		default:
			return fail(tempResult("4.7.12", "relay "+t.host+" offers neither AUTH PLAIN nor AUTH LOGIN"))
		}
		if err := s.c.auth(a); err != nil {
			// A refused login is a configuration error: keep the mail.
			r := connResult(t.host, err, "AUTH")
			r.state = "pending"
			return fail(r)
		}
	}
	return s, nil, nil
}

func (s *session) tlsConfig(t target, roots *x509.CertPool) *tls.Config {
	// Opportunistic TLS checks no certificate: an MX name comes from
	// unauthenticated DNS, so a certificate for it proves nothing to an
	// active attacker, and refusing a self-signed one would only push the
	// mail to cleartext, which protects less against a passive one (RFC
	// 7435 §1.3, and why RFC 8461 §1 exists). A certificate is verified
	// only when a policy says whose it must be: MTA-STS (RFC 8461 §4.2)
	// or a relay we send credentials to.
	conf := &tls.Config{
		ServerName:         t.verifyName,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS12,
	}
	if conf.ServerName == "" {
		conf.ServerName = t.host
	}
	if t.verifyName == "" {
		return conf
	}
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verifyPeer(cs, t.verifyName, roots)
		if err != nil && t.reportOnly {
			s.tlsFailed = err
			return nil
		}
		return err
	}
	return conf
}

// verifyPeer checks the server's chain against roots (nil: the system's)
// and its name (RFC 8461 §4.2: the MX host name, wildcards as RFC 6125).
func verifyPeer(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName: name, Roots: roots, Intermediates: inter,
	})
	return err
}

func handshake(tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), tlsTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// greet reads the server's greeting (RFC 5321 §3.1, §4.5.3.2.1).
func (c *clientConn) greet(t target) *result {
	rp, err := c.read(greetingTimeout)
	if err != nil {
		return openingFailure(t, "greeting", nil, err)
	}
	if rp.code != 220 {
		return openingFailure(t, "greeting", rp, nil)
	}
	return nil
}

// hello says EHLO, or HELO to a server that does not know EHLO (RFC 5321
// §3.2: 500 or 502), and keeps the extensions the server names.
func (c *clientConn) hello(hostname string, t target) *result {
	rp, err := c.cmd("EHLO "+hostname, commandTimeout)
	if err != nil {
		return openingFailure(t, "EHLO", nil, err)
	}
	if rp.code == 250 {
		c.parseEHLO(rp)
		return nil
	}
	if rp.code != 500 && rp.code != 502 {
		return openingFailure(t, "EHLO", rp, nil)
	}
	c.ext = map[string]string{}
	rp, err = c.cmd("HELO "+hostname, commandTimeout)
	if err != nil {
		return openingFailure(t, "HELO", nil, err)
	}
	if rp.code != 250 {
		return openingFailure(t, "HELO", rp, nil)
	}
	return nil
}

// plainOpening reads the greeting, says EHLO and, when STARTTLS is offered
// and wanted, STARTTLS: RFC 5321 §3.1, §4.1.1.1, RFC 3207 §4. It reports
// whether the TLS handshake comes next.
func plainOpening(c *clientConn, hostname string, t target) (bool, *result) {
	if r := c.greet(t); r != nil {
		return false, r
	}
	if r := c.hello(hostname, t); r != nil {
		return false, r
	}
	if !c.hasExt("STARTTLS") || t.noTLS {
		return false, nil
	}
	rp, err := c.cmd("STARTTLS", commandTimeout)
	if err != nil {
		return false, openingFailure(t, "STARTTLS", nil, err)
	}
	if rp.code != 220 {
		if rp.code >= 400 && !t.requireTLS && rp.code != 421 {
			// RFC 3207 §4: the server may refuse; carry on in clear on
			// the same connection.
			delete(c.ext, "STARTTLS")
			return false, nil
		}
		return false, openingFailure(t, "STARTTLS", rp, nil)
	}
	if c.br.Buffered() > 0 {
		// Octets after 220 in clear would be taken as TLS: a server that
		// sends them is broken or attacked (CVE-2011-0411 in reverse).
		return false, tempResult("4.7.5", t.host+" sent data after its STARTTLS reply")
	}
	return true, nil
}

// auth authenticates with a SASL mechanism (RFC 4954 §4): an initial
// response with the command ("=" when empty), then one response per 334
// challenge, until 235. A challenge we cannot answer is cancelled with
// "*". The exchange is bounded.
func (c *clientConn) auth(a sasl.Client) error {
	mech, ir, err := a.Start()
	if err != nil {
		return err
	}
	line := "AUTH " + mech
	if ir != nil {
		if len(ir) == 0 {
			line += " ="
		} else {
			line += " " + base64.StdEncoding.EncodeToString(ir)
		}
	}
	rp, err := c.cmd(line, commandTimeout)
	for range 10 {
		if err != nil {
			return err
		}
		switch rp.code {
		case 235:
			return nil
		case 334:
		default:
			return &replyError{rp}
		}
		chal, derr := base64.StdEncoding.DecodeString(strings.Join(rp.lines, ""))
		var resp []byte
		if derr == nil {
			resp, derr = a.Next(chal)
		}
		if derr != nil {
			_, _ = c.cmd("*", commandTimeout)
			return fmt.Errorf("AUTH %s: %w", mech, derr)
		}
		rp, err = c.cmd(base64.StdEncoding.EncodeToString(resp), commandTimeout)
	}
	if err != nil {
		return err
	}
	_, _ = c.cmd("*", commandTimeout)
	return fmt.Errorf("AUTH %s: too many challenges", mech)
}

// openingFailure makes the result of a failed opening: the server's reply
// when it gave one, else our own diagnostic. Temporary either way.
func openingFailure(t target, stage string, rp *reply, err error) *result {
	if rp != nil && rp.code >= 400 {
		r := replyResult(t.host, rp)
		r.state = "pending"
		return r
	}
	if err == nil {
		err = &replyError{rp}
	}
	return tempResult("4.4.2", fmt.Sprintf("%s[%s] at %s: %s", t.host, t.addr, stage, errText(err)))
}

// connResult turns an error at the connection level into a result: a
// reply from the server when there is one, else our own text. Every such
// failure is temporary: another host or a later attempt may succeed.
func connResult(host string, err error, stage string) *result {
	var re *replyError
	if errors.As(err, &re) && re.rp.code >= 400 {
		r := replyResult(host, re.rp)
		r.state = "pending"
		return r
	}
	return tempResult("4.4.2", fmt.Sprintf("%s at %s: %s", host, stage, errText(err)))
}

func (s *session) close() {
	if s.stop != nil {
		s.stop()
	}
	s.raw.Close()
}

// quit says QUIT politely, bounded, then closes.
func (s *session) quit() {
	if s.c != nil && s.broken == nil {
		_, _ = s.c.cmd("QUIT", 10*time.Second)
	}
	s.close()
}

// deadlineConn bounds every write (a data block, RFC 5321 §4.5.3.2.5).
type deadlineConn struct {
	net.Conn
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(dataBlockTimeout))
	return c.Conn.Write(b)
}
