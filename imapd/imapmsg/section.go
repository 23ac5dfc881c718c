package imapmsg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// Bounds of ParseSection.
const (
	maxPartDepth  = 32       // numeric part specifiers in one section
	maxFields     = 100      // header-fld-name entries in one header-list
	maxSectionLen = 64 << 10 // octets of section text accepted at all
)

// Section is a parsed section-spec (RFC 9051 §6.4.5, formal syntax §9):
// the numeric part path and the section-text that follows it.
type Section struct {
	// Part is the section-part, e.g. [1 2] for "1.2"; empty for the whole
	// message.
	Part []int
	// Specifier is "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
	// "TEXT" or "MIME" (upper case whatever the client sent).
	Specifier string
	// Fields are the header-fld-names of HEADER.FIELDS[.NOT], as sent.
	Fields []string
}

// ErrNoSuchPart is returned when a section names a part the message does
// not have, or a specifier that the named part cannot take.
var ErrNoSuchPart = errors.New("no such body part")

// errSyntax wraps every ParseSection failure.
var errSyntax = errors.New("imapmsg: invalid section")

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errSyntax}, args...)...)
}

// ParseSection parses the text between the brackets of BODY[...] or
// BODY.PEEK[...], e.g. `1.2.HEADER.FIELDS (From To)`, per RFC 9051 §9:
//
//	section-spec    = section-msgtext / (section-part ["." section-text])
//	section-msgtext = "HEADER" / "HEADER.FIELDS" [".NOT"] SP header-list / "TEXT"
//	section-part    = nz-number *("." nz-number)
//	section-text    = section-msgtext / "MIME"
//	header-list     = "(" header-fld-name *(SP header-fld-name) ")"
//
// Keywords are case-insensitive; header-fld-name is an astring (atom,
// quoted string or literal). At most 32 part numbers and 100 field names
// are accepted.
func ParseSection(spec string) (Section, error) {
	var s Section
	if len(spec) > maxSectionLen {
		return s, syntaxErr("too long")
	}
	i := 0
	for i < len(spec) && isDigit(spec[i]) {
		n, next, err := parseNZNumber(spec, i)
		if err != nil {
			return Section{}, err
		}
		if len(s.Part) == maxPartDepth {
			return Section{}, syntaxErr("more than %d part numbers", maxPartDepth)
		}
		s.Part = append(s.Part, n)
		i = next
		if i == len(spec) {
			break
		}
		if spec[i] != '.' {
			return Section{}, syntaxErr("unexpected %q after part number", spec[i])
		}
		i++
		if i == len(spec) {
			return Section{}, syntaxErr("trailing dot")
		}
	}
	rest := spec[i:]
	switch {
	case rest == "":
		return s, nil
	case strings.EqualFold(rest, "HEADER"):
		s.Specifier = "HEADER"
	case strings.EqualFold(rest, "TEXT"):
		s.Specifier = "TEXT"
	case strings.EqualFold(rest, "MIME"):
		// "The MIME part specifier MUST be prefixed by one or more numeric
		// part specifiers." (RFC 9051 §6.4.5)
		if len(s.Part) == 0 {
			return Section{}, syntaxErr("MIME without a part number")
		}
		s.Specifier = "MIME"
	case hasPrefixFold(rest, "HEADER.FIELDS.NOT "):
		s.Specifier = "HEADER.FIELDS.NOT"
		rest = rest[len("HEADER.FIELDS.NOT "):]
	case hasPrefixFold(rest, "HEADER.FIELDS "):
		s.Specifier = "HEADER.FIELDS"
		rest = rest[len("HEADER.FIELDS "):]
	default:
		return Section{}, syntaxErr("unknown section text %q", truncate(rest))
	}
	if s.Specifier == "HEADER.FIELDS" || s.Specifier == "HEADER.FIELDS.NOT" {
		fields, err := parseHeaderList(rest)
		if err != nil {
			return Section{}, err
		}
		s.Fields = fields
	}
	return s, nil
}

