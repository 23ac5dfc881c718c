package msgparse

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// crlf turns "\n" line endings into "\r\n".
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// shape is the expected form of a part: its header and body given as the
// exact text they must slice out of the message.
type shape struct {
	mime  string // "type/subtype"
	hdr   string // message[HeaderOffset : HeaderOffset+HeaderSize]
	body  string // message[BodyOffset : BodyOffset+BodySize]
	lines int64
	kids  []shape
	msg   *shape // structure of an encapsulated message
}

func parseString(t testing.TB, s string) *Message {
	t.Helper()
	m, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func checkShape(t *testing.T, path, raw string, got Part, want shape) {
	t.Helper()
	if mt := got.Type + "/" + got.Subtype; mt != want.mime {
		t.Errorf("%s: type %q, want %q", path, mt, want.mime)
	}
	if h := raw[got.HeaderOffset : got.HeaderOffset+got.HeaderSize]; h != want.hdr {
		t.Errorf("%s: header %q, want %q", path, h, want.hdr)
	}
	if got.BodyOffset != got.HeaderOffset+got.HeaderSize {
		t.Errorf("%s: body offset %d, header ends at %d", path, got.BodyOffset, got.HeaderOffset+got.HeaderSize)
	}
	if b := raw[got.BodyOffset : got.BodyOffset+got.BodySize]; b != want.body {
		t.Errorf("%s: body %q, want %q", path, b, want.body)
	}
	if got.BodyLines != want.lines {
		t.Errorf("%s: lines %d, want %d", path, got.BodyLines, want.lines)
	}
	if len(got.Parts) != len(want.kids) {
		t.Errorf("%s: %d parts, want %d", path, len(got.Parts), len(want.kids))
	} else {
		for i := range got.Parts {
			checkShape(t, fmt.Sprintf("%s.%d", path, i+1), raw, got.Parts[i], want.kids[i])
		}
	}
	switch {
	case (got.Message == nil) != (want.msg == nil):
		t.Errorf("%s: message %v, want %v", path, got.Message != nil, want.msg != nil)
	case got.Message != nil:
		checkShape(t, path+".msg", raw, got.Message.Structure, *want.msg)
	}
}

func TestStructure(t *testing.T) {
	alt := crlf(`From: a@example.com
Content-Type: multipart/alternative; boundary="XX"

This is a preamble.
--XX
Content-Type: text/plain; charset=utf-8

plain text
second line
--XX
Content-Type: text/html

<p>html</p>
--XX--
epilogue
`)
	nested := crlf(`Subject: nested
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain

hi
--inner
Content-Type: text/html

<b>hi</b>

--inner--

--outer
Content-Type: application/pdf; name="a.pdf"
Content-Disposition: attachment; filename="a.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
JVBERi0xLjQK
--outer
Content-Type: message/rfc822

From: inner@example.com
Subject: fwd
Content-Type: multipart/mixed; boundary=emb

--emb

emb part
--emb--
--outer--
`)
	tests := []struct {
		name string
		msg  string
		want shape
	}{
		{"simple", crlf("From: a@b\nSubject: hi\n\nHello\nWorld\n"), shape{
			mime: "text/plain", hdr: crlf("From: a@b\nSubject: hi\n\n"), body: crlf("Hello\nWorld\n"), lines: 2}},
		{"no final newline", crlf("From: a@b\n\nHello\nWorld"), shape{
			mime: "text/plain", hdr: crlf("From: a@b\n\n"), body: crlf("Hello\nWorld"), lines: 2}},
		{"bare LF", "From: a@b\nContent-Type: text/plain\n\nHello\n\nWorld\n", shape{
			mime: "text/plain", hdr: "From: a@b\nContent-Type: text/plain\n\n", body: "Hello\n\nWorld\n", lines: 3}},
		{"header only", crlf("From: a@b\nSubject: x\n"), shape{
			mime: "text/plain", hdr: crlf("From: a@b\nSubject: x\n")}},
		{"empty", "", shape{mime: "text/plain"}},
		{"empty body", crlf("From: a@b\n\n"), shape{mime: "text/plain", hdr: crlf("From: a@b\n\n")}},
		{"no header", crlf("\nbody only\n"), shape{mime: "text/plain", hdr: "\r\n", body: "body only\r\n", lines: 1}},
		{"alternative", alt, shape{
			mime: "multipart/alternative", hdr: alt[:strings.Index(alt, "This")],
			body: alt[strings.Index(alt, "This"):], lines: 12,
			kids: []shape{
				{mime: "text/plain", hdr: "Content-Type: text/plain; charset=utf-8\r\n\r\n", body: "plain text\r\nsecond line", lines: 2},
				{mime: "text/html", hdr: "Content-Type: text/html\r\n\r\n", body: "<p>html</p>", lines: 1},
			}}},
		{"nested", nested, shape{
			mime: "multipart/mixed", hdr: nested[:strings.Index(nested, "--outer")],
			body: nested[strings.Index(nested, "--outer"):], lines: 33,
			kids: []shape{
				{mime: "multipart/alternative", hdr: "Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n",
					body: crlf("--inner\nContent-Type: text/plain\n\nhi\n--inner\nContent-Type: text/html\n\n<b>hi</b>\n\n--inner--\n"), lines: 10,
					kids: []shape{
						{mime: "text/plain", hdr: "Content-Type: text/plain\r\n\r\n", body: "hi", lines: 1},
						{mime: "text/html", hdr: "Content-Type: text/html\r\n\r\n", body: "<b>hi</b>\r\n", lines: 1},
					}},
				{mime: "application/pdf", hdr: crlf("Content-Type: application/pdf; name=\"a.pdf\"\nContent-Disposition: attachment; filename=\"a.pdf\"\nContent-Transfer-Encoding: base64\n\n"),
					body: "JVBERi0xLjQK\r\nJVBERi0xLjQK", lines: 2},
				{mime: "message/rfc822", hdr: "Content-Type: message/rfc822\r\n\r\n",
					body: crlf("From: inner@example.com\nSubject: fwd\nContent-Type: multipart/mixed; boundary=emb\n\n--emb\n\nemb part\n--emb--"), lines: 8,
					msg: &shape{mime: "multipart/mixed", hdr: crlf("From: inner@example.com\nSubject: fwd\nContent-Type: multipart/mixed; boundary=emb\n\n"),
						body: crlf("--emb\n\nemb part\n--emb--"), lines: 4,
						kids: []shape{{mime: "text/plain", hdr: "\r\n", body: "emb part", lines: 1}}}},
			}}},
		{"missing close delimiter", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: crlf("--b\n\none\n--b\n\ntwo\n"), lines: 6,
			kids: []shape{
				{mime: "text/plain", hdr: "\r\n", body: "one", lines: 1},
				{mime: "text/plain", hdr: "\r\n", body: "two\r\n", lines: 1},
			}}},
		{"no parts", crlf("Content-Type: multipart/mixed; boundary=b\n\njust a preamble\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: "just a preamble\r\n", lines: 1,
			kids: []shape{{mime: "text/plain"}}}},
		{"no boundary parameter", crlf("Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed\n\n"),
			body: crlf("--b\n\nx\n--b--\n"), lines: 4,
			kids: []shape{{mime: "text/plain"}}}},
		{"part header ends at boundary", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b\nContent-Type: image/png\n\n--b--\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: crlf("--b\nContent-Type: text/html\n--b\nContent-Type: image/png\n\n--b--\n"), lines: 6,
			kids: []shape{
				{mime: "text/html", hdr: "Content-Type: text/html"},
				{mime: "image/png", hdr: "Content-Type: image/png\r\n\r\n"},
			}}},
		{"outer boundary closes inner", crlf("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/related; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=o\n\n"),
			body: crlf("--o\nContent-Type: multipart/related; boundary=i\n\n--i\n\ninner\n--o\n\nsecond\n--o--"), lines: 10,
			kids: []shape{
				{mime: "multipart/related", hdr: crlf("Content-Type: multipart/related; boundary=i\n\n"), body: crlf("--i\n\ninner"), lines: 3,
					kids: []shape{{mime: "text/plain", hdr: "\r\n", body: "inner", lines: 1}}},
				{mime: "text/plain", hdr: "\r\n", body: "second", lines: 1},
			}}},
		{"digest", crlf("Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody one\n--d\nContent-Type: text/plain\n\nnot a message\n--d--\n"), shape{
			mime: "multipart/digest", hdr: crlf("Content-Type: multipart/digest; boundary=d\n\n"),
			body: crlf("--d\n\nSubject: one\n\nbody one\n--d\nContent-Type: text/plain\n\nnot a message\n--d--\n"), lines: 10,
			kids: []shape{
				{mime: "message/rfc822", hdr: "\r\n", body: crlf("Subject: one\n\nbody one"), lines: 3,
					msg: &shape{mime: "text/plain", hdr: crlf("Subject: one\n\n"), body: "body one", lines: 1}},
				{mime: "text/plain", hdr: "Content-Type: text/plain\r\n\r\n", body: "not a message", lines: 1},
			}}},
		{"empty part body", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n--b\n\n\n--b--\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: crlf("--b\nContent-Type: text/plain\n\n--b\n\n\n--b--\n"), lines: 7,
			kids: []shape{
				{mime: "text/plain", hdr: "Content-Type: text/plain\r\n\r\n"},
				{mime: "text/plain", hdr: "\r\n", body: "", lines: 0},
			}}},
		{"bare LF multipart", "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n\n--b--\n", shape{
			mime: "multipart/mixed", hdr: "Content-Type: multipart/mixed; boundary=b\n\n",
			body: "--b\n\none\n\n--b--\n", lines: 5,
			kids: []shape{{mime: "text/plain", hdr: "\n", body: "one\n", lines: 1}}}},
		{"boundary with padding and look-alikes", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b \t\n\n--bb\n--b-\n--b--x\n--b--  \nepi"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: crlf("--b \t\n\n--bb\n--b-\n--b--x\n--b--  \nepi"), lines: 7,
			kids: []shape{{mime: "text/plain", hdr: "\r\n", body: crlf("--bb\n--b-\n--b--x"), lines: 3}}}},
		{"base64 message/rfc822 is opaque", crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nRnJvbTogYUBiCgp4\n"), shape{
			mime: "message/rfc822", hdr: crlf("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"),
			body: "RnJvbTogYUBiCgp4\r\n", lines: 1}},
		{"top-level message/global", crlf("Content-Type: message/global\n\nSubject: x\n\ny\n"), shape{
			mime: "message/global", hdr: crlf("Content-Type: message/global\n\n"), body: crlf("Subject: x\n\ny\n"), lines: 3,
			msg: &shape{mime: "text/plain", hdr: crlf("Subject: x\n\n"), body: "y\r\n", lines: 1}}},
		{"message/rfc822 without body", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n--b--\n"), shape{
			mime: "multipart/mixed", hdr: crlf("Content-Type: multipart/mixed; boundary=b\n\n"),
			body: crlf("--b\nContent-Type: message/rfc822\n--b--\n"), lines: 3,
			kids: []shape{{mime: "message/rfc822", hdr: "Content-Type: message/rfc822", msg: &shape{mime: "text/plain"}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := parseString(t, tc.msg)
			if m.Size != int64(len(tc.msg)) {
				t.Errorf("size %d, want %d", m.Size, len(tc.msg))
			}
			if m.HeaderSize != m.Structure.HeaderSize || m.Structure.HeaderOffset != 0 {
				t.Errorf("top header %d/%d at %d", m.HeaderSize, m.Structure.HeaderSize, m.Structure.HeaderOffset)
			}
			checkShape(t, "root", tc.msg, m.Structure, tc.want)
			checkInvariants(t, m)
			checkChunking(t, tc.msg, m)
		})
	}
}

