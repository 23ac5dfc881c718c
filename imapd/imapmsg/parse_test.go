package imapmsg

import (
	"bytes"
	"testing"

	"github.com/postrider/postrider/mailstore/msgparse"
)

func parseRaw(t *testing.T, raw []byte) *msgparse.Message {
	t.Helper()
	m, err := msgparse.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("msgparse.Parse: %v", err)
	}
	return m
}

// TestWithParser runs the rendering and section tests on what msgparse
// itself records for the same raw messages: the output must equal the
// output for the hand-built records (which the golden tests pin down).
func TestWithParser(t *testing.T) {
	cases := map[string]*tnode{
		"dovecot-mixed":   dovecotMixed(),
		"dovecot-forward": dovecotForward(),
		"simple":          simpleMessage(),
		"alternative":     alternative(),
		"attachments":     mixedWithAttachment(),
		"rfc3501-sample":  rfc3501Sample(),
		"groups":          groupsMessage(),
	}
	for name, root := range cases {
		t.Run(name, func(t *testing.T) {
			raw, want := mkMessage(root)
			got := parseRaw(t, raw)
			for _, ext := range []bool{true, false} {
				if g, w := bodyStructure(&got.Structure, ext), bodyStructure(&want.Structure, ext); g != w {
					t.Errorf("extended=%v\n parsed %q\n  built %q", ext, g, w)
				}
			}
			if g, w := envelope(&got.Envelope), envelope(&want.Envelope); g != w {
				t.Errorf("ENVELOPE\n parsed %q\n  built %q", g, w)
			}
		})
	}
}

// TestResolveWithParser checks BODY[<section>] ranges on a message parsed
// by msgparse, by slicing the raw message.
func TestResolveWithParser(t *testing.T) {
	raw, _ := mkMessage(rfc3501Sample())
	m := parseRaw(t, raw)
	topHdr := "From: a@example.org\r\nSubject: rfc3501 sample\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
	e3h := "Subject: three\r\nContent-Type: multipart/mixed; boundary=b3\r\n\r\n"
	alt := "--b422\r\nContent-Type: text/plain\r\n\r\npart 4.2.2.1\r\n\r\n--b422\r\nContent-Type: text/richtext\r\n\r\npart 4.2.2.2\r\n\r\n--b422--"
	checkResolve(t, raw, m, []resolveCase{
		{section: "", want: string(raw)},
		{section: "HEADER", want: topHdr},
		{section: "TEXT", want: string(raw[len(topHdr):])},
		{section: "1", want: "part 1\r\n"},
		{section: "2.MIME", want: "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"},
		{section: "3.HEADER", want: e3h},
		{section: "3.1", want: "part 3.1\r\n"},
		{section: "4.1.MIME", want: "Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n"},
		{section: "4.2.HEADER.FIELDS (Subject)", want: "Subject: four two\r\nContent-Type: multipart/mixed; boundary=b42\r\n\r\n", filter: true},
		{section: "4.2.2", want: alt},
		{section: "4.2.2.2", want: "part 4.2.2.2\r\n"},
		{section: "4.2.2.3", err: ErrNoSuchPart},
		{section: "1.HEADER", err: ErrNoSuchPart},
	})

	// A single-part message and a message that is message/rfc822 at the top.
	raw, _ = mkMessage(simpleMessage())
	m = parseRaw(t, raw)
	checkResolve(t, raw, m, []resolveCase{
		{section: "1", want: "Hello Bob,\r\n\r\ncafé at 5?\r\n"},
		{section: "1.MIME", want: string(raw[:m.HeaderSize])},
		{section: "2", err: ErrNoSuchPart},
	})
	raw, _ = mkMessage(&tnode{
		hdr:  []string{"Subject: fwd", "Content-Type: message/rfc822"},
		part: msgparse.Part{Type: "message", Subtype: "rfc822"},
		msg:  simpleMessage(),
	})
	m = parseRaw(t, raw)
	inner, _ := mkMessage(simpleMessage())
	checkResolve(t, raw, m, []resolveCase{
		{section: "1", want: string(inner)},
		{section: "1.1", want: "Hello Bob,\r\n\r\ncafé at 5?\r\n"},
		{section: "1.HEADER", want: string(inner[:bytesIndex(inner, "\r\n\r\n")+4])},
	})
}

// TestFilterWithParser: HEADER.FIELDS of a parsed message's header.
func TestFilterWithParser(t *testing.T) {
	raw := []byte(sampleHeader + "body\r\n")
	m := parseRaw(t, raw)
	off, n, filter, err := Resolve(m, Section{Specifier: "HEADER.FIELDS", Fields: []string{"to"}})
	if err != nil || !filter {
		t.Fatalf("Resolve: %v %v", filter, err)
	}
	got := FilterHeader(raw[off:off+n], []string{"to"}, false)
	if want := "To: b@example.net,\r\n c@example.net\r\n\r\n"; string(got) != want {
		t.Fatalf("got %q", got)
	}
}
