package msgparse

import (
	"bytes"
	"errors"
	"io"
	"unsafe"
)

// ErrFinished is returned by Write after Finish.
var ErrFinished = errors.New("msgparse: write after Finish")

// Parser parses one message in a single streaming pass. Write the raw
// message (CRLF or bare LF line endings, any chunking), then call Finish.
// Its memory is bounded by the limits in types.go whatever the input.
type Parser struct {
	line []byte // the current incomplete line (at most MaxLineBytes)
	bol  bool   // the next segment starts at the beginning of a line

	off       int64 // octets consumed
	lf        int64 // LF octets consumed
	prevEOL   int   // line-ending octets of the previous segment (0, 1 or 2)
	beforeEOL byte  // the octet before the previous segment's line ending
	lastByte  byte  // the last octet consumed

	stack  []*frame
	root   *node
	nparts int

	hdr     []byte // header block of the innermost part while it is in its header
	hdrFull bool

	msg      Message // top-level Date, Envelope, SearchHeaders
	text     []byte
	textHint int // SizeHint
	textSep  bool
	textFull bool
	textSink func([]byte) // when set, search text goes here instead of text
	sunk     int64        // octets given to textSink

	preview      []byte // the preview text so far (keepPreview)
	previewChars int    // characters in preview
	previewSpace bool   // white space seen after the last character kept
	previewOn    bool   // the preview part's text is being decoded
	previewDone  bool   // a preview part was chosen (it may still be open)

	crlfExtra int64 // octets CRLF normalisation adds (bare LF or CR -> CRLF)
	endCR     bool  // the octets so far end with a CR

	budget   int // octets of strings the structure may still retain
	finished bool
	result   *Message
}

// NewParser returns a Parser ready for the first octet of a message.
func NewParser() *Parser {
	p := &Parser{bol: true, budget: maxRetained}
	p.root = newNode(0, false)
	p.nparts = 1
	p.stack = append(p.stack, &frame{n: p.root, top: true})
	return p
}

// Parse reads a whole message from r and parses it.
func Parse(r io.Reader) (*Message, error) {
	p := NewParser()
	if _, err := io.Copy(p, r); err != nil {
		return nil, err
	}
	return p.Finish()
}

// Write feeds message octets. It never fails on malformed input.
func (p *Parser) Write(b []byte) (int, error) {
	if p.finished {
		return 0, ErrFinished
	}
	n := len(b)
	p.countLineEnds(b)
	for len(b) > 0 {
		if len(p.line) == 0 {
			// Fast path: a whole line inside b.
			lim := b
			if len(lim) > MaxLineBytes {
				lim = lim[:MaxLineBytes]
			}
			if i := bytes.IndexByte(lim, '\n'); i >= 0 {
				p.segment(b[:i+1])
				b = b[i+1:]
				continue
			}
		}
		chunk := b
		if room := MaxLineBytes - len(p.line); len(chunk) > room {
			chunk = chunk[:room]
		}
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			p.line = append(p.line, chunk[:i+1]...)
			b = b[i+1:]
			p.segment(p.line)
			p.line = p.line[:0]
			continue
		}
		p.line = append(p.line, chunk...)
		b = b[len(chunk):]
		if len(p.line) == MaxLineBytes {
			// An over-long line is passed on in pieces; a CR at the end is
			// held back so that a CRLF is never split between pieces.
			k := len(p.line)
			if p.line[k-1] == '\r' {
				k--
			}
			p.segment(p.line[:k])
			p.line = append(p.line[:0], p.line[k:]...)
		}
	}
	return n, nil
}

// Finish ends the message and returns the parse result. Further calls
// return the same result.
func (p *Parser) Finish() (*Message, error) {
	if p.finished {
		return p.result, nil
	}
	if len(p.line) > 0 {
		p.segment(p.line)
		p.line = p.line[:0]
	}
	p.finished = true
	c := cut{at: p.off, lf: p.lf, before: p.lastByte}
	end := int64(-1)
	for len(p.stack) > 0 {
		f := p.stack[len(p.stack)-1]
		p.stack = p.stack[:len(p.stack)-1]
		end = p.close(f, c, end)
	}
	m := &p.msg
	m.Size = p.off
	m.HeaderSize = p.root.HeaderSize
	m.Lines = p.lf
	if p.off > 0 && p.lastByte != '\n' {
		m.Lines++ // a final line without a line ending counts
	}
	m.CRLFSize = p.off + p.crlfExtra
	if p.endCR {
		m.CRLFSize++ // a bare CR at the very end becomes CRLF
	} else if p.off > 0 && p.lastByte != '\n' {
		m.CRLFSize += 2 // a CRLF is added after a last line without one
	}
	m.Structure = p.root.part()
	// As for Text: the buffer is never written again.
	pv := unsafe.String(unsafe.SliceData(p.preview), len(p.preview))
	m.Preview = &pv
	p.preview = nil
	// The buffer is dropped here and never written again, so the string
	// can share it instead of copying it.
	m.Text = unsafe.String(unsafe.SliceData(p.text), len(p.text))
	p.text = nil
	p.hdr = nil
	p.result = m
	return m, nil
}