// parseNZNumber reads nz-number = digit-nz *DIGIT, at most 4294967295
// (RFC 9051 §9 number is 32-bit unsigned).
func parseNZNumber(s string, i int) (int, int, error) {
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if s[start] == '0' {
		return 0, 0, syntaxErr("part number with leading zero or zero")
	}
	n, err := strconv.ParseUint(s[start:i], 10, 32)
	if err != nil {
		return 0, 0, syntaxErr("part number out of range")
	}
	return int(n), i, nil
}

// parseHeaderList parses header-list and requires it to end the section.
func parseHeaderList(s string) ([]string, error) {
	if s == "" || s[0] != '(' {
		return nil, syntaxErr("header list must start with '('")
	}
	i := 1
	var fields []string
	for {
		if len(fields) == maxFields {
			return nil, syntaxErr("more than %d header fields", maxFields)
		}
		name, next, err := parseAString(s, i)
		if err != nil {
			return nil, err
		}
		fields = append(fields, name)
		i = next
		if i >= len(s) {
			return nil, syntaxErr("unterminated header list")
		}
		if s[i] == ')' {
			i++
			break
		}
		if s[i] != ' ' {
			return nil, syntaxErr("unexpected %q in header list", s[i])
		}
		i++
	}
	if i != len(s) {
		return nil, syntaxErr("text after header list")
	}
	return fields, nil
}

// parseAString reads an astring (RFC 9051 §9): 1*ASTRING-CHAR, a quoted
// string, or a literal {n}CRLF / {n+}CRLF followed by n octets.
func parseAString(s string, i int) (string, int, error) {
	if i >= len(s) {
		return "", i, syntaxErr("missing header field name")
	}
	switch s[i] {
	case '"':
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			c := s[j]
			switch c {
			case '"':
				return b.String(), j + 1, nil
			case '\\':
				j++
				if j >= len(s) || (s[j] != '"' && s[j] != '\\') {
					return "", i, syntaxErr("bad escape in quoted string")
				}
				b.WriteByte(s[j])
			case '\r', '\n', 0:
				return "", i, syntaxErr("line break in quoted string")
			default:
				b.WriteByte(c)
			}
		}
		return "", i, syntaxErr("unterminated quoted string")
	case '{':
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", i, syntaxErr("unterminated literal")
		}
		num := strings.TrimSuffix(s[i+1:i+end], "+")
		if num == "" || !allDigits(num) {
			return "", i, syntaxErr("bad literal length")
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return "", i, syntaxErr("bad literal length")
		}
		j := i + end + 1
		if !strings.HasPrefix(s[j:], "\r\n") {
			return "", i, syntaxErr("literal without CRLF")
		}
		j += 2
		if n > uint64(len(s)-j) {
			return "", i, syntaxErr("literal longer than section")
		}
		v := s[j : j+int(n)]
		if strings.IndexByte(v, 0) >= 0 {
			return "", i, syntaxErr("NUL in literal")
		}
		return v, j + int(n), nil
	}
	j := i
	for j < len(s) && isAStringChar(s[j]) {
		j++
	}
	if j == i {
		return "", i, syntaxErr("missing header field name")
	}
	return s[i:j], j, nil
}

