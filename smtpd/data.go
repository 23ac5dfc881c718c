package smtpd

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// beginMessage prepares to receive the transaction's message (DATA, or
// the first BDAT chunk): its content goes through s.msg.
func (s *session) beginMessage() {
	cfg := &s.srv.cfg
	s.spool.reset(cfg.SpoolDir, cfg.SpoolMemory)
	s.msg = msgWriter{
		sc: newDataScanner(cfg.MaxHeaderBytes, true),
		sp: &s.spool, max: cfg.MaxMessageSize, tmp: s.msg.tmp[:0],
	}
}

// failMessage ends a transaction whose message was refused or cut short,
// counts it and returns the reply.
func (s *session) failMessage(err error) *reply {
	r, reason := readReply(err)
	messagesRejected.WithLabelValues(s.c.roleLabel, reason).Inc()
	s.c.log.Info("message refused", "reason", reason, "err", err)
	s.spool.release()
	if s.tx != nil {
		s.tx.spf.stop()
	}
	s.tx = nil
	return r
}

// endMessage checks a completely received message and delivers it to
// every recipient in one store transaction. The 250 reply is returned
// only after that transaction committed; nothing is stored for a refused
// message. The transaction ends either way (RFC 5321 §4.1.1.4).
func (s *session) endMessage() *reply {
	tx, acct, log := s.tx, s.account, s.c.log
	roleL := s.c.roleLabel
	if err := s.msg.finish(); err != nil {
		return s.failMessage(err)
	}
	defer s.spool.release()
	defer tx.spf.stop()
	s.tx = nil
	id := newID()
	log = log.With("msgid", id)
	if s.msg.bareLF > 0 {
		bareNewline.WithLabelValues("data_lf").Inc()
		log.Info("bare LF line endings stored as CRLF", "lines", s.msg.bareLF)
	}
	if s.c.role == roleSubmission {
		if reply := s.checkFrom(s.msg.sc.header); reply != nil {
			messagesRejected.WithLabelValues(roleL, "from_not_owned").Inc()
			log.Info("message refused", "reason", "from_not_owned")
			return reply
		}
	}
	if reply, reason := s.checkLoops(tx); reply != nil {
		messagesRejected.WithLabelValues(roleL, reason).Inc()
		log.Info("message refused", "reason", reason)
		return reply
	}
	var verdict *mailauth.Result // inbound authentication (inboundauth.go)
	if s.c.role == roleInbound {
		var r *reply
		if verdict, r = s.authenticate(tx, log); r != nil {
			return r
		}
	}

	ctx, cancel := s.ctx()
	defer cancel()
	sig, reply := s.signature(ctx, tx, log)
	if reply != nil {
		messagesRejected.WithLabelValues(roleL, "sign_error").Inc()
		return reply
	}
	now := time.Now()
	plan, reply := s.deliveries(ctx, tx, acct, s.receivedHeader(tx, id, acct, now), sig)
	if reply != nil {
		messagesRejected.WithLabelValues(roleL, "store_error").Inc()
		return reply
	}
	for _, o := range plan {
		o.d.InternalDate = now
		if verdict != nil && verdict.Action == mailauth.Quarantine && len(o.d.Recipients) > 0 {
			// Local copies only: forwarded ones are the receiver's to judge.
			if r := s.quarantine(ctx, o.d); r != nil {
				return r
			}
		}
	}
	t0 := time.Now()
	results, err := s.deliverAll(ctx, plan, verdict)
	deliveryLatency.Observe(time.Since(t0).Seconds())
	queued := s.countQueued(results)
	if err != nil {
		reply, reason := deliverReply(err)
		messagesRejected.WithLabelValues(roleL, reason).Inc()
		if reason == "store_error" {
			log.Error("delivery failed", "err", err, "committed", len(results), "planned", len(plan))
		} else {
			log.Info("delivery refused", "reason", reason, "err", err, "committed", len(results), "planned", len(plan))
		}
		return reply
	}
	messagesAccepted.WithLabelValues(roleL).Inc()
	bytesReceived.WithLabelValues(roleL).Add(float64(s.msg.n))
	copies, remote := 0, 0
	var size int64
	for i, res := range results {
		copies += len(res.Delivered)
		remote += len(plan[i].d.Remote)
		size = max(size, res.Size)
	}
	log.Info("delivered", append([]any{"from", tx.from, "rcpts", len(tx.rcpts), "copies", copies, "remote_rcpts", remote,
		"queued", queued, "signed", len(sig) > 0, "size", size, "latency", time.Since(t0).Round(time.Microsecond)},
		verdictAttrs(verdict)...)...)
	if queued > 0 {
		return replyErr(250, 2, 0, 0, "OK: message queued, id="+id)
	}
	return replyErr(250, 2, 0, 0, "OK: message delivered, id="+id)
}

