package imapmsg

import (
	"bytes"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// tnode describes one MIME entity for mkMessage, which assembles the raw
// message (CRLF line breaks) and the msgparse.Message that the parser
// records for it, with exact offsets. Text uses "\n"; it becomes CRLF.
//
// The multipart layout follows RFC 2046 §5.1.1: pre, "--b" CRLF, part,
// (CRLF "--b" CRLF part)*, CRLF "--b--", post. The CRLF before a delimiter
// belongs to the delimiter, not to the part before it.
type tnode struct {
	hdr  []string      // header lines; "\n " inside a line folds it
	part msgparse.Part // metadata as the parser records it; offsets filled in
	env  msgparse.Envelope

	body string // leaf body

	boundary  string // multipart
	pre, post string // raw text before the first delimiter / after the close delimiter
	kids      []*tnode

	msg *tnode // message/rfc822: the encapsulated message
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

type tbuilder struct{ buf bytes.Buffer }

func (b *tbuilder) entity(n *tnode) msgparse.Part {
	p := n.part
	p.Parts = nil
	p.HeaderOffset = int64(b.buf.Len())
	for _, h := range n.hdr {
		b.buf.WriteString(crlf(h))
		b.buf.WriteString("\r\n")
	}
	b.buf.WriteString("\r\n")
	p.HeaderSize = int64(b.buf.Len()) - p.HeaderOffset
	p.BodyOffset = int64(b.buf.Len())
	switch {
	case n.boundary != "":
		b.buf.WriteString(crlf(n.pre))
		for i, k := range n.kids {
			if i > 0 {
				b.buf.WriteString("\r\n")
			}
			b.buf.WriteString("--" + n.boundary + "\r\n")
			p.Parts = append(p.Parts, b.entity(k))
		}
		b.buf.WriteString("\r\n--" + n.boundary + "--")
		b.buf.WriteString(crlf(n.post))
	case n.msg != nil:
		emb := b.entity(n.msg)
		p.Message = &msgparse.Embedded{Envelope: n.msg.env, Structure: emb}
	default:
		b.buf.WriteString(crlf(n.body))
	}
	p.BodySize = int64(b.buf.Len()) - p.BodyOffset
	p.BodyLines = int64(bytes.Count(b.buf.Bytes()[p.BodyOffset:], []byte("\n")))
	return p
}

// mkMessage returns the raw message and its parse record.
func mkMessage(root *tnode) ([]byte, *msgparse.Message) {
	var b tbuilder
	st := b.entity(root)
	raw := b.buf.Bytes()
	return raw, &msgparse.Message{
		Size:       int64(len(raw)),
		HeaderSize: st.HeaderSize,
		Lines:      int64(bytes.Count(raw, []byte("\n"))),
		Envelope:   root.env,
		Structure:  st,
	}
}

func params(kv ...string) []msgparse.Param {
	var ps []msgparse.Param
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, msgparse.Param{Name: kv[i], Value: kv[i+1]})
	}
	return ps
}

func addr(name, mailbox, host string) msgparse.Address {
	return msgparse.Address{Name: name, Mailbox: mailbox, Host: host}
}

func bodyStructure(p *msgparse.Part, extended bool) string {
	var w bytes.Buffer
	WriteBodyStructure(&w, p, extended)
	return w.String()
}

func envelope(e *msgparse.Envelope) string {
	var w bytes.Buffer
	WriteEnvelope(&w, e)
	return w.String()
}

// TestBuilderOffsets checks the test builder itself against hand-counted
// offsets, so that the other tests rest on correct parse records.
func TestBuilderOffsets(t *testing.T) {
	raw, m := mkMessage(&tnode{
		hdr:      []string{"Content-Type: multipart/mixed; boundary=b"},
		part:     msgparse.Part{Type: "multipart", Subtype: "mixed"},
		boundary: "b",
		pre:      "pre\n",
		post:     "\n",
		kids: []*tnode{
			{hdr: []string{"A: 1"}, part: msgparse.Part{Type: "text", Subtype: "plain"}, body: "x\n"},
			{hdr: nil, part: msgparse.Part{Type: "text", Subtype: "plain"}, body: "yz"},
		},
	})
	want := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"pre\r\n--b\r\nA: 1\r\n\r\nx\r\n\r\n--b\r\n\r\nyz\r\n--b--\r\n"
	if string(raw) != want {
		t.Fatalf("raw = %q", raw)
	}
	p1, p2 := m.Structure.Parts[0], m.Structure.Parts[1]
	if got := string(raw[p1.HeaderOffset : p1.HeaderOffset+p1.HeaderSize]); got != "A: 1\r\n\r\n" {
		t.Errorf("part 1 header %q", got)
	}
	if got := string(raw[p1.BodyOffset : p1.BodyOffset+p1.BodySize]); got != "x\r\n" || p1.BodyLines != 1 {
		t.Errorf("part 1 body %q lines %d", got, p1.BodyLines)
	}
	if p2.HeaderSize != 2 || string(raw[p2.BodyOffset:p2.BodyOffset+p2.BodySize]) != "yz" || p2.BodyLines != 0 {
		t.Errorf("part 2 %+v", p2)
	}
	if m.HeaderSize != 45 || m.Structure.BodyOffset != 45 || m.Structure.BodySize != int64(len(raw))-45 {
		t.Errorf("top %d %d %d", m.HeaderSize, m.Structure.BodyOffset, m.Structure.BodySize)
	}
}