func TestMessageLines(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		lines int64
	}{
		{"", 0}, {"a", 1}, {"a\n", 1}, {"a\r\nb", 2}, {"a\r\n\r\n", 2}, {"\n\n\n", 3},
	} {
		if m := parseString(t, tc.msg); m.Lines != tc.lines {
			t.Errorf("%q: %d lines, want %d", tc.msg, m.Lines, tc.lines)
		}
	}
}

func TestContentFields(t *testing.T) {
	msg := crlf(`Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: Application/X-Thing (a comment); Name*0*=utf-8''%E2%82%AC; name*1="-rate.txt"; FOO=bar; foo=ignored
Content-Transfer-Encoding: BASE64 (why not)
Content-ID: <part1@example.com>
Content-Description: A =?utf-8?q?caf=C3=A9?= file
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: ATTACHMENT; filename*=iso-8859-1'en'caf%E9.txt; size=42
Content-Language: en-US, (comment) fr
Content-Location: http://example.com/a.txt

YQ==
--b
Content-Type: text/plain; format=flowed

x
--b
Content-Type: ???

y
--b--
`)
	m := parseString(t, msg)
	p := m.Structure.Parts[0]
	want := Part{
		Type: "application", Subtype: "x-thing",
		Params:      []Param{{"name", "€-rate.txt"}, {"foo", "bar"}},
		ID:          "<part1@example.com>",
		Description: "A =?utf-8?q?caf=C3=A9?= file",
		Encoding:    "BASE64",
		MD5:         "Q2hlY2sgSW50ZWdyaXR5IQ==",
		Disposition: "attachment", DispositionParams: []Param{{"filename", "café.txt"}, {"size", "42"}},
		Language: []string{"en-US", "fr"}, Location: "http://example.com/a.txt",
		HeaderOffset: p.HeaderOffset, HeaderSize: p.HeaderSize, BodyOffset: p.BodyOffset, BodySize: 4, BodyLines: 1,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("part 1:\n got %+v\nwant %+v", p, want)
	}
	if got := m.Structure.Parts[1].Params; !reflect.DeepEqual(got, []Param{{"format", "flowed"}, {"charset", "us-ascii"}}) {
		t.Errorf("part 2 params %v", got)
	}
	// RFC 2045 §5.2: an invalid Content-Type gets the default.
	if p := m.Structure.Parts[2]; p.Type != "text" || p.Subtype != "plain" || !reflect.DeepEqual(p.Params, []Param{{"charset", "us-ascii"}}) {
		t.Errorf("part 3 %s/%s %v", p.Type, p.Subtype, p.Params)
	}
}

