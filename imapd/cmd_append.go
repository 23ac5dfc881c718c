package imapd

import (
	"errors"
	"io"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// APPEND (RFC 9051 §6.3.12) with UIDPLUS APPENDUID (RFC 4315 §3),
// APPENDLIMIT (RFC 7889), literal8 (RFC 3516 §4.4) and the UTF8 data
// extension (RFC 6855 §4). The message is streamed from the connection into
// the store; it is never held in memory.
//
// Everything that can be checked before the message is sent (mailbox, size,
// quota) is checked before a synchronizing literal is asked for, so that a
// refused message is never transferred.
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
	var flags mailstore.Flags
	if p.peek() == '(' {
		if flags, err = p.flagList(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	var date time.Time
	if p.peek() == '"' {
		if date, err = p.dateTime(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	trailer := ""
	if p.acceptWord("UTF8") {
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
		trailer = ")"
	}
	if p.peek() != '{' && p.peek() != '~' {
		return errBad("Expected a message literal")
	}
	lit, err := p.literalHead()
	if err != nil {
		return err
	}
	if lit.n > c.srv.cfg.MaxMessageSize {
		return errNo(codeTooBig, "Message exceeds APPENDLIMIT")
	}
	if lit.n == 0 {
		return errNo(codeCannot, "Empty message")
	}
	name, err := c.decodeName(raw, false)
	if err != nil {
		return tryCreate(err)
	}
	ctx := c.ctx
	mbox, err := c.srv.store.GetMailbox(ctx, c.acct.ID, name)
	if err != nil {
		return tryCreate(err)
	}
	// The store refuses a message over quota (mailstore.ErrOverQuota: NO
	// [OVERQUOTA], RFC 9208 §4.3) in the statement that stores it. Only a
	// synchronizing literal is checked before: the client waits for our
	// continuation, so the refusal saves it the upload. A
	// non-synchronizing one (RFC 7888) is on its way anyway, and APPEND
	// stays one statement.
	if lit.sync {
		if q, err := c.srv.store.Quota(ctx, c.acct.ID); err != nil {
			return err
		} else if (q.StorageLimit > 0 && q.StorageUsed+lit.n > q.StorageLimit) ||
			(q.MessagesLimit > 0 && q.MessagesUsed >= q.MessagesLimit) {
			return errNo(codeOverQuota, "Quota exceeded")
		}
	}
	if date.IsZero() {
		date = time.Now()
	}
	r, err := p.streamLiteral(lit, trailer)
	if err != nil {
		return err
	}
	res, err := c.srv.store.Append(ctx, c.acct.ID, mbox.ID, flags, date, r)
	if r.err != nil {
		// The connection or the command failed, not the store. The store
		// fails on any error from the reader (mailstore.Store.Append), so
		// a cut literal or a bad line after it is never stored.
		if err == nil {
			c.log.Error("store kept a message whose APPEND failed", "uid", res.UID, "err", r.err)
		}
		return r.err
	}
	if err != nil {
		return err
	}
	if !r.finished {
		// The store stopped reading at the last octet: finish the line.
		if _, rerr := r.Read(make([]byte, 1)); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
	}
	cx.okCode = "APPENDUID " + itoa(res.UIDValidity) + " " + itoa(res.UID)
	if c.sel != nil && c.sel.mbox.ID == mbox.ID {
		// Announce the new message (RFC 9051 §6.3.12): from the result, or
		// by the catch-up after a gap.
		return c.applyAppend(res)
	}
	return nil
}

// tryCreate turns "no such mailbox" into NO [TRYCREATE] (RFC 9051 §6.3.12).
func tryCreate(err error) error {
	var pe *protoError
	if errors.As(err, &pe) && pe.code == codeNonexistent || errors.Is(err, mailstore.ErrNoSuchMailbox) {
		return errNo(codeTryCreate, "No such mailbox")
	}
	return err
}
