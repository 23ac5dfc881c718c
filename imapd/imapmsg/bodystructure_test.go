package imapmsg

import (
	"testing"

	"github.com/postrider/postrider/mailstore/msgparse"
)

func textPart(sub string, ps ...string) msgparse.Part {
	return msgparse.Part{Type: "text", Subtype: sub, Params: params(ps...)}
}

// dovecotMixed is the message of Dovecot's test-imap-bodystructure.c (its
// richest case), with CRLF line breaks; Dovecot counts sizes as if lines
// ended in CRLF, so its expected output applies unchanged.
func dovecotMixed() *tnode {
	x := textPart("x-myown", "charset", "us-ascii", "foo", `quoted"string`)
	x.ID = "<foo@example.com>"
	x.MD5 = "Q2hlY2sgSW50ZWdyaXR5IQ=="
	x.Disposition = "inline"
	x.DispositionParams = params("foo", "bar")
	x.Description = "hellodescription"
	x.Language = []string{"en", "fi", "se"}
	x.Location = "http://example.com/test.txt"
	html := textPart("html")
	html.Encoding = "8bit"
	plain := textPart("plain")
	plain.Encoding = "?invalid"
	return &tnode{
		hdr: []string{"From: user@domain.org", "Date: Sat, 24 Mar 2007 23:00:00 +0200",
			"Mime-Version: 1.0", "Content-Type: multipart/mixed; boundary=\"foo\n bar\""},
		env: msgparse.Envelope{Date: "Sat, 24 Mar 2007 23:00:00 +0200",
			From: []msgparse.Address{addr("", "user", "domain.org")}},
		part:     msgparse.Part{Type: "multipart", Subtype: "mixed", Params: params("boundary", "foo bar")},
		boundary: "foo bar",
		pre:      "Root MIME prologue\n\n",
		post:     "\nRoot MIME epilogue\n",
		kids: []*tnode{
			{
				hdr: []string{`Content-Type: text/x-myown; charset=us-ascii; foo="quoted\"string"`,
					"Content-ID: <foo@example.com>", "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
					"Content-Disposition: inline; foo=bar", "Content-Description: hellodescription",
					"Content-Language: en, fi, se", "Content-Location: http://example.com/test.txt"},
				part: x,
				body: "hello\n",
			},
			{
				hdr:  []string{"Content-Type: message/rfc822"},
				part: msgparse.Part{Type: "message", Subtype: "rfc822"},
				msg: &tnode{
					hdr: []string{"From: sub@domain.org", "To: sub-to1@domain.org, sub-to2@domain.org",
						"Date: Sun, 12 Aug 2012 12:34:56 +0300", "Subject: submsg",
						`Content-Type: multipart/alternative; boundary="sub1"`},
					env: msgparse.Envelope{
						Date: "Sun, 12 Aug 2012 12:34:56 +0300", Subject: "submsg",
						From: []msgparse.Address{addr("", "sub", "domain.org")},
						To:   []msgparse.Address{addr("", "sub-to1", "domain.org"), addr("", "sub-to2", "domain.org")},
					},
					part:     msgparse.Part{Type: "multipart", Subtype: "alternative", Params: params("boundary", "sub1")},
					boundary: "sub1",
					pre:      "Sub MIME prologue\n",
					post:     "\nSub MIME epilogue\n",
					kids: []*tnode{
						{hdr: []string{"Content-Type: text/html", "Content-Transfer-Encoding: 8bit"},
							part: html, body: "<p>Hello world</p>\n"},
						{hdr: []string{"Content-Type: text/plain", "Content-Transfer-Encoding: ?invalid"},
							part: plain, body: "Hello another world\n"},
					},
				},
			},
		},
	}
}

// dovecotForward is another case of Dovecot's test: a message/rfc822 part
// with Content-ID and Content-Description.
func dovecotForward() *tnode {
	a := textPart("plain", "charset", "us-ascii")
	a.ID, a.Description = "<A.frop.example.com>", "Container message"
	return &tnode{
		hdr:      []string{"From: user@domain.org", `Content-Type: multipart/mixed; boundary="foo bar"`},
		env:      msgparse.Envelope{From: []msgparse.Address{addr("", "user", "domain.org")}},
		part:     msgparse.Part{Type: "multipart", Subtype: "mixed", Params: params("boundary", "foo bar")},
		boundary: "foo bar",
		post:     "\n",
		kids: []*tnode{
			{hdr: []string{"Content-Type: text/plain; charset=us-ascii", "Content-ID: <A.frop.example.com>",
				"Content-Description: Container message"}, part: a, body: "See attached...\n"},
			{
				hdr: []string{"Content-Type: message/rfc822", "Content-ID: <B.frop.example.com>",
					"Content-Description: Forwarded"},
				part: msgparse.Part{Type: "message", Subtype: "rfc822", ID: "<B.frop.example.com>", Description: "Forwarded"},
				msg: &tnode{
					hdr: []string{"From: user@domain.org", "Date: Sat, 24 Mar 2017 23:00:00 +0200",
						"Mime-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"},
					env: msgparse.Envelope{Date: "Sat, 24 Mar 2017 23:00:00 +0200",
						From: []msgparse.Address{addr("", "user", "domain.org")}},
					part: textPart("plain", "charset", "us-ascii"),
					body: "body\n",
				},
			},
		},
	}
}