// isAStringChar: ASTRING-CHAR = ATOM-CHAR / resp-specials, where ATOM-CHAR
// is any CHAR except atom-specials: "(" ")" "{" SP CTL "%" "*" DQUOTE "\"
// "]" (RFC 9051 §9). resp-specials ("]") is allowed back in.
func isAStringChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\':
		return false
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// locate finds the part that a non-empty section-part names (RFC 9051
// §6.4.5 part numbering). At a message level (the top, or the inside of a
// message/rfc822 part) a multipart body numbers its children from 1 and a
// non-multipart body is part 1 itself. Below a multipart part, numbers
// index its children; below a message/rfc822 part they apply to the
// encapsulated message's level. Leaves have no sub-parts.
func locate(m *msgparse.Message, path []int) (*msgparse.Part, error) {
	if len(path) == 0 || len(path) > maxPartDepth {
		return nil, ErrNoSuchPart
	}
	var cur *msgparse.Part
	root := &m.Structure // the body of the current message level
	for _, n := range path {
		if n < 1 {
			return nil, ErrNoSuchPart
		}
		if cur != nil {
			switch {
			case isMultipart(cur):
				if n > len(cur.Parts) {
					return nil, ErrNoSuchPart
				}
				cur = &cur.Parts[n-1]
				continue
			case isMessage(cur) && cur.Message != nil:
				root = &cur.Message.Structure
			default:
				return nil, ErrNoSuchPart
			}
		}
		// At a message level whose body is root.
		if isMultipart(root) {
			if n > len(root.Parts) {
				return nil, ErrNoSuchPart
			}
			cur = &root.Parts[n-1]
		} else {
			if n != 1 {
				return nil, ErrNoSuchPart
			}
			cur = root
		}
	}
	return cur, nil
}

// Resolve returns the byte range [offset, offset+length) of the stored
// message that section s denotes (RFC 9051 §6.4.5 BODY[<section>]), and
// filter=true when the range is a header block to be passed through
// FilterHeader with s.Fields (HEADER.FIELDS and HEADER.FIELDS.NOT).
//
//   - BODY[] is the whole message; BODY[HEADER] and BODY[TEXT] are the top
//     header (with its blank line) and body.
//   - BODY[n] is the body of part n: for a non-multipart message BODY[1] is
//     its body; for a multipart part the raw multipart body, boundaries
//     included; for a message/rfc822 part the encapsulated message.
//   - BODY[n.MIME] is the MIME header of part n.
//   - BODY[n.HEADER], [n.TEXT] and [n.HEADER.FIELDS...] are allowed only for
//     message/rfc822 (and message/global) parts and denote the header and
//     body of the encapsulated message; elsewhere they give ErrNoSuchPart.
//
// The range is clamped to [0, m.Size] whatever the recorded offsets.
func Resolve(m *msgparse.Message, s Section) (offset, length int64, filter bool, err error) {
	if m == nil {
		return 0, 0, false, ErrNoSuchPart
	}
	var hdrOff, hdrLen, bodyOff, bodyLen int64
	if len(s.Part) == 0 {
		switch s.Specifier {
		case "":
			return clamp(m, 0, m.Size, false)
		case "MIME":
			return 0, 0, false, syntaxErr("MIME without a part number")
		}
		hdrOff, hdrLen = 0, m.HeaderSize
		bodyOff, bodyLen = m.HeaderSize, m.Size-m.HeaderSize
	} else {
		p, err := locate(m, s.Part)
		if err != nil {
			return 0, 0, false, err
		}
		switch s.Specifier {
		case "":
			return clamp(m, p.BodyOffset, p.BodySize, false)
		case "MIME":
			return clamp(m, p.HeaderOffset, p.HeaderSize, false)
		}
		// HEADER, TEXT and HEADER.FIELDS[.NOT] need an encapsulated
		// message (RFC 9051 §6.4.5).
		if !isMessage(p) || p.Message == nil {
			return 0, 0, false, ErrNoSuchPart
		}
		e := &p.Message.Structure
		hdrOff, hdrLen = e.HeaderOffset, e.HeaderSize
		bodyOff, bodyLen = e.BodyOffset, e.BodySize
	}
	switch s.Specifier {
	case "HEADER":
		return clamp(m, hdrOff, hdrLen, false)
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		return clamp(m, hdrOff, hdrLen, true)
	case "TEXT":
		return clamp(m, bodyOff, bodyLen, false)
	}
	return 0, 0, false, syntaxErr("unknown specifier %q", truncate(s.Specifier))
}

func clamp(m *msgparse.Message, off, n int64, filter bool) (int64, int64, bool, error) {
	size := max(m.Size, 0)
	off = min(max(off, 0), size)
	n = min(max(n, 0), size-off)
	return off, n, filter, nil
}
