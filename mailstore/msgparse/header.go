package msgparse

import (
	"bytes"
	"mime"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// Internal limits on what one part's header may retain (the exported limits
// in types.go bound the input; these bound what is kept from it).
const (
	maxValueBytes   = 16 << 10 // one retained string value
	maxRetained     = 4 << 20  // all retained strings of one message's structure
	maxParams       = 64       // parameters kept per Content-Type / Content-Disposition
	maxLanguages    = 32       // Content-Language tags kept
	maxSearchFields = 1000     // SearchHeaders entries kept
	maxAddresses    = 1000     // addresses kept per envelope address list
	maxBoundary     = 998      // longest boundary accepted (RFC 2046 §5.1.1 says 70; be lenient)
)

// rawField is one header field with its value unfolded but not decoded.
type rawField struct {
	name  string // as given
	value string // unfolded, surrounding white space trimmed
}

// splitHeader splits a header block into fields. Unfolding removes each
// line break that is followed by white space (RFC 5322 §2.2.3). Lines that
// are neither a field nor a continuation are skipped, as are fields whose
// name is not made of printable ASCII (RFC 5322 §2.2 / §3.6.8 ftext).
func splitHeader(h []byte) []rawField {
	var fields []rawField
	var cur []byte // current field's unfolded value
	var name string
	have := false
	flush := func() {
		if have {
			fields = append(fields, rawField{name: name, value: string(bytes.Trim(cur, " \t\r\n"))})
		}
		have = false
		cur = cur[:0]
	}
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i+1], h[i+1:]
		} else {
			h = nil
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if have {
				cur = append(cur, content...)
			}
			continue
		}
		flush()
		colon := bytes.IndexByte(content, ':')
		if colon <= 0 {
			continue
		}
		n := bytes.TrimRight(content[:colon], " \t") // obs-optional WSP before ':' (RFC 5322 §4.5.8)
		if len(n) == 0 || !validFieldName(n) {
			continue
		}
		name = string(n)
		cur = append(cur, content[colon+1:]...)
		have = true
	}
	flush()
	return fields
}

