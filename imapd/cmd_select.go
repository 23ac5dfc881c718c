package imapd

import (
	"slices"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// qresyncParams are the arguments of SELECT's QRESYNC parameter (RFC 7162
// §3.2.5). seq-match-data is parsed and ignored: known-uids alone is
// precise while the store has the tombstones, and after they are pruned
// every absent known UID is reported (vanished.go).
type qresyncParams struct {
	uidValidity uint32
	modseq      uint64
	knownUIDs   *numSet
}

// decodeName converts a mailbox name argument to the store's form: UTF-8
// (from modified UTF-7 for IMAP4rev1 clients, RFC 3501 §5.1.3), normalised
// and validated. Names in other namespaces ("#...", "~...") do not exist:
// there are no shared or other users' namespaces (RFC 2342).
func (c *conn) decodeName(raw string, creating bool) (string, error) {
	code := codeNonexistent
	if creating {
		code = codeCannot
	}
	name := raw
	if !c.utf8Names() {
		var err error
		if name, err = decodeMUTF7(raw); err != nil {
			return "", errNo(code, "Invalid modified UTF-7 in mailbox name")
		}
	}
	if creating {
		name = strings.TrimSuffix(name, mailstore.HierarchyDelimiter) // RFC 9051 §6.3.4
	}
	if strings.HasPrefix(name, "#") || strings.HasPrefix(name, "~") {
		if creating {
			return "", errNo(codeCannot, "Mailbox names may not start with # or ~")
		}
		return "", errNo(codeNonexistent, "No such mailbox")
	}
	norm, err := mailstore.NormalizeMailboxName(name)
	if err != nil {
		if creating {
			return "", errNo(codeCannot, "Invalid mailbox name")
		}
		return "", errNo(codeNonexistent, "No such mailbox")
	}
	return norm, nil
}

// mailboxArg reads a mailbox name argument.
func (c *conn) mailboxArg(creating bool) (string, error) {
	raw, err := c.p.astring()
	if err != nil {
		return "", err
	}
	return c.decodeName(raw, creating)
}

// soleMailboxArg reads " mailbox" as a command's only argument; the name
// is decoded after the end of the line, so that a syntax error wins.
func (c *conn) soleMailboxArg(creating bool) (string, error) {
	if err := c.p.sp(); err != nil {
		return "", err
	}
	raw, err := c.p.astring()
	if err != nil {
		return "", err
	}
	if err := c.p.end(); err != nil {
		return "", err
	}
	return c.decodeName(raw, creating)
}

// writeName writes a mailbox name in the client's encoding.
func (c *conn) writeName(name string) {
	if !c.utf8Names() {
		name = encodeMUTF7(name)
	}
	c.w.astring(name)
}

// SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3) with the CONDSTORE and
// QRESYNC parameters (RFC 7162 §3.1.8, §3.2.5).
func cmdSelect(c *conn, cx *cmdCtx) error {
	readOnly := cx.name == "EXAMINE"
	if err := c.p.sp(); err != nil {
		return err
	}
	raw, err := c.p.astring()
	if err != nil {
		return err
	}
	var qr *qresyncParams
	if c.p.accept(' ') {
		if qr, err = c.selectParams(); err != nil {
			return err
		}
	}
	if err := c.p.end(); err != nil {
		return err
	}
	if c.sel != nil {
		c.unselect()
		if c.rev2 || c.qresync {
			c.untaggedOK("CLOSED", "Previous mailbox closed") // RFC 7162 §3.2.11, RFC 9051 §7.1
		}
	}
	name, err := c.decodeName(raw, false)
	if err != nil {
		return err
	}
	ctx := c.ctx
	notify, cancel := c.srv.store.Subscribe(c.acct.ID)
	mark := c.srv.store.ChangeMark() // after Subscribe, before the read (see ChangeFeed)
	// One round trip: the mailbox, its messages and the \Recent claim.
	// SELECT takes the \Recent status of the messages no session has been
	// told of (RFC 3501 §2.3.2); any claimed that arrived after the list
	// are recent when their EXISTS comes. EXAMINE (IMAP4rev1) reports the
	// messages no session has claimed as \Recent without claiming them:
	// the unclaimed count is read with the list, so that the list's newest
	// messages below that UIDNEXT, plus any that arrived since, are the
	// recent ones.
	sl, err := c.srv.store.SelectMailbox(ctx, c.acct.ID, name, !readOnly && !c.rev2)
	if err != nil {
		cancel()
		return err
	}
	mbox := sl.Status.Mailbox
	s := &selected{
		mbox:     mbox,
		readOnly: readOnly,
		msgs:     make([]vmsg, 0, len(sl.Messages)),
		modseq:   mbox.HighestModSeq,
		mark:     mark,
		uidNext:  mbox.UIDNext,
		notify:   notify,
		cancel:   cancel,
	}
	var firstUnseen uint32
	for i, m := range sl.Messages {
		s.add(m)
		s.noteKeywords(m.Flags.Keywords)
		if firstUnseen == 0 && m.Flags.System&mailstore.FlagSeen == 0 {
			firstUnseen = uint32(i + 1)
		}
	}
	if m := s.maxUID(); m >= s.uidNext {
		s.uidNext = m + 1
	}
	switch {
	case c.rev2:
	case readOnly:
		s.addRecent(peekRecent(s.uids(), sl.Status.UIDNext, sl.Status.Recent))
	default:
		s.addRecent(sl.Recent)
	}
	c.sel, c.state = s, stateSelected

	c.w.str("* ")
	c.w.num(uint64(s.count()))
	c.w.str(" EXISTS\r\n")
	if !c.rev2 {
		c.writeRecent() // RFC 3501 §6.3.1
		if firstUnseen > 0 {
			c.untaggedOK("UNSEEN "+itoa(firstUnseen), "First unseen")
		}
	}
	c.untaggedOK("UIDVALIDITY "+itoa(mbox.UIDValidity), "UIDs valid")
	c.untaggedOK("UIDNEXT "+itoa(s.uidNext), "Predicted next UID")
	c.writeFlagsResponses()
	c.untaggedOK("HIGHESTMODSEQ "+utoa(s.modseq), "Highest") // RFC 7162 §3.1.2.1
	c.untaggedOK("MAILBOXID ("+mailboxID(mbox.ID)+")", "Ok") // RFC 8474 §4.2
	if c.rev2 {
		if err := c.writeSelectedList(); err != nil {
			return err
		}
	}
	if qr != nil && qr.uidValidity == mbox.UIDValidity {
		if err := c.qresyncSelect(qr); err != nil {
			return err
		}
	}
	if readOnly {
		cx.okCode = "READ-ONLY"
	} else {
		cx.okCode = "READ-WRITE"
	}
	return nil
}

// peekRecent returns the UIDs an EXAMINE treats as \Recent: of the
// ascending view uids, the newest n of those below uidNext (the unclaimed
// ones when the count was read) and every one at or above it.
func peekRecent(uids []uint32, uidNext, n uint32) []uint32 {
	i, _ := slices.BinarySearch(uids, uidNext)
	lo := max(i-int(min(n, uint32(i))), 0)
	return slices.Clone(uids[lo:])
}

// selectParams parses "(" select-param *(SP select-param) ")".
func (c *conn) selectParams() (*qresyncParams, error) {
	var qr *qresyncParams
	err := c.p.list(func() error {
		name, err := c.p.atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			c.condstore = true // RFC 7162 §3.1.8
			return nil
		case "QRESYNC":
			if !c.qresync {
				return errBad("QRESYNC is not enabled") // RFC 7162 §3.2.5
			}
			if err := c.p.sp(); err != nil {
				return err
			}
			qr = &qresyncParams{}
			return c.qresyncArgs(qr)
		}
		return errBad("Unknown SELECT parameter")
	})
	return qr, err
}

