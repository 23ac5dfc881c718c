package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/postrider/postrider/mailstore"
)

// Data receives a message (DATA, RFC 5321 §4.1.1.4, or the BDAT chunks of
// RFC 3030 joined by go-smtp), checks it while spooling it (bounded memory,
// then an unlinked temporary file), and delivers it to every recipient in
// one store transaction. The 250 reply is returned only after that
// transaction committed; nothing is stored for a refused message.
func (s *session) Data(r io.Reader) error {
	s.mu.Lock()
	tx, acct, log := s.tx, s.account, s.log
	s.mu.Unlock()
	roleL := s.gc.roleLabel()
	if tx == nil || len(tx.accounts) == 0 {
		return replyErr(503, 5, 5, 1, "No valid recipients (RFC 5321 §4.1.1.4)")
	}
	id := newID()
	log = log.With("msgid", id)
	cfg := &s.srv.cfg

	sp := &s.spool
	sp.reset(cfg.SpoolDir, cfg.SpoolMemory)
	defer sp.release()
	sc := newDataScanner(cfg.MaxHeaderBytes, s.gc.role == roleSubmission)
	size, err := copyScanned(sp, r, &sc, cfg.MaxMessageSize)
	if err == nil {
		err = sc.finish()
	}
	if rerr := s.gc.takeRawErr(); rerr != nil && (err == nil || errors.Is(err, smtp.ErrDataTooLarge)) {
		// What guardConn saw before go-smtp's dot-unstuffing (DATA only).
		err = rerr
	}
	if err != nil {
		reply, reason := readReply(err)
		messagesRejected.WithLabelValues(roleL, reason).Inc()
		log.Info("message refused", "reason", reason, "err", err)
		return reply
	}
	if s.gc.role == roleSubmission {
		if reply := s.checkFrom(sc.header); reply != nil {
			messagesRejected.WithLabelValues(roleL, "from_not_owned").Inc()
			log.Info("message refused", "reason", "from_not_owned")
			return reply
		}
	}

	now := time.Now()
	trace := s.traceHeaders(tx, id, acct, now)
	body, err := sp.reader()
	if err != nil {
		log.Error("spool failure", "err", err)
		messagesRejected.WithLabelValues(roleL, "spool_error").Inc()
		return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later")
	}
	d := &mailstore.Delivery{
		MailFrom:     tx.from,
		Recipients:   make([]mailstore.Recipient, len(tx.accounts)),
		Body:         io.MultiReader(bytes.NewReader(trace), body),
		InternalDate: now,
		Params:       dsnParams(tx),
	}
	for i, a := range tx.accounts {
		d.Recipients[i] = mailstore.Recipient{AccountID: a}
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, cfg.DeliverTimeout)
	defer cancel()
	t0 := time.Now()
	res, err := s.srv.store.Deliver(ctx, d)
	deliveryLatency.Observe(time.Since(t0).Seconds())
	if err != nil {
		reply, reason := deliverReply(err)
		messagesRejected.WithLabelValues(roleL, reason).Inc()
		if reason == "store_error" {
			log.Error("delivery failed", "err", err)
		} else {
			log.Info("delivery refused", "reason", reason, "err", err)
		}
		return reply
	}
	messagesAccepted.WithLabelValues(roleL).Inc()
	bytesReceived.WithLabelValues(roleL).Add(float64(size))
	log.Info("delivered", "from", tx.from, "rcpts", len(tx.rcpts), "copies", len(res.Delivered),
		"size", res.Size, "latency", time.Since(t0).Round(time.Microsecond))
	// go-smtp writes an *SMTPError returned by Data as the reply, whatever
	// its code; this is how the 250 carries the message id.
	return replyErr(250, 2, 0, 0, "OK: message delivered, id="+id)
}

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyScanned copies r into w through the scanner, refusing more than max
// octets; it returns the number of octets copied.
func copyScanned(w io.Writer, r io.Reader, sc *dataScanner, max int64) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := sc.scan(buf[:n]); serr != nil {
				return total, serr
			}
			total += int64(n)
			if total > max {
				return total, errSize
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// spool holds one message: up to memMax octets in memory, the rest in an
// unlinked temporary file (so a crash leaves nothing behind).
type spool struct {
	dir    string
	memMax int64
	mem    []byte
	f      *os.File
	err    error
}

// spoolKeep is the largest memory buffer kept between messages.
const spoolKeep = 64 << 10

func (sp *spool) reset(dir string, memMax int64) {
	sp.dir, sp.memMax, sp.mem, sp.err = dir, memMax, sp.mem[:0], nil
}

func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if sp.f == nil && int64(len(sp.mem)+len(p)) <= sp.memMax {
		sp.mem = append(sp.mem, p...)
		return len(p), nil
	}
	if sp.f == nil {
		f, err := os.CreateTemp(sp.dir, "postrider-smtp-*")
		if err != nil {
			sp.err = err
			return 0, err
		}
		_ = os.Remove(f.Name())
		sp.f = f
	}
	n, err := sp.f.Write(p)
	if err != nil {
		sp.err = err
	}
	return n, err
}

// reader returns the spooled message from its start.
func (sp *spool) reader() (io.Reader, error) {
	if sp.f == nil {
		return bytes.NewReader(sp.mem), nil
	}
	if _, err := sp.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(sp.mem), sp.f), nil
}

