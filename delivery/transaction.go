package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postrider/postrider/mailstore"
)

// result is the outcome of an attempt for one recipient.
type result struct {
	state  mailstore.QueueRecipientState
	code   string // enhanced status code
	reply  string // the server's reply ("550 5.1.1 ...") or our diagnostic
	remote string // the host that replied; "" for our own diagnostic
	// relayed: delivered to a server without DSN, which will send no
	// success notice of its own (RFC 3461 §6.2.1).
	relayed bool
}

func tempResult(code, text string) *result {
	return &result{state: mailstore.RcptPending, code: code, reply: text}
}

func permResult(code, text string) *result {
	return &result{state: mailstore.RcptFailed, code: code, reply: text}
}

// smtpResult maps a reply: 2xx delivered, 4xx pending, 5xx failed (RFC
// 5321 §4.2.1).
func smtpResult(host string, se *smtp.SMTPError) *result {
	msg := oneLine(se.Message)
	code := ""
	if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
		code = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	r := &result{remote: host}
	if code == "" {
		code = enhanced(se.Code, "")
		r.reply = fmt.Sprintf("%d %s", se.Code, msg)
	} else {
		r.reply = fmt.Sprintf("%d %s %s", se.Code, code, msg)
	}
	r.code = code
	switch {
	case se.Code >= 500:
		r.state = mailstore.RcptFailed
	case se.Code >= 400:
		r.state = mailstore.RcptPending
	default:
		r.state = mailstore.RcptDelivered
	}
	return r
}

// enhanced returns the enhanced code at the start of msg, else the
// class's generic one (RFC 3463 §3.1: X.0.0).
func enhanced(code int, msg string) string {
	if f := strings.Fields(msg); len(f) > 0 {
		p := strings.Split(f[0], ".")
		if len(p) == 3 && len(p[0]) == 1 && p[0][0] >= '2' && p[0][0] <= '5' && allDigits(p[1]) && allDigits(p[2]) {
			return f[0]
		}
	}
	switch {
	case code >= 500:
		return "5.0.0"
	case code >= 400:
		return "4.0.0"
	}
	return "2.0.0"
}

func allDigits(s string) bool {
	if s == "" || len(s) > 3 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	return cleanField(strings.ReplaceAll(s, "\n", " "))
}

// errConnection marks a failure of the whole connection in the middle of
// a transaction (a network error, a 421, a body that could not be read):
// the recipients not yet answered are tried again on another connection.
type errConnection struct{ r *result }

func (e *errConnection) Error() string { return e.r.reply }

// opener reads a queued message's body.
type opener interface {
	OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error)
}

// needsUTF8 reports whether the item needs SMTPUTF8 (RFC 6531 §3.4): the
// client asked for it, or an address is not ASCII.
func needsUTF8(it *mailstore.QueueItem, rcpts []mailstore.QueueRecipient) bool {
	if param(it.Params, "smtputf8") != "" || !isASCII(it.MailFrom) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r.Address) {
			return true
		}
	}
	return false
}