// eolLen returns the length of seg's line ending: 2 for CRLF, 1 for a bare
// LF, 0 for none.
func eolLen(seg []byte) int {
	n := len(seg)
	if n == 0 || seg[n-1] != '\n' {
		return 0
	}
	if n >= 2 && seg[n-2] == '\r' {
		return 2
	}
	return 1
}

// segment processes one line (or one piece of an over-long line).
func (p *Parser) segment(seg []byte) {
	bol := p.bol
	if bol && len(seg) >= 3 && seg[0] == '-' && seg[1] == '-' {
		if k, closing := p.findBoundary(seg); k >= 0 {
			p.boundary(k, closing, seg)
			p.advance(seg)
			return
		}
	}
	f := p.stack[len(p.stack)-1]
	switch {
	case !f.inBody:
		if bol && (len(seg) == 1 || len(seg) == 2 && seg[0] == '\r') && seg[len(seg)-1] == '\n' {
			// The empty line ending the header (RFC 5322 §2.1).
			p.endHeader(f, p.off+int64(len(seg)), p.lf+1)
		} else if !p.hdrFull {
			if len(p.hdr)+len(seg) <= MaxHeaderBytes {
				p.hdr = append(p.hdr, seg...)
			} else {
				p.hdrFull = true // the rest is counted, not parsed
			}
		}
	case f.tp != nil:
		f.tp.line(p, seg)
	}
	p.advance(seg)
}

func (p *Parser) advance(seg []byte) {
	eol := eolLen(seg)
	if len(seg) > eol {
		p.beforeEOL = seg[len(seg)-eol-1]
	} else {
		p.beforeEOL = p.lastByte
	}
	p.prevEOL = eol
	p.lastByte = seg[len(seg)-1]
	p.off += int64(len(seg))
	if eol > 0 {
		p.lf++
	}
	p.bol = eol > 0
}

// findBoundary looks for a boundary delimiter line of an open multipart,
// innermost first (RFC 2046 §5.1.2: an outer boundary also ends inner
// parts). A delimiter line is "--" boundary, optionally followed by "--"
// for the close delimiter, then optional linear white space (RFC 2046
// §5.1.1 transport padding). It returns the stack index of the multipart.
func (p *Parser) findBoundary(seg []byte) (int, bool) {
	line := seg[2 : len(seg)-eolLen(seg)]
	for k := len(p.stack) - 1; k >= 0; k-- {
		f := p.stack[k]
		if f.kind != kMultipart || !f.inBody || f.mp == mpEpilogue || len(f.boundary) == 0 {
			continue
		}
		if !bytes.HasPrefix(line, f.boundary) {
			continue
		}
		rest := line[len(f.boundary):]
		closing := false
		if len(rest) >= 2 && rest[0] == '-' && rest[1] == '-' {
			closing = true
			rest = rest[2:]
		}
		if len(bytes.Trim(rest, " \t")) == 0 {
			return k, closing
		}
	}
	return -1, false
}

// boundary handles a delimiter line of the multipart at stack index k.
func (p *Parser) boundary(k int, closing bool, seg []byte) {
	// RFC 2046 §5.1.1: the line ending before the delimiter belongs to
	// the delimiter, not to the part before it.
	c := cut{at: p.off, lf: p.lf, eol: p.prevEOL, before: p.beforeEOL}
	end := int64(-1)
	for len(p.stack)-1 > k {
		f := p.stack[len(p.stack)-1]
		p.stack = p.stack[:len(p.stack)-1]
		end = p.close(f, c, end)
	}
	f := p.stack[k]
	switch {
	case closing:
		f.mp = mpEpilogue // RFC 2046 §5.1.1: what follows is the epilogue
	case f.mp == mpSkip || p.nparts >= MaxParts:
		f.mp = mpSkip // over MaxParts: further parts are opaque bytes
	default:
		f.mp = mpPart
		child := newNode(p.off+int64(len(seg)), f.n.Subtype == "digest")
		p.nparts++
		f.n.kids = append(f.n.kids, child)
		p.stack = append(p.stack, &frame{n: child, depth: f.depth + 1})
	}
}

// endHeader is called at the empty line ending f's header.
func (p *Parser) endHeader(f *frame, bodyStart, lfAtBody int64) {
	n := f.n
	n.HeaderSize = bodyStart - n.HeaderOffset
	n.BodyOffset = bodyStart
	f.inBody = true
	f.lfBody = lfAtBody
	p.applyHeader(f)
	switch {
	case n.Type == "multipart":
		f.kind = kMultipart
		b, _ := paramValue(n.Params, "boundary")
		if b != "" && len(b) <= maxBoundary && f.depth < MaxDepth {
			f.boundary = []byte(b)
		}
	case isMessage(n):
		f.kind = kMessage
		if f.depth < MaxDepth && p.nparts < MaxParts {
			// The encapsulated message starts right after the header
			// (RFC 2046 §5.2.1); its offsets stay absolute.
			emb := newNode(bodyStart, false)
			p.nparts++
			n.emb = emb
			p.stack = append(p.stack, &frame{n: emb, depth: f.depth + 1, embedded: true})
		}
	case n.Type == "text" && !p.textFull:
		cs, _ := paramValue(n.Params, "charset")
		f.tp = newTextPipe(p, n.Subtype, n.Encoding, cs)
		// RFC 8970 §3: the preview comes from the first text part a
		// reader would see, plain or HTML, not an attachment.
		if !p.previewDone && (n.Subtype == "plain" || n.Subtype == "html") && n.Disposition != "attachment" {
			p.previewDone, p.previewOn = true, true
		}
	}
}

