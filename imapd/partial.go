package imapd

import (
	"strconv"
)

// pageRange is a PARTIAL range (RFC 9394 §3.1, §4): positions lo to hi
// (1-based, lo <= hi) of a result, counted from its end when last is set
// ("-1" is the last result).
type pageRange struct {
	lo, hi uint32
	last   bool
}

// pageRange parses partial-range = partial-range-first /
// partial-range-last, nz-number ":" nz-number or "-" nz-number ":" "-"
// nz-number (RFC 9394 §4): no "*", no zero, no mixed signs, 32 bits. A
// range 500:400 is the same as 400:500.
func (p *parser) pageRange() (pageRange, error) {
	var r pageRange
	tok := p.scan(func(b byte) bool { return b == '-' || b == ':' || b >= '0' && b <= '9' })
	bad := errBad("Invalid PARTIAL range: expected m:n or -m:-n")
	if p.pos < len(p.line) && isAtomChar(p.line[p.pos]) {
		return r, bad // "1:*", "1:5x"
	}
	colon := -1
	for i := 0; i < len(tok); i++ {
		if tok[i] == ':' {
			if colon >= 0 {
				return r, bad
			}
			colon = i
		}
	}
	if colon < 0 {
		return r, bad
	}
	a, negA, okA := partialNumber(tok[:colon])
	b, negB, okB := partialNumber(tok[colon+1:])
	if !okA || !okB || negA != negB {
		return r, bad
	}
	r.lo, r.hi, r.last = min(a, b), max(a, b), negA
	return r, nil
}

// partialNumber parses ["-"] nz-number of at most 32 bits.
func partialNumber(s string) (n uint32, neg, ok bool) {
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" || s[0] == '0' || len(s) > 10 {
		return 0, neg, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, neg, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, neg, false
	}
	return uint32(v), neg, true
}

// String is the range as the PARTIAL response data echoes it (RFC 9394
// §3.1: the requested range), low end first.
func (r pageRange) String() string {
	if r.last {
		return "-" + strconv.FormatUint(uint64(r.lo), 10) + ":-" + strconv.FormatUint(uint64(r.hi), 10)
	}
	return strconv.FormatUint(uint64(r.lo), 10) + ":" + strconv.FormatUint(uint64(r.hi), 10)
}

// slice returns the part of results (in the order of the response) that
// the range names; nothing when it lies beyond them (RFC 9394 §3.1: the
// results that are in the set).
func (r pageRange) slice(results []uint32) []uint32 { return pageOf(r, results) }

// pageOf is slice for any list.
func pageOf[T any](r pageRange, results []T) []T {
	n := uint64(len(results))
	lo, hi := uint64(r.lo), uint64(r.hi)
	if lo > n {
		return nil
	}
	hi = min(hi, n)
	if r.last {
		// -lo is position n-lo+1, -hi is n-hi+1 (RFC 9394 §3.1).
		return results[n-hi : n-lo+1]
	}
	return results[lo-1 : hi]
}
