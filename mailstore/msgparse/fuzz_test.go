package msgparse

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkInvariants verifies what every parse result must satisfy: offsets
// inside the message, header before body, children inside their parent and
// in order, valid UTF-8 text within its limit.
func checkInvariants(t testing.TB, m *Message) {
	t.Helper()
	if m.HeaderSize != m.Structure.HeaderSize || m.Structure.HeaderOffset != 0 {
		t.Fatalf("top header: %d vs %+v", m.HeaderSize, m.Structure)
	}
	if end := m.Structure.BodyOffset + m.Structure.BodySize; end != m.Size {
		t.Fatalf("top part ends at %d, message size %d", end, m.Size)
	}
	if len(m.Text) > MaxSearchText || !utf8.ValidString(m.Text) {
		t.Fatalf("text: %d octets, valid %v", len(m.Text), utf8.ValidString(m.Text))
	}
	// RFC 8970 §3: at most 256 characters of UTF-8, white space collapsed.
	if pv := m.Preview; pv == nil || !utf8.ValidString(*pv) || utf8.RuneCountInString(*pv) > MaxPreviewChars ||
		strings.TrimSpace(*pv) != *pv || strings.Contains(*pv, "  ") || strings.ContainsAny(*pv, "\r\n\t\x00") {
		t.Fatalf("preview %q", deref(pv))
	}
	for _, h := range m.SearchHeaders {
		if !utf8.ValidString(h.Value) || h.Name != strings.ToLower(h.Name) {
			t.Fatalf("search header %q", h)
		}
	}
	n := 0
	checkPart(t, m.Structure, 0, m.Size, 0, &n)
}

func checkPart(t testing.TB, p Part, lo, hi int64, depth int, n *int) {
	t.Helper()
	*n++
	if *n > MaxParts+MaxParts { // synthesized empty parts are not counted by MaxParts
		t.Fatalf("%d parts", *n)
	}
	if depth > 2*MaxDepth+2 {
		t.Fatalf("depth %d", depth)
	}
	if p.HeaderOffset < lo || p.HeaderSize < 0 || p.BodySize < 0 || p.BodyLines < 0 ||
		p.BodyOffset != p.HeaderOffset+p.HeaderSize || p.BodyOffset+p.BodySize > hi {
		t.Fatalf("part %+v outside [%d,%d]", p, lo, hi)
	}
	if p.BodyLines > p.BodySize {
		t.Fatalf("part %+v: more lines than octets", p)
	}
	if p.Type == "" || p.Subtype == "" || p.Type != strings.ToLower(p.Type) || p.Subtype != strings.ToLower(p.Subtype) {
		t.Fatalf("type %q/%q", p.Type, p.Subtype)
	}
	if p.Type == "multipart" && len(p.Parts) == 0 {
		t.Fatalf("multipart without parts")
	}
	if p.Type != "multipart" && len(p.Parts) > 0 {
		t.Fatalf("%s/%s with parts", p.Type, p.Subtype)
	}
	cur := p.BodyOffset
	end := p.BodyOffset + p.BodySize
	for _, c := range p.Parts {
		checkPart(t, c, cur, end, depth+1, n)
		cur = c.BodyOffset + c.BodySize
	}
	if p.Message != nil {
		s := p.Message.Structure
		if s.HeaderOffset != p.BodyOffset || s.BodyOffset+s.BodySize != end {
			t.Fatalf("embedded message %+v does not fill body [%d,%d]", s, p.BodyOffset, end)
		}
		checkPart(t, s, p.BodyOffset, end, depth+1, n)
	}
}

// checkChunking parses msg again one octet per Write and in uneven chunks,
// and requires results identical to want.
func checkChunking(t testing.TB, msg string, want *Message) {
	t.Helper()
	for _, size := range []int{1, 7, 4093} {
		p := NewParser()
		b := []byte(msg)
		for len(b) > 0 {
			k := min(size, len(b))
			if n, err := p.Write(b[:k]); n != k || err != nil {
				t.Fatalf("write: %d, %v", n, err)
			}
			b = b[k:]
		}
		got, err := p.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("chunk size %d changes the result:\n got %+v\nwant %+v", size, got, want)
		}
	}
}

// fuzzSeeds are realistic messages covering the parser's paths.
var fuzzSeeds = []string{
	"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: Hello\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\nMessage-ID: <1234@local.machine.example>\r\n\r\nHi Bob,\r\nthis is a test.\r\n",
	"From: a@b\nSubject: bare LF\n\nline1\nline2",
	crlf(`From: "Joe Q. Public" <john.q.public@example.com>
To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>
Cc: <boss@nil.test>, "Giant; \"Big\" Box" <sysservices@example.net>
Subject: =?UTF-8?B?8J+Ygg==?= =?ISO-8859-1?Q?Andr=E9?= Pirard
Content-Type: multipart/alternative; boundary="b1_abc"
MIME-Version: 1.0

--b1_abc
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

caf=C3=A9 soft=
break
--b1_abc
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: base64

PGh0bWw+PGJvZHk+PHA+Y2Fmw6k8L3A+PC9ib2R5PjwvaHRtbD4=
--b1_abc--
`),
	crlf(`Content-Type: multipart/mixed; boundary=outer

preamble
--outer
Content-Type: multipart/related; boundary="inner"

--inner
Content-Type: text/html; charset=iso-8859-1

<p>caf&eacute; &amp; cr&#232;me<script>alert(1)</script></p>
--inner
Content-Type: image/png
Content-ID: <img1>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--inner--
--outer
Content-Type: application/octet-stream; name*0*=utf-8''%E2%82%AC; name*1=".bin"
Content-Disposition: attachment; filename*=UTF-8''%E2%82%AC.bin

AAAA
--outer
Content-Type: message/rfc822

From: Undisclosed recipients:;
To: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;
Subject: inner
Content-Type: text/plain; charset=koi8-r
Content-Transfer-Encoding: 8bit

` + "\xf0\xd2\xc9\xd7\xc5\xd4" + `
--outer--
epilogue
`),
	crlf(`Content-Type: multipart/digest; boundary=dg

--dg

From: one@example.com
Subject: first

first body
--dg
Content-Type: text/plain

not a message
--dg--
`),
	crlf(`Content-Type: multipart/mixed; boundary=bad

--bad
Content-Type: text/plain
--bad-- trailing
--badx
--bad
Content-Type: multipart/alternative; boundary=bad2

--bad2

unterminated
`),
	crlf(`From: <@route1,@route2:user@host>, "quoted local"@example.com, user@[192.0.2.1], broken <no-at>, (comment only) x@y (Name In Comment)
Sender:
Reply-To:
Date: 1 Jan 70 00:00 EST (comment)
Content-Type: text/plain; charset="windows-1252"; format=flowed; delsp=yes

` + "\x93quoted\x94 \x80\r\n"),
	"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nz\r\n--x--",
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		m, err := Parse(strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != int64(len(msg)) {
			t.Fatalf("size %d, want %d", m.Size, len(msg))
		}
		checkInvariants(t, m)
		checkChunking(t, msg, m)
	})
}

func TestSeeds(t *testing.T) {
	for i, s := range fuzzSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			m := parseString(t, s)
			checkInvariants(t, m)
			checkChunking(t, s, m)
		})
	}
}
