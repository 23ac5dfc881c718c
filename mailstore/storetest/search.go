package storetest

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// localDay is midnight of a date in the local zone; search dates are
// compared as dates only (RFC 9051 §6.4.4), in the server's zone, which for
// the suite's in-process stores is the zone of this process.
func localDay(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 0, 0, 0, 0, time.Local)
}

func localNoon(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 12, 0, 0, 0, time.Local)
}

type searchMsg struct {
	body  []byte
	date  time.Time
	flags mailstore.Flags
}

func searchCorpus() []searchMsg {
	secret := base64.StdEncoding.EncodeToString([]byte("The encoded secret is swordfish.\r\n"))
	return []searchMsg{
		{buildMessage([]string{
			"From: Alice Example <alice@example.org>", "To: bob@example.org", "Cc: carol@example.org",
			"Subject: Quarterly report", "Date: Fri, 05 Jan 2024 12:00:00 +0000", "Message-ID: <s1@example.org>",
		}, "The numbers look good.\nSee you.\n"), localNoon(2024, 1, 10), fl(mailstore.FlagSeen)},
		{buildMessage([]string{
			"From: Bob <bob@example.org>", "To: alice@example.org",
			"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "Date: Mon, 05 Feb 2024 12:00:00 +0000",
			"X-Custom: yes", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
			"Content-Transfer-Encoding: base64",
		}, secret+"\n"), localNoon(2024, 2, 15), fl(mailstore.FlagFlagged, "$Important")},
		{buildMessage([]string{
			"From: carol@example.org", "To: Alice <alice@example.org>", "Subject: Lunch menu",
			"Date: Tue, 05 Mar 2024 12:00:00 +0000", "MIME-Version: 1.0",
			`Content-Type: multipart/alternative; boundary="xx"`,
		}, "--xx\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"+
			"Caf=E9 au lait, hyphen=\nated words\n--xx\nContent-Type: text/html; charset=utf-8\n\n<b>Café</b>\n--xx--\n"),
			localNoon(2024, 3, 20), fl(mailstore.FlagSeen | mailstore.FlagFlagged)},
		{buildMessage([]string{
			"From: =?UTF-8?Q?D=C3=A4ve?= <dave@remote.example>", "To: alice@example.org", "Bcc: erin@example.org",
			"Subject: Re: Quarterly report", "Date: Tue, 05 Mar 2024 12:00:00 +0000",
		}, "Nothing special here.\n"), localNoon(2024, 3, 20), fl(0)},
		{buildMessage([]string{
			"From: news@lists.example", "To: alice@example.org", "Subject: Newsletter", "Date: Mon, 01 Apr 2024 12:00:00 +0000",
		}, strings.Repeat("Lorem ipsum dolor sit amet.\n", 700)), localNoon(2024, 4, 1), fl(0, "$important")},
	}
}

