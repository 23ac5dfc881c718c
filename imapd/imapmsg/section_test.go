package imapmsg

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore/msgparse"
)

func TestParseSection(t *testing.T) {
	deep := strings.TrimSuffix(strings.Repeat("7.", maxPartDepth), ".")
	var deepPart []int
	for range maxPartDepth {
		deepPart = append(deepPart, 7)
	}
	manyFields := "HEADER.FIELDS (" + strings.TrimSpace(strings.Repeat("X ", maxFields)) + ")"
	valid := []struct {
		in   string
		want Section
	}{
		{"", Section{}},
		{"HEADER", Section{Specifier: "HEADER"}},
		{"header", Section{Specifier: "HEADER"}},
		{"Text", Section{Specifier: "TEXT"}},
		{"1", Section{Part: []int{1}}},
		{"1.2.3", Section{Part: []int{1, 2, 3}}},
		{"1.MIME", Section{Part: []int{1}, Specifier: "MIME"}},
		{"3.mime", Section{Part: []int{3}, Specifier: "MIME"}},
		{"2.HEADER", Section{Part: []int{2}, Specifier: "HEADER"}},
		{"4.2.TEXT", Section{Part: []int{4, 2}, Specifier: "TEXT"}},
		{"HEADER.FIELDS (From To)", Section{Specifier: "HEADER.FIELDS", Fields: []string{"From", "To"}}},
		{"header.fields.not (Subject)", Section{Specifier: "HEADER.FIELDS.NOT", Fields: []string{"Subject"}}},
		{"1.2.HEADER.FIELDS (From To)", Section{Part: []int{1, 2}, Specifier: "HEADER.FIELDS", Fields: []string{"From", "To"}}},
		{`HEADER.FIELDS ("X-Odd \"Name\"" From)`, Section{Specifier: "HEADER.FIELDS", Fields: []string{`X-Odd "Name"`, "From"}}},
		{"HEADER.FIELDS ({4}\r\nDate From)", Section{Specifier: "HEADER.FIELDS", Fields: []string{"Date", "From"}}},
		{"HEADER.FIELDS ({4+}\r\nDate)", Section{Specifier: "HEADER.FIELDS", Fields: []string{"Date"}}},
		{"HEADER.FIELDS ({0}\r\n)", Section{Specifier: "HEADER.FIELDS", Fields: []string{""}}},
		{"HEADER.FIELDS (List-ID])", Section{Specifier: "HEADER.FIELDS", Fields: []string{"List-ID]"}}},
		{"4294967295", Section{Part: []int{4294967295}}},
		{deep, Section{Part: deepPart}},
		{deep + ".MIME", Section{Part: deepPart, Specifier: "MIME"}},
	}
	for _, tc := range valid {
		got, err := ParseSection(tc.in)
		if err != nil {
			t.Errorf("ParseSection(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSection(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
	if s, err := ParseSection(manyFields); err != nil || len(s.Fields) != maxFields {
		t.Errorf("%d fields: %v", maxFields, err)
	}

	invalid := []string{
		"MIME", "0", "01", "1.0", "1.", ".1", "1..2", "4294967296", "99999999999999999999",
		"1 ", " 1", "HEADER ", "TEXT.1", "1.TEXT2", "BODY", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
		"1.HEADER.FIELDS.NOT", "HEADER.FIELDS ()", "HEADER.FIELDS (From", "HEADER.FIELDS (From )",
		"HEADER.FIELDS  (From)", "HEADER.FIELDS (From) ", "HEADER.FIELDS From", "HEADER.FIELDS ( From)",
		`HEADER.FIELDS ("unterminated)`, `HEADER.FIELDS ("a\b")`, "HEADER.FIELDS (\"a\r\nb\")",
		"HEADER.FIELDS ({5}\r\nab)", "HEADER.FIELDS ({2}ab)", "HEADER.FIELDS ({x}\r\nab)", "HEADER.FIELDS ({}\r\n)",
		"HEADER.FIELDS ({2}\r\na\x00)", "HEADER.FIELDS (a*b)", "HEADER.FIELDS (a%)", "HEADER.FIELDS (a{)",
		"HEADER.FIELDS (a)(b)", "HEADER.FIELDS (From)]", "1.2X",
		deep + ".1", manyFields[:len(manyFields)-1] + " X)",
		strings.Repeat("1", maxSectionLen+1),
	}
	for _, in := range invalid {
		if s, err := ParseSection(in); err == nil {
			t.Errorf("ParseSection(%q) = %#v, want error", in, s)
		} else if !errors.Is(err, errSyntax) {
			t.Errorf("ParseSection(%q): error %v does not wrap errSyntax", in, err)
		}
	}
}

// rfc3501Sample has the part layout of RFC 3501 §6.4.5 (repeated in RFC
// 9051): parts 1, 2, 3 (message/rfc822 with 3.1, 3.2), 4 (multipart with
// 4.1 and 4.2, a message/rfc822 holding 4.2.1 and 4.2.2.1/4.2.2.2).
func rfc3501Sample() *tnode {
	leaf := func(ct, body string) *tnode {
		typ, sub, _ := strings.Cut(ct, "/")
		return &tnode{hdr: []string{"Content-Type: " + ct}, part: msgparse.Part{Type: typ, Subtype: sub}, body: body}
	}
	mp := func(sub, b string) msgparse.Part {
		return msgparse.Part{Type: "multipart", Subtype: sub, Params: params("boundary", b)}
	}
	gif := leaf("image/gif", "R0lGODlh\n")
	gif.hdr = append(gif.hdr, "Content-Transfer-Encoding: base64")
	gif.part.Encoding = "base64"
	bin := leaf("application/octet-stream", "cGFydCAy\n")
	bin.hdr = append(bin.hdr, "Content-Transfer-Encoding: base64")
	bin.part.Encoding = "base64"
	return &tnode{
		hdr:  []string{"From: a@example.org", "Subject: rfc3501 sample", "Content-Type: multipart/mixed; boundary=b0"},
		env:  msgparse.Envelope{Subject: "rfc3501 sample", From: []msgparse.Address{addr("", "a", "example.org")}},
		part: mp("mixed", "b0"), boundary: "b0", post: "\n",
		kids: []*tnode{
			leaf("text/plain", "part 1\n"),
			bin,
			{hdr: []string{"Content-Type: message/rfc822"}, part: msgparse.Part{Type: "message", Subtype: "rfc822"},
				msg: &tnode{
					hdr:  []string{"Subject: three", "Content-Type: multipart/mixed; boundary=b3"},
					env:  msgparse.Envelope{Subject: "three"},
					part: mp("mixed", "b3"), boundary: "b3", post: "\n",
					kids: []*tnode{leaf("text/plain", "part 3.1\n"), leaf("application/octet-stream", "part 3.2\n")},
				}},
			{hdr: []string{"Content-Type: multipart/mixed; boundary=b4"}, part: mp("mixed", "b4"), boundary: "b4", post: "\n",
				kids: []*tnode{
					gif,
					{hdr: []string{"Content-Type: message/rfc822"}, part: msgparse.Part{Type: "message", Subtype: "rfc822"},
						msg: &tnode{
							hdr:  []string{"Subject: four two", "Content-Type: multipart/mixed; boundary=b42"},
							env:  msgparse.Envelope{Subject: "four two"},
							part: mp("mixed", "b42"), boundary: "b42", post: "\n",
							kids: []*tnode{
								leaf("text/plain", "part 4.2.1\n"),
								{hdr: []string{"Content-Type: multipart/alternative; boundary=b422"},
									part: mp("alternative", "b422"), boundary: "b422",
									kids: []*tnode{leaf("text/plain", "part 4.2.2.1\n"), leaf("text/richtext", "part 4.2.2.2\n")}},
							},
						}},
				}},
		},
	}
}

type resolveCase struct {
	section string
	want    string // expected bytes; ignored when err is set
	filter  bool
	err     error
}

func checkResolve(t *testing.T, raw []byte, m *msgparse.Message, cases []resolveCase) {
	t.Helper()
	for _, tc := range cases {
		s, err := ParseSection(tc.section)
		if err != nil {
			t.Errorf("ParseSection(%q): %v", tc.section, err)
			continue
		}
		off, n, filter, err := Resolve(m, s)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("BODY[%s]: err %v, want %v", tc.section, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("BODY[%s]: %v", tc.section, err)
			continue
		}
		if got := string(raw[off : off+n]); got != tc.want || filter != tc.filter {
			t.Errorf("BODY[%s] = %q filter=%v\nwant %q filter=%v", tc.section, got, filter, tc.want, tc.filter)
		}
	}
}

func TestResolveRFC3501Sample(t *testing.T) {
	raw, m := mkMessage(rfc3501Sample())
	topHdr := "From: a@example.org\r\nSubject: rfc3501 sample\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
	e3h := "Subject: three\r\nContent-Type: multipart/mixed; boundary=b3\r\n\r\n"
	e3t := "--b3\r\nContent-Type: text/plain\r\n\r\npart 3.1\r\n\r\n--b3\r\nContent-Type: application/octet-stream\r\n\r\npart 3.2\r\n\r\n--b3--\r\n"
	alt := "--b422\r\nContent-Type: text/plain\r\n\r\npart 4.2.2.1\r\n\r\n--b422\r\nContent-Type: text/richtext\r\n\r\npart 4.2.2.2\r\n\r\n--b422--"
	e42h := "Subject: four two\r\nContent-Type: multipart/mixed; boundary=b42\r\n\r\n"
	e42t := "--b42\r\nContent-Type: text/plain\r\n\r\npart 4.2.1\r\n\r\n--b42\r\nContent-Type: multipart/alternative; boundary=b422\r\n\r\n" +
		alt + "\r\n--b42--\r\n"
	four := "--b4\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n\r\n--b4\r\nContent-Type: message/rfc822\r\n\r\n" +
		e42h + e42t + "\r\n--b4--\r\n"
	checkResolve(t, raw, m, []resolveCase{
		{section: "", want: string(raw)},
		{section: "HEADER", want: topHdr},
		{section: "HEADER.FIELDS (Subject)", want: topHdr, filter: true},
		{section: "HEADER.FIELDS.NOT (Subject)", want: topHdr, filter: true},
		{section: "TEXT", want: string(raw[len(topHdr):])},
		{section: "1", want: "part 1\r\n"},
		{section: "1.MIME", want: "Content-Type: text/plain\r\n\r\n"},
		{section: "2", want: "cGFydCAy\r\n"},
		{section: "2.MIME", want: "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"},
		{section: "3", want: e3h + e3t},
		{section: "3.MIME", want: "Content-Type: message/rfc822\r\n\r\n"},
		{section: "3.HEADER", want: e3h},
		{section: "3.HEADER.FIELDS (Subject)", want: e3h, filter: true},
		{section: "3.TEXT", want: e3t},
		{section: "3.1", want: "part 3.1\r\n"},
		{section: "3.2", want: "part 3.2\r\n"},
		{section: "3.2.MIME", want: "Content-Type: application/octet-stream\r\n\r\n"},
		{section: "4", want: four},
		{section: "4.MIME", want: "Content-Type: multipart/mixed; boundary=b4\r\n\r\n"},
		{section: "4.1", want: "R0lGODlh\r\n"},
		{section: "4.1.MIME", want: "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"},
		{section: "4.2", want: e42h + e42t},
		{section: "4.2.HEADER", want: e42h},
		{section: "4.2.TEXT", want: e42t},
		{section: "4.2.1", want: "part 4.2.1\r\n"},
		{section: "4.2.2", want: alt},
		{section: "4.2.2.MIME", want: "Content-Type: multipart/alternative; boundary=b422\r\n\r\n"},
		{section: "4.2.2.1", want: "part 4.2.2.1\r\n"},
		{section: "4.2.2.2", want: "part 4.2.2.2\r\n"},
		{section: "4.2.2.2.MIME", want: "Content-Type: text/richtext\r\n\r\n"},
		// Parts that do not exist, and specifiers the part cannot take.
		{section: "5", err: ErrNoSuchPart},
		{section: "1.1", err: ErrNoSuchPart},
		{section: "1.HEADER", err: ErrNoSuchPart},
		{section: "1.TEXT", err: ErrNoSuchPart},
		{section: "2.HEADER.FIELDS (From)", err: ErrNoSuchPart},
		{section: "3.3", err: ErrNoSuchPart},
		{section: "3.1.1", err: ErrNoSuchPart},
		{section: "4.HEADER", err: ErrNoSuchPart},
		{section: "4.TEXT", err: ErrNoSuchPart},
		{section: "4.3", err: ErrNoSuchPart},
		{section: "4.1.1", err: ErrNoSuchPart},
		{section: "4.2.3", err: ErrNoSuchPart},
		{section: "4.2.2.3", err: ErrNoSuchPart},
		{section: "4.2.2.1.1", err: ErrNoSuchPart},
		{section: "4294967295", err: ErrNoSuchPart},
	})
}

func TestResolveSinglePart(t *testing.T) {
	raw, m := mkMessage(simpleMessage())
	hdr := string(raw[:m.HeaderSize])
	body := "Hello Bob,\r\n\r\ncafé at 5?\r\n"
	checkResolve(t, raw, m, []resolveCase{
		{section: "", want: string(raw)},
		{section: "HEADER", want: hdr},
		{section: "TEXT", want: body},
		{section: "1", want: body},
		{section: "1.MIME", want: hdr},
		{section: "2", err: ErrNoSuchPart},
		{section: "1.1", err: ErrNoSuchPart},
		{section: "1.HEADER", err: ErrNoSuchPart},
	})
	if !strings.HasSuffix(hdr, "Message-ID: <1@example.org>\r\n\r\n") {
		t.Errorf("header %q", hdr)
	}
}

// A message whose top-level body is itself message/rfc822: part 1 is the
// encapsulated message and 1.n numbers its parts.
func TestResolveTopLevelRFC822(t *testing.T) {
	raw, m := mkMessage(&tnode{
		hdr:  []string{"Subject: fwd", "Content-Type: message/rfc822"},
		part: msgparse.Part{Type: "message", Subtype: "rfc822"},
		msg:  simpleMessage(),
	})
	inner, _ := mkMessage(simpleMessage())
	ih := string(inner[:bytesIndex(inner, "\r\n\r\n")+4])
	ib := string(inner[len(ih):])
	checkResolve(t, raw, m, []resolveCase{
		{section: "TEXT", want: string(inner)},
		{section: "1", want: string(inner)},
		{section: "1.HEADER", want: ih},
		{section: "1.HEADER.FIELDS.NOT (To)", want: ih, filter: true},
		{section: "1.TEXT", want: ib},
		{section: "1.1", want: ib},
		{section: "1.1.MIME", want: ih},
		{section: "1.2", err: ErrNoSuchPart},
		{section: "2", err: ErrNoSuchPart},
	})
}

func bytesIndex(b []byte, s string) int { return strings.Index(string(b), s) }

func TestResolveClampsAndRejects(t *testing.T) {
	m := &msgparse.Message{Size: 10, HeaderSize: 4, Structure: msgparse.Part{
		Type: "multipart", Subtype: "mixed",
		Parts: []msgparse.Part{
			{HeaderOffset: -3, HeaderSize: 2, BodyOffset: 8, BodySize: 100},
			{HeaderOffset: 50, HeaderSize: 5, BodyOffset: 5, BodySize: -1},
		},
	}}
	for _, tc := range []struct {
		s         Section
		off, n    int64
		wantError bool
	}{
		{Section{Part: []int{1}}, 8, 2, false},
		{Section{Part: []int{1}, Specifier: "MIME"}, 0, 2, false},
		{Section{Part: []int{2}, Specifier: "MIME"}, 10, 0, false},
		{Section{Part: []int{2}}, 5, 0, false},
		{Section{Part: []int{0}}, 0, 0, true},
		{Section{Part: []int{-1}}, 0, 0, true},
		{Section{Specifier: "MIME"}, 0, 0, true},
		{Section{Specifier: "BOGUS"}, 0, 0, true},
		{Section{Part: make([]int, maxPartDepth+1)}, 0, 0, true},
	} {
		off, n, _, err := Resolve(m, tc.s)
		if (err != nil) != tc.wantError || (err == nil && (off != tc.off || n != tc.n)) {
			t.Errorf("Resolve(%+v) = %d, %d, %v", tc.s, off, n, err)
		}
	}
	if _, _, _, err := Resolve(nil, Section{}); !errors.Is(err, ErrNoSuchPart) {
		t.Errorf("nil message: %v", err)
	}
}

func TestPartEncoding(t *testing.T) {
	_, m := mkMessage(rfc3501Sample())
	m.Structure.Parts[0].Encoding = "Quoted-Printable"
	m.Structure.Parts[2].Message.Structure.Parts[1].Encoding = "x-uuencode"
	for _, tc := range []struct {
		part []int
		want string
		err  error
	}{
		{nil, "", nil},
		{[]int{1}, "quoted-printable", nil},
		{[]int{2}, "base64", nil},
		{[]int{3}, "", nil},
		{[]int{3, 1}, "", nil},
		{[]int{3, 2}, "x-uuencode", ErrUnknownEncoding},
		{[]int{4}, "", nil},
		{[]int{4, 1}, "base64", nil},
		{[]int{4, 2, 2}, "", nil},
		{[]int{9}, "", ErrNoSuchPart},
	} {
		got, err := PartEncoding(m, tc.part)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("PartEncoding(%v) = %q, %v; want %q, %v", tc.part, got, err, tc.want, tc.err)
		}
	}
	if _, err := PartEncoding(nil, []int{1}); !errors.Is(err, ErrNoSuchPart) {
		t.Errorf("nil message: %v", err)
	}
}

func sectionString(s Section) string {
	var parts []string
	for _, p := range s.Part {
		parts = append(parts, strconv.Itoa(p))
	}
	if s.Specifier != "" {
		parts = append(parts, s.Specifier)
	}
	out := strings.Join(parts, ".")
	if len(s.Fields) > 0 {
		q := make([]string, len(s.Fields))
		for i, f := range s.Fields {
			q[i] = "{" + strconv.Itoa(len(f)) + "}\r\n" + f
		}
		out += " (" + strings.Join(q, " ") + ")"
	}
	return out
}
