package imapd

import (
	"slices"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// searchReturn holds ESEARCH return options (RFC 4731 §3.1, RFC 5182 §2,
// RFC 9394 §3 PARTIAL, RFC 5267 §4 CONTEXT and UPDATE).
type searchReturn struct {
	min, max, all, count, save bool
	partial                    *pageRange
	update                     bool // RFC 5267 §4.3: send ADDTO/REMOVEFROM as the result changes
}

// SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731),
// SEARCHRES (RFC 5182) and MODSEQ (RFC 7162 §3.1.5). Criteria are evaluated
// by the store, in the database.
func cmdSearch(c *conn, cx *cmdCtx) error {
	s := c.sel
	p := &c.p
	ret, esearch, err := c.searchStart(cx)
	if err != nil {
		return err
	}
	if p.acceptWord("CHARSET") {
		if err := p.sp(); err != nil {
			return err
		}
		if err := c.searchCharset(); err != nil {
			return err
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
	results, sp, err := c.searchProgram()
	if err != nil {
		return err
	}
	highest := c.highestModSeq(sp, results, ret, esearch)
	if ret.save {
		s.saved = savedResult(results, ret)
	}
	nums := c.numbers(results, cx.uid)
	if !esearch && !c.rev2 {
		// RFC 3501 §7.2.5 SEARCH response.
		c.w.str("* SEARCH")
		for _, n := range nums {
			c.w.sp()
			c.w.num32(n)
		}
		c.writeModSeqSuffix(highest)
		c.w.crlf()
		return nil
	}
	if !esearch {
		ret.all = true // IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 §6.4.4)
	}
	c.writeESearch(cx, ret, nums, highest)
	if ret.update {
		c.addContext(cx, sp, nil, results, nil)
	}
	return nil
}

// searchReturnOpts parses an optional "RETURN (...) SP" of SEARCH (RFC
// 4731 §3.1, RFC 5182 §2) or SORT (RFC 5267 §3.2); esearch reports
// whether it was there. After it the parser is at the next argument.
func (c *conn) searchReturnOpts(allowSave bool) (ret searchReturn, esearch bool, err error) {
	p := &c.p
	if !p.acceptWord("RETURN") {
		return ret, false, nil
	}
	if err := p.sp(); err != nil {
		return ret, false, err
	}
	err = p.list(func() error {
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
			if ret.all || ret.partial != nil {
				return errBad("Only one of ALL or PARTIAL is allowed") // RFC 9394 §3.1
			}
			ret.all = true
		case "COUNT":
			ret.count = true
		case "SAVE":
			if !allowSave {
				return errBad("Unknown return option")
			}
			ret.save = true
		case "PARTIAL":
			if ret.all || ret.partial != nil {
				return errBad("Only one of ALL or PARTIAL is allowed") // RFC 9394 §3.1
			}
			if err := p.sp(); err != nil {
				return err
			}
			r, err := p.pageRange()
			if err != nil {
				return err
			}
			ret.partial = &r
		case "CONTEXT":
			// RFC 5267 §4.2: a hint that may be ignored; results are
			// computed afresh for every command.
		case "UPDATE":
			ret.update = true
		default:
			return errBad("Unknown SEARCH return option")
		}
		return nil
	})
	if err != nil {
		return ret, false, err
	}
	if !ret.min && !ret.max && !ret.count && !ret.save && !ret.all && ret.partial == nil && !ret.update {
		ret.all = true // RETURN () means ALL (RFC 4731 §3.1, RFC 5267 §3.2)
	}
	if err := p.sp(); err != nil {
		return ret, false, err
	}
	return ret, true, nil
}

// searchCharset reads a charset name and accepts only UTF-8 and US-ASCII
// (RFC 9051 §6.4.4; RFC 5256 §3 for SORT and THREAD): anything else is NO
// [BADCHARSET] with the list of those supported.
func (c *conn) searchCharset() error {
	p := &c.p
	cs, err := p.astring()
	if err != nil {
		return err
	}
	if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
		// Skip the rest so that the NO is about the charset.
		p.pos = len(p.line)
		return errNo("BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset")
	}
	return nil
}

// searchProgram parses the search keys up to the end of the command and
// evaluates them in the store: the matching UIDs of the view, ascending.
func (c *conn) searchProgram() ([]uint32, *searchParser, error) {
	s := c.sel
	sp := &searchParser{c: c}
	var crit mailstore.SearchCriteria
	if err := sp.program(&crit); err != nil {
		return nil, nil, err
	}
	if err := c.p.end(); err != nil {
		return nil, nil, err
	}
	if err := c.refreshView(); err != nil {
		return nil, nil, err
	}
	sp.crit = crit
	sp.crit.UIDs = slices.Clip(crit.UIDs) // the bound below is not part of it
	var results []uint32
	if m := s.maxUID(); m > 0 {
		// Only messages the client has been told about (RFC 9051 §7.5.1).
		crit.UIDs = append(crit.UIDs, mailstore.UIDSet{{Start: 1, Stop: m}})
		found, err := c.srv.store.Search(c.ctx, c.acct.ID, s.mbox.ID, &crit)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range found {
			if s.seqOf(u) > 0 {
				results = append(results, u)
			}
		}
	}
	return results, sp, nil
}

// highestModSeq is the mod-sequence a response reports when the search
// used MODSEQ: the highest of the messages the response names, only MIN
// and/or MAX when those are all that is returned (RFC 4731 §3.2, RFC 7162
// §3.1.5). results are in the order of the response (MIN first).
func (c *conn) highestModSeq(sp *searchParser, results []uint32, ret searchReturn, esearch bool) uint64 {
	s := c.sel
	if !sp.modseq || len(results) == 0 {
		return 0
	}
	named := results
	if esearch {
		named = savedResult(results, ret)
	}
	var highest uint64
	for _, u := range named {
		if i, ok := s.index(u); ok {
			highest = max(highest, s.msgs[i].modseq)
		}
	}
	return highest
}

// numbers turns UIDs of the view into what the response names: UIDs, or
// sequence numbers, in the same order.
func (c *conn) numbers(uids []uint32, uid bool) []uint32 {
	if uid {
		return uids
	}
	nums := make([]uint32, len(uids))
	for i, u := range uids {
		nums[i] = c.sel.seqOf(u)
	}
	return nums
}

// writeModSeqSuffix ends a SEARCH or SORT response with the highest
// mod-sequence, when there is one (RFC 7162 §3.1.5, §3.1.6).
func (c *conn) writeModSeqSuffix(highest uint64) {
	if highest > 0 {
		c.w.str(" (MODSEQ ")
		c.w.num(highest)
		c.w.byte(')')
	}
}

// writeESearch sends the ESEARCH response (RFC 4731 §3.1) of SEARCH or
// of SORT (RFC 5267 §3.2): for SORT nums are in sort order, MIN and MAX
// are the first and last of it and ALL keeps the order.
func (c *conn) writeESearch(cx *cmdCtx, ret searchReturn, nums []uint32, highest uint64) {
	if ret.save && !ret.min && !ret.max && !ret.all && !ret.count && ret.partial == nil && !ret.update {
		return // SAVE alone: no ESEARCH response (RFC 5182 §2.1)
	}
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
			// formatUIDs keeps the order: it joins only ascending runs.
			c.w.str(formatUIDs(nums))
		}
	}
	if ret.partial != nil {
		// RFC 9394 §3.1: the requested range and the results in it, or NIL.
		c.w.str(" PARTIAL (")
		c.w.str(ret.partial.String())
		if part := ret.partial.slice(nums); len(part) > 0 {
			c.w.sp()
			c.w.str(formatUIDs(part))
		} else {
			c.w.str(" NIL")
		}
		c.w.byte(')')
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
}

