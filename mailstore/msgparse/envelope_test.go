package msgparse

import (
	"reflect"
	"testing"
	"time"
)

func TestAddressList(t *testing.T) {
	mh := missingHost
	for _, tc := range []struct {
		in   string
		want []Address
	}{
		{"alice@example.com", []Address{{Mailbox: "alice", Host: "example.com"}}},
		{`"Joe Q. Public" <john.q.public@example.com>`, []Address{{Name: "Joe Q. Public", Mailbox: "john.q.public", Host: "example.com"}}},
		{"Joe Q. Public <john@example.com>", []Address{{Name: "Joe Q. Public", Mailbox: "john", Host: "example.com"}}},
		{`"Doe, John" <j@x.test>, mary@y.test`, []Address{{Name: "Doe, John", Mailbox: "j", Host: "x.test"}, {Mailbox: "mary", Host: "y.test"}}},
		{`=?utf-8?q?J=C3=B6rg?= <j@x.test>`, []Address{{Name: "=?utf-8?q?J=C3=B6rg?=", Mailbox: "j", Host: "x.test"}}},
		// RFC 5322 §3.4.1 quoted local part; RFC 9051 §7.5.2 removes the quoting.
		{`"john doe"@example.com`, []Address{{Mailbox: "john doe", Host: "example.com"}}},
		{`<"a\"b"@example.com>`, []Address{{Mailbox: `a"b`, Host: "example.com"}}},
		// Comments: ignored, or the name when there is no display name.
		{"jdoe@example.org (John Doe)", []Address{{Name: "John Doe", Mailbox: "jdoe", Host: "example.org"}}},
		{"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", []Address{{Name: "Pete", Mailbox: "pete", Host: "silly.test"}}},
		{"user@[192.0.2.1]", []Address{{Mailbox: "user", Host: "[192.0.2.1]"}}},
		// RFC 5322 §4.4 obsolete route.
		{"<@r1.test,@r2.test:user@host.test>", []Address{{Adl: "@r1.test,@r2.test", Mailbox: "user", Host: "host.test"}}},
		// RFC 5322 §3.4 groups; RFC 9051 §7.5.2 markers.
		{"undisclosed-recipients:;", []Address{{Mailbox: "undisclosed-recipients", Group: true}, {Group: true}}},
		{"A Group:Ed Jones <c@a.test>,joe@where.test;, x@y.test", []Address{
			{Mailbox: "A Group", Group: true}, {Name: "Ed Jones", Mailbox: "c", Host: "a.test"},
			{Mailbox: "joe", Host: "where.test"}, {Group: true}, {Mailbox: "x", Host: "y.test"}}},
		{"Unterminated: a@b.test", []Address{{Mailbox: "Unterminated", Group: true}, {Mailbox: "a", Host: "b.test"}, {Group: true}}},
		// RFC 5322 §4.4 empty list elements.
		{"a@b.test,, ,c@d.test", []Address{{Mailbox: "a", Host: "b.test"}, {Mailbox: "c", Host: "d.test"}}},
		// Malformed input is kept as well as can be.
		{"broken", []Address{{Mailbox: "broken", Host: mh}}},
		{"Name <no-at>", []Address{{Name: "Name", Mailbox: "no-at", Host: mh}}},
		{"John Doe jdoe@example.com", []Address{{Name: "John Doe", Mailbox: "jdoe", Host: "example.com"}}},
		{"<a@b.test", []Address{{Mailbox: "a", Host: "b.test"}}},
		{"a@", []Address{{Mailbox: "a", Host: mh}}},
		{"<>", nil},
		{"", nil},
		{"@@@,,<<>>;;::", nil},
	} {
		got := parseAddressList(NewParser(), tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestEnvelope(t *testing.T) {
	msg := crlf(`Date:  Mon, 7 Feb 1994 21:52:25
 -0800 (PST)
From: Terry Gray <gray@cac.washington.edu>
Subject: IMAP4rev2 WG mtg summary and minutes
To: imap@cac.washington.edu
cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>
Message-Id: <B27397-0100000@cac.washington.edu>
In-Reply-To: <a@b>
Subject: second subject is ignored
MIME-Version: 1.0

body
`)
	m := parseString(t, msg)
	from := []Address{{Name: "Terry Gray", Mailbox: "gray", Host: "cac.washington.edu"}}
	want := Envelope{
		Date:    "Mon, 7 Feb 1994 21:52:25 -0800 (PST)",
		Subject: "IMAP4rev2 WG mtg summary and minutes",
		From:    from, Sender: from, ReplyTo: from,
		To:        []Address{{Mailbox: "imap", Host: "cac.washington.edu"}},
		Cc:        []Address{{Mailbox: "minutes", Host: "CNRI.Reston.VA.US"}, {Name: "John Klensin", Mailbox: "KLENSIN", Host: "MIT.EDU"}},
		MessageID: "<B27397-0100000@cac.washington.edu>",
		InReplyTo: "<a@b>",
	}
	if !reflect.DeepEqual(m.Envelope, want) {
		t.Errorf("got  %+v\nwant %+v", m.Envelope, want)
	}
	if !m.Date.Equal(time.Date(1994, 2, 8, 5, 52, 25, 0, time.UTC)) {
		t.Errorf("date %v", m.Date)
	}

	// Sender present but empty, Reply-To present: RFC 9051 §7.5.2.
	m = parseString(t, crlf("From: a@b.test\nSender:\nReply-To: r@b.test\n\n"))
	if !reflect.DeepEqual(m.Envelope.Sender, m.Envelope.From) || m.Envelope.ReplyTo[0].Mailbox != "r" {
		t.Errorf("sender/reply-to %+v", m.Envelope)
	}
	// No header at all.
	if m := parseString(t, "\r\nbody"); !reflect.DeepEqual(m.Envelope, Envelope{}) {
		t.Errorf("empty envelope %+v", m.Envelope)
	}
}

func TestDate(t *testing.T) {
	est := time.FixedZone("", -5*3600)
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"Tue, 1 Jul 2003 10:52:37 +0200", time.Date(2003, 7, 1, 8, 52, 37, 0, time.UTC)},
		{"1 Jul 2003 10:52:37 +0200", time.Date(2003, 7, 1, 8, 52, 37, 0, time.UTC)},
		{"Tue, 01 Jul 2003 10:52 +0200", time.Date(2003, 7, 1, 8, 52, 0, 0, time.UTC)},
		{"Tue,1 Jul 2003 10:52:37 GMT", time.Date(2003, 7, 1, 10, 52, 37, 0, time.UTC)},
		{"Thu, 13 Feb 1969 23:32:54 -0330 (Newfoundland Time)", time.Date(1969, 2, 14, 3, 2, 54, 0, time.UTC)},
		{"21 Nov 97 09:55:06 GMT", time.Date(1997, 11, 21, 9, 55, 6, 0, time.UTC)},
		{"21 Nov 03 09:55:06 UT", time.Date(2003, 11, 21, 9, 55, 6, 0, time.UTC)},
		{"Fri, 21 Nov 1997 09:55:06 EST", time.Date(1997, 11, 21, 9, 55, 6, 0, est)},
		{"Fri, 21 Nov 1997 09:55:06 PDT", time.Date(1997, 11, 21, 16, 55, 6, 0, time.UTC)},
		{"Fri, 21 Nov 1997 09:55:06 Z", time.Date(1997, 11, 21, 9, 55, 6, 0, time.UTC)},
		{"Fri, 21 Nov 1997 09:55:06", time.Date(1997, 11, 21, 9, 55, 6, 0, time.UTC)},
		{"Fri, 21 November 1997 09:55:06 -0000", time.Date(1997, 11, 21, 9, 55, 6, 0, time.UTC)},
		{"Mon Jan  2 15:04:05 2006", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"Mon, 2 Jan 2006 15:04:05 +0000 (UTC)", time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)},
		{"2006-01-02 15:04:05 +0100", time.Date(2006, 1, 2, 14, 4, 5, 0, time.UTC)},
		{"Sat, 31 Dec 2016 23:59:60 +0000", time.Date(2016, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"2 Jan 2006", time.Date(2006, 1, 2, 0, 0, 0, 0, time.UTC)},
	} {
		got, ok := parseDate(tc.in)
		if !ok || !got.Equal(tc.want) {
			t.Errorf("%q: got %v (%v), want %v", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "31 Feb 2006 10:00", "1 Jan 2006 25:00", "32 Jan 2006", "Jan 2006", "1 Foo 2006 10:00"} {
		if got, ok := parseDate(bad); ok {
			t.Errorf("%q parsed as %v", bad, got)
		}
	}
}