func TestParams(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Param
	}{
		{`text/plain; charset="utf-8"`, []Param{{"charset", "utf-8"}}},
		{`text/plain;charset=utf-8;format=flowed;`, []Param{{"charset", "utf-8"}, {"format", "flowed"}}},
		{`multipart/mixed; boundary=----=_Part_0_12.34`, []Param{{"boundary", "----=_Part_0_12.34"}}},
		{"multipart/mixed;\tboundary = \"a \\\"q\\\" b\"", []Param{{"boundary", `a "q" b`}}},
		{`text/plain; (c) charset (c) = (c) utf-8`, []Param{{"charset", "utf-8"}}},
		{`application/x; junk; name=a`, []Param{{"name", "a"}}},
		// RFC 2231 §3, §4, §4.1.
		{`application/x; title*0="a "; title*2="c"; title*1="b "`, []Param{{"title", "a b c"}}},
		{`application/x; title*=us-ascii'en-us'This%20is%20%2A%2A%2Afun%2A%2A%2A`, []Param{{"title", "This is ***fun***"}}},
		{`application/x; name="fallback"; name*=utf-8''%C3%A9`, []Param{{"name", "é"}}},
		{`application/x; name*0*=iso-8859-1''%E9; name*1=t%E9`, []Param{{"name", "ét%E9"}}},
		{`application/x; name*=utf-8''%FF`, []Param{{"name", "\uFFFD"}}},
		{`application/x; name="unterminated`, []Param{{"name", "unterminated"}}},
	} {
		_, _, got, ok := parseContentType(tc.in)
		if !ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v (ok %v), want %v", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "text", "text/", "/plain", "(c)"} {
		if _, _, _, ok := parseContentType(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestSearchHeaders(t *testing.T) {
	msg := crlf("Subject: =?iso-8859-1?q?caf=E9?= and\n =?utf-8?b?w6k=?=\nX-Long: a\n\tb\nX-Koi: =?koi8-r?b?8NLJ18XU?=\nBad =?x?= line\nX-Bad: =?unknown-cs?q?x?=\n\nbody\n")
	m := parseString(t, msg)
	want := []HeaderField{
		{"subject", "café and é"}, {"x-long", "a\tb"}, {"x-koi", "Привет"}, {"x-bad", "=?unknown-cs?q?x?="},
	}
	if !reflect.DeepEqual(m.SearchHeaders, want) {
		t.Errorf("got %q\nwant %q", m.SearchHeaders, want)
	}
	if m.Envelope.Subject != "=?iso-8859-1?q?caf=E9?= and =?utf-8?b?w6k=?=" {
		t.Errorf("envelope subject %q", m.Envelope.Subject)
	}
}

func TestHeaderLimits(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("v", 100))
	}
	b.WriteString("Subject: late\r\n\r\nbody\r\n")
	msg := b.String()
	m := parseString(t, msg)
	if len(m.SearchHeaders) > maxSearchFields {
		t.Errorf("%d search headers", len(m.SearchHeaders))
	}
	if m.Envelope.Subject != "" {
		t.Errorf("subject beyond MaxHeaderBytes was parsed: %q", m.Envelope.Subject)
	}
	if m.HeaderSize != int64(len(msg)-6) || m.Structure.BodySize != 6 {
		t.Errorf("header %d body %d", m.HeaderSize, m.Structure.BodySize)
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", MaxLineBytes-1) + "\r" + strings.Repeat("y", 3*MaxLineBytes)
	msg := crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\n") + long + crlf("\n--b--\n")
	m := parseString(t, msg)
	p := m.Structure.Parts[0]
	if got := msg[p.BodyOffset : p.BodyOffset+p.BodySize]; got != long {
		t.Errorf("long body: %d octets, want %d", len(got), len(long))
	}
	if p.BodyLines != 1 {
		t.Errorf("lines %d", p.BodyLines)
	}
	checkChunking(t, msg, m)
}

func TestLimits(t *testing.T) {
	// Nesting deeper than MaxDepth is opaque below the limit.
	var b strings.Builder
	for i := 0; i < MaxDepth+5; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("\r\ndeep\r\n")
	m := parseString(t, b.String())
	depth := 0
	for p := m.Structure; len(p.Parts) > 0; p = p.Parts[0] {
		depth++
	}
	if depth > MaxDepth+1 {
		t.Errorf("depth %d", depth)
	}
	checkInvariants(t, m)

	// More than MaxParts parts: the rest is opaque.
	b.Reset()
	b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < MaxParts+10; i++ {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	m = parseString(t, b.String())
	if n := countParts(m.Structure); n > MaxParts {
		t.Errorf("%d parts", n)
	}
	checkInvariants(t, m)
}

func countParts(p Part) int {
	n := 1
	for _, c := range p.Parts {
		n += countParts(c)
	}
	if p.Message != nil {
		n += countParts(p.Message.Structure)
	}
	return n
}

func TestFinishTwiceAndWriteAfter(t *testing.T) {
	p := NewParser()
	p.Write([]byte("Subject: x\r\n\r\ny"))
	m1, _ := p.Finish()
	m2, _ := p.Finish()
	if m1 != m2 {
		t.Error("Finish is not idempotent")
	}
	if _, err := p.Write([]byte("z")); err != ErrFinished {
		t.Errorf("write after finish: %v", err)
	}
}