// savedResult is what SAVE keeps (RFC 5182 §2.4, RFC 9394 §3.2): with
// ALL or COUNT, every result; else with PARTIAL, the results it returns
// together with the MIN and MAX ones; else with MIN and/or MAX, those;
// else every result. results are in the order of the response.
func savedResult(results []uint32, ret searchReturn) []uint32 {
	if len(results) == 0 {
		return []uint32{}
	}
	if ret.all || ret.count || (!ret.min && !ret.max && ret.partial == nil) {
		return append([]uint32(nil), results...)
	}
	var out []uint32
	if ret.min {
		out = append(out, results[0])
	}
	if ret.partial != nil {
		out = append(out, ret.partial.slice(results)...)
	}
	if ret.max {
		out = append(out, results[len(results)-1])
	}
	// Keep the order of the response; MIN or MAX may also be in PARTIAL.
	seen := make(map[uint32]struct{}, len(out))
	kept := out[:0]
	for _, u := range out {
		if _, dup := seen[u]; !dup {
			seen[u] = struct{}{}
			kept = append(kept, u)
		}
	}
	return kept
}

// searchStart reads what SEARCH and SORT begin with: the space after the
// command name and the RETURN options (RFC 4731, RFC 5267), checks an
// UPDATE context's tag, and empties "$" when the result is to be saved,
// so that a command that fails leaves it empty (RFC 5182 §2.1).
func (c *conn) searchStart(cx *cmdCtx) (ret searchReturn, esearch bool, err error) {
	if err := c.p.sp(); err != nil {
		return ret, false, err
	}
	if ret, esearch, err = c.searchReturnOpts(true); err != nil {
		return ret, false, err
	}
	if err := c.checkUpdateTag(cx, ret); err != nil {
		return ret, false, err
	}
	if ret.save {
		c.sel.saved = nil
	}
	return ret, esearch, nil
}