// isMessage reports whether a part encapsulates a message that can be
// parsed: message/rfc822 or message/global (RFC 9051 §7.5.2) in an
// identity encoding (RFC 2046 §5.2.1 allows only 7bit, 8bit and binary).
func isMessage(n *node) bool {
	if n.Type != "message" || (n.Subtype != "rfc822" && n.Subtype != "global") {
		return false
	}
	switch lower(n.Encoding) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// cut describes where open parts end: at a boundary delimiter line
// starting at octet at, whose preceding line ending (eol octets) is not part
// of the body, or at the end of the message (eol 0).
type cut struct {
	at     int64
	lf     int64 // LFs before at
	eol    int
	before byte // the octet before the excluded line ending
}

// lfAndLast returns the number of LFs before x and the octet at x-1, for x
// in [at-eol, at].
func (c cut) lfAndLast(x int64) (int64, byte) {
	switch {
	case c.eol == 0:
		return c.lf, c.before
	case x >= c.at:
		return c.lf, '\n'
	case x <= c.at-int64(c.eol):
		return c.lf - 1, c.before
	default:
		return c.lf - 1, '\r'
	}
}

// close ends frame f at the cut c; minEnd is the end of its last child
// closed at the same cut (-1 if none). It returns where f's part ends.
func (p *Parser) close(f *frame, c cut, minEnd int64) int64 {
	n := f.n
	x := c.at - int64(c.eol)
	if minEnd > x {
		x = minEnd
	}
	if !f.inBody {
		// The header never ended: it runs to the cut and the body is empty.
		if x < n.HeaderOffset {
			x = n.HeaderOffset
		}
		n.HeaderSize = x - n.HeaderOffset
		n.BodyOffset = x
		f.inBody = true
		p.applyHeader(f)
		if isMessage(n) && f.depth < MaxDepth {
			n.emb = newNode(x, false)
		}
	} else {
		if x < n.BodyOffset {
			x = n.BodyOffset
		}
		n.BodySize = x - n.BodyOffset
		if n.BodySize > 0 {
			lf, last := c.lfAndLast(x)
			n.BodyLines = lf - f.lfBody
			if last != '\n' {
				n.BodyLines++ // RFC 9051 §7.5.2 line count; a final partial line counts
			}
		}
		if f.tp != nil {
			f.tp.finish(p, x >= c.at)
			f.tp = nil
			p.previewOn = false
		}
	}
	if n.Type == "multipart" && len(n.kids) == 0 {
		// RFC 9051 §7.5.2 requires at least one body in a multipart: a
		// multipart without any part gets one empty text/plain part at its
		// end, as Dovecot reports it.
		n.kids = append(n.kids, newNode(x, false))
	}
	return x
}

// SetTextSink makes the parser hand the decoded search text to sink, piece
// by piece as it is decoded, instead of keeping it in Message.Text; sink may
// not retain the slice. Up to MaxSinkText octets are passed. Call it before
// the first Write.
func (p *Parser) SetTextSink(sink func([]byte)) { p.textSink = sink }

// SizeHint tells the parser about how large the message is, so that the
// search text buffer is allocated once at about the right size instead of
// growing by doubling. Call it before the first Write.
func (p *Parser) SizeHint(n int) { p.textHint = min(max(n, 0), maxTextHint) }

// maxTextHint bounds SizeHint: a large message is mostly attachments, and
// its text grows the buffer as needed.
const maxTextHint = 64 << 10

// countLineEnds tracks how many octets normalising every line ending (CRLF,
// bare LF, bare CR) to CRLF adds: what POP3 RETR sends (RFC 1939 §3).
func (p *Parser) countLineEnds(b []byte) {
	if len(b) == 0 {
		return
	}
	if p.endCR {
		p.endCR = false
		if b[0] == '\n' {
			b = b[1:]
		} else {
			p.crlfExtra++ // the CR before was bare
		}
	}
	// Each LF without a CR before it and each CR without an LF after it
	// gains one octet; a CR at the end waits for the next write.
	crlf := int64(bytes.Count(b, []byte("\r\n")))
	p.crlfExtra += int64(bytes.Count(b, []byte("\n"))) - crlf + int64(bytes.Count(b, []byte("\r"))) - crlf
	if len(b) > 0 && b[len(b)-1] == '\r' {
		p.endCR = true
		p.crlfExtra--
	}
}
