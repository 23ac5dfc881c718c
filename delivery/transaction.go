package delivery

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

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

// enhanced returns the enhanced code at the start of msg, else the
// class's generic one (RFC 3463 §3.1: X.0.0).
func enhanced(code int, msg string) string {
	if f := strings.Fields(msg); len(f) > 0 {
		p := strings.Split(f[0], ".")
		// RFC 3463 §2: the class is the reply's (2, 4 or 5).
		if len(p) == 3 && len(p[0]) == 1 && p[0][0] >= '2' && p[0][0] <= '5' && allDigits(p[1]) && allDigits(p[2]) &&
			(code < 200 || code > 599 || int(p[0][0]-'0') == code/100) {
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

// openBody reads an item's message: from memory when the claim brought it
// (mailstore.QueueItem.Body: small messages), else from the store.
func openBody(ctx context.Context, st opener, it *mailstore.QueueItem) (io.ReadCloser, error) {
	if it.Body != nil {
		return &memBody{Reader: bytes.NewReader(it.Body), b: it.Body}, nil
	}
	return st.OpenQueued(ctx, it.ID)
}

// memBody is a message in memory (openBody), which stripReturnPath reads
// without a buffer of its own.
type memBody struct {
	*bytes.Reader
	b []byte
}

func (*memBody) Close() error { return nil }

// transact sends one message to some of its recipients in one
// transaction (RFC 5321 §3.3) and returns a result per recipient, by
// recipient ID. A *errConnection error means the connection failed:
// results are then given for no one, and the connection must be closed.
//
// With PIPELINING (RFC 2920) the RSET that closes the previous
// transaction, MAIL, every RCPT and DATA go in one write and their
// replies are read in order, each checked (§3.1): one round trip where
// one command at a time costs one per command. Without it, one command
// at a time, and nothing more after a refused MAIL, nor DATA when no RCPT
// was accepted.
func (s *session) transact(ctx context.Context, st opener, it *mailstore.QueueItem, rcpts []mailstore.QueueRecipient) (map[int64]*result, error) {
	if s.broken != nil {
		return nil, &errConnection{s.broken}
	}
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
	if !s.eightBit {
		if r := check7bit(ctx, st, it, s.host); r != nil {
			return all(r), nil
		}
	}
	if !safePath(it.MailFrom) {
		return all(permResult("5.1.7", "invalid sender address in the queue")), nil
	}
	var sent []mailstore.QueueRecipient
	for _, rc := range rcpts {
		if !safePath(rc.Address) {
			out[rc.ID] = permResult("5.1.3", "invalid recipient address in the queue")
			continue
		}
		sent = append(sent, rc)
	}
	if len(sent) == 0 {
		return out, nil
	}
	// The body is opened before the transaction begins: a store failure
	// costs no transaction and leaves the connection usable.
	body, err := openBody(ctx, st, it)
	if err != nil {
		return all(tempResult("4.3.0", "local error opening the queued message: "+errText(err))), nil
	}
	defer body.Close()

	mail := s.mailCommand(it, utf8)
	rcptLines := make([]string, len(sent))
	for i, rc := range sent {
		rcptLines[i] = s.rcptCommand(rc)
	}
	reset := s.dirty
	s.dirty = true
	x := &exchange{s: s}
	if s.pipelining {
		// RFC 2920 §3.1: RSET may stand anywhere in a group, DATA only
		// last.
		cmds := make([]string, 0, len(sent)+3)
		if reset {
			cmds = append(cmds, "RSET")
		}
		cmds = append(append(append(cmds, mail), rcptLines...), "DATA")
		x.wait = s.c.sendGroup(cmds)
	}
	if reset {
		// RFC 5321 §4.1.1.5: RSET has no reply but 250.
		rp, err := x.next("RSET", commandTimeout)
		if err == nil && rp.code != 250 {
			err = &replyError{rp}
		}
		if err != nil {
			return x.lost(err, "RSET")
		}
	}
	rp, err := x.next(mail, commandTimeout) // RFC 5321 §4.5.3.2.2
	var mailRes *result
	if err == nil {
		_, mailRes, err = s.classify(rp, 2)
	}
	if err != nil {
		return x.lost(err, "MAIL FROM")
	}
	if mailRes != nil {
		for _, rc := range sent {
			out[rc.ID] = mailRes
		}
	}
	// lost: the connection failed. When the transaction's outcome is
	// known already (MAIL refused, or every RCPT; a server may close
	// after that), it stands and only the connection is lost.
	lost := func(err error, stage string, known bool) (map[int64]*result, error) {
		res, cerr := x.lost(err, stage)
		if !known {
			return res, cerr
		}
		s.broken = cerr.(*errConnection).r
		return out, nil
	}
	var accepted []mailstore.QueueRecipient
	for i, rc := range sent {
		if mailRes != nil && !s.pipelining {
			break // nothing more is sent after a refused MAIL
		}
		rp, err := x.next(rcptLines[i], commandTimeout) // RFC 5321 §4.5.3.2.3
		var ok bool
		var r *result
		if err == nil {
			ok, r, err = s.classify(rp, 2)
		}
		if err != nil {
			return lost(err, "RCPT TO", mailRes != nil)
		}
		switch {
		case mailRes != nil:
			// The reply to an RCPT after a refused MAIL (503 as a rule)
			// says nothing of the recipient.
		case ok:
			accepted = append(accepted, rc)
		default:
			out[rc.ID] = r
		}
	}
	if !s.pipelining && len(accepted) == 0 {
		return out, nil // no DATA; RSET begins the next transaction
	}
	rp, err = x.next("DATA", dataInitTimeout) // RFC 5321 §4.5.3.2.4
	if err == nil && x.wait != nil {
		err = x.wait()
	}
	var ok bool
	var r *result
	if err == nil {
		ok, r, err = s.classify(rp, 3)
	}
	if err != nil {
		return lost(err, "DATA", mailRes != nil || len(accepted) == 0)
	}
	if !ok {
		for _, rc := range accepted {
			out[rc.ID] = r
		}
		return out, nil
	}
	if len(accepted) == 0 {
		// RFC 2920 §3.1: the client cannot assume that DATA is refused
		// when no RCPT was accepted; if DATA was accepted, it sends a
		// single dot: an empty message for no one, which the server
		// refuses or drops. The transaction ends there.
		rp, err := s.c.cmd(".", finalDotTimeout)
		if err == nil && rp.code == 421 {
			err = &replyError{rp}
		}
		if err != nil {
			s.broken = connResult(s.host, err, "end of data")
		}
		return out, nil
	}
	return s.sendBody(body, accepted, out)
}

// sendBody sends the message after a 354 and reads the reply to its
// final dot. When the body cannot be read to its end the final dot is
// never sent: the connection is dropped, so that the receiver discards
// what it has (RFC 5321 §4.1.1.4: only the dot makes a message).
func (s *session) sendBody(body io.Reader, accepted []mailstore.QueueRecipient, out map[int64]*result) (map[int64]*result, error) {
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(s.c.nc, 32<<10) // one per connection
	}
	// RFC 5321 §4.5.2: a line that begins with a dot gets another;
	// lines end in CRLF; Close adds the final dot.
	dw := &dotWriter{w: s.bw}
	src := &readTracker{r: stripReturnPath(body)} // RFC 5321 §4.4
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 32<<10) // one per connection, as bw
	}
	_, err := io.CopyBuffer(dw, src, s.copyBuf)
	if src.err != nil {
		return nil, &errConnection{tempResult("4.3.0", "local error reading the queued message: "+errText(src.err))}
	}
	if err == nil {
		err = dw.Close()
	}
	if err != nil {
		return nil, &errConnection{tempResult("4.4.2", "sending the message to "+s.host+": "+errText(err))}
	}
	rp, err := s.c.read(finalDotTimeout) // RFC 5321 §4.5.3.2.6
	var ok bool
	var r *result
	if err == nil {
		ok, r, err = s.classify(rp, 2)
	}
	if err != nil {
		return nil, &errConnection{connResult(s.host, err, "end of data")}
	}
	if ok {
		r = replyResult(s.host, rp)
		r.relayed = !s.dsn
	}
	for _, rc := range accepted {
		out[rc.ID] = r
	}
	return out, nil
}