func testSearch(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	b := fx.account("bob@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	corpus := searchCorpus()
	// Decoys that match almost anything: another mailbox, another account,
	// and an expunged message in the searched mailbox.
	for i, m := range corpus {
		fx.appendMsg(a.ID, fx.mailbox(a.ID, "Archive").ID, m.flags, m.date, m.body)
		fx.appendMsg(b.ID, fx.mailbox(b.ID, "INBOX").ID, m.flags, m.date, m.body)
		if i == 0 {
			x := fx.appendMsg(a.ID, inbox.ID, m.flags, m.date, m.body)
			fx.expunge(a.ID, inbox.ID, mailstore.UIDs(x.UID), false)
		}
	}
	var uids []uint32
	var sizes []int64
	for _, m := range corpus {
		r := fx.appendMsg(a.ID, inbox.ID, m.flags, m.date, m.body)
		uids = append(uids, r.UID)
		sizes = append(sizes, r.Size)
	}
	later := fx.storeFlags(a.ID, inbox.ID, mailstore.UIDs(uids[3]), mailstore.FlagsAdd, fl(0, "$Later"), 0)
	if len(later.Updated) != 1 {
		t.Fatalf("StoreFlags for the ModSeq case updated %d messages", len(later.Updated))
	}
	laterMod := later.Updated[0].ModSeq

	hdr := func(k, v string) mailstore.SearchCriteria {
		return mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: k, Value: v}}}
	}
	sizeWhere := func(keep func(int64) bool) []int {
		var out []int
		for i, s := range sizes {
			if keep(s) {
				out = append(out, i)
			}
		}
		return out
	}
	mid := sizes[2]
	cases := []struct {
		name string
		c    mailstore.SearchCriteria
		want []int // indexes into corpus
	}{
		{"empty criteria", mailstore.SearchCriteria{}, []int{0, 1, 2, 3, 4}},
		{"FROM address", hdr("From", "alice"), []int{0}},
		{"FROM display name, other case", hdr("FROM", "ALICE EXAMPLE"), []int{0}},
		{"TO", hdr("to", "alice@example.org"), []int{1, 2, 3, 4}},
		{"FROM RFC 2047 display name", hdr("From", "Däve"), []int{3}},
		{"CC", hdr("Cc", "carol"), []int{0}},
		{"BCC", hdr("Bcc", "erin"), []int{3}},
		{"SUBJECT", hdr("Subject", "quarterly"), []int{0, 3}},
		{"SUBJECT RFC 2047 decoded", hdr("Subject", "Grüße aus Köln"), []int{1}},
		{"SUBJECT RFC 2047 decoded, non-ASCII case-insensitive", hdr("Subject", "KÖLN"), []int{1}},
		{"SUBJECT does not match the encoded form", hdr("Subject", "=?UTF-8?"), nil},
		{"HEADER present", hdr("X-Custom", ""), []int{1}},
		{"HEADER value, name and value in other case", hdr("x-custom", "YES"), []int{1}},
		{"HEADER absent", hdr("X-Missing", ""), nil},
		{"two header criteria (AND)", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "Subject", Value: "quarterly"}, {Key: "From", Value: "dave"}}}, []int{3}},
		{"BODY base64-decoded", mailstore.SearchCriteria{Body: []string{"SWORDFISH"}}, []int{1}},
		{"BODY quoted-printable soft line break", mailstore.SearchCriteria{Body: []string{"hyphenated"}}, []int{2}},
		{"BODY charset-decoded", mailstore.SearchCriteria{Body: []string{"café au lait"}}, []int{2}},
		{"BODY ignores headers", mailstore.SearchCriteria{Body: []string{"quarterly"}}, nil},
		{"BODY two strings (AND)", mailstore.SearchCriteria{Body: []string{"encoded", "swordfish"}}, []int{1}},
		{"BODY two strings, one missing", mailstore.SearchCriteria{Body: []string{"encoded", "numbers"}}, nil},
		{"TEXT in headers", mailstore.SearchCriteria{Text: []string{"Quarterly"}}, []int{0, 3}},
		{"TEXT in body", mailstore.SearchCriteria{Text: []string{"numbers look"}}, []int{0}},
		{"TEXT in a header of one, body of none", mailstore.SearchCriteria{Text: []string{"news@lists"}}, []int{4}},
		{"SINCE", mailstore.SearchCriteria{Since: localDay(2024, 2, 15)}, []int{1, 2, 3, 4}},
		{"BEFORE", mailstore.SearchCriteria{Before: localDay(2024, 2, 15)}, []int{0}},
		{"ON", mailstore.SearchCriteria{On: localDay(2024, 3, 20)}, []int{2, 3}},
		{"SINCE and BEFORE", mailstore.SearchCriteria{Since: localDay(2024, 1, 11), Before: localDay(2024, 3, 21)}, []int{1, 2, 3}},
		{"SENTSINCE", mailstore.SearchCriteria{SentSince: localDay(2024, 2, 5)}, []int{1, 2, 3, 4}},
		{"SENTBEFORE", mailstore.SearchCriteria{SentBefore: localDay(2024, 2, 5)}, []int{0}},
		{"SENTON", mailstore.SearchCriteria{SentOn: localDay(2024, 3, 5)}, []int{2, 3}},
		{"FLAGGED SEEN", mailstore.SearchCriteria{Flag: fl(mailstore.FlagSeen)}, []int{0, 2}},
		{"SEEN and FLAGGED", mailstore.SearchCriteria{Flag: fl(mailstore.FlagSeen | mailstore.FlagFlagged)}, []int{2}},
		{"UNSEEN", mailstore.SearchCriteria{NotFlag: fl(mailstore.FlagSeen)}, []int{1, 3, 4}},
		{"DELETED", mailstore.SearchCriteria{Flag: fl(mailstore.FlagDeleted)}, nil},
		{"KEYWORD case-insensitive", mailstore.SearchCriteria{Flag: fl(0, "$IMPORTANT")}, []int{1, 4}},
		{"UNKEYWORD", mailstore.SearchCriteria{NotFlag: fl(0, "$important")}, []int{0, 2, 3}},
		{"KEYWORD never used", mailstore.SearchCriteria{Flag: fl(0, "$Nope")}, nil},
		{"LARGER", mailstore.SearchCriteria{Larger: mid}, sizeWhere(func(s int64) bool { return s > mid })},
		{"SMALLER", mailstore.SearchCriteria{Smaller: mid}, sizeWhere(func(s int64) bool { return s < mid })},
		{"LARGER and SMALLER", mailstore.SearchCriteria{Larger: mid - 1, Smaller: mid + 1}, sizeWhere(func(s int64) bool { return s == mid })},
		{"MODSEQ", mailstore.SearchCriteria{ModSeq: laterMod}, []int{3}},
		{"MODSEQ 1", mailstore.SearchCriteria{ModSeq: 1}, []int{0, 1, 2, 3, 4}},
		{"UID set", mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{mailstore.UIDs(uids[0], uids[1], uids[2])}}, []int{0, 1, 2}},
		{"two UID sets (AND)", mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{mailstore.UIDs(uids[0], uids[1], uids[2]), {{Start: uids[1], Stop: 0}}}}, []int{1, 2}},
		{"empty UID set", mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{{}}}, nil},
		{"NOT", mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{{Flag: fl(mailstore.FlagSeen)}}}, []int{1, 3, 4}},
		{"two NOTs", mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{hdr("Subject", "quarterly"), hdr("From", "carol")}}, []int{1, 4}},
		{"OR", mailstore.SearchCriteria{Or: [][2]mailstore.SearchCriteria{{hdr("From", "alice"), hdr("Subject", "lunch")}}}, []int{0, 2}},
		{"two ORs (AND)", mailstore.SearchCriteria{Or: [][2]mailstore.SearchCriteria{
			{hdr("From", "alice"), hdr("Subject", "lunch")},
			{{Flag: fl(mailstore.FlagFlagged)}, {Body: []string{"numbers"}}},
		}}, []int{0, 2}},
		{"nested OR/NOT", mailstore.SearchCriteria{Or: [][2]mailstore.SearchCriteria{{
			{Not: []mailstore.SearchCriteria{{Flag: fl(mailstore.FlagSeen)}}, Header: []mailstore.HeaderCriterion{{Key: "From", Value: "dave"}}},
			{Or: [][2]mailstore.SearchCriteria{{{Body: []string{"swordfish"}}, {On: localDay(2024, 1, 10)}}}},
		}}}, []int{0, 1, 3}},
		{"NOT of OR", mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{{Or: [][2]mailstore.SearchCriteria{{{Flag: fl(mailstore.FlagSeen)}, {Flag: fl(0, "$important")}}}}}}, []int{3}},
		{"AND of field, NOT and OR", mailstore.SearchCriteria{
			Header: []mailstore.HeaderCriterion{{Key: "To", Value: "alice"}},
			Not:    []mailstore.SearchCriteria{{Since: localDay(2024, 4, 1)}},
			Or:     [][2]mailstore.SearchCriteria{{{Flag: fl(mailstore.FlagSeen)}, {Flag: fl(0, "$Later")}}},
		}, []int{2, 3}},
	}
	for _, tc := range cases {
		var want []uint32
		for _, i := range tc.want {
			want = append(want, uids[i])
		}
		got, err := st.Search(ctx, a.ID, inbox.ID, &tc.c)
		if err != nil {
			t.Errorf("Search %s: %v", tc.name, err)
			continue
		}
		if !equalUIDs(got, want) {
			t.Errorf("Search %s = %v, want %v (messages %v; UIDs of messages 0..4: %v)", tc.name, got, want, tc.want, uids)
		}
	}
}