func TestBodyStructureDovecot(t *testing.T) {
	tests := []struct {
		name           string
		root           *tnode
		extended, body string
	}{
		{
			name: "simple",
			root: &tnode{hdr: []string{"Content-Type: text/plain; charset=us-ascii"},
				part: textPart("plain", "charset", "us-ascii"), body: "body\n"},
			extended: `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)`,
			body:     `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)`,
		},
		{
			name:     "mixed",
			root:     dovecotMixed(),
			extended: `(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\"string") "<foo@example.com>" "hellodescription" "7bit" 7 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" ("foo" "bar")) ("en" "fi" "se") "http://example.com/test.txt")("message" "rfc822" NIL NIL NIL "7bit" 412 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL) (("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) "alternative" ("boundary" "sub1") NIL NIL NIL) 21 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)`,
			body:     `(("text" "x-myown" ("charset" "us-ascii" "foo" "quoted\"string") "<foo@example.com>" "hellodescription" "7bit" 7 1)("message" "rfc822" NIL NIL NIL "7bit" 412 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub-to1" "domain.org")(NIL NIL "sub-to2" "domain.org")) NIL NIL NIL NIL) (("text" "html" ("charset" "us-ascii") NIL NIL "8bit" 20 1)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1) "alternative") 21) "mixed")`,
		},
		{
			name:     "forward",
			root:     dovecotForward(),
			extended: `(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" "7bit" 17 1 NIL NIL NIL NIL)("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 133 ("Sat, 24 Mar 2017 23:00:00 +0200" NIL ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) 6 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)`,
			body:     `(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" "7bit" 17 1)("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 133 ("Sat, 24 Mar 2017 23:00:00 +0200" NIL ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1) 6) "mixed")`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, m := mkMessage(tc.root)
			if got := bodyStructure(&m.Structure, true); got != tc.extended {
				t.Errorf("BODYSTRUCTURE\n got %s\nwant %s", got, tc.extended)
			}
			if got := bodyStructure(&m.Structure, false); got != tc.body {
				t.Errorf("BODY\n got %s\nwant %s", got, tc.body)
			}
		})
	}
}

