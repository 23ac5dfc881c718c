package imapmsg

import (
	"bytes"
	"strings"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// maxDepth bounds the recursion of WriteBodyStructure over a Part tree
// (msgparse stops at msgparse.MaxDepth; this also guards hand-built or
// corrupt trees, including cyclic Embedded pointers).
const maxDepth = 2*msgparse.MaxDepth + 2

// emptyBody stands in where the grammar needs a body but the tree has none:
// a multipart without children (body-type-mpart needs 1*body) and the
// encapsulated message of a message/rfc822 part that was not parsed. It is
// what Dovecot sends in the same places.
const (
	emptyBody         = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)`
	emptyBodyExtended = `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`
)

// WriteBodyStructure writes the BODYSTRUCTURE (extended=true) or BODY
// (extended=false) data item value of the part tree p (RFC 9051 §7.5.2 and
// the body rules of §9; RFC 3501 §7.4.2):
//
//	multipart: (body1body2... "subtype" [params disposition language location])
//	basic:     ("type" "subtype" (params) id description encoding size
//	            [md5 disposition language location])
//	text/*:    as basic, with the line count after the size
//	message/rfc822, message/global: as basic, with envelope, body and
//	            line count after the size
//
// The bracketed extension data is written only when extended is set, and
// then always in full. Text parts without a charset parameter get the RFC
// 2045 §5.2 default ("charset" "us-ascii"), as Dovecot does.
func WriteBodyStructure(w *bytes.Buffer, p *msgparse.Part, extended bool) {
	writeBody(w, p, extended, 0)
}

func writeEmpty(w *bytes.Buffer, extended bool) {
	if extended {
		w.WriteString(emptyBodyExtended)
	} else {
		w.WriteString(emptyBody)
	}
}

func writeBody(w *bytes.Buffer, p *msgparse.Part, extended bool, depth int) {
	if p == nil || depth > maxDepth {
		writeEmpty(w, extended)
		return
	}
	w.WriteByte('(')
	if isMultipart(p) {
		writeMultipart(w, p, extended, depth)
	} else {
		writeSinglePart(w, p, extended, depth)
	}
	w.WriteByte(')')
}

// writeMultipart writes body-type-mpart (without the enclosing parens):
// 1*body SP media-subtype [SP body-ext-mpart], where body-ext-mpart is
// body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc]]].
func writeMultipart(w *bytes.Buffer, p *msgparse.Part, extended bool, depth int) {
	if len(p.Parts) == 0 {
		writeEmpty(w, extended)
	}
	for i := range p.Parts {
		writeBody(w, &p.Parts[i], extended, depth+1)
	}
	w.WriteByte(' ')
	sub := p.Subtype
	if sub == "" {
		sub = "x-unknown"
	}
	writeString(w, sub)
	if !extended {
		return
	}
	w.WriteByte(' ')
	writeParams(w, p.Params, false)
	writeExtensionTail(w, p)
}

// writeSinglePart writes body-type-1part (without the enclosing parens).
func writeSinglePart(w *bytes.Buffer, p *msgparse.Part, extended bool, depth int) {
	typ, sub := p.Type, p.Subtype
	if typ == "" {
		typ = "text"
	}
	text := strings.EqualFold(typ, "text")
	if sub == "" {
		if text {
			sub = "plain"
		} else {
			sub = "unknown"
		}
	}
	// media-basic / media-message / media-text, then body-fields:
	// body-fld-param SP body-fld-id SP body-fld-desc SP body-fld-enc SP
	// body-fld-octets.
	writeString(w, typ)
	w.WriteByte(' ')
	writeString(w, sub)
	w.WriteByte(' ')
	writeParams(w, p.Params, text)
	w.WriteByte(' ')
	writeNString(w, p.ID)
	w.WriteByte(' ')
	writeNString(w, p.Description)
	w.WriteByte(' ')
	writeString(w, encodingToken(p.Encoding))
	w.WriteByte(' ')
	writeNumber(w, p.BodySize)

	switch {
	case text:
		// body-type-text: ... SP body-fld-lines
		w.WriteByte(' ')
		writeNumber(w, p.BodyLines)
	case isMessage(p):
		// body-type-msg: ... SP envelope SP body SP body-fld-lines
		w.WriteByte(' ')
		if p.Message == nil {
			WriteEnvelope(w, nil)
			w.WriteByte(' ')
			writeEmpty(w, extended)
		} else {
			WriteEnvelope(w, &p.Message.Envelope)
			w.WriteByte(' ')
			writeBody(w, &p.Message.Structure, extended, depth+1)
		}
		w.WriteByte(' ')
		writeNumber(w, p.BodyLines)
	}
	if !extended {
		return
	}
	// body-ext-1part: body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
	// [SP body-fld-loc]]]
	w.WriteByte(' ')
	writeNString(w, p.MD5)
	writeExtensionTail(w, p)
}

// writeExtensionTail writes SP body-fld-dsp SP body-fld-lang SP
// body-fld-loc, common to both extension forms.
func writeExtensionTail(w *bytes.Buffer, p *msgparse.Part) {
	// body-fld-dsp = "(" string SP body-fld-param ")" / nil
	w.WriteByte(' ')
	if p.Disposition == "" {
		w.WriteString("NIL")
	} else {
		w.WriteByte('(')
		writeString(w, p.Disposition)
		w.WriteByte(' ')
		writeParams(w, p.DispositionParams, false)
		w.WriteByte(')')
	}
	// body-fld-lang = nstring / "(" string *(SP string) ")"; a list is
	// always used, as Dovecot does.
	w.WriteByte(' ')
	if len(p.Language) == 0 {
		w.WriteString("NIL")
	} else {
		w.WriteByte('(')
		for i, l := range p.Language {
			if i > 0 {
				w.WriteByte(' ')
			}
			writeString(w, l)
		}
		w.WriteByte(')')
	}
	// body-fld-loc = nstring
	w.WriteByte(' ')
	writeNString(w, p.Location)
}

// writeParams writes body-fld-param: "(" string SP string *(SP string SP
// string) ")" / nil. Values are already RFC 2231-decoded by msgparse; a
// value that is not 7-bit safe goes out as a literal. defaultCharset adds
// ("charset" "us-ascii") when no charset is given (RFC 2045 §5.2).
func writeParams(w *bytes.Buffer, params []msgparse.Param, defaultCharset bool) {
	if defaultCharset {
		for _, p := range params {
			if strings.EqualFold(p.Name, "charset") {
				defaultCharset = false
				break
			}
		}
	}
	if len(params) == 0 && !defaultCharset {
		w.WriteString("NIL")
		return
	}
	w.WriteByte('(')
	for i, p := range params {
		if i > 0 {
			w.WriteByte(' ')
		}
		writeString(w, p.Name)
		w.WriteByte(' ')
		writeString(w, p.Value)
	}
	if defaultCharset {
		if len(params) > 0 {
			w.WriteByte(' ')
		}
		w.WriteString(`"charset" "us-ascii"`)
	}
	w.WriteByte(')')
}

func isMultipart(p *msgparse.Part) bool {
	return strings.EqualFold(p.Type, "multipart")
}

// isMessage reports whether p is sent as body-type-msg: RFC 9051 §9
// media-message is MESSAGE/RFC822 or MESSAGE/GLOBAL (RFC 3501 only knew
// RFC822).
func isMessage(p *msgparse.Part) bool {
	return strings.EqualFold(p.Type, "message") &&
		(strings.EqualFold(p.Subtype, "rfc822") || strings.EqualFold(p.Subtype, "global"))
}

// encodingToken returns the Content-Transfer-Encoding mechanism as sent in
// body-fld-enc: the leading RFC 2045 §5.1 token of the recorded value (so
// that trailing comments or junk are dropped), or "7bit" when there is
// none (RFC 2045 §6.1 default), as Dovecot does.
func encodingToken(enc string) string {
	if t := leadingToken(enc); t != "" {
		return t
	}
	return "7bit"
}

// leadingToken returns the RFC 2045 §5.1 token at the start of s (after
// white space), or "".
func leadingToken(s string) string {
	s = strings.TrimLeft(s, " \t")
	n := 0
	for n < len(s) && isTokenChar(s[n]) {
		n++
	}
	return s[:n]
}

// isTokenChar: RFC 2045 §5.1 token = 1*<any (US-ASCII) CHAR except SPACE,
// CTLs, or tspecials>.
func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}
