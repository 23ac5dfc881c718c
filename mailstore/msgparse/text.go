package msgparse

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/transform"
)

// Transfer encodings the text pipeline decodes (RFC 2045 §6.1).
const (
	teIdentity = iota
	teBase64
	teQP
)

// textPipe decodes one text/* part for search as its body bytes arrive:
// transfer decoding (RFC 2045 §6.7 quoted-printable, §6.8 base64), then
// charset conversion to UTF-8 (RFC 2046 §4.1.2), then invalid UTF-8
// replacement, then (for text/html) tag stripping, then the message's
// bounded text buffer. Every stage keeps only a few octets of state, so the
// result does not depend on how the input is chunked.
type textPipe struct {
	enc int

	b64     uint32 // base64: pending sextets
	b64n    int
	qpState int // quoted-printable: qpNormal, qpEq, qpHex, qpSoft
	qpHi    byte

	dec   transform.Transformer // nil: input is (supposed to be) UTF-8
	carry []byte                // charset input not yet converted
	cbuf  []byte                // charset output

	utf  [utf8.UTFMax]byte // incomplete UTF-8 sequence
	nutf int

	html *htmlStrip

	pend  [2]byte // the previous line's line ending, held back until the next line
	npend int

	buf []byte // transfer-decoded scratch
}

func newTextPipe(p *Parser, subtype, encodingName, charsetName string) *textPipe {
	tp := &textPipe{}
	switch strings.ToLower(encodingName) {
	case "base64":
		tp.enc = teBase64
	case "quoted-printable":
		tp.enc = teQP
	}
	if enc := lookupCharset(charsetName); enc != nil {
		tp.dec = enc.NewDecoder()
	}
	if subtype == "html" {
		tp.html = &htmlStrip{}
	}
	p.textSep = len(p.text) > 0 || p.sunk > 0
	return tp
}

// line feeds one body segment. The line ending is held back until the
// next segment arrives, because the CRLF before a boundary delimiter is not
// part of the body (RFC 2046 §5.1.1).
func (tp *textPipe) line(p *Parser, seg []byte) {
	if p.textFull {
		return
	}
	eol := eolLen(seg)
	if tp.npend > 0 {
		tp.write(p, tp.pend[:tp.npend])
		tp.npend = 0
	}
	tp.write(p, seg[:len(seg)-eol])
	tp.npend = copy(tp.pend[:], seg[len(seg)-eol:])
}

// finish flushes the stages at the end of the part. The held-back line
// ending is part of the body only when the part ends at the end of the
// message, not at a boundary.
func (tp *textPipe) finish(p *Parser, keepEOL bool) {
	if p.textFull {
		return
	}
	if keepEOL && tp.npend > 0 {
		tp.write(p, tp.pend[:tp.npend])
	}
	tp.npend = 0
	tp.charset(p, nil, true)
	if tp.html != nil {
		tp.html.flush(p)
	}
}

// write transfer-decodes data.
func (tp *textPipe) write(p *Parser, data []byte) {
	if len(data) == 0 || p.textFull {
		return
	}
	switch tp.enc {
	case teIdentity:
		tp.charset(p, data, false)
		return
	case teBase64:
		tp.buf = tp.base64(tp.buf[:0], data)
	case teQP:
		tp.buf = tp.qp(tp.buf[:0], data)
	}
	tp.charset(p, tp.buf, false)
}

var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alpha); i++ {
		t[alpha[i]] = byte(i)
	}
	return t
}()

// base64 decodes RFC 2045 §6.8 base64, ignoring octets outside the
// alphabet; '=' ends a quantum.
func (tp *textPipe) base64(dst, src []byte) []byte {
	for _, c := range src {
		if c == '=' {
			switch tp.b64n {
			case 2:
				dst = append(dst, byte(tp.b64>>4))
			case 3:
				dst = append(dst, byte(tp.b64>>10), byte(tp.b64>>2))
			}
			tp.b64, tp.b64n = 0, 0
			continue
		}
		v := b64val[c]
		if v == 0xff {
			continue
		}
		tp.b64 = tp.b64<<6 | uint32(v)
		tp.b64n++
		if tp.b64n == 4 {
			dst = append(dst, byte(tp.b64>>16), byte(tp.b64>>8), byte(tp.b64))
			tp.b64, tp.b64n = 0, 0
		}
	}
	return dst
}