func validFieldName(n []byte) bool {
	for _, c := range n {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// lexer is a cursor over a MIME structured field value (RFC 2045 §5.1,
// with RFC 822 comments allowed wherever white space is).
type lexer struct {
	s string
	i int
}

// skipCFWS skips white space and (nested) comments.
func (l *lexer) skipCFWS() {
	for l.i < len(l.s) {
		switch c := l.s[l.i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.i++
		case c == '(':
			l.comment()
		default:
			return
		}
	}
}

// comment consumes a comment starting at '(' and returns its text.
func (l *lexer) comment() string {
	depth := 0
	var b strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		l.i++
		switch c {
		case '(':
			if depth > 0 {
				b.WriteByte(c)
			}
			depth++
		case ')':
			depth--
			if depth == 0 {
				return b.String()
			}
			b.WriteByte(c)
		case '\\':
			if l.i < len(l.s) {
				b.WriteByte(l.s[l.i])
				l.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isTSpecial reports RFC 2045 §5.1 tspecials.
func isTSpecial(c byte) bool {
	return strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0
}

// token reads an RFC 2045 token (lenient: any octet except tspecials, space
// and controls, so 8-bit octets pass).
func (l *lexer) token() string {
	start := l.i
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c <= ' ' || c == 0x7f || isTSpecial(c) {
			break
		}
		l.i++
	}
	return l.s[start:l.i]
}

// quoted reads a quoted-string starting at '"' (RFC 5322 §3.2.4), removing
// the quoting; an unterminated string runs to the end.
func (l *lexer) quoted() string {
	l.i++ // opening quote
	var b strings.Builder
	for l.i < len(l.s) {
		c := l.s[l.i]
		l.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if l.i < len(l.s) {
				b.WriteByte(l.s[l.i])
				l.i++
			}
		case '\r', '\n':
			// folding inside a quoted string: already unfolded
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// paramValue reads a parameter value: a quoted-string or, leniently, any
// run of octets up to ';' or white space (unquoted values often hold
// tspecials such as '=' in real mail, e.g. boundary=----=_Part_1).
func (l *lexer) paramValue() string {
	if l.i < len(l.s) && l.s[l.i] == '"' {
		return l.quoted()
	}
	start := l.i
	for l.i < len(l.s) {
		c := l.s[l.i]
		if c == ';' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
		l.i++
	}
	return l.s[start:l.i]
}

// rawParam is one parameter as written, before RFC 2231 assembly.
type rawParam struct {
	name  string // lower case, without the RFC 2231 "*n*" suffix
	index int    // section number, -1 when the name has no "*n"
	ext   bool   // extended (percent-encoded, RFC 2231 §4)
	value string
}

// params parses ";" separated parameters (RFC 2045 §5.1) and assembles
// RFC 2231 continuations and charsets.
func (l *lexer) params() []Param {
	var raw []rawParam
	for l.i < len(l.s) && len(raw) < 4*maxParams {
		l.skipCFWS()
		if l.i >= len(l.s) {
			break
		}
		if l.s[l.i] == ';' {
			l.i++
			continue
		}
		name := l.token()
		l.skipCFWS()
		if name == "" || l.i >= len(l.s) || l.s[l.i] != '=' {
			// Not a parameter: skip to the next ';'.
			if j := strings.IndexByte(l.s[l.i:], ';'); j >= 0 {
				l.i += j + 1
			} else {
				l.i = len(l.s)
			}
			continue
		}
		l.i++ // '='
		l.skipCFWS()
		raw = append(raw, splitParamName(strings.ToLower(name), l.paramValue()))
	}
	return assembleParams(raw)
}

func splitParamName(name, value string) rawParam {
	p := rawParam{name: name, index: -1, value: value}
	if strings.HasSuffix(p.name, "*") {
		p.ext = true
		p.name = p.name[:len(p.name)-1]
	}
	if i := strings.LastIndexByte(p.name, '*'); i > 0 {
		if n, err := strconv.Atoi(p.name[i+1:]); err == nil && n >= 0 && n < 1000 {
			p.index = n
			p.name = p.name[:i]
		}
	}
	return p
}

// assembleParams joins RFC 2231 §3 continuations (name*0, name*1, ...) in
// section order and decodes RFC 2231 §4 extended values
// (charset'language'percent-encoded). When both name and name* forms are
// present the RFC 2231 form wins; the result keeps first-appearance order.
func assembleParams(raw []rawParam) []Param {
	var order []string
	groups := map[string][]rawParam{}
	for _, r := range raw {
		if _, ok := groups[r.name]; !ok {
			order = append(order, r.name)
		}
		groups[r.name] = append(groups[r.name], r)
	}
	var out []Param
	for _, name := range order {
		if len(out) >= maxParams {
			break
		}
		g := groups[name]
		var plain *rawParam
		var secs []rawParam
		for i := range g {
			if g[i].index < 0 && !g[i].ext {
				if plain == nil {
					plain = &g[i]
				}
				continue
			}
			secs = append(secs, g[i])
		}
		if len(secs) == 0 {
			out = append(out, Param{Name: name, Value: plain.value})
			continue
		}
		sort.SliceStable(secs, func(a, b int) bool { return secs[a].index < secs[b].index })
		var buf []byte
		cs := ""
		seen := map[int]bool{}
		for i, s := range secs {
			if seen[s.index] {
				continue // duplicate section: keep the first
			}
			seen[s.index] = true
			v := s.value
			if s.ext {
				if i == 0 {
					// RFC 2231 §4: charset'language'value in the first section.
					if a := strings.IndexByte(v, '\''); a >= 0 {
						if b := strings.IndexByte(v[a+1:], '\''); b >= 0 {
							cs = v[:a]
							v = v[a+1+b+1:]
						}
					}
				}
				buf = appendPercentDecoded(buf, v)
			} else {
				buf = append(buf, v...)
			}
		}
		out = append(out, Param{Name: name, Value: decodeCharset(cs, buf)})
	}
	return out
}

func appendPercentDecoded(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		dst = append(dst, s[i])
	}
	return dst
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// lookupCharset returns the decoder for a MIME charset name, or nil for
// UTF-8, US-ASCII and unknown charsets (treated as UTF-8 with invalid
// sequences replaced). The lookup mirrors go-message/charset.Reader.
func lookupCharset(name string) encoding.Encoding {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return nil
	}
	enc, _ := ianaindex.MIME.Encoding(n)
	if enc == nil {
		enc, _ = ianaindex.MIME.Encoding("cs" + n)
	}
	if enc == nil {
		enc, _ = htmlindex.Get(n)
	}
	return enc
}

// decodeCharset converts b from the named charset to valid UTF-8.
func decodeCharset(cs string, b []byte) string {
	if enc := lookupCharset(cs); enc != nil {
		if out, err := enc.NewDecoder().Bytes(b); err == nil {
			b = out
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// wordDecoder decodes RFC 2047 encoded words, with go-message's charset
// table for charsets other than UTF-8, US-ASCII and ISO-8859-1.
var wordDecoder = mime.WordDecoder{CharsetReader: charset.Reader}

// decodeHeaderValue RFC 2047-decodes an unfolded value to valid UTF-8,
// keeping the raw text when decoding fails.
func decodeHeaderValue(v string) string {
	if strings.Contains(v, "=?") {
		if d, err := wordDecoder.DecodeHeader(v); err == nil {
			v = d
		}
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

// DecodeHeader RFC 2047-decodes an unfolded header value (or an envelope
// display name) to valid UTF-8, keeping the raw text where decoding fails.
func DecodeHeader(v string) string { return decodeHeaderValue(v) }

// parseContentType parses "type/subtype *(; parameter)" (RFC 2045 §5.1).
// ok is false when the syntax is invalid; the caller then applies the
// RFC 2045 §5.2 default.
func parseContentType(v string) (typ, sub string, params []Param, ok bool) {
	l := lexer{s: v}
	l.skipCFWS()
	typ = l.token()
	l.skipCFWS()
	if typ == "" || l.i >= len(l.s) || l.s[l.i] != '/' {
		return "", "", nil, false
	}
	l.i++
	l.skipCFWS()
	sub = l.token()
	if sub == "" {
		return "", "", nil, false
	}
	return strings.ToLower(typ), strings.ToLower(sub), l.params(), true
}

// parseDisposition parses Content-Disposition (RFC 2183 §2).
func parseDisposition(v string) (disp string, params []Param) {
	l := lexer{s: v}
	l.skipCFWS()
	disp = l.token()
	if disp == "" {
		return "", nil
	}
	return strings.ToLower(disp), l.params()
}

// parseLanguages parses Content-Language: a comma separated list of
// language tags (RFC 3282 §2), comments removed.
func parseLanguages(v string) []string {
	var out []string
	l := lexer{s: v}
	for l.i < len(l.s) && len(out) < maxLanguages {
		l.skipCFWS()
		start := l.i
		for l.i < len(l.s) && l.s[l.i] != ',' && l.s[l.i] != '(' && l.s[l.i] != ' ' && l.s[l.i] != '\t' {
			l.i++
		}
		if tag := l.s[start:l.i]; tag != "" {
			out = append(out, tag)
		}
		l.skipCFWS()
		if l.i < len(l.s) && l.s[l.i] == ',' {
			l.i++
		} else if l.i < len(l.s) && l.s[l.i] != '(' {
			l.i++ // stray octet: skip it
		}
	}
	return out
}

// parseEncoding returns the Content-Transfer-Encoding mechanism token as
// given (RFC 2045 §6.1), comments and white space removed.
func parseEncoding(v string) string {
	l := lexer{s: v}
	l.skipCFWS()
	return l.token()
}

// paramValue returns the value of a parameter (names are lower case).
func paramValue(ps []Param, name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}
