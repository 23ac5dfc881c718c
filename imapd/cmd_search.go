package imapd

import (
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// searchReturn holds ESEARCH return options (RFC 4731 §3.1, RFC 5182 §2).
type searchReturn struct {
	min, max, all, count, save bool
}

// SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731),
// SEARCHRES (RFC 5182) and MODSEQ (RFC 7162 §3.1.5). Criteria are evaluated
// by the store, in the database.
func cmdSearch(c *conn, cx *cmdCtx) error {
	s := c.sel
	p := &c.p
	if err := p.sp(); err != nil {
		return err
	}
	var ret searchReturn
	esearch := false
	if p.acceptWord("RETURN") {
		esearch = true
		if err := p.sp(); err != nil {
			return err
		}
		err := p.list(func() error {
			opt, err := p.atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(opt) {
			case "MIN":
				ret.min = true
			case "MAX":
				ret.max = true
			case "ALL":
				ret.all = true
			case "COUNT":
				ret.count = true
			case "SAVE":
				ret.save = true
			default:
				return errBad("Unknown SEARCH return option")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !ret.min && !ret.max && !ret.count && !ret.save {
			ret.all = true // RETURN () means ALL (RFC 4731 §3.1)
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	if ret.save {
		s.saved = nil // a failed SEARCH leaves "$" empty (RFC 5182 §2.1)
	}
	if p.acceptWord("CHARSET") {
		if err := p.sp(); err != nil {
			return err
		}
		cs, err := p.astring()
		if err != nil {
			return err
		}
		if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
			// Skip the rest so that the NO is about the charset.
			p.pos = len(p.line)
			return errNo("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset")
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	sp := searchParser{c: c}
	var crit mailstore.SearchCriteria
	if err := sp.program(&crit); err != nil {
		return err
	}
	if err := p.end(); err != nil {
		return err
	}
	if err := c.refreshView(); err != nil {
		return err
	}
	var results []uint32
	if m := s.maxUID(); m > 0 {
		// Only messages the client has been told about (RFC 9051 §7.5.1).
		crit.UIDs = append(crit.UIDs, mailstore.UIDSet{{Start: 1, Stop: m}})
		found, err := c.srv.store.Search(c.ctx, c.acct.ID, s.mbox.ID, &crit)
		if err != nil {
			return err
		}
		for _, u := range found {
			if s.seqOf(u) > 0 {
				results = append(results, u)
			}
		}
	}
	var highest uint64
	if sp.modseq && len(results) > 0 {
		// The mod-sequence reported is the highest of the messages the
		// response names: only MIN and/or MAX when those are all that is
		// returned (RFC 4731 §3.2, RFC 7162 §3.1.5).
		named := results
		if esearch && (ret.min || ret.max) && !ret.all && !ret.count {
			named = savedResult(results, ret)
		}
		for _, u := range named {
			if i, ok := s.index(u); ok {
				highest = max(highest, s.msgs[i].modseq)
			}
		}
	}
	if ret.save {
		s.saved = savedResult(results, ret)
	}
	nums := results
	if !cx.uid {
		nums = make([]uint32, len(results))
		for i, u := range results {
			nums[i] = s.seqOf(u)
		}
	}
	if !esearch && !c.rev2 {
		// RFC 3501 §7.2.5 SEARCH response.
		c.w.str("* SEARCH")
		for _, n := range nums {
			c.w.sp()
			c.w.num32(n)
		}
		if highest > 0 {
			c.w.str(" (MODSEQ ")
			c.w.num(highest)
			c.w.byte(')')
		}
		c.w.crlf()
		return nil
	}
	if !esearch {
		ret.all = true // IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 §6.4.4)
	}
	if ret.save && !ret.min && !ret.max && !ret.all && !ret.count {
		return nil // SAVE alone: no ESEARCH response (RFC 5182 §2.1)
	}
	// RFC 4731 §3.1 ESEARCH response.
	c.w.str("* ESEARCH (TAG ")
	c.w.string(cx.tag)
	c.w.byte(')')
	if cx.uid {
		c.w.str(" UID")
	}
	if len(nums) > 0 {
		if ret.min {
			c.w.str(" MIN ")
			c.w.num32(nums[0])
		}
		if ret.max {
			c.w.str(" MAX ")
			c.w.num32(nums[len(nums)-1])
		}
		if ret.all {
			c.w.str(" ALL ")
			c.w.str(formatUIDs(nums))
		}
	}
	if ret.count {
		c.w.str(" COUNT ")
		c.w.num(uint64(len(nums)))
	}
	if highest > 0 {
		c.w.str(" MODSEQ ")
		c.w.num(highest)
	}
	c.w.crlf()
	return nil
}

// savedResult is what SAVE keeps (RFC 5182 §2.4): with MIN and/or MAX and
// neither ALL nor COUNT, only those messages.
func savedResult(results []uint32, ret searchReturn) []uint32 {
	if len(results) == 0 {
		return []uint32{}
	}
	if (ret.min || ret.max) && !ret.all && !ret.count {
		var out []uint32
		if ret.min {
			out = append(out, results[0])
		}
		if ret.max && (len(out) == 0 || results[len(results)-1] != out[0]) {
			out = append(out, results[len(results)-1])
		}
		return out
	}
	return append([]uint32(nil), results...)
}