const (
	qpNormal = iota
	qpEq     // after '='
	qpHex    // after '=' and one hex digit
	qpSoft   // after '=' and white space or CR: a soft line break in progress
)

// qp decodes RFC 2045 §6.7 quoted-printable leniently: "=XX" is an octet,
// "=" followed by (white space and) a line break is a soft line break, and
// any other '=' is kept literally (rule 1, lenient decoding note).
func (tp *textPipe) qp(dst, src []byte) []byte {
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch tp.qpState {
		case qpNormal:
			if c == '=' {
				tp.qpState = qpEq
			} else {
				dst = append(dst, c)
			}
		case qpEq:
			switch {
			case isHex(c):
				tp.qpHi, tp.qpState = c, qpHex
			case c == '\n':
				tp.qpState = qpNormal
			case c == ' ' || c == '\t' || c == '\r':
				tp.qpState = qpSoft
			default:
				dst = append(dst, '=')
				tp.qpState = qpNormal
				i--
			}
		case qpHex:
			tp.qpState = qpNormal
			if isHex(c) {
				dst = append(dst, unhex(tp.qpHi)<<4|unhex(c))
			} else {
				dst = append(dst, '=', tp.qpHi)
				i--
			}
		case qpSoft:
			switch c {
			case '\n':
				tp.qpState = qpNormal
			case ' ', '\t', '\r':
			default:
				tp.qpState = qpNormal
				i--
			}
		}
	}
	return dst
}

// charset converts decoded octets to UTF-8 with the part's charset.
func (tp *textPipe) charset(p *Parser, src []byte, atEOF bool) {
	if tp.dec == nil {
		tp.utf8(p, src, atEOF)
		return
	}
	if len(tp.carry) > 0 {
		tp.carry = append(tp.carry, src...)
		src = tp.carry
	}
	if tp.cbuf == nil {
		tp.cbuf = make([]byte, 4096)
	}
	for len(src) > 0 || atEOF {
		nDst, nSrc, err := tp.dec.Transform(tp.cbuf, src, atEOF)
		tp.utf8(p, tp.cbuf[:nDst], false)
		src = src[nSrc:]
		switch {
		case err == transform.ErrShortDst:
			continue
		case err == transform.ErrShortSrc && !atEOF && len(src) < 64:
			// Keep the incomplete sequence for the next call.
		case err != nil && len(src) > 0:
			// Undecodable input: replace one octet and go on.
			tp.utf8(p, []byte("\uFFFD"), false)
			src = src[1:]
			tp.dec.Reset()
			continue
		}
		break
	}
	tp.carry = append(tp.carry[:0], src...)
	if atEOF {
		tp.carry = tp.carry[:0]
		tp.utf8(p, nil, true)
	}
}

// utf8 passes complete, valid UTF-8 on, replacing each invalid octet with
// U+FFFD and holding back an incomplete trailing sequence.
func (tp *textPipe) utf8(p *Parser, src []byte, atEOF bool) {
	for tp.nutf > 0 && len(src) > 0 {
		tp.utf[tp.nutf] = src[0]
		tp.nutf++
		src = src[1:]
		if utf8.FullRune(tp.utf[:tp.nutf]) {
			r, n := utf8.DecodeRune(tp.utf[:tp.nutf])
			if r == utf8.RuneError && n == 1 {
				tp.emit(p, []byte("\uFFFD"))
				// Re-examine the octets after the first.
				rest := append([]byte(nil), tp.utf[1:tp.nutf]...)
				tp.nutf = 0
				tp.utf8(p, rest, false)
			} else {
				tp.emit(p, tp.utf[:n])
				tp.nutf = 0
			}
		}
	}
	start := 0
	for i := 0; i < len(src); {
		if i += asciiPrefix(src[i:]); i >= len(src) {
			break
		}
		if !utf8.FullRune(src[i:]) {
			tp.emit(p, src[start:i])
			tp.nutf = copy(tp.utf[:], src[i:])
			start = len(src)
			break
		}
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n == 1 {
			tp.emit(p, src[start:i])
			tp.emit(p, []byte("\uFFFD"))
			i++
			start = i
			continue
		}
		i += n
	}
	if start < len(src) {
		tp.emit(p, src[start:])
	}
	if atEOF && tp.nutf > 0 {
		tp.nutf = 0
		tp.emit(p, []byte("\uFFFD"))
	}
}