// classify sorts the reply to a command that succeeds with class want
// (2: 2xx, 3: 354): success; a refusal (4xx, 5xx) as a result; or an
// error for the connection: 421 (RFC 5321 §3.8: the server is closing the
// channel, for every recipient) or a reply that makes no sense here.
func (s *session) classify(rp *reply, want int) (ok bool, refused *result, err error) {
	switch {
	case rp.code == 421:
		return false, nil, &replyError{rp}
	case rp.code/100 == want:
		return true, nil, nil
	case rp.code >= 400:
		return false, replyResult(s.host, rp), nil
	}
	return false, nil, &replyError{rp}
}

// exchange is the command–reply sequence of one transaction: with wait
// set, the commands were all written already (a pipelined group) and
// only replies are read; without, each command is written before its
// reply is read.
type exchange struct {
	s    *session
	wait func() error
}

func (x *exchange) next(line string, timeout time.Duration) (*reply, error) {
	if x.wait == nil {
		if err := x.s.c.send(line); err != nil {
			return nil, err
		}
	}
	return x.s.c.read(timeout)
}

// lost ends a transaction whose connection failed: closed, and the
// group's write waited for.
func (x *exchange) lost(err error, stage string) (map[int64]*result, error) {
	x.s.raw.Close()
	if x.wait != nil {
		_ = x.wait()
	}
	return nil, &errConnection{connResult(x.s.host, err, stage)}
}

// readTracker keeps the error of its reader, to tell a local failure from
// a network one.
type readTracker struct {
	r   io.Reader
	err error
}

func (t *readTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

// check7bit returns a permanent failure when the message has an octet
// above 127 and the receiver lacks 8BITMIME, nil when it can go as it is
// (or a temporary failure when the store cannot be read).
//
// The body is scanned rather than trusted to the item's BODY= parameter:
// clients declare BODY=8BITMIME for 7-bit mail and omit it for 8-bit mail,
// and forwarded mail and DSNs carry none. The scan is a second read of
// the body, paid only with receivers without 8BITMIME, which are rare.
//
// RFC 6152 §3 leaves two choices: convert to 7 bits, or return the
// message as undeliverable. We return it (5.6.3, RFC 3463: conversion
// required but not supported), as mox does: the message is DKIM-signed
// before it is queued, and re-encoding its body as quoted-printable or
// base64 would break the signature (and DMARC with it) at the receiver;
// the conversion is also a MIME rewriter (nested multiparts,
// message/rfc822 parts) for a case that has almost vanished.
func check7bit(ctx context.Context, st opener, it *mailstore.QueueItem, host string) *result {
	body, err := openBody(ctx, st, it)
	if err != nil {
		return tempResult("4.3.0", "local error opening the queued message: "+errText(err))
	}
	defer body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		for _, c := range buf[:n] {
			if c >= 0x80 {
				return &result{state: mailstore.RcptFailed, code: "5.6.3", remote: host,
					reply: "the message has 8-bit content and " + host + " does not support 8BITMIME (RFC 6152); it is not converted to 7 bits"}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return tempResult("4.3.0", "local error reading the queued message: "+errText(err))
		}
	}
}