func TestBodyStructureEmptyMultipart(t *testing.T) {
	// Dovecot's case: a multipart without any body part.
	p := msgparse.Part{Type: "multipart", Subtype: "mixed", Params: params("boundary", "foo")}
	if got, want := bodyStructure(&p, true), `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "foo") NIL NIL NIL)`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if got, want := bodyStructure(&p, false), `(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// simpleMessage is a plain 8-bit text message with no MIME header fields.
func simpleMessage() *tnode {
	return &tnode{
		hdr: []string{"From: Alice <alice@example.org>", "To: bob@example.net",
			"Subject: hi", "Date: Mon, 7 Feb 1994 21:52:25 -0800", "Message-ID: <1@example.org>"},
		env: msgparse.Envelope{Date: "Mon, 7 Feb 1994 21:52:25 -0800", Subject: "hi",
			From: []msgparse.Address{addr("Alice", "alice", "example.org")},
			To:   []msgparse.Address{addr("", "bob", "example.net")}, MessageID: "<1@example.org>"},
		part: msgparse.Part{Type: "text", Subtype: "plain"},
		body: "Hello Bob,\n\ncafé at 5?\n",
	}
}

func alternative() *tnode {
	plain := textPart("plain", "charset", "utf-8")
	plain.Encoding = "quoted-printable"
	html := textPart("html", "charset", "utf-8")
	html.Encoding = "quoted-printable"
	return &tnode{
		hdr:      []string{`Content-Type: multipart/alternative; boundary="=_alt"`},
		part:     msgparse.Part{Type: "multipart", Subtype: "alternative", Params: params("boundary", "=_alt")},
		boundary: "=_alt",
		post:     "\n",
		kids: []*tnode{
			{hdr: []string{"Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"},
				part: plain, body: "caf=C3=A9 at 5?\n"},
			{hdr: []string{"Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"},
				part: html, body: "<p>caf=C3=A9 at 5?</p>\n"},
		},
	}
}

// mixedWithAttachment is multipart/mixed: alternative, an inline image and
// a PDF attachment whose parameters were RFC 2231-encoded.
func mixedWithAttachment() *tnode {
	img := msgparse.Part{Type: "image", Subtype: "png", Params: params("name", "dot.png"),
		ID: "<img1@example.org>", Encoding: "base64", Disposition: "inline",
		DispositionParams: params("filename", "dot.png")}
	pdf := msgparse.Part{Type: "application", Subtype: "pdf", Params: params("name", "€ rates.pdf"),
		Encoding: "base64", Disposition: "attachment",
		DispositionParams: params("filename", "€ rates.pdf", "size", "3"), Language: []string{"en"}}
	return &tnode{
		hdr: []string{"From: a@example.org", "Subject: report", "MIME-Version: 1.0",
			`Content-Type: multipart/mixed; boundary="outer"`},
		env: msgparse.Envelope{Subject: "report",
			From: []msgparse.Address{addr("", "a", "example.org")}},
		part:     msgparse.Part{Type: "multipart", Subtype: "mixed", Params: params("boundary", "outer")},
		boundary: "outer",
		pre:      "This is a multi-part message in MIME format.\n",
		post:     "\n",
		kids: []*tnode{
			alternative(),
			{hdr: []string{`Content-Type: image/png; name="dot.png"`, "Content-ID: <img1@example.org>",
				"Content-Transfer-Encoding: base64", `Content-Disposition: inline; filename="dot.png"`},
				part: img, body: "iVBORw0KGgo=\n"},
			{hdr: []string{"Content-Type: application/pdf;\n name*=utf-8''%E2%82%AC%20rates.pdf",
				"Content-Transfer-Encoding: base64", "Content-Language: en",
				"Content-Disposition: attachment;\n filename*0*=utf-8''%E2%82%AC%20;\n filename*1=\"rates.pdf\"; size=3"},
				part: pdf, body: "JVBE\n"},
		},
	}
}

func TestBodyStructureGolden(t *testing.T) {
	fwdRoot := dovecotForward()
	fwdRoot.kids[1].msg = simpleMessage()
	tests := []struct {
		name           string
		root           *tnode
		extended, body string
	}{
		{
			name:     "simple",
			root:     simpleMessage(),
			extended: `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 27 3 NIL NIL NIL NIL)`,
			body:     `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 27 3)`,
		},
		{
			name:     "alternative",
			root:     alternative(),
			extended: `(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 1 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 24 1 NIL NIL NIL NIL) "alternative" ("boundary" "=_alt") NIL NIL NIL)`,
			body:     `(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 1)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 24 1) "alternative")`,
		},
		{
			name: "mixed-attachment-rfc2231",
			root: mixedWithAttachment(),
			extended: `((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 1 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 24 1 NIL NIL NIL NIL) "alternative" ("boundary" "=_alt") NIL NIL NIL)` +
				`("image" "png" ("name" "dot.png") "<img1@example.org>" NIL "base64" 14 NIL ("inline" ("filename" "dot.png")) NIL NIL)` +
				"(\"application\" \"pdf\" (\"name\" {13}\r\n€ rates.pdf) NIL NIL \"base64\" 6 NIL (\"attachment\" (\"filename\" {13}\r\n€ rates.pdf \"size\" \"3\")) (\"en\") NIL)" +
				` "mixed" ("boundary" "outer") NIL NIL NIL)`,
			body: `((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 1)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 24 1) "alternative")` +
				`("image" "png" ("name" "dot.png") "<img1@example.org>" NIL "base64" 14)` +
				"(\"application\" \"pdf\" (\"name\" {13}\r\n€ rates.pdf) NIL NIL \"base64\" 6)" +
				` "mixed")`,
		},
		{
			name: "message-rfc822",
			root: fwdRoot,
			extended: `(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" "7bit" 17 1 NIL NIL NIL NIL)` +
				`("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 163 ` +
				`("Mon, 7 Feb 1994 21:52:25 -0800" "hi" (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) ((NIL NIL "bob" "example.net")) NIL NIL NIL "<1@example.org>") ` +
				`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 27 3 NIL NIL NIL NIL) 9 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)`,
			body: `(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" "7bit" 17 1)` +
				`("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 163 ` +
				`("Mon, 7 Feb 1994 21:52:25 -0800" "hi" (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) ((NIL NIL "bob" "example.net")) NIL NIL NIL "<1@example.org>") ` +
				`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 27 3) 9) "mixed")`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, m := mkMessage(tc.root)
			if got := bodyStructure(&m.Structure, true); got != tc.extended {
				t.Errorf("BODYSTRUCTURE\n got %q\nwant %q", got, tc.extended)
			}
			if got := bodyStructure(&m.Structure, false); got != tc.body {
				t.Errorf("BODY\n got %q\nwant %q", got, tc.body)
			}
		})
	}
}

