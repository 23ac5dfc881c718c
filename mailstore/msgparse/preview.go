package msgparse

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxPreviewRaw bounds the decoded text kept for the preview: enough for
// MaxPreviewChars characters after white space is collapsed in any but
// pathological text (which then gets a shorter preview).
const maxPreviewRaw = 4 << 10

// keepPreview adds decoded text of the preview part, cut at a rune
// boundary at maxPreviewRaw octets.
func (p *Parser) keepPreview(b []byte) {
	room := maxPreviewRaw - len(p.preview)
	if room <= 0 {
		p.previewOn = false
		return
	}
	if len(b) > room {
		cut := room
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = b[:cut]
		p.previewOn = false
	}
	p.preview = append(p.preview, b...)
}

// previewText turns decoded text into preview text (RFC 8970 §3): every
// run of white space and control characters becomes one space, leading
// and trailing ones are dropped, and the result is cut to MaxPreviewChars
// characters (never in the middle of one); a space before closing
// punctuation is dropped. The input is valid UTF-8 (the
// text pipeline replaces invalid sequences).
func previewText(raw []byte) string {
	var sb strings.Builder
	space, n := false, 0
	for _, r := range string(raw) {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = sb.Len() > 0
			continue
		}
		// HTML stripping turns every tag into a space ("<b>Hi</b>,"
		// reads "Hi ,"): no space before closing punctuation.
		if space && strings.ContainsRune(",.;:!?)]", r) {
			space = false
		}
		if space {
			if n+1 >= MaxPreviewChars {
				break
			}
			sb.WriteByte(' ')
			n++
			space = false
		}
		if n >= MaxPreviewChars {
			break
		}
		sb.WriteRune(r)
		n++
	}
	return sb.String()
}

// Preview parses the first octets of a message (a bounded prefix, for a
// stored message whose parse result predates previews) and returns its
// preview text. A prefix cut in the middle of the preview part gives the
// preview of the text up to the cut.
func Preview(prefix []byte) string {
	p := NewParser()
	_, _ = p.Write(prefix)
	m, _ := p.Finish()
	if m == nil || m.Preview == nil {
		return ""
	}
	return *m.Preview
}
