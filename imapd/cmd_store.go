package imapd

import (
	"slices"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// STORE and UID STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE and MODIFIED
// (RFC 7162 §3.1.3).
func cmdStore(c *conn, cx *cmdCtx) error {
	s := c.sel
	p := &c.p
	if err := p.sp(); err != nil {
		return err
	}
	set, err := p.sequenceSet()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	var unchangedSince uint64
	condGiven := false
	if p.peek() == '(' {
		condGiven = true
		err := p.list(func() error {
			if !p.acceptWord("UNCHANGEDSINCE") {
				return errBad("Unknown STORE modifier")
			}
			if err := p.sp(); err != nil {
				return err
			}
			v, err := p.number64()
			unchangedSince = v
			return err
		})
		if err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
		c.enableCondstore()
	}
	op := mailstore.FlagsReplace
	if p.accept('+') {
		op = mailstore.FlagsAdd
	} else if p.accept('-') {
		op = mailstore.FlagsRemove
	}
	item, err := p.atom()
	if err != nil {
		return err
	}
	silent := false
	switch strings.ToUpper(item) {
	case "FLAGS":
	case "FLAGS.SILENT":
		silent = true
	default:
		return errBad("Expected FLAGS or FLAGS.SILENT")
	}
	if err := p.sp(); err != nil {
		return err
	}
	var flags mailstore.Flags
	if p.peek() == '(' {
		if flags, err = p.flagList(); err != nil {
			return err
		}
	} else {
		for {
			if err := p.flag(&flags); err != nil {
				return err
			}
			if !p.accept(' ') {
				break
			}
		}
	}
	if err := p.end(); err != nil {
		return err
	}
	if s.readOnly {
		return errReadOnly
	}
	if err := c.refreshView(); err != nil {
		return err
	}
	uids, err := c.resolve(set, cx.uid)
	if err != nil {
		return err
	}
	if len(uids) == 0 {
		return nil
	}
	var res mailstore.StoreResult
	if condGiven && unchangedSince == 0 {
		// UNCHANGEDSINCE 0 fails for every existing message (RFC 7162
		// §3.1.3); to the store 0 means "no condition".
		for _, i := range s.indexesIn(uids) {
			if _, gone := s.pending[s.msgs[i].uid]; !gone {
				res.Modified = append(res.Modified, s.msgs[i].uid)
			}
		}
	} else {
		res, err = c.srv.store.StoreFlags(c.ctx, c.acct.ID, s.mbox.ID, uids, op, flags, unchangedSince)
		if err != nil {
			return err
		}
		c.applyStore(res)
	}
	c.announceKeywords(flags.Keywords)
	slices.Sort(res.Modified)
	if !silent {
		// The messages' flags as they are now: after a gap (another
		// session's change came in between), from a catch-up first.
		if s.stale {
			if err := c.catchUp(); err != nil {
				return err
			}
		}
		for _, i := range s.indexesIn(uids) {
			u := s.msgs[i].uid
			if _, gone := s.pending[u]; gone {
				continue
			}
			if _, failed := slices.BinarySearch(res.Modified, u); failed {
				continue
			}
			c.writeFlagsFetch(uint32(i+1), s.meta(i))
		}
	} else if c.condstore {
		// With CONDSTORE the new mod-sequences are reported even with
		// .SILENT (RFC 7162 §3.1.3).
		for _, m := range res.Updated {
			if seq := s.seqOf(m.UID); seq > 0 {
				c.w.str("* ")
				c.w.num32(seq)
				c.w.str(" FETCH (UID ")
				c.w.num32(m.UID)
				c.w.str(" MODSEQ (")
				c.w.num(m.ModSeq)
				c.w.str("))\r\n")
			}
		}
	}
	if len(res.Modified) > 0 {
		var nums []uint32
		for _, u := range res.Modified {
			if seq := s.seqOf(u); seq > 0 {
				if cx.uid {
					nums = append(nums, u)
				} else {
					nums = append(nums, seq)
				}
			}
		}
		slices.Sort(nums)
		if len(nums) > 0 {
			cx.okCode = "MODIFIED " + formatUIDs(nums)
			cx.okText = "Conditional STORE failed for some messages"
		}
	}
	return nil
}