func TestBodyStructureOddParts(t *testing.T) {
	tests := []struct {
		name string
		part msgparse.Part
		want string
	}{
		{"defaults", msgparse.Part{BodySize: 3, BodyLines: 1},
			`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 1 NIL NIL NIL NIL)`},
		{"charset kept, other params first", msgparse.Part{Type: "text", Subtype: "plain", Params: params("format", "flowed", "CHARSET", "iso-8859-1")},
			`("text" "plain" ("format" "flowed" "CHARSET" "iso-8859-1") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`},
		{"default charset appended", msgparse.Part{Type: "text", Subtype: "plain", Params: params("format", "flowed")},
			`("text" "plain" ("format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)`},
		{"no subtype", msgparse.Part{Type: "application"},
			`("application" "unknown" NIL NIL NIL "7bit" 0 NIL NIL NIL NIL)`},
		{"encoding with comment", msgparse.Part{Type: "application", Subtype: "x", Encoding: " BASE64 (yes)"},
			`("application" "x" NIL NIL NIL "BASE64" 0 NIL NIL NIL NIL)`},
		{"disposition without params", msgparse.Part{Type: "application", Subtype: "x", Disposition: "attachment"},
			`("application" "x" NIL NIL NIL "7bit" 0 NIL ("attachment" NIL) NIL NIL)`},
		{"description with CRLF and NUL", msgparse.Part{Type: "application", Subtype: "x", Description: "a\r\nb\x00c"},
			"(\"application\" \"x\" NIL NIL {5}\r\na\r\nbc \"7bit\" 0 NIL NIL NIL NIL)"},
		{"escapes", msgparse.Part{Type: "application", Subtype: "x", Location: `C:\dir\"f"`},
			`("application" "x" NIL NIL NIL "7bit" 0 NIL NIL NIL "C:\\dir\\\"f\"")`},
		{"negative size", msgparse.Part{Type: "application", Subtype: "x", BodySize: -5},
			`("application" "x" NIL NIL NIL "7bit" 0 NIL NIL NIL NIL)`},
		{"unparsed message/rfc822", msgparse.Part{Type: "message", Subtype: "rfc822", BodySize: 10, BodyLines: 2},
			`("message" "rfc822" NIL NIL NIL "7bit" 10 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL)`},
		{"message/global", msgparse.Part{Type: "message", Subtype: "global", BodySize: 4, BodyLines: 1,
			Message: &msgparse.Embedded{Structure: msgparse.Part{Type: "text", Subtype: "plain", Params: params("charset", "utf-8"), BodySize: 2}}},
			`("message" "global" NIL NIL NIL "7bit" 4 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 2 0 NIL NIL NIL NIL) 1 NIL NIL NIL NIL)`},
		{"message/partial is basic", msgparse.Part{Type: "message", Subtype: "partial", Params: params("id", "x", "number", "1")},
			`("message" "partial" ("id" "x" "number" "1") NIL NIL "7bit" 0 NIL NIL NIL NIL)`},
		{"multipart without subtype", msgparse.Part{Type: "multipart", Parts: []msgparse.Part{{Type: "text", Subtype: "plain"}}},
			`(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "x-unknown" NIL NIL NIL NIL)`},
		{"multipart extension data", msgparse.Part{Type: "multipart", Subtype: "related", Params: params("boundary", "b", "type", "text/html"),
			Disposition: "inline", Language: []string{"de", "fr"}, Location: "http://x/",
			Parts: []msgparse.Part{{Type: "text", Subtype: "html"}}},
			`(("text" "html" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "related" ("boundary" "b" "type" "text/html") ("inline" NIL) ("de" "fr") "http://x/")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bodyStructure(&tc.part, true); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := bodyStructure(nil, false); got != emptyBody {
		t.Errorf("nil part: %s", got)
	}
}

func TestBodyStructureDepthBound(t *testing.T) {
	// A cyclic tree (impossible from msgparse, possible from a corrupt
	// record) must still terminate with grammatical output.
	emb := &msgparse.Embedded{}
	emb.Structure = msgparse.Part{Type: "message", Subtype: "rfc822", Message: emb}
	out := bodyStructure(&emb.Structure, true)
	depth := 0
	for _, c := range out {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		}
		if depth < 0 {
			t.Fatalf("unbalanced output %q", out)
		}
	}
	if depth != 0 || len(out) > 100000 {
		t.Fatalf("depth %d, %d bytes: %q", depth, len(out), out)
	}
}
