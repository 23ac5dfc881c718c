package imapd

import (
	"cmp"
	"slices"
	"strings"
)

// sortKind is one SORT key (RFC 5256 §3, RFC 5957 §3).
type sortKind uint8

const (
	sortArrival sortKind = iota
	sortDate
	sortSize
	// The string-valued keys, in the order of sortKeys.str.
	sortCc
	sortFrom
	sortSubject
	sortTo
	sortDisplayFrom
	sortDisplayTo
)

// numStringKeys is the number of string-valued sort keys.
const numStringKeys = int(sortDisplayTo-sortCc) + 1

// sortKindNames maps the wire names to keys.
var sortKindNames = map[string]sortKind{
	"ARRIVAL": sortArrival, "CC": sortCc, "DATE": sortDate, "FROM": sortFrom,
	"SIZE": sortSize, "SUBJECT": sortSubject, "TO": sortTo,
	"DISPLAYFROM": sortDisplayFrom, "DISPLAYTO": sortDisplayTo, // RFC 5957 §3
}

// sortCriterion is one sort-criterion: a key, perhaps reversed.
type sortCriterion struct {
	kind    sortKind
	reverse bool
}

const (
	// maxSortCriteria bounds the criteria of one SORT (there are nine
	// keys; repeating one changes nothing).
	maxSortCriteria = 32
	// maxSortKeyBytes bounds each string key kept per message: strings
	// that agree on their first maxSortKeyBytes octets compare equal and
	// fall back to the next criterion, then to the sequence number.
	maxSortKeyBytes = 256
)

// sortCriteria parses sort-criteria = "(" sort-criterion *(SP
// sort-criterion) ")", sort-criterion = ["REVERSE" SP] sort-key
// (RFC 5256 §5, RFC 5957 §4).
func (p *parser) sortCriteria() ([]sortCriterion, error) {
	var out []sortCriterion
	if p.peek() != '(' {
		return nil, errBad("Expected sort criteria")
	}
	err := p.list(func() error {
		if len(out) >= maxSortCriteria {
			return errBad("Too many sort criteria")
		}
		var sc sortCriterion
		if p.acceptWord("REVERSE") {
			sc.reverse = true
			if err := p.sp(); err != nil {
				return err
			}
		}
		name, err := p.atom()
		if err != nil {
			return errBad("Invalid sort key")
		}
		k, ok := sortKindNames[strings.ToUpper(name)]
		if !ok {
			return errBad("Unknown sort key")
		}
		sc.kind = k
		out = append(out, sc)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errBad("Empty sort criteria") // RFC 5256 §5: at least one
	}
	return out, nil
}

// sortKeys are what one message is sorted by. str holds the string keys
// the criteria use, already mapped by the i;ascii-casemap collation and
// cut to maxSortKeyBytes, so that comparing them is comparing octets.
type sortKeys struct {
	uid     uint32
	seq     uint32
	sent    int64 // RFC 5256 §2.2 sent date, Unix microseconds
	arrival int64 // INTERNALDATE, Unix microseconds
	size    int64
	str     [numStringKeys]string
}

// compareSort orders two messages by the criteria, then by sequence
// number, which no REVERSE turns (RFC 5256 §3: "the order of the
// messages in the mailbox ... is used as the final tie-breaker").
func compareSort(crit []sortCriterion, a, b *sortKeys) int {
	for _, sc := range crit {
		var r int
		switch sc.kind {
		case sortArrival:
			r = cmp.Compare(a.arrival, b.arrival)
		case sortDate:
			r = cmp.Compare(a.sent, b.sent)
		case sortSize:
			r = cmp.Compare(a.size, b.size)
		default:
			i := int(sc.kind - sortCc)
			r = strings.Compare(a.str[i], b.str[i])
		}
		if sc.reverse {
			r = -r
		}
		if r != 0 {
			return r
		}
	}
	return cmp.Compare(a.seq, b.seq)
}

// SORT and UID SORT (RFC 5256 §3) with SORT=DISPLAY (RFC 5957), ESORT
// (RFC 5267 §3: RETURN and the ESEARCH response), SEARCHRES SAVE (RFC
// 5182) and MODSEQ (RFC 7162 §3.1.5). The store evaluates the search
// keys; the sort keys come from the view (arrival, size) and from the
// stored parse result of each message (envelope, Date), read in batches
// through the store's content cache, never from bodies.
func cmdSort(c *conn, cx *cmdCtx) error {
	s := c.sel
	p := &c.p
	ret, esearch, err := c.searchStart(cx)
	if err != nil {
		return err
	}
	crit, err := p.sortCriteria()
	if err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	if err := c.searchCharset(); err != nil {
		return err
	}
	if err := p.sp(); err != nil {
		return err
	}
	results, sp, err := c.searchProgram()
	if err != nil {
		return err
	}
	keys, err := c.loadSortKeys(results, crit)
	if err != nil {
		return err
	}
	slices.SortFunc(keys, func(a, b sortKeys) int { return compareSort(crit, &a, &b) })
	sorted := make([]uint32, len(keys))
	for i := range keys {
		sorted[i] = keys[i].uid
	}
	if !ret.update {
		keys = nil
	}
	highest := c.highestModSeq(sp, sorted, ret, esearch)
	if ret.save {
		// "$" is a set of messages: ascending UIDs (RFC 5182 §2.4).
		saved := savedResult(sorted, ret)
		slices.Sort(saved)
		s.saved = slices.Compact(saved)
	}
	nums := c.numbers(sorted, cx.uid)
	if !esearch {
		// RFC 5256 §4 SORT response, also under IMAP4rev2.
		c.w.str("* SORT")
		for _, n := range nums {
			c.w.sp()
			c.w.num32(n)
		}
		c.writeModSeqSuffix(highest)
		c.w.crlf()
		return nil
	}
	c.writeESearch(cx, ret, nums, highest)
	if ret.update {
		c.addContext(cx, sp, crit, sorted, keys) // RFC 5267 §4.3
	}
	return nil
}

// needsContent reports whether a criterion needs more than the view has.
func needsContent(crit []sortCriterion) bool {
	for _, sc := range crit {
		if sc.kind != sortArrival && sc.kind != sortSize {
			return true
		}
	}
	return false
}
