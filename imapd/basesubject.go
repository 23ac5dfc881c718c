package imapd

import (
	"strings"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// maxSubjectBytes bounds the raw subject base-subject extraction looks at
// (a header line may be long; RFC 5322 §2.1.1 allows 998 octets per line,
// and folding more). Beyond it the subject is cut; the extraction's loops
// each remove something per round, so its work is linear in this bound.
const maxSubjectBytes = 4096

// baseSubject extracts the base subject of a raw (unfolded, possibly
// RFC 2047-encoded) Subject field value, as RFC 5256 §2.1 defines it, and
// reports whether the subject was that of a reply or forward: whether a
// subj-refwd leader, a "(fwd)" trailer or a "[fwd: ...]" wrapper was
// removed (RFC 5256 §4, REFERENCES step 5).
func baseSubject(raw string) (base string, reply bool) {
	if len(raw) > maxSubjectBytes {
		raw = raw[:maxSubjectBytes]
	}
	// RFC 5256 §2.1 step 1: decode encoded words to UTF-8, turn tabs and
	// line breaks into spaces, and runs of spaces into one.
	s := collapseSpaces(msgparse.DecodeHeader(raw))
	for {
		// Step 2: remove trailers, "(fwd)" and WSP, until none is left.
		for {
			if strings.HasSuffix(s, " ") {
				s = s[:len(s)-1]
				continue
			}
			if n := len(s); n >= 5 && strings.EqualFold(s[n-5:], "(fwd)") {
				s = s[:n-5]
				reply = true
				continue
			}
			break
		}
		// Steps 3 to 5: remove leaders (WSP, and subj-refwd with the blobs
		// before it), then one blob if that leaves a non-empty base, and
		// repeat until neither applies.
		for {
			changed := false
			for {
				if strings.HasPrefix(s, " ") {
					s = s[1:]
					changed = true
					continue
				}
				if n := refwdLeader(s); n > 0 {
					s = s[n:]
					reply, changed = true, true
					continue
				}
				break
			}
			if n := blob(s); n > 0 && n < len(s) {
				s = s[n:]
				changed = true
			}
			if !changed {
				break
			}
		}
		// Step 6: "[fwd:" ... "]" around the rest is removed, then again
		// from step 2.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			reply = true
			continue
		}
		return s, reply
	}
}

// collapseSpaces turns tabs, CR and LF into spaces and runs of spaces into
// one (RFC 5256 §2.1 step 1).
func collapseSpaces(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			if !space {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteByte(c)
	}
	return b.String()
}

// blob returns the length of the subj-blob at the start of s, 0 if none:
// subj-blob = "[" *BLOBCHAR "]" *WSP, BLOBCHAR being any octet but "["
// and "]" (RFC 5256 §5).
func blob(s string) int {
	if len(s) == 0 || s[0] != '[' {
		return 0
	}
	i := 1
	for i < len(s) && s[i] != '[' && s[i] != ']' {
		i++
	}
	if i >= len(s) || s[i] != ']' {
		return 0
	}
	i++
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

// refwdLeader returns the length of *subj-blob subj-refwd at the start of
// s, 0 if there is none. subj-refwd = ("re" / ("fw" ["d"])) *WSP
// [subj-blob] ":" (RFC 5256 §5).
func refwdLeader(s string) int {
	i := 0
	for {
		n := blob(s[i:])
		if n == 0 {
			break
		}
		i += n
	}
	rest := s[i:]
	switch {
	case len(rest) >= 3 && strings.EqualFold(rest[:3], "fwd"):
		i += 3
	case len(rest) >= 2 && (strings.EqualFold(rest[:2], "fw") || strings.EqualFold(rest[:2], "re")):
		i += 2
	default:
		return 0
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	i += blob(s[i:])
	if i < len(s) && s[i] == ':' {
		return i + 1
	}
	return 0
}

// casemap applies the i;ascii-casemap collation (RFC 4790 §9.2): ASCII
// letters are compared as upper case, every other octet as itself, so two
// strings compare under the collation as their casemaps compare as octet
// strings. limit bounds the result's length (and so the memory a sort key
// takes).
func casemap(s string, limit int) string {
	if len(s) > limit {
		s = s[:limit]
	}
	lower := false
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			lower = true
			break
		}
	}
	if !lower {
		return strings.Clone(s)
	}
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}