// param reads a transaction parameter whatever its case ("ret", "RET").
func param(p map[string]string, key string) string {
	if v, ok := p[key]; ok {
		return v
	}
	for k, v := range p {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// transact sends one message to some of its recipients in one
// transaction (RFC 5321 §3.3) and returns a result per recipient, by
// recipient ID. A *errConnection error means the connection failed:
// results are then given for no one.
func (s *session) transact(ctx context.Context, st opener, it *mailstore.QueueItem, rcpts []mailstore.QueueRecipient) (map[int64]*result, error) {
	out := make(map[int64]*result, len(rcpts))
	all := func(r *result) map[int64]*result {
		for _, rc := range rcpts {
			out[rc.ID] = r
		}
		return out
	}
	utf8 := needsUTF8(it, rcpts)
	if utf8 && !s.smtputf8 {
		// RFC 6531 §3.2: without SMTPUTF8 at the receiver the message
		// cannot be sent as it is; we do not downgrade.
		return all(&result{state: mailstore.RcptFailed, code: "5.6.7", remote: s.host,
			reply: "the message needs SMTPUTF8 (non-ASCII addresses or headers) and " + s.host + " does not support it"}), nil
	}
	if s.size > 0 && it.Size > s.size {
		// RFC 1870 §6: larger than the receiver's fixed limit.
		return all(&result{state: mailstore.RcptFailed, code: "5.3.4", remote: s.host,
			reply: fmt.Sprintf("message of %d octets exceeds the %d-octet limit of %s", it.Size, s.size, s.host)}), nil
	}

	opts := &smtp.MailOptions{Size: it.Size, UTF8: utf8}
	switch strings.ToUpper(param(it.Params, "ret")) {
	case "FULL":
		opts.Return = smtp.DSNReturnFull
	case "HDRS":
		opts.Return = smtp.DSNReturnHeaders
	}
	if id := param(it.Params, "envid"); id != "" && printableASCII(id) && len(id) <= 100 {
		opts.EnvelopeID = id
	}
	s.c.CommandTimeout = commandTimeout
	if err := s.c.Mail(it.MailFrom, opts); err != nil {
		r, cerr := s.replyOrConn(err, "MAIL FROM")
		if cerr != nil {
			return nil, cerr
		}
		s.reset()
		return all(r), nil
	}
	// go-smtp's client sends one command at a time and has no PIPELINING,
	// so RCPT commands wait for each reply.
	var accepted []mailstore.QueueRecipient
	for _, rc := range rcpts {
		if err := s.c.Rcpt(rc.Address, rcptOptions(rc)); err != nil {
			r, cerr := s.replyOrConn(err, "RCPT TO")
			if cerr != nil {
				return nil, cerr
			}
			out[rc.ID] = r
			continue
		}
		accepted = append(accepted, rc)
	}
	if len(accepted) == 0 {
		s.reset()
		return out, nil
	}
	s.c.CommandTimeout = 2 * time.Minute // RFC 5321 §4.5.3.2.3: DATA initiation
	w, err := s.c.Data()
	if err != nil {
		r, cerr := s.replyOrConn(err, "DATA")
		if cerr != nil {
			return nil, cerr
		}
		for _, rc := range accepted {
			out[rc.ID] = r
		}
		s.reset()
		return out, nil
	}
	body, err := st.OpenQueued(ctx, it.ID)
	if err != nil {
		// Without the body the final dot must never be sent: drop the
		// connection so that the receiver discards what it has.
		return nil, &errConnection{tempResult("4.3.0", "local error opening the queued message: "+errText(err))}
	}
	_, err = io.Copy(w, body)
	body.Close()
	if err != nil {
		return nil, &errConnection{tempResult("4.3.0", "sending the message to "+s.host+": "+errText(err))}
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		r, cerr := s.replyOrConn(err, "end of data")
		if cerr != nil {
			return nil, cerr
		}
		for _, rc := range accepted {
			out[rc.ID] = r
		}
		return out, nil
	}
	ok := &result{state: mailstore.RcptDelivered, code: enhanced(250, resp.StatusText), remote: s.host,
		reply: "250 " + oneLine(resp.StatusText), relayed: !s.dsn}
	for _, rc := range accepted {
		out[rc.ID] = ok
	}
	return out, nil
}

// replyOrConn turns a command's error into a result for its recipients,
// or into *errConnection when the connection is lost: a network error,
// or 421 (RFC 5321 §3.8: the server is closing the channel).
func (s *session) replyOrConn(err error, stage string) (*result, error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code != 421 {
		return smtpResult(s.host, se), nil
	}
	return nil, &errConnection{connResult(s.host, err, stage)}
}

// reset aborts a transaction (RSET, RFC 5321 §4.1.1.5); a failure shows
// at the next command.
func (s *session) reset() {
	s.c.CommandTimeout = commandTimeout
	_ = s.c.Reset()
}

// rcptOptions passes the DSN parameters on (RFC 3461 §5.2: a relay that
// talks to a DSN server passes NOTIFY and ORCPT); go-smtp adds them only
// when the receiver offers DSN. Invalid values are dropped, not sent.
func rcptOptions(rc mailstore.QueueRecipient) *smtp.RcptOptions {
	o := &smtp.RcptOptions{}
	if n := parseNotify(rc.Notify); len(n) > 0 {
		o.Notify = n
	}
	if typ, addr, ok := strings.Cut(rc.ORCPT, ";"); ok && addr != "" {
		switch strings.ToLower(strings.TrimSpace(typ)) {
		case "rfc822":
			if printableASCII(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
			}
		case "utf-8":
			o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
		}
	}
	return o
}

// parseNotify parses NOTIFY (RFC 3461 §4.1): NEVER alone, or some of
// SUCCESS, FAILURE, DELAY. nil when absent or invalid.
func parseNotify(v string) []smtp.DSNNotify {
	if v == "" {
		return nil
	}
	var out []smtp.DSNNotify
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.ToUpper(strings.TrimSpace(f))
		if seen[f] {
			return nil
		}
		seen[f] = true
		switch f {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
			out = append(out, smtp.DSNNotify(f))
		default:
			return nil
		}
	}
	if seen["NEVER"] && len(out) > 1 {
		return nil
	}
	return out
}

// notifies reports whether a recipient wants a DSN for action (RFC 3461
// §4.1); without NOTIFY, failures and delays are reported.
func notifies(notify string, a DSNAction) bool {
	n := parseNotify(notify)
	if n == nil {
		return a == ActionFailed || a == ActionDelayed
	}
	want := map[DSNAction]smtp.DSNNotify{ActionFailed: smtp.DSNNotifyFailure, ActionDelayed: smtp.DSNNotifyDelayed, ActionRelayed: smtp.DSNNotifySuccess}[a]
	for _, x := range n {
		if x == want {
			return true
		}
	}
	return false
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