// qresyncArgs parses "(" uidvalidity SP mod-sequence-value [SP known-uids]
// [SP seq-match-data] ")".
func (c *conn) qresyncArgs(qr *qresyncParams) error {
	if err := c.p.expect('('); err != nil {
		return err
	}
	v, err := c.p.nzNumber()
	if err != nil {
		return err
	}
	qr.uidValidity = v
	if err := c.p.sp(); err != nil {
		return err
	}
	if qr.modseq, err = c.p.number64(); err != nil {
		return err
	}
	if c.p.accept(' ') {
		if c.p.peek() != '(' {
			set, err := c.p.sequenceSet()
			if err != nil || set.saved {
				return errBad("Invalid known-uids")
			}
			qr.knownUIDs = &set
			if !c.p.accept(' ') {
				return c.p.expect(')')
			}
		}
		// seq-match-data = "(" known-sequence-set SP known-uid-set ")"
		if err := c.p.expect('('); err != nil {
			return err
		}
		if _, err := c.p.sequenceSet(); err != nil {
			return err
		}
		if err := c.p.sp(); err != nil {
			return err
		}
		if _, err := c.p.sequenceSet(); err != nil {
			return err
		}
		if err := c.p.expect(')'); err != nil {
			return err
		}
	}
	return c.p.expect(')')
}

