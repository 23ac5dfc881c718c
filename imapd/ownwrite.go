package imapd

import (
	"github.com/postrider/postrider/mailstore"
)

// The session's own writes to its selected mailbox (STORE, EXPUNGE,
// APPEND, COPY into it, MOVE out of it) are applied to the view from what
// the store returned, without a catch-up query. Every change raises the
// mailbox's HIGHESTMODSEQ by exactly one (mailstore: Delivered.ModSeq,
// CopyResult.ModSeq; pr_store_flags and pr_expunge bump it once), so a
// write that returns the view's mod-sequence plus one is the only change
// since the view was read: applying it leaves the view exactly as the
// store is at the new value. Anything else is a gap (another session's
// change came in between): the view marks itself stale and catches up as
// before.

// advance moves the view to modseq after it applied the own write that
// produced it.
func (c *conn) advance(modseq uint64) {
	s := c.sel
	switch {
	case modseq == s.modseq+1 && !s.stale:
		s.modseq = modseq
	case modseq > s.modseq:
		s.stale = true
	}
}

// applyStore applies the session's own flag change. The messages' new
// flags are in the view at once; in a gap they are also noted as reported,
// so that the catch-up does not send them again.
func (c *conn) applyStore(res mailstore.StoreResult) {
	s := c.sel
	if len(res.Updated) == 0 {
		return
	}
	modseq := res.Updated[0].ModSeq // one for all (mailstore.StoreResult)
	gap := modseq != s.modseq+1 || s.stale
	for _, u := range res.Updated {
		if i, ok := s.index(u.UID); ok {
			s.setFlags(i, u.Flags, u.ModSeq)
		}
		if gap {
			if s.reported == nil {
				s.reported = make(map[uint32]uint64, len(res.Updated))
			}
			s.reported[u.UID] = u.ModSeq
		}
	}
	c.advance(modseq)
}

// applyExpunge applies the session's own expunge; the caller announces
// (and so removes) the UIDs. An expunge that removed nothing tells the
// mailbox's current mod-sequence.
func (c *conn) applyExpunge(res mailstore.ExpungeResult) {
	s := c.sel
	if len(res.UIDs) == 0 {
		if res.HighestModSeq > s.modseq {
			s.stale = true
		}
		return
	}
	c.advance(res.HighestModSeq)
}

// applyAppend adds the messages of the session's own APPEND (one, or
// several with MULTIAPPEND, in order) to its selected mailbox and
// announces them with one EXISTS (RFC 9051 §6.3.12: before the tagged OK).
func (c *conn) applyAppend(rs []mailstore.AppendResult) error {
	s := c.sel
	var added []uint32
	newKeywords := false
	for _, res := range rs {
		if res.ModSeq != s.modseq+1 || s.stale || res.UID <= s.maxUID() {
			s.stale = true // the catch-up announces the rest
			break
		}
		s.add(mailstore.MessageMeta{UID: res.UID, ModSeq: res.ModSeq, Flags: res.Flags, InternalDate: res.InternalDate,
			Size: res.Size, CRLFSize: res.CRLFSize, ContentID: res.ContentID})
		c.advance(res.ModSeq)
		s.uidNext = max(s.uidNext, res.UID+1)
		added = append(added, res.UID)
		newKeywords = s.noteKeywords(res.Flags.Keywords) || newKeywords
	}
	if len(added) == 0 {
		return nil
	}
	return c.announceAdded(added, newKeywords)
}

// copiedMetas returns the messages a COPY or MOVE of the session into its
// own selected mailbox added: the source messages (which the view has, as
// they were at its mod-sequence) under their new UIDs; nil after a gap.
// It must be called before the sources of a MOVE leave the view.
func (c *conn) copiedMetas(res mailstore.CopyResult) []mailstore.MessageMeta {
	s := c.sel
	if res.ModSeq != s.modseq+1 || s.stale || res.DstUIDs[0] <= s.maxUID() {
		s.stale = true
		return nil
	}
	metas := make([]mailstore.MessageMeta, 0, len(res.DstUIDs))
	for k, src := range res.SrcUIDs {
		i, ok := s.index(src)
		if !ok {
			s.stale = true // cannot be: the store copied what the view has
			return nil
		}
		m := s.meta(i)
		m.UID, m.ModSeq = res.DstUIDs[k], res.ModSeq
		metas = append(metas, m)
	}
	return metas
}

// addCopies adds what copiedMetas returned and announces it.
func (c *conn) addCopies(metas []mailstore.MessageMeta, res mailstore.CopyResult) error {
	s := c.sel
	if metas == nil {
		return nil
	}
	newKeywords := false
	for _, m := range metas {
		s.add(m)
		newKeywords = s.noteKeywords(m.Flags.Keywords) || newKeywords
	}
	c.advance(res.ModSeq)
	s.uidNext = max(s.uidNext, res.DstUIDs[len(res.DstUIDs)-1]+1)
	return c.announceAdded(res.DstUIDs, newKeywords)
}

// announceAdded tells the client of messages just added to the view:
// EXISTS (with RECENT for IMAP4rev1, after taking their \Recent status)
// and FLAGS when they brought new keywords.
func (c *conn) announceAdded(added []uint32, newKeywords bool) error {
	if len(added) > 0 {
		if err := c.trackRecent(added); err != nil {
			return err
		}
		c.w.str("* ")
		c.w.num(uint64(c.sel.count()))
		c.w.str(" EXISTS\r\n")
		c.writeRecent()
	}
	if newKeywords {
		c.writeFlagsResponses()
	}
	return nil
}