func (tp *textPipe) emit(p *Parser, b []byte) {
	if len(b) == 0 {
		return
	}
	if tp.html != nil {
		tp.html.write(p, b)
		return
	}
	p.appendText(b)
}

// appendText adds valid UTF-8 to the search text: CRs dropped, parts
// separated by "\n", cut at a rune boundary at MaxSearchText.
func (p *Parser) appendText(b []byte) {
	if p.previewOn {
		p.keepPreview(b)
	}
	for len(b) > 0 && !p.textFull {
		i := bytes.IndexByte(b, '\r')
		if i < 0 {
			i = len(b)
		}
		if i > 0 {
			if p.textSep {
				p.textSep = false
				p.appendText([]byte{'\n'})
				if p.textFull {
					return
				}
			}
			chunk := b[:i]
			if p.textSink != nil {
				if room := MaxSinkText - p.sunk; int64(len(chunk)) > room {
					cut := int(room)
					for cut > 0 && !utf8.RuneStart(chunk[cut]) {
						cut--
					}
					chunk = chunk[:cut]
					p.textFull = true
				}
				p.sunk += int64(len(chunk))
				p.textSink(chunk)
				if i < len(b) {
					i++
				}
				b = b[i:]
				continue
			}
			if room := MaxSearchText - len(p.text); len(chunk) > room {
				cut := room
				for cut > 0 && !utf8.RuneStart(chunk[cut]) {
					cut--
				}
				chunk = chunk[:cut]
				p.textFull = true
			}
			if need := len(p.text) + len(chunk); need > cap(p.text) {
				// Grow by doubling, but never past MaxSearchText.
				grown := make([]byte, len(p.text), min(max(2*cap(p.text), need, 4096, p.textHint), MaxSearchText))
				copy(grown, p.text)
				p.text = grown
			}
			p.text = append(p.text, chunk...)
			if len(p.text) >= MaxSearchText {
				p.textFull = true
			}
		}
		if i < len(b) {
			i++ // skip CR
		}
		b = b[i:]
	}
}

// htmlStrip removes tags, comments and script/style content from HTML text
// and decodes the common character references, as a byte-wise state
// machine. It is not an HTML parser: it only keeps markup out of search.
type htmlStrip struct {
	state   int // hText, hTagStart, hTag, hComment, hEntity
	quote   byte
	name    [8]byte
	nname   int
	nameEnd bool
	closing bool
	skip    string // "script" or "style" while inside one
	dashes  int
	ent     [12]byte
	nent    int
	lastSp  bool
}

const (
	hText = iota
	hTagStart
	hTag
	hComment
	hEntity
)

func (h *htmlStrip) out(p *Parser, b []byte) {
	if h.skip != "" || len(b) == 0 {
		return
	}
	p.appendText(b)
	c := b[len(b)-1]
	h.lastSp = c == ' ' || c == '\n' || c == '\t'
}

func (h *htmlStrip) space(p *Parser) {
	if !h.lastSp {
		h.out(p, []byte{' '})
	}
}