// qresyncSelect sends what changed since the client's mod-sequence: VANISHED
// (EARLIER) for expunged known UIDs and FETCH for changed messages (RFC 7162
// §3.2.5.1).
func (c *conn) qresyncSelect(qr *qresyncParams) error {
	s := c.sel
	ch, err := c.srv.store.Changes(c.ctx, c.acct.ID, s.mbox.ID, qr.modseq)
	if err != nil {
		return err
	}
	var gone string
	if ch.VanishedIncomplete {
		// Tombstones pruned: every UID the client may know that does not
		// exist (RFC 7162 §4.1).
		known := numSet{ranges: []numRange{{1, 0}}}
		if qr.knownUIDs != nil {
			known = *qr.knownUIDs
		}
		// The view was listed after UIDNEXT was read: a UID below it that
		// is not in the view is gone.
		gone = absentUIDs(known, s.uidNext-1, s.uids())
	} else {
		var uids []uint32
		for _, u := range ch.Vanished {
			if qr.knownUIDs == nil || setContains(*qr.knownUIDs, u, ^uint32(0)) {
				uids = append(uids, u)
			}
		}
		gone = formatUIDs(sortedCompact(uids))
	}
	if gone != "" {
		c.w.str("* VANISHED (EARLIER) ")
		c.w.str(gone)
		c.w.crlf()
	}
	for _, m := range ch.Updated {
		if seq := s.seqOf(m.UID); seq > 0 {
			c.writeFlagsFetch(seq, m)
		}
	}
	return nil
}

// writeSelectedList sends the LIST response IMAP4rev2 requires with SELECT
// (RFC 9051 §6.3.2).
func (c *conn) writeSelectedList() error {
	boxes, err := c.srv.store.ListMailboxes(c.ctx, c.acct.ID)
	if err != nil {
		return err
	}
	t := newTree(boxes)
	c.w.str("* LIST (")
	c.w.str(strings.Join(t.attributes(c.sel.mbox.Name, listReturn{children: true, specialUse: true}), " "))
	c.w.str(`) "/" `)
	c.writeName(c.sel.mbox.Name)
	c.w.crlf()
	return nil
}

// CLOSE (RFC 9051 §6.4.1): expunge \Deleted messages silently unless
// read-only, and leave the selected state.
func cmdClose(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	s := c.sel
	if !s.readOnly {
		if _, err := c.srv.store.Expunge(c.ctx, c.acct.ID, s.mbox.ID, nil, true); err != nil {
			return err
		}
	}
	c.unselect()
	return nil
}

// UNSELECT (RFC 3691, RFC 9051 §6.4.2): leave without expunging.
func cmdUnselect(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	c.unselect()
	return nil
}
