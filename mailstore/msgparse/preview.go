package msgparse

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// keepPreview adds decoded text of the preview part to the preview as
// RFC 8970 §3 wants it, as the text streams by: every run of white space
// and control characters becomes one space, none leads or trails, and
// collection stops at MaxPreviewChars characters, so the preview never
// holds more than 4 × MaxPreviewChars octets. A space before closing
// punctuation is dropped: HTML stripping turns every tag into a space,
// and "<b>Hi</b>," should read "Hi,". Text arrives as whole UTF-8
// sequences (the text pipeline holds incomplete ones back).
func (p *Parser) keepPreview(b []byte) {
	for len(b) > 0 {
		r, n := rune(b[0]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRune(b)
		}
		b = b[n:]
		if r <= ' ' || r == 0x7f || r >= utf8.RuneSelf && (unicode.IsSpace(r) || unicode.IsControl(r)) {
			p.previewSpace = len(p.preview) > 0
			continue
		}
		if p.previewSpace && r < utf8.RuneSelf && strings.IndexByte(",.;:!?)]", byte(r)) >= 0 {
			p.previewSpace = false
		}
		if p.previewSpace {
			if p.previewChars+2 > MaxPreviewChars { // room for the space and a character
				p.previewOn = false
				return
			}
			p.preview = append(p.preview, ' ')
			p.previewChars++
			p.previewSpace = false
		}
		if p.preview == nil {
			p.preview = make([]byte, 0, MaxPreviewChars) // ASCII text never grows it
		}
		p.preview = utf8.AppendRune(p.preview, r)
		p.previewChars++
		if p.previewChars >= MaxPreviewChars {
			p.previewOn = false
			return
		}
	}
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
