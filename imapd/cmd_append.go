package imapd

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502), CATENATE (RFC
// 4469, catenate.go), UIDPLUS APPENDUID (RFC 4315 §3), APPENDLIMIT (RFC
// 7889), literal8 (RFC 3516 §4.4) and the UTF8 data extension (RFC 6855
// §4). Messages are streamed from the connection into the store, one after
// the other (mailstore.Messages.MultiAppend); none is ever held in memory.
//
// Everything that can be checked before a message is sent (mailbox, size,
// quota, the number of messages) is checked before its synchronizing
// literal is asked for, so that a refused message is never transferred.
// Whatever fails, the client's connection included, nothing of any
// message of the command is stored (RFC 3502 §6.3.11).
func cmdAppend(c *conn, cx *cmdCtx) error {
	p := &c.p
	if err := p.sp(); err != nil {
		return err
	}
	raw, err := p.astring()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	a := &appendCmd{c: c}
	// The first message's flags, date and the start of its data are
	// parsed before the mailbox is looked up: a syntax error is BAD
	// whatever the mailbox.
	if err := a.head(); err != nil {
		return err
	}
	name, err := c.decodeName(raw, false)
	if err != nil {
		return tryCreate(err)
	}
	mbox, err := c.srv.store.GetMailbox(c.ctx, c.acct.ID, name)
	if err != nil {
		return tryCreate(err)
	}
	a.mbox = mbox
	results, err := c.srv.store.MultiAppend(c.ctx, c.acct.ID, mbox.ID, a.next)
	if a.err != nil {
		// The command or the connection failed, not the store, which
		// fails on any error from next or a body: nothing was stored.
		if err == nil {
			c.log.Error("store kept messages whose APPEND failed", "count", len(results), "err", a.err)
		}
		return a.err
	}
	if err != nil {
		if errors.Is(err, mailstore.ErrTooLarge) {
			return errNo(codeTooBig, "Message exceeds APPENDLIMIT")
		}
		return err
	}
	uids := make([]uint32, len(results))
	for i, r := range results {
		uids[i] = r.UID
	}
	// RFC 4315 §3: APPENDUID uidvalidity uid-set, the UIDs in message
	// order (MultiAppend's are consecutive).
	cx.okCode = "APPENDUID " + itoa(results[0].UIDValidity) + " " + uidSetString(uids)
	if c.sel != nil && c.sel.mbox.ID == mbox.ID {
		// Announce the new messages (RFC 9051 §6.3.12): from the results,
		// or by the catch-up after a gap.
		return c.applyAppend(results)
	}
	return nil
}

// appendCmd is the state of one APPEND while the store asks for its
// messages.
type appendCmd struct {
	c    *conn
	mbox mailstore.Mailbox
	n    int // messages handed to the store
	// Quota (RFC 9208 §4.3): read at the first synchronizing literal;
	// announced is the total of the messages' sizes known so far.
	quotaRead bool
	quota     mailstore.Quota
	announced int64
	cur       appendMsg // the message whose head was parsed last
	haveCur   bool
	err       error // the protocol or connection error that ended the command
}

// appendMsg is a parsed message head: flags, date and how its data come.
type appendMsg struct {
	flags   mailstore.Flags
	date    time.Time
	lit     literal // the message literal (not CATENATE)
	trailer string  // ")" after a UTF8 literal8
	cat     bool    // CATENATE: parts follow
}

// head parses one message's flags, date and the start of its data
// (RFC 3502 §6.3.11 append-message, RFC 4469 §5 append-data), up to the
// literal announcement or after "CATENATE (".
func (a *appendCmd) head() error {
	c, p := a.c, &a.c.p
	var m appendMsg
	var err error
	if p.peek() == '(' {
		if m.flags, err = p.flagList(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	if p.peek() == '"' {
		if m.date, err = p.dateTime(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	switch {
	case p.acceptWord("CATENATE"):
		if err := p.sp(); err != nil {
			return err
		}
		if err := p.expect('('); err != nil {
			return err
		}
		m.cat = true
	case p.acceptWord("UTF8"):
		if !c.utf8 {
			return errBad("UTF8 APPEND needs ENABLE UTF8=ACCEPT") // RFC 6855 §4
		}
		if err := p.sp(); err != nil {
			return err
		}
		if err := p.expect('('); err != nil {
			return err
		}
		if p.peek() != '~' {
			return errBad("UTF8 APPEND needs a literal8")
		}
		m.trailer = ")"
		fallthrough
	default:
		if p.peek() != '{' && p.peek() != '~' {
			return errBad("Expected a message literal")
		}
		if m.lit, err = p.literalHead(); err != nil {
			return err
		}
		if m.lit.n > c.srv.cfg.MaxMessageSize {
			return errNo(codeTooBig, "Message exceeds APPENDLIMIT")
		}
		if m.lit.n == 0 {
			return errNo(codeCannot, "Empty message")
		}
	}
	a.cur, a.haveCur = m, true
	return nil
}

// next is the store's MultiAppend iterator: it hands over the message
// whose head was parsed, or parses the next one after the previous body
// ended (its literal's line has been read: SP and another message, or the
// end of the command).
func (a *appendCmd) next() (mailstore.AppendMessage, bool, error) {
	m, err := a.nextMsg()
	if err != nil {
		a.err = err
		return mailstore.AppendMessage{}, false, err
	}
	if m == nil {
		return mailstore.AppendMessage{}, false, nil
	}
	return *m, true, nil
}

func (a *appendCmd) nextMsg() (*mailstore.AppendMessage, error) {
	p := &a.c.p
	if !a.haveCur {
		if p.atEnd() {
			p.done = true
			return nil, nil
		}
		if err := p.sp(); err != nil {
			return nil, errBad("Unexpected data after the message")
		}
		if err := a.head(); err != nil {
			return nil, err
		}
	}
	a.haveCur = false
	m := a.cur
	if a.n >= mailstore.MaxMultiAppend {
		return nil, errNo(codeLimit, "Too many messages in one APPEND (at most "+itoa(mailstore.MaxMultiAppend)+")")
	}
	a.n++
	out := &mailstore.AppendMessage{Flags: m.flags, Date: m.date}
	if out.Date.IsZero() {
		out.Date = time.Now()
	}
	if m.cat {
		out.Body = &catReader{a: a}
		return out, nil
	}
	if err := a.reserve(m.lit); err != nil {
		return nil, err
	}
	r, err := a.stream(m.lit, m.trailer)
	if err != nil {
		return nil, err
	}
	out.Body = &recReader{a: a, r: r}
	return out, nil
}

// reserve counts a literal of a message against the quota before it is
// asked for. Only a synchronizing literal is checked here: the client
// waits for our continuation, so the refusal saves it the upload. A
// non-synchronizing one (RFC 7888) is on its way anyway; the store checks
// the total in the statements that store the messages ([OVERQUOTA], RFC
// 9208 §4.3).
func (a *appendCmd) reserve(l literal) error {
	a.announced += l.n
	if !l.sync {
		return nil
	}
	if !a.quotaRead {
		q, err := a.c.srv.store.Quota(a.c.ctx, a.c.acct.ID)
		if err != nil {
			return err
		}
		a.quota, a.quotaRead = q, true
	}
	q := a.quota
	// Both resources: octets (§5.1) and messages (§5.2; a.n counts this
	// command's messages so far, the current one included).
	if (q.StorageLimit > 0 && q.StorageUsed+a.announced > q.StorageLimit) ||
		(q.MessagesLimit > 0 && q.MessagesUsed+int64(a.n) > q.MessagesLimit) {
		return errNo(codeOverQuota, "Quota exceeded")
	}
	return nil
}

// stream starts a message literal (or a CATENATE TEXT part) that the
// command may go on after.
func (a *appendCmd) stream(l literal, trailer string) (*literalReader, error) {
	r, err := a.c.p.streamLiteral(l, trailer)
	if err != nil {
		return nil, err
	}
	r.open = true
	return r, nil
}

// recReader wraps a message literal so that its errors are recorded as
// the command's.
type recReader struct {
	a *appendCmd
	r io.Reader
}

func (r *recReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if err != nil {
		r.a.fail(err)
	}
	return n, err
}

// fail records err (not io.EOF) as the error that ended the command.
func (a *appendCmd) fail(err error) error {
	if err != nil && !errors.Is(err, io.EOF) && a.err == nil {
		a.err = err
	}
	return err
}

// uidSetString renders ascending UIDs as a sequence set ("4:6,9").
func uidSetString(uids []uint32) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(itoa(uids[i]))
		if j > i {
			b.WriteByte(':')
			b.WriteString(itoa(uids[j]))
		}
		i = j + 1
	}
	return b.String()
}

// tryCreate turns "no such mailbox" into NO [TRYCREATE] (RFC 9051 §6.3.12).
func tryCreate(err error) error {
	var pe *protoError
	if errors.As(err, &pe) && pe.code == codeNonexistent || errors.Is(err, mailstore.ErrNoSuchMailbox) {
		return errNo(codeTryCreate, "No such mailbox")
	}
	return err
}
