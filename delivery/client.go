package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Timeouts of the SMTP client (RFC 5321 §4.5.3.2 gives minimums of 5
// minutes for the greeting, MAIL and RCPT, 2 for DATA, 3 per data block
// and 10 for the final dot; a receiver slower than ours is rare, and a
// stuck one must not hold a worker for an hour).
const (
	dialTimeout      = 30 * time.Second
	greetingTimeout  = 5 * time.Minute
	commandTimeout   = 5 * time.Minute
	tlsTimeout       = time.Minute
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
	c          *smtp.Client
	raw        net.Conn
	host, addr string
	tlsVersion string // "" in clear
	tlsFailed  error  // reportOnly: why verification failed
	stop       func() bool
	smtputf8   bool
	dsn        bool  // the receiver offers DSN (RFC 3461)
	size       int64 // the receiver's SIZE limit; 0: none given
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
// go-smtp's client sends its own EHLO before STARTTLS with the name
// "localhost" and has no STARTTLS of its own, so the part in clear is done
// here with net/textproto; the client takes over once TLS is up (or at
// once when there is none) and says EHLO with our name.
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

	var greeting string
	if t.implicitTLS {
		tc := tls.Client(conn, tconf)
		if err := handshake(tc); err != nil {
			return fail(tempResult("4.7.5", fmt.Sprintf("TLS with %s[%s]: %s", t.host, t.addr, errText(err))))
		}
		s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
		conn = tc
	} else {
		var ext map[string]string
		var r *result
		greeting, ext, r = plainOpening(conn, hostname, t)
		if r != nil {
			return fail(r)
		}
		_, starttls := ext["STARTTLS"]
		switch {
		case starttls && !t.noTLS:
			tc := tls.Client(conn, tconf)
			if err := handshake(tc); err != nil {
				if !t.requireTLS {
					s.close()
					return nil, nil, errOpportunisticTLS
				}
				return fail(tempResult("4.7.5", fmt.Sprintf("TLS with %s[%s]: %s", t.host, t.addr, errText(err))))
			}
			s.tlsVersion = tls.VersionName(tc.ConnectionState().Version)
			conn = tc
		case t.requireTLS:
			return fail(tempResult("4.7.10", fmt.Sprintf("%s[%s] does not offer STARTTLS, which is required", t.host, t.addr)))
		}
		// The client reads a greeting first: give it the one we read.
		conn = &replayConn{Conn: conn, pending: []byte(greeting)}
	}

	s.c = smtp.NewClient(conn)
	s.c.CommandTimeout = greetingTimeout
	s.c.SubmissionTimeout = finalDotTimeout
	if err := s.c.Hello(hostname); err != nil {
		return fail(connResult(t.host, err, "EHLO"))
	}
	s.c.CommandTimeout = commandTimeout
	if ok, _ := s.c.Extension("SMTPUTF8"); ok {
		s.smtputf8 = true
	}
	if ok, _ := s.c.Extension("DSN"); ok {
		s.dsn = true
	}
	if n, ok := s.c.MaxMessageSize(); ok {
		s.size = int64(n)
	}
	if t.user != "" {
		if s.tlsVersion == "" {
			// Never send credentials in clear.
			return fail(tempResult("4.7.10", "relay "+t.host+" offers no TLS; credentials not sent"))
		}
		var a sasl.Client
		switch {
		case s.c.SupportsAuth("PLAIN"):
			a = sasl.NewPlainClient("", t.user, t.pass)
		case s.c.SupportsAuth("LOGIN"):
			a = sasl.NewLoginClient(t.user, t.pass)
		default:
			return fail(tempResult("4.7.12", "relay "+t.host+" offers neither AUTH PLAIN nor AUTH LOGIN"))
		}
		if err := s.c.Auth(a); err != nil {
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

// plainOpening reads the greeting, says EHLO and, when STARTTLS is offered
// and wanted, STARTTLS: RFC 5321 §3.1, §4.1.1.1, RFC 3207 §4.
func plainOpening(conn net.Conn, hostname string, t target) (string, map[string]string, *result) {
	tp := textproto.NewReader(bufio.NewReaderSize(io.LimitReader(conn, 1<<20), 4096))
	_ = conn.SetDeadline(time.Now().Add(greetingTimeout))
	defer conn.SetDeadline(time.Time{})
	code, msg, err := tp.ReadResponse(220)
	if err != nil {
		return "", nil, openingFailure(t, "greeting", code, msg, err)
	}
	greeting := fmt.Sprintf("220 %s\r\n", strings.ReplaceAll(msg, "\n", " "))
	_ = conn.SetDeadline(time.Now().Add(commandTimeout))
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", hostname); err != nil {
		return "", nil, openingFailure(t, "EHLO", 0, "", err)
	}
	code, msg, err = tp.ReadResponse(250)
	if err != nil {
		if code == 500 || code == 502 {
			// No EHLO: HELO then, and no extensions (the client falls back).
			return greeting, map[string]string{}, nil
		}
		return "", nil, openingFailure(t, "EHLO", code, msg, err)
	}
	ext := map[string]string{}
	for i, line := range strings.Split(msg, "\n") {
		if i == 0 {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		ext[strings.ToUpper(k)] = v
	}
	if _, ok := ext["STARTTLS"]; !ok || t.noTLS {
		return greeting, ext, nil
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return "", nil, openingFailure(t, "STARTTLS", 0, "", err)
	}
	code, msg, err = tp.ReadResponse(220)
	if err != nil {
		if code != 0 && !t.requireTLS && code != 421 {
			// RFC 3207 §4: the server may refuse; carry on in clear on
			// the same connection, after its state is reset by EHLO.
			delete(ext, "STARTTLS")
			return greeting, ext, nil
		}
		return "", nil, openingFailure(t, "STARTTLS", code, msg, err)
	}
	if tp.R.Buffered() > 0 {
		// Octets after 220 in clear would be taken as TLS: a server that
		// sends them is broken or attacked (CVE-2011-0411 in reverse).
		return "", nil, tempResult("4.7.5", t.host+" sent data after its STARTTLS reply")
	}
	return greeting, ext, nil
}

func openingFailure(t target, stage string, code int, msg string, err error) *result {
	if code >= 400 {
		return &result{state: "pending", code: enhanced(code, msg), reply: fmt.Sprintf("%d %s", code, oneLine(msg)), remote: t.host}
	}
	return tempResult("4.4.2", fmt.Sprintf("%s[%s] at %s: %s", t.host, t.addr, stage, errText(err)))
}

// connResult turns an error of the client at the connection level into a
// result: a reply from the server when there is one, else our own text.
// Every such failure is temporary: another host or a later attempt may
// succeed.
func connResult(host string, err error, stage string) *result {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		r := smtpResult(host, se)
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
	if s.c != nil {
		s.c.CommandTimeout = 10 * time.Second
		_ = s.c.Quit()
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

// replayConn returns pending before reading the connection.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