// testSearchMetacharacters checks that SQL LIKE and pattern characters in
// search strings match only themselves.
func testSearchMetacharacters(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	texts := []string{
		"100% done", "100 percent", "snake_case", "snakeXcase", `back\slash`, "backslash",
		"star*glob", "starXglob", "it's quoted", "its quoted", "a[b]c", "abc", "dollar$^end", "dollarend",
	}
	uid := map[string]uint32{}
	for _, s := range texts {
		uid[s] = fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("subj "+s, "body "+s)).UID
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"100%", []string{"100% done"}},
		{"%", []string{"100% done"}},
		{"0% d", []string{"100% done"}},
		{"e_c", []string{"snake_case"}},
		{"_", []string{"snake_case"}},
		{`k\s`, []string{`back\slash`}},
		{`\`, []string{`back\slash`}},
		{"r*g", []string{"star*glob"}},
		{"*", []string{"star*glob"}},
		{"t's", []string{"it's quoted"}},
		{"'", []string{"it's quoted"}},
		{"[b]", []string{"a[b]c"}},
		{"$^", []string{"dollar$^end"}},
		{"%_", nil},
	} {
		var want []uint32
		for _, s := range tc.want {
			want = append(want, uid[s])
		}
		slices.Sort(want)
		for _, c := range []mailstore.SearchCriteria{
			{Header: []mailstore.HeaderCriterion{{Key: "Subject", Value: tc.q}}},
			{Body: []string{tc.q}},
			{Text: []string{tc.q}},
		} {
			got, err := fx.st.Search(fx.ctx, a.ID, inbox.ID, &c)
			what := fmt.Sprintf("Search %q (header %v, body %v, text %v)", tc.q, c.Header != nil, c.Body != nil, c.Text != nil)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			} else if !equalUIDs(got, want) {
				t.Errorf("%s = %v, want %v (%q)", what, got, want, tc.want)
			}
		}
	}
}

// testSearchAddresses: FROM/TO/CC/BCC match an address however the field
// spells it (comments and white space inside it, RFC 5322 §3.4), its
// display name, and substrings of either (the cases of Dovecot imaptest's
// search-addresses script); a field that is absent matches nothing.
func testSearchAddresses(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	msgs := [][]string{
		{"From: user-from@domain.org", "To: user-to@domain.org", "Cc: user-cc@domain.org", "Bcc: user-bcc@domain.org"},
		{"From: RealFrom <user-from@domain.org>", "To: RealTo <user-to@domain.org>", "Cc: RealCc <user-cc@domain.org>", "Bcc: RealBcc <user-bcc@domain.org>"},
		{"From: <user-from (comment)@ (comment) domain.org>", "To: <user-to@domain.org>", "Cc: <user-cc@domain.org>", "Bcc: <user-bcc@domain.org>"},
		{"From: user-from@domain.org (RealFrom)", "To: user-to@domain.org (RealTo)", "Cc: user-cc@domain.org (RealCc)", "Bcc: user-bcc@domain.org (RealBcc)"},
		{"From: user-from1@domain.org, user-from2@domain.org", "Cc: user-cc@domain.org"},
		{"From: RealFrom <user-from@domain.org>", "To: groupname: groupuser1@domain.org, groupuser2@domain.org;,", " groupname2: groupuser3@domain.org;"},
		{"From: RealFrom <user-from@domain.org>", "To: groupname:;"},
		{"From: =?UTF-8?Q?J=C3=B6rg?= <joerg (x) @ example.org>", "To: \"Quoted, Name\" <q@example.org>"},
	}
	var uids []uint32
	for i, h := range msgs {
		body := buildMessage(append(h, "Subject: address "+fmt.Sprint(i+1)), "body\n")
		uids = append(uids, fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, body).UID)
	}
	for _, tc := range []struct {
		key, value string
		want       []int // 1-based message numbers
	}{
		{"from", "user-from@domain.org", []int{1, 2, 3, 4, 6, 7}},
		{"to", "user-to@domain.org", []int{1, 2, 3, 4}},
		{"cc", "user-cc@domain.org", []int{1, 2, 3, 4, 5}},
		{"bcc", "user-bcc@domain.org", []int{1, 2, 3, 4}},
		{"from", "realfrom", []int{2, 4, 6, 7}},
		{"bcc", "realbcc", []int{2, 4}},
		{"from", "", []int{1, 2, 3, 4, 5, 6, 7, 8}},
		{"to", "", []int{1, 2, 3, 4, 6, 7, 8}},
		{"bcc", "", []int{1, 2, 3, 4}},
		{"from", "ser-fro", []int{1, 2, 3, 4, 5, 6, 7}},
		{"from", "ealfro", []int{2, 4, 6, 7}},
		{"from", "user-from1", []int{5}},
		{"from", "user-from2", []int{5}},
		{"to", "groupname", []int{6, 7}},
		{"to", "groupname2", []int{6}},
		{"to", "groupuser3", []int{6}},
		{"to", "groupuser4", nil},
		{"from", "joerg@example.org", []int{8}},
		{"from", "jörg <joerg@example.org>", []int{8}},
		{"to", "quoted, name", []int{8}},
		{"to", "q@example.org", []int{8}},
		{"FROM", "USER-FROM@DOMAIN.ORG", []int{1, 2, 3, 4, 6, 7}},
	} {
		var want []uint32
		for _, n := range tc.want {
			want = append(want, uids[n-1])
		}
		c := mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: tc.key, Value: tc.value}}}
		got, err := fx.st.Search(fx.ctx, a.ID, inbox.ID, &c)
		if err != nil {
			t.Errorf("Search %s %q: %v", tc.key, tc.value, err)
		} else if !equalUIDs(got, want) {
			t.Errorf("Search %s %q = %v, want %v (messages %v)", tc.key, tc.value, got, want, tc.want)
		}
	}
}