// release drops the file and any large buffer.
func (sp *spool) release() {
	if sp.f != nil {
		_ = sp.f.Close()
		sp.f = nil
	}
	if cap(sp.mem) > spoolKeep {
		sp.mem = nil
	}
}

// dsnParams keeps the DSN parameters (RFC 3461 §4) of a transaction with
// its delivery: RET, ENVID, and one line per recipient in RCPTS
// ("<addr> NOTIFY=... ORCPT=type;addr"). nil when the client gave none.
func dsnParams(tx *transaction) map[string]string {
	any := tx.ret != "" || tx.envID != ""
	for _, r := range tx.rcpts {
		if len(r.notify) > 0 || r.orcpt != "" {
			any = true
		}
	}
	if !any {
		return nil
	}
	p := make(map[string]string, 3)
	if tx.ret != "" {
		p["RET"] = string(tx.ret)
	}
	if tx.envID != "" {
		p["ENVID"] = tx.envID
	}
	lines := make([]string, len(tx.rcpts))
	for i, r := range tx.rcpts {
		l := "<" + r.addr + ">"
		if len(r.notify) > 0 {
			ns := make([]string, len(r.notify))
			for j, n := range r.notify {
				ns[j] = string(n)
			}
			l += " NOTIFY=" + strings.Join(ns, ",")
		}
		if r.orcpt != "" {
			l += " ORCPT=" + string(r.orcptTy) + ";" + r.orcpt
		}
		lines[i] = l
	}
	p["RCPTS"] = strings.Join(lines, "\n")
	return p
}

// traceHeaders builds the Return-Path: (RFC 5321 §4.4) and Received:
// (RFC 5321 §4.4, with-protocols of RFC 3848 and RFC 6531 §3.7.3) fields
// prepended to the message. The authenticated identity is recorded; never
// anything of the credentials.
func (s *session) traceHeaders(tx *transaction, id string, acct *mailstore.Account, now time.Time) []byte {
	var b bytes.Buffer
	b.WriteString("Return-Path: <")
	if tx.from != "" {
		b.WriteString(pathString(tx.from))
	}
	b.WriteString(">\r\n")

	ip := s.gc.remote
	lit := "[" + ip.String() + "]"
	if ip.Is6() {
		lit = "[IPv6:" + ip.String() + "]"
	}
	helo, ehlo := s.conn.Hostname(), s.gc.lastGreetEHLO()
	h := sanitizeHelo(helo)
	switch {
	case !ip.IsValid() && h != "":
		// A trusted proxy did not know the client (netutil.Peer): RFC
		// 5321 §4.4 Extended-Domain without TCP-info.
		fmt.Fprintf(&b, "Received: from %s (unknown address)", h)
	case !ip.IsValid():
		fmt.Fprintf(&b, "Received: from unknown (helo=%s)", heloComment(helo))
	case h != "":
		fmt.Fprintf(&b, "Received: from %s (%s)", h, lit)
	default:
		fmt.Fprintf(&b, "Received: from %s (helo=%s)", lit, heloComment(helo))
	}
	st := s.gc.TLS()
	proto := "SMTP"
	if ehlo {
		proto = "ESMTP"
		if tx.utf8 {
			proto = "UTF8SMTP"
		}
	}
	if st != nil {
		proto += "S"
	}
	if acct != nil {
		proto += "A"
	}
	fmt.Fprintf(&b, "\r\n\tby %s (Postrider) with %s id %s", s.srv.cfg.Hostname, proto, id)
	if st != nil {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", tlsVersionName(st), tls.CipherSuiteName(st.CipherSuite))
	}
	if acct != nil {
		fmt.Fprintf(&b, "\r\n\t(authenticated user %s)", acct.Address)
	}
	if len(tx.rcpts) == 1 {
		// RFC 5321 §4.4: FOR names exactly one path; with several
		// recipients it would disclose Bcc ones (§7.2), so it is left out.
		fmt.Fprintf(&b, "\r\n\tfor <%s>", pathString(tx.rcpts[0].addr))
	}
	b.WriteString(";\r\n\t" + now.Format(time.RFC1123Z) + "\r\n")
	return b.Bytes()
}

func tlsVersionName(st *tls.ConnectionState) string {
	return strings.ReplaceAll(tls.VersionName(st.Version), " ", "")
}

// sanitizeHelo returns the EHLO/HELO argument if it is a domain or an
// address literal that can go into Received: as is, else "".
func sanitizeHelo(h string) string {
	if h == "" || len(h) > maxHelo {
		return ""
	}
	if strings.HasPrefix(h, "[") {
		if validAddressLiteral(h) {
			return h
		}
		return ""
	}
	if _, err := asciiDomain(h); err != nil || !isASCII(h) {
		return ""
	}
	return h
}

// heloComment renders an invalid EHLO/HELO argument harmlessly inside a
// comment: printable ASCII without parentheses or backslashes, bounded.
func heloComment(h string) string {
	if len(h) > 64 {
		h = h[:64]
	}
	b := []byte(h)
	for i, c := range b {
		if c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == '\\' {
			b[i] = '?'
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}
