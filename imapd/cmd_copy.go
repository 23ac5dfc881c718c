package imapd

import (
	"github.com/postrider/postrider/mailstore"
)

var errReadOnly = errNo(codeCannot, "Mailbox is read-only")

// EXPUNGE (RFC 9051 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1, RFC 9051
// §6.4.9). Only messages the session knows of are expunged.
func cmdExpunge(c *conn, cx *cmdCtx) error {
	s := c.sel
	var uids mailstore.UIDSet
	if cx.uid {
		if err := c.p.sp(); err != nil {
			return err
		}
		set, err := c.p.sequenceSet()
		if err != nil {
			return err
		}
		if err := c.p.end(); err != nil {
			return err
		}
		if uids, err = c.resolve(set, true); err != nil {
			return err
		}
	} else {
		if err := c.p.end(); err != nil {
			return err
		}
		uids = mailstore.UIDSet{}
		if m := s.maxUID(); m > 0 {
			uids = mailstore.UIDSet{{Start: 1, Stop: m}}
		}
	}
	if s.readOnly {
		return errReadOnly
	}
	if len(uids) == 0 {
		return nil
	}
	res, err := c.srv.store.Expunge(c.ctx, c.acct.ID, s.mbox.ID, uids, true)
	if err != nil {
		return err
	}
	c.applyExpunge(res)
	c.announceExpunged(res.UIDs)
	return nil
}

// COPY (RFC 9051 §6.4.7) and MOVE (RFC 6851), with COPYUID (RFC 4315 §3).
func cmdCopy(c *conn, cx *cmdCtx) error {
	s := c.sel
	if err := c.p.sp(); err != nil {
		return err
	}
	set, err := c.p.sequenceSet()
	if err != nil {
		return err
	}
	if err := c.p.sp(); err != nil {
		return err
	}
	raw, err := c.p.astring()
	if err != nil {
		return err
	}
	if err := c.p.end(); err != nil {
		return err
	}
	uids, err := c.resolve(set, cx.uid)
	if err != nil {
		return err
	}
	move := cx.name == "MOVE"
	if move && s.readOnly {
		return errReadOnly
	}
	name, err := c.decodeName(raw, false)
	if err != nil {
		return tryCreate(err)
	}
	ctx := c.ctx
	dst, err := c.srv.store.GetMailbox(ctx, c.acct.ID, name)
	if err != nil {
		return tryCreate(err)
	}
	if len(uids) == 0 {
		return nil
	}
	var res mailstore.CopyResult
	if move {
		res, err = c.srv.store.Move(ctx, c.acct.ID, s.mbox.ID, uids, dst.ID)
	} else {
		res, err = c.srv.store.Copy(ctx, c.acct.ID, s.mbox.ID, uids, dst.ID)
	}
	if err != nil {
		return tryCreate(err)
	}
	if len(res.SrcUIDs) == 0 {
		return nil
	}
	// Copies into the selected mailbox are announced with EXISTS: from the
	// view (ownwrite.go), or by the catch-up after a gap.
	var copies []mailstore.MessageMeta
	if dst.ID == s.mbox.ID {
		copies = c.copiedMetas(res)
	}
	code := "COPYUID " + itoa(res.UIDValidity) + " " + formatUIDs(res.SrcUIDs) + " " + formatUIDs(res.DstUIDs)
	if !move {
		cx.okCode = code
		return c.addCopies(copies, res)
	}
	// RFC 6851 §4.3: COPYUID in an untagged OK before the expunges. A move
	// into the mailbox itself adds the copies (the store's first change)
	// and then expunges the sources (its second).
	c.untaggedOK(code, "Moved")
	c.announceExpunged(res.SrcUIDs)
	if err := c.addCopies(copies, res); err != nil {
		return err
	}
	c.advance(res.SrcModSeq)
	return nil
}
