package msgparse

import (
	"strings"
	"time"
)

var monthNames = map[string]time.Month{
	"jan": time.January, "feb": time.February, "mar": time.March, "apr": time.April,
	"may": time.May, "jun": time.June, "jul": time.July, "aug": time.August,
	"sep": time.September, "oct": time.October, "nov": time.November, "dec": time.December,
}

var weekdayNames = map[string]bool{
	"mon": true, "tue": true, "wed": true, "thu": true, "fri": true, "sat": true, "sun": true,
}

// zoneNames are the obsolete zones of RFC 5322 §4.3 plus UTC.
var zoneNames = map[string]int{
	"ut": 0, "utc": 0, "gmt": 0, "z": 0,
	"edt": -4, "est": -5, "cdt": -5, "cst": -6, "mdt": -6, "mst": -7, "pdt": -7, "pst": -8,
}

// parseDate parses an RFC 5322 §3.3 date-time leniently: obsolete forms of
// §4.3 (two- and three-digit years, named zones; military zones count as
// +0000 as §4.3 advises), comments anywhere, missing weekday, missing
// seconds or time, day and month in either order (asctime style) and an
// ISO 8601 date. ok is false when no plausible date is found.
func parseDate(s string) (t time.Time, ok bool) {
	if len(s) > 256 {
		return time.Time{}, false
	}
	// Drop comments and turn commas into spaces.
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == ',':
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	day, year, hour, minute, sec := -1, -1, 0, 0, 0
	var mon time.Month
	offset, haveZone := 0, false
	for _, tok := range strings.Fields(b.String()) {
		low := strings.ToLower(tok)
		switch {
		case mon == 0 && len(low) >= 3 && monthNames[low[:3]] != 0 && isAlpha(low):
			mon = monthNames[low[:3]]
		case len(low) >= 3 && weekdayNames[low[:3]] && isAlpha(low):
		case strings.IndexByte(tok, ':') > 0:
			h, m, sc, ok := parseClock(tok)
			if !ok {
				return time.Time{}, false
			}
			hour, minute, sec = h, m, sc
		case (tok[0] == '+' || tok[0] == '-') && len(tok) == 5 && isDigits(tok[1:]):
			hh, mm := atoi(tok[1:3]), atoi(tok[3:5])
			if mm >= 60 {
				return time.Time{}, false
			}
			offset = (hh*60 + mm) * 60
			if tok[0] == '-' {
				offset = -offset
			}
			haveZone = true
		case isDigits(tok):
			n := atoi(tok)
			switch {
			case day < 0 && len(tok) <= 2:
				day = n
			case year < 0 && len(tok) <= 4:
				year = n
				switch len(tok) {
				case 1, 2: // RFC 5322 §4.3
					if n < 50 {
						year += 2000
					} else {
						year += 1900
					}
				case 3:
					year += 1900
				}
			}
		case len(tok) == 10 && tok[4] == '-' && tok[7] == '-' && isDigits(tok[:4]+tok[5:7]+tok[8:]):
			year, mon, day = atoi(tok[:4]), time.Month(atoi(tok[5:7])), atoi(tok[8:])
		case isAlpha(low) && !haveZone:
			if h, known := zoneNames[low]; known {
				offset, haveZone = h*3600, true
			} else if len(low) == 1 && low != "j" {
				offset, haveZone = 0, true // military zone: treat as -0000
			}
		}
	}
	if day < 1 || day > 31 || mon < time.January || mon > time.December || year < 1000 || year > 9999 {
		return time.Time{}, false
	}
	loc := time.UTC
	if offset != 0 {
		loc = time.FixedZone("", offset)
	}
	t = time.Date(year, mon, day, hour, minute, sec, 0, loc)
	if t.Day() != day {
		return time.Time{}, false // e.g. 31 Feb
	}
	return t, true
}

// parseClock parses hh:mm[:ss[.frac]]; a leap second 60 is clamped to 59.
func parseClock(s string) (h, m, sec int, ok bool) {
	if i := strings.IndexByte(s, '.'); i > 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, 0, false
	}
	for _, p := range parts {
		if p == "" || len(p) > 2 || !isDigits(p) {
			return 0, 0, 0, false
		}
	}
	h, m = atoi(parts[0]), atoi(parts[1])
	if len(parts) == 3 {
		sec = atoi(parts[2])
	}
	if sec == 60 {
		sec = 59
	}
	if h > 23 || m > 59 || sec > 59 {
		return 0, 0, 0, false
	}
	return h, m, sec, true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return s != ""
}

// atoi converts a short string of digits (validated by the caller).
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s) && i < 9; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}
