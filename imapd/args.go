package imapd

import (
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// numRange is an inclusive range of sequence numbers or UIDs; 0 stands for
// "*" (RFC 9051 §9 seq-range).
type numRange struct{ start, stop uint32 }

// bounds returns the range as low, high with "*" (0) standing for star
// (RFC 9051 §9: "*" is the largest number in use; a:b equals b:a).
func (r numRange) bounds(star uint32) (lo, hi uint32) {
	lo, hi = r.start, r.stop
	if lo == 0 {
		lo = star
	}
	if hi == 0 {
		hi = star
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

// numSet is a parsed sequence-set, or "$" (RFC 5182 SEARCHRES).
type numSet struct {
	ranges []numRange
	saved  bool
}

// sequenceSet reads a sequence-set or "$" (RFC 9051 §9 sequence-set,
// RFC 5182 §2.1), bounded to Limits.MaxSetRanges ranges.
func (p *parser) sequenceSet() (numSet, error) {
	if p.accept('$') {
		return numSet{saved: true}, nil
	}
	var s numSet
	for {
		a, err := p.seqNumber()
		if err != nil {
			return s, err
		}
		b := a
		if p.accept(':') {
			if b, err = p.seqNumber(); err != nil {
				return s, err
			}
		}
		if len(s.ranges) >= p.c.srv.limits.MaxSetRanges {
			return s, errBad("Sequence set too large")
		}
		s.ranges = append(s.ranges, numRange{a, b})
		if !p.accept(',') {
			return s, nil
		}
	}
}

// seqNumber reads nz-number / "*" (0).
func (p *parser) seqNumber() (uint32, error) {
	if p.accept('*') {
		return 0, nil
	}
	n, err := p.nzNumber()
	if err != nil {
		return 0, errBad("Invalid sequence set")
	}
	return n, nil
}

// systemFlags maps system flag names (lower case) to store bits (RFC 9051
// §2.3.2).
var systemFlags = map[string]mailstore.SystemFlag{
	`\seen`:     mailstore.FlagSeen,
	`\answered`: mailstore.FlagAnswered,
	`\flagged`:  mailstore.FlagFlagged,
	`\deleted`:  mailstore.FlagDeleted,
	`\draft`:    mailstore.FlagDraft,
}

// systemFlagNames lists system flags in the order they are sent.
var systemFlagNames = []struct {
	bit  mailstore.SystemFlag
	name string
}{
	{mailstore.FlagAnswered, `\Answered`},
	{mailstore.FlagFlagged, `\Flagged`},
	{mailstore.FlagDeleted, `\Deleted`},
	{mailstore.FlagSeen, `\Seen`},
	{mailstore.FlagDraft, `\Draft`},
}

// flag reads one flag into f (RFC 9051 §9 flag). \Recent cannot be stored
// (RFC 3501 §2.3.2) and is ignored.
func (p *parser) flag(f *mailstore.Flags) error {
	if p.accept('\\') {
		name, err := p.atom()
		if err != nil {
			return errBad("Invalid flag")
		}
		if strings.EqualFold(name, "Recent") {
			return nil
		}
		bit, ok := systemFlags[`\`+strings.ToLower(name)]
		if !ok {
			return errBad("Invalid system flag")
		}
		f.System |= bit
		return nil
	}
	kw, err := p.atom()
	if err != nil || !mailstore.ValidKeyword(kw) {
		return errBad("Invalid flag keyword")
	}
	for _, k := range f.Keywords {
		if strings.EqualFold(k, kw) {
			return nil
		}
	}
	if len(f.Keywords) >= mailstore.MaxKeywords {
		return errNo(codeLimit, "Too many keywords")
	}
	f.Keywords = append(f.Keywords, kw)
	return nil
}

// flagList reads "(" [flag *(SP flag)] ")".
func (p *parser) flagList() (mailstore.Flags, error) {
	var f mailstore.Flags
	err := p.list(func() error { return p.flag(&f) })
	return f, err
}

var monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// date reads a search date: date-text / DQUOTE date-text DQUOTE, with
// date-text = date-day "-" date-month "-" date-year (RFC 9051 §9). The date
// is returned at midnight UTC.
func (p *parser) date() (time.Time, error) {
	q := p.accept('"')
	day, err := p.number()
	if err != nil || day < 1 || day > 31 {
		return time.Time{}, errBad("Invalid date")
	}
	t, err := p.monthYear(int(day))
	if err != nil {
		return t, err
	}
	if q {
		if err := p.expect('"'); err != nil {
			return t, errBad("Invalid date")
		}
	}
	return t, nil
}

func (p *parser) monthYear(day int) (time.Time, error) {
	if !p.accept('-') || p.pos+3 > len(p.line) {
		return time.Time{}, errBad("Invalid date")
	}
	mon := strings.ToLower(string(p.line[p.pos : p.pos+3]))
	m := 0
	for i, n := range monthNames {
		if n == mon {
			m = i + 1
		}
	}
	p.pos += 3
	if m == 0 || !p.accept('-') {
		return time.Time{}, errBad("Invalid date")
	}
	start := p.pos
	year, err := p.number()
	if err != nil || p.pos-start != 4 {
		return time.Time{}, errBad("Invalid date")
	}
	t := time.Date(int(year), time.Month(m), day, 0, 0, 0, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, errBad("Invalid date")
	}
	return t, nil
}

// dateTime reads an APPEND date-time: DQUOTE date-day-fixed "-" date-month
// "-" date-year SP time SP zone DQUOTE (RFC 9051 §9).
func (p *parser) dateTime() (time.Time, error) {
	bad := errBad("Invalid date-time")
	if !p.accept('"') {
		return time.Time{}, bad
	}
	p.accept(' ') // date-day-fixed = (SP DIGIT) / 2DIGIT
	day, err := p.number()
	if err != nil || day < 1 || day > 31 {
		return time.Time{}, bad
	}
	d, err := p.monthYear(int(day))
	if err != nil {
		return time.Time{}, bad
	}
	if !p.accept(' ') || p.pos+15 > len(p.line) {
		return time.Time{}, bad
	}
	t, err := time.Parse("15:04:05 -0700", string(p.line[p.pos:p.pos+14]))
	if err != nil {
		return time.Time{}, bad
	}
	p.pos += 14
	if !p.accept('"') {
		return time.Time{}, bad
	}
	return time.Date(d.Year(), d.Month(), d.Day(), t.Hour(), t.Minute(), t.Second(), 0, t.Location()), nil
}

// writeFlags writes a flag list "(...)" (RFC 9051 §7.5.2 FLAGS), with
// \Recent first when recent (RFC 3501 §2.3.2; never with IMAP4rev2).
func (w *respWriter) flags(f mailstore.Flags, recent bool) {
	w.byte('(')
	first := true
	if recent {
		w.str(`\Recent`)
		first = false
	}
	for _, s := range systemFlagNames {
		if f.System&s.bit != 0 {
			if !first {
				w.sp()
			}
			w.str(s.name)
			first = false
		}
	}
	for _, k := range f.Keywords {
		if !first {
			w.sp()
		}
		w.str(k)
		first = false
	}
	w.byte(')')
}

// formatDateTime formats an INTERNALDATE (RFC 9051 §9 date-time).
func formatDateTime(t time.Time) string {
	return t.Format(`"02-Jan-2006 15:04:05 -0700"`)
}