func (h *htmlStrip) write(p *Parser, b []byte) {
	start := 0
	flushText := func(i int) {
		if h.state == hText && i > start {
			h.out(p, b[start:i])
		}
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch h.state {
		case hText:
			if c != '<' && c != '&' {
				continue
			}
			flushText(i)
			if c == '<' {
				h.state, h.nname, h.nameEnd, h.closing, h.quote = hTagStart, 0, false, false, 0
			} else {
				h.state, h.nent = hEntity, 0
			}
		case hTagStart:
			switch {
			case c == '/':
				h.closing = true
				h.state = hTag
			case c == '!' || c == '?' || isAlpha(string(c)):
				h.state = hTag
				h.addName(c)
			default:
				h.state = hText
				h.out(p, []byte{'<'})
				i--
			}
		case hTag:
			switch {
			case h.quote != 0:
				if c == h.quote {
					h.quote = 0
				}
			case c == '"' || c == '\'':
				h.nameEnd = true
				h.quote = c
			case c == '>':
				h.endTag(p)
			default:
				h.addName(c)
				if h.nname == 3 && string(h.name[:3]) == "!--" {
					h.state, h.dashes = hComment, 0
				}
			}
		case hComment:
			switch {
			case c == '-':
				h.dashes++
			case c == '>' && h.dashes >= 2:
				h.state = hText
				h.space(p)
			default:
				h.dashes = 0
			}
		case hEntity:
			if c == ';' {
				h.state = hText
				h.entity(p)
			} else if h.nent < len(h.ent) && (c == '#' || c < utf8.RuneSelf && isAlnum(c)) {
				h.ent[h.nent] = c
				h.nent++
			} else {
				h.state = hText
				h.out(p, []byte{'&'})
				h.out(p, h.ent[:h.nent])
				i--
			}
		}
		start = i + 1
	}
	flushText(len(b))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func (h *htmlStrip) addName(c byte) {
	if h.nameEnd {
		return
	}
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '/' && h.nname > 0 {
		h.nameEnd = true
		return
	}
	if h.nname < len(h.name) {
		h.name[h.nname] = c | 0x20
		if c == '!' || c == '-' || c == '?' {
			h.name[h.nname] = c
		}
		h.nname++
	}
}

func (h *htmlStrip) endTag(p *Parser) {
	h.state = hText
	name := string(h.name[:h.nname])
	switch {
	case h.closing && h.skip != "" && name == h.skip:
		h.skip = ""
	case !h.closing && h.skip == "" && (name == "script" || name == "style"):
		h.skip = name
	}
	h.space(p)
}

var htmlEntities = map[string]string{
	"amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": " ",
	"copy": "©", "reg": "®", "euro": "€", "hellip": "…", "mdash": "—", "ndash": "–",
	"laquo": "«", "raquo": "»", "rsquo": "’", "lsquo": "‘", "rdquo": "”", "ldquo": "“",
}

func (h *htmlStrip) entity(p *Parser) {
	e := string(h.ent[:h.nent])
	if r, ok := htmlEntities[strings.ToLower(e)]; ok {
		h.out(p, []byte(r))
		return
	}
	if len(e) > 1 && e[0] == '#' {
		n, base, digits := 0, 10, e[1:]
		if digits != "" && (digits[0] == 'x' || digits[0] == 'X') {
			base, digits = 16, digits[1:]
		}
		valid := digits != ""
		for i := 0; i < len(digits) && valid; i++ {
			c := digits[i]
			switch {
			case base == 10 && c >= '0' && c <= '9':
				n = n*10 + int(c-'0')
			case base == 16 && isHex(c):
				n = n*16 + int(unhex(c))
			default:
				valid = false
			}
		}
		if valid && n > 0 && n <= utf8.MaxRune && utf8.ValidRune(rune(n)) {
			h.out(p, utf8.AppendRune(nil, rune(n)))
			return
		}
	}
	h.out(p, []byte{'&'})
	h.out(p, h.ent[:h.nent])
	h.out(p, []byte{';'})
}

// flush emits a pending unfinished entity at the end of the part.
func (h *htmlStrip) flush(p *Parser) {
	if h.state == hEntity {
		h.out(p, []byte{'&'})
		h.out(p, h.ent[:h.nent])
	}
	h.state = hText
	h.skip = ""
}

// asciiPrefix returns how many leading octets of b are ASCII, eight at a
// time where it can.
func asciiPrefix(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:])&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(b) && b[i] < utf8.RuneSelf; i++ {
	}
	return i
}