// countQueued counts the queue items committed, tells OnQueued, and
// returns how many.
func (s *session) countQueued(results []mailstore.DeliveryResult) int {
	n := 0
	for _, res := range results {
		if res.QueueID != 0 {
			n++
			messagesQueued.WithLabelValues(s.c.roleLabel).Inc()
		}
	}
	if n > 0 && s.srv.cfg.OnQueued != nil {
		s.srv.cfg.OnQueued()
	}
	return n
}

// msgWriter takes a message's content as it arrives (DATA after
// dot-unstuffing, or BDAT chunks): it stores line endings as CRLF,
// checks the content (dataScanner), counts it against MaxMessageSize and
// spools it. A refusal is recorded in err, not returned: the rest of the
// transfer is still read, and dropped, so that the session stays in step
// with the client.
type msgWriter struct {
	sc     dataScanner
	sp     *spool
	max    int64
	n      int64 // octets stored
	bareLF int64 // bare LFs stored as CRLF
	prevCR bool  // the last octet written was CR
	err    error
	tmp    []byte
}

func (w *msgWriter) Write(p []byte) (int, error) {
	if w.err != nil || len(p) == 0 {
		return len(p), nil
	}
	q := w.normalize(p)
	if err := w.sc.scan(q); err != nil {
		w.err = err
		return len(p), nil
	}
	w.n += int64(len(q))
	if w.n > w.max {
		w.err = errSize
		return len(p), nil
	}
	if _, err := w.sp.Write(q); err != nil {
		w.err = err
	}
	return len(p), nil
}

// finish checks the end of the message and returns the first refusal.
func (w *msgWriter) finish() error {
	if w.err == nil {
		w.err = w.sc.finish()
	}
	return w.err
}

// normalize turns every LF not preceded by CR into CRLF. RFC 5321 §2.3.8
// allows CR and LF only together; like Postfix ≥ 3.9 with
// smtpd_forbid_bare_newline = normalize, a line ending in a bare LF (a
// Unix text file sent as is, e.g. by curl --upload-file) is taken as
// ending in CRLF, so that no stored message has a bare LF for a later
// reader to split at (CVE-2023-51764). What ends DATA is decided before,
// on the raw input (dataReader): a bare LF never helps to end it. Bare CR
// and NUL are left for the scanner to refuse.
func (w *msgWriter) normalize(p []byte) []byte {
	out, copied, from := p, false, 0
	for off := 0; ; {
		k := bytes.IndexByte(p[off:], '\n')
		if k < 0 {
			break
		}
		j := off + k
		cr := w.prevCR
		if j > 0 {
			cr = p[j-1] == '\r'
		}
		if !cr {
			if !copied {
				out, copied = w.tmp[:0], true
			}
			out = append(out, p[from:j]...)
			out = append(out, '\r')
			from = j // the LF goes with the next piece
			w.bareLF++
		}
		off = j + 1
	}
	w.prevCR = p[len(p)-1] == '\r'
	if !copied {
		return p
	}
	out = append(out, p[from:]...)
	w.tmp = out
	return out
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
	any := tx.params.ret != "" || tx.params.envID != ""
	for _, r := range tx.rcpts {
		if len(r.params.notify) > 0 || r.params.orcpt != "" {
			any = true
		}
	}
	if !any {
		return nil
	}
	p := make(map[string]string, 3)
	if tx.params.ret != "" {
		p["RET"] = tx.params.ret
	}
	if tx.params.envID != "" {
		p["ENVID"] = tx.params.envID
	}
	lines := make([]string, len(tx.rcpts))
	for i, r := range tx.rcpts {
		l := "<" + r.addr + ">"
		if len(r.params.notify) > 0 {
			l += " NOTIFY=" + strings.Join(r.params.notify, ",")
		}
		if r.params.orcpt != "" {
			l += " ORCPT=" + r.params.orcptType + ";" + r.params.orcpt
		}
		lines[i] = l
	}
	p["RCPTS"] = strings.Join(lines, "\n")
	return p
}

// returnPathHeader is the Return-Path: field (RFC 5321 §4.4) that final
// delivery prepends to a message.
func returnPathHeader(from string) []byte {
	b := make([]byte, 0, 20+len(from))
	b = append(b, "Return-Path: <"...)
	if from != "" {
		b = append(b, pathString(from)...)
	}
	return append(b, ">\r\n"...)
}

// receivedHeader builds the Received: field (RFC 5321 §4.4,
// with-protocols of RFC 3848 and RFC 6531 §3.7.3) prepended to the
// message. The authenticated identity is recorded; never anything of the
// credentials.
func (s *session) receivedHeader(tx *transaction, id string, acct *mailstore.Account, now time.Time) []byte {
	var b bytes.Buffer

	ip := s.c.fc.Peer.IP
	lit := "[" + ip.String() + "]"
	if ip.Is6() {
		lit = "[IPv6:" + ip.String() + "]"
	}
	helo, ehlo := s.c.helo, s.c.ehlo
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
	st := s.c.tls()
	proto := "SMTP"
	if ehlo {
		proto = "ESMTP"
		if tx.params.utf8 {
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
