package imapmsg

import (
	"bytes"
	"testing"

	"github.com/postrider/postrider/mailstore/msgparse"
)

func group(name string) msgparse.Address { return msgparse.Address{Mailbox: name, Group: true} }

var groupEnd = msgparse.Address{Group: true}

func TestEnvelopeGolden(t *testing.T) {
	tests := []struct {
		name string
		env  *msgparse.Envelope
		want string
	}{
		{"nil", nil, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{"empty", &msgparse.Envelope{}, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"},
		{
			// RFC 3501 §7.4.2's FETCH example, field by field.
			name: "rfc3501 example",
			env: &msgparse.Envelope{
				Date:    "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
				Subject: "IMAP4rev1 WG mtg summary and minutes",
				From:    []msgparse.Address{addr("Terry Gray", "gray", "cac.washington.edu")},
				To:      []msgparse.Address{addr("", "imap", "cac.washington.edu")},
				Cc: []msgparse.Address{addr("", "minutes", "CNRI.Reston.VA.US"),
					addr("John Klensin", "KLENSIN", "MIT.EDU")},
				MessageID: "<B27397-0100000@cac.washington.edu>",
			},
			want: `("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" ` +
				`(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ` +
				`(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ` +
				`((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL ` +
				`"<B27397-0100000@cac.washington.edu>")`,
		},
		{
			name: "explicit sender and reply-to, in-reply-to",
			env: &msgparse.Envelope{
				From:      []msgparse.Address{addr("", "a", "x.org")},
				Sender:    []msgparse.Address{addr("", "list-bounces", "x.org")},
				ReplyTo:   []msgparse.Address{addr("", "list", "x.org")},
				Bcc:       []msgparse.Address{addr("", "hidden", "x.org")},
				InReplyTo: "<p1@x.org> <p2@x.org>",
			},
			want: `(NIL NIL ((NIL NIL "a" "x.org")) ((NIL NIL "list-bounces" "x.org")) ((NIL NIL "list" "x.org")) ` +
				`NIL NIL ((NIL NIL "hidden" "x.org")) "<p1@x.org> <p2@x.org>" NIL)`,
		},
		{
			// RFC 9051 §7.5.2 group syntax; RFC 5322 §3.4 groups, including
			// an empty one.
			name: "groups",
			env: &msgparse.Envelope{
				From: []msgparse.Address{addr("", "a", "x.org")},
				To:   []msgparse.Address{group("undisclosed-recipients"), groupEnd},
				Cc: []msgparse.Address{group("Team"), addr("", "b", "x.org"), addr("Carol C.", "c", "y.org"),
					groupEnd, addr("", "d", "z.org")},
			},
			want: `(NIL NIL ((NIL NIL "a" "x.org")) ((NIL NIL "a" "x.org")) ((NIL NIL "a" "x.org")) ` +
				`((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ` +
				`((NIL NIL "Team" NIL)(NIL NIL "b" "x.org")("Carol C." NIL "c" "y.org")(NIL NIL NIL NIL)(NIL NIL "d" "z.org")) ` +
				`NIL NIL NIL)`,
		},
		{
			name: "quoting, encoded words, 8-bit, route, missing host",
			env: &msgparse.Envelope{
				Subject: `re: "quoted" \ back`,
				From: []msgparse.Address{
					addr("=?utf-8?q?J=C3=B6rg?=", "joerg", "example.de"),
					addr("Jörg", "joerg", "example.de"),
					{Adl: "@relay.example", Mailbox: "u", Host: "example.com"},
					addr("", "root", ""),
				},
				To: []msgparse.Address{addr("", "", "")},
			},
			want: `(NIL "re: \"quoted\" \\ back" ` +
				`(("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.de")({5}` + "\r\n" + `Jörg NIL "joerg" "example.de")` +
				`(NIL "@relay.example" "u" "example.com")(NIL NIL "root" "MISSING_DOMAIN")) ` +
				`(("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.de")({5}` + "\r\n" + `Jörg NIL "joerg" "example.de")` +
				`(NIL "@relay.example" "u" "example.com")(NIL NIL "root" "MISSING_DOMAIN")) ` +
				`(("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.de")({5}` + "\r\n" + `Jörg NIL "joerg" "example.de")` +
				`(NIL "@relay.example" "u" "example.com")(NIL NIL "root" "MISSING_DOMAIN")) ` +
				`((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) NIL NIL NIL NIL)`,
		},
		{
			name: "subject with line break and 8-bit",
			env:  &msgparse.Envelope{Subject: "Grüße\r\n aus Köln"},
			want: "(NIL {19}\r\nGrüße\r\n aus Köln NIL NIL NIL NIL NIL NIL NIL NIL)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := envelope(tc.env); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestWriteString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{"tab\there", "\"tab\there\""},
		{`a"b\c`, `"a\"b\\c"`},
		{"ü", "{2}\r\nü"},
		{"a\nb", "{3}\r\na\nb"},
		{"a\x00b", "{2}\r\nab"},
		{"\x7f", "\"\x7f\""},
	}
	for _, tc := range tests {
		var w bytes.Buffer
		writeString(&w, tc.in)
		if w.String() != tc.want {
			t.Errorf("writeString(%q) = %q, want %q", tc.in, w.String(), tc.want)
		}
	}
}

// groupsMessage has RFC 5322 §3.4 groups (one empty), encoded words, a
// quoted display name and several message ids.
func groupsMessage() *tnode {
	return &tnode{
		hdr: []string{
			`From: "Alice A." <alice@example.org>`,
			"Sender: list-bounces@example.org",
			"To: undisclosed-recipients:;",
			`Cc: Team: =?utf-8?q?J=C3=B6rg?= <b@x.org>, "Carol C." <c@y.org>;,`,
			" d@z.org",
			`Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= "quoted"`,
			"Date: Tue, 1 Jul 2025 10:00:00 +0000",
			"In-Reply-To: <p1@x.org> <p2@x.org>",
			"Message-ID: <g@x.org>",
		},
		env: msgparse.Envelope{
			Date:    "Tue, 1 Jul 2025 10:00:00 +0000",
			Subject: `=?utf-8?q?Gr=C3=BC=C3=9Fe?= "quoted"`,
			From:    []msgparse.Address{addr("Alice A.", "alice", "example.org")},
			Sender:  []msgparse.Address{addr("", "list-bounces", "example.org")},
			To:      []msgparse.Address{group("undisclosed-recipients"), groupEnd},
			Cc: []msgparse.Address{group("Team"), addr("=?utf-8?q?J=C3=B6rg?=", "b", "x.org"),
				addr("Carol C.", "c", "y.org"), groupEnd, addr("", "d", "z.org")},
			InReplyTo: "<p1@x.org> <p2@x.org>",
			MessageID: "<g@x.org>",
		},
		part: msgparse.Part{Type: "text", Subtype: "plain"},
		body: "hi\n",
	}
}

func TestEnvelopeGroupsMessage(t *testing.T) {
	_, m := mkMessage(groupsMessage())
	want := `("Tue, 1 Jul 2025 10:00:00 +0000" "=?utf-8?q?Gr=C3=BC=C3=9Fe?= \"quoted\"" ` +
		`(("Alice A." NIL "alice" "example.org")) ((NIL NIL "list-bounces" "example.org")) ` +
		`(("Alice A." NIL "alice" "example.org")) ` +
		`((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ` +
		`((NIL NIL "Team" NIL)("=?utf-8?q?J=C3=B6rg?=" NIL "b" "x.org")("Carol C." NIL "c" "y.org")(NIL NIL NIL NIL)(NIL NIL "d" "z.org")) ` +
		`NIL "<p1@x.org> <p2@x.org>" "<g@x.org>")`
	if got := envelope(&m.Envelope); got != want {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}
