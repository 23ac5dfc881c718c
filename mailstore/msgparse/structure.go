package msgparse

import (
	"strings"
	"unicode/utf8"
)

// Frame kinds: what the body of an open part is parsed as.
const (
	kOpaque    = iota // body octets are only counted
	kMultipart        // RFC 2046 §5.1
	kMessage          // RFC 2046 §5.2.1 message/rfc822, RFC 6532 §3.5 message/global
)

// Multipart states (RFC 2046 §5.1.1).
const (
	mpPreamble = iota
	mpPart
	mpEpilogue
	mpSkip // more than MaxParts: parts are not recorded
)

// frame is one open part on the parse stack.
type frame struct {
	n        *node
	inBody   bool
	kind     int
	depth    int    // nesting of multipart / message levels above this part
	boundary []byte // multipart boundary (nil if missing or not parsed)
	mp       int
	lfBody   int64 // LFs before the body's first octet
	tp       *textPipe
	top      bool // the message itself
	embedded bool // the top of an encapsulated message
}

// node is one part while the tree is built (children by pointer, so that
// siblings can be appended while descendants are open).
type node struct {
	Part
	kids []*node
	emb  *node    // encapsulated message's top part
	env  Envelope // envelope, when this node is an encapsulated message's top
}

// newNode returns a part starting at off with the RFC 2045 §5.2 default
// content type (text/plain; charset=us-ascii), or message/rfc822 inside a
// multipart/digest (RFC 2046 §5.1.5).
func newNode(off int64, inDigest bool) *node {
	n := &node{}
	n.HeaderOffset, n.BodyOffset = off, off
	if inDigest {
		n.Type, n.Subtype = "message", "rfc822"
	} else {
		n.Type, n.Subtype = "text", "plain"
		n.Params = []Param{{Name: "charset", Value: "us-ascii"}}
	}
	return n
}

// part converts the built tree into the exported form.
func (n *node) part() Part {
	pt := n.Part
	if len(n.kids) > 0 {
		pt.Parts = make([]Part, len(n.kids))
		for i, k := range n.kids {
			pt.Parts[i] = k.part()
		}
	}
	if n.emb != nil {
		pt.Message = &Embedded{Envelope: n.emb.env, Structure: n.emb.part()}
	}
	return pt
}

func lower(s string) string { return strings.ToLower(s) }

// keep returns a copy of s fit for retention: valid UTF-8, at most
// maxValueBytes, and charged to the message's retention budget (empty once
// the budget is spent). Copying also detaches s from the header buffer.
func (p *Parser) keep(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > maxValueBytes {
		cut := maxValueBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) > p.budget {
		return ""
	}
	p.budget -= len(s)
	return strings.Clone(s)
}

func (p *Parser) keepParams(ps []Param) []Param {
	out := ps[:0]
	for _, x := range ps {
		if x.Name = p.keep(x.Name); x.Name != "" {
			x.Value = p.keep(x.Value)
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// applyHeader parses the buffered header of f's part into its MIME fields
// (RFC 2045 §3-§8, RFC 2183, RFC 3282, RFC 2557) and, for a message's top
// part, the envelope, date and search fields. It empties the buffer.
func (p *Parser) applyHeader(f *frame) {
	fields := splitHeader(p.hdr)
	p.hdr = p.hdr[:0]
	p.hdrFull = false
	n := f.n
	var seen [9]bool
	first := func(i int) bool {
		if seen[i] {
			return false
		}
		seen[i] = true
		return true
	}
	for _, fl := range fields {
		name := fl.name
		if len(name) < 8 || !strings.EqualFold(name[:8], "content-") {
			continue
		}
		switch lower(name[8:]) {
		case "type":
			if first(0) {
				// RFC 2045 §5.2: an invalid Content-Type gets the default.
				if t, s, ps, ok := parseContentType(fl.value); ok {
					n.Type, n.Subtype, n.Params = p.keep(t), p.keep(s), p.keepParams(ps)
				}
			}
		case "transfer-encoding":
			if first(1) {
				n.Encoding = p.keep(parseEncoding(fl.value))
			}
		case "id":
			if first(2) {
				n.ID = p.keep(fl.value)
			}
		case "description":
			if first(3) {
				n.Description = p.keep(fl.value)
			}
		case "md5":
			if first(4) {
				n.MD5 = p.keep(fl.value)
			}
		case "disposition":
			if first(5) {
				d, ps := parseDisposition(fl.value)
				n.Disposition, n.DispositionParams = p.keep(d), p.keepParams(ps)
			}
		case "language":
			if first(6) {
				for _, l := range parseLanguages(fl.value) {
					if l = p.keep(l); l != "" {
						n.Language = append(n.Language, l)
					}
				}
			}
		case "location":
			if first(7) {
				n.Location = p.keep(fl.value)
			}
		}
	}
	if n.Type == "" || n.Subtype == "" {
		n.Type, n.Subtype, n.Params = "text", "plain", []Param{{Name: "charset", Value: "us-ascii"}}
	}
	if n.Type == "text" {
		// RFC 2046 §4.1.2: the charset of text defaults to US-ASCII.
		if _, ok := paramValue(n.Params, "charset"); !ok {
			n.Params = append(n.Params, Param{Name: "charset", Value: "us-ascii"})
		}
	}
	switch {
	case f.top:
		p.msg.Envelope = buildEnvelope(p, fields)
		p.msg.SearchHeaders = searchHeaders(fields)
		for _, fl := range fields {
			if strings.EqualFold(fl.name, "date") {
				if t, ok := parseDate(fl.value); ok {
					p.msg.Date = t
				}
				break
			}
		}
	case f.embedded:
		n.env = buildEnvelope(p, fields)
	}
}

// searchHeaders decodes every top-level field for SEARCH HEADER / FROM /
// SUBJECT etc. (RFC 9051 §6.4.4): names lower case, values RFC 2047
// decoded (RFC 2047 §6.1), at most maxSearchFields fields and
// MaxHeaderBytes octets in all.
func searchHeaders(fields []rawField) []HeaderField {
	out := make([]HeaderField, 0, min(len(fields), maxSearchFields))
	total := 0
	for _, f := range fields {
		if len(out) >= maxSearchFields {
			break
		}
		v := decodeHeaderValue(f.value)
		total += len(f.name) + len(v)
		if total > MaxHeaderBytes {
			break
		}
		out = append(out, HeaderField{Name: lower(f.name), Value: v})
	}
	return out
}
