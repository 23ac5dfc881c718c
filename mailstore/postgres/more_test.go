package postgres_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

func TestSearch(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	bodies := []string{
		"From: Bob <bob@example.net>\r\nTo: a@example.org\r\nSubject: Quarterly 100% report_v2\r\nDate: Tue, 05 Mar 2024 23:30:00 -0800\r\nX-Tag: (a+b)*c\r\n\r\nNumbers are UP this quarter.\r\n",
		"From: Carol <carol@example.net>\r\nTo: a@example.org\r\nCc: Dave <dave@example.net>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Wed, 06 Mar 2024 10:00:00 +0000\r\n\r\nSchöne GRÜSSE aus Köln\r\n",
		"From: bob@example.net\r\nTo: a@example.org\r\nSubject: lunch\r\n\r\nsee you at noon " + strings.Repeat("z", 2000) + "\r\n",
	}
	dates := []time.Time{
		time.Date(2024, 3, 5, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 6, 12, 0, 0, 0, time.UTC),
		time.Date(2024, 3, 7, 12, 0, 0, 0, time.UTC),
	}
	for i, b := range bodies {
		_, err := st.Append(ctx, a.ID, in.ID, mailstore.Flags{}, dates[i], strings.NewReader(b))
		must(t, err)
	}
	_, err := st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(2), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagFlagged, Keywords: []string{"$Important"}}, 0)
	must(t, err)
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	cases := []struct {
		name string
		c    mailstore.SearchCriteria
		want []uint32
	}{
		{"all", mailstore.SearchCriteria{}, []uint32{1, 2, 3}},
		{"from", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "From", Value: "BOB"}}}, []uint32{1, 3}},
		{"subject percent", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "subject", Value: "100%"}}}, []uint32{1}},
		{"subject underscore", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "subject", Value: "t_v"}}}, []uint32{1}},
		{"subject no wildcard", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "subject", Value: "1%0"}}}, nil},
		{"decoded subject", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "Subject", Value: "grüße"}}}, []uint32{2}},
		{"regex chars", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "x-tag", Value: "(a+b)*c"}}}, []uint32{1}},
		{"header exists", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "cc"}}}, []uint32{2}},
		{"value not in name", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "to", Value: "carol"}}}, nil},
		{"body", mailstore.SearchCriteria{Body: []string{"up this"}}, []uint32{1}},
		{"body unicode case", mailstore.SearchCriteria{Body: []string{"grüsse AUS"}}, []uint32{2}},
		{"body not header", mailstore.SearchCriteria{Body: []string{"lunch"}}, nil},
		{"text", mailstore.SearchCriteria{Text: []string{"lunch"}}, []uint32{3}},
		{"flagged", mailstore.SearchCriteria{Flag: mailstore.Flags{System: mailstore.FlagFlagged}}, []uint32{2}},
		{"keyword ci", mailstore.SearchCriteria{Flag: mailstore.Flags{Keywords: []string{"$important"}}}, []uint32{2}},
		{"unkeyword", mailstore.SearchCriteria{NotFlag: mailstore.Flags{Keywords: []string{"$IMPORTANT"}}}, []uint32{1, 3}},
		{"unseen", mailstore.SearchCriteria{NotFlag: mailstore.Flags{System: mailstore.FlagSeen}}, []uint32{1, 2, 3}},
		{"larger", mailstore.SearchCriteria{Larger: 1000}, []uint32{3}},
		{"smaller", mailstore.SearchCriteria{Smaller: 1000}, []uint32{1, 2}},
		{"since", mailstore.SearchCriteria{Since: day(2024, 3, 6)}, []uint32{2, 3}},
		{"before", mailstore.SearchCriteria{Before: day(2024, 3, 6)}, []uint32{1}},
		{"on", mailstore.SearchCriteria{On: day(2024, 3, 6)}, []uint32{2}},
		// The Date: header's own calendar date counts, not UTC's.
		{"senton", mailstore.SearchCriteria{SentOn: day(2024, 3, 5)}, []uint32{1}},
		{"sentsince", mailstore.SearchCriteria{SentSince: day(2024, 3, 6)}, []uint32{2}},
		{"sentbefore", mailstore.SearchCriteria{SentBefore: day(2024, 3, 6)}, []uint32{1}},
		{"uid", mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3}},
		{"uid two sets", mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{mailstore.UIDs(1, 3), {{Start: 3, Stop: 3}}}}, []uint32{3}},
		{"not", mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{{Header: []mailstore.HeaderCriterion{{Key: "from", Value: "bob"}}}}}, []uint32{2}},
		{"or", mailstore.SearchCriteria{Or: [][2]mailstore.SearchCriteria{{{Body: []string{"noon"}}, {Flag: mailstore.Flags{System: mailstore.FlagFlagged}}}}}, []uint32{2, 3}},
		{"modseq", mailstore.SearchCriteria{ModSeq: 5}, []uint32{2}},
	}
	for _, c := range cases {
		got, err := st.Search(ctx, a.ID, in.ID, &c.c)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v %v, want %v", c.name, got, err, c.want)
		}
	}
	// Bounds.
	deep := mailstore.SearchCriteria{}
	for i := 0; i < 40; i++ {
		deep = mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{deep}}
	}
	if _, err := st.Search(ctx, a.ID, in.ID, &deep); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Errorf("deep criteria: %v", err)
	}
	if _, err := st.Search(ctx, a.ID, in.ID, &mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "bad name:"}}}); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Errorf("bad header name: %v", err)
	}
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	if _, err := st.Search(ctx, b.ID, in.ID, &mailstore.SearchCriteria{}); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Errorf("foreign search: %v", err)
	}
	checkInvariants(t, st)
}

func TestCopyMove(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)
	for i := 0; i < 4; i++ {
		deliver(t, st, msg("m"+string(rune('a'+i)), "body"), mailstore.Recipient{AccountID: a.ID, Flags: mailstore.Flags{Keywords: []string{"k"}}})
	}
	used0, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	cr, err := st.Copy(ctx, a.ID, in.ID, mailstore.UIDSet{{Start: 2, Stop: 3}, {Start: 9, Stop: 9}}, arch.ID)
	must(t, err)
	if !slices.Equal(cr.SrcUIDs, []uint32{2, 3}) || !slices.Equal(cr.DstUIDs, []uint32{1, 2}) || cr.UIDValidity != arch.UIDValidity {
		t.Fatalf("copy %+v", cr)
	}
	used1, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if used1 <= used0 {
		t.Fatalf("quota after copy %d <= %d", used1, used0)
	}
	mr, err := st.Move(ctx, a.ID, in.ID, mailstore.UIDs(1, 4), arch.ID)
	must(t, err)
	if !slices.Equal(mr.SrcUIDs, []uint32{1, 4}) || !slices.Equal(mr.DstUIDs, []uint32{3, 4}) {
		t.Fatalf("move %+v", mr)
	}
	used2, _, err := st.QuotaUsage(ctx, a.ID)
	must(t, err)
	if used2 != used1 {
		t.Fatalf("quota changed by move: %d -> %d", used1, used2)
	}
	left, err := st.ListMessages(ctx, a.ID, in.ID, nil)
	must(t, err)
	if len(left) != 2 || left[0].UID != 2 || left[1].UID != 3 {
		t.Fatalf("left %+v", left)
	}
	moved, err := st.ListMessages(ctx, a.ID, arch.ID, mailstore.UIDSet{{Start: 3, Stop: 0}})
	must(t, err)
	if len(moved) != 2 || !slices.Equal(moved[0].Flags.Keywords, []string{"k"}) {
		t.Fatalf("moved %+v", moved)
	}
	ch, err := st.Changes(ctx, a.ID, in.ID, 1)
	must(t, err)
	if !slices.Equal(ch.Vanished, []uint32{1, 4}) {
		t.Fatalf("vanished %v", ch.Vanished)
	}
	// Quota applies to copies.
	must(t, st.SetQuota(ctx, a.ID, used2+1))
	if _, err := st.Copy(ctx, a.ID, in.ID, nil, arch.ID); !errors.Is(err, mailstore.ErrOverQuota) {
		t.Fatalf("copy over quota: %v", err)
	}
	// Another account's mailbox is refused.
	b, err := st.CreateAccount(ctx, "b@example.org", "h")
	must(t, err)
	bin := inbox(t, st, b.ID)
	if _, err := st.Copy(ctx, a.ID, in.ID, nil, bin.ID); !errors.Is(err, mailstore.ErrNoSuchMailbox) {
		t.Fatalf("copy to foreign: %v", err)
	}
	// Empty copy still reports UIDVALIDITY.
	cr, err = st.Copy(ctx, a.ID, in.ID, mailstore.UIDs(77), arch.ID)
	must(t, err)
	if len(cr.SrcUIDs) != 0 || cr.UIDValidity != arch.UIDValidity {
		t.Fatalf("empty copy %+v", cr)
	}
	// FetchDetails returns the parse.
	ds, err := st.FetchDetails(ctx, a.ID, arch.ID, mailstore.UIDs(1))
	must(t, err)
	if len(ds) != 1 || ds[0].Parsed == nil || ds[0].Parsed.Envelope.Subject != "mb" {
		t.Fatalf("details %+v", ds)
	}
	checkInvariants(t, st)
}

func TestLeasesAndAuthFailures(t *testing.T) {
	st, _, _ := fixture(t)
	ctx := ctxT(t)
	ok, err := st.AcquireLease(ctx, "pop3/1", "node-a", time.Minute)
	must(t, err)
	if !ok {
		t.Fatal("free lease not acquired")
	}
	if ok, _ := st.AcquireLease(ctx, "pop3/1", "node-b", time.Minute); ok {
		t.Fatal("held lease acquired by another")
	}
	if ok, _ := st.AcquireLease(ctx, "pop3/1", "node-a", time.Minute); !ok {
		t.Fatal("holder cannot re-acquire")
	}
	if ok, _ := st.RenewLease(ctx, "pop3/1", "node-b", time.Minute); ok {
		t.Fatal("non-holder renewed")
	}
	must(t, st.ReleaseLease(ctx, "pop3/1", "node-b")) // not held: no effect
	if ok, _ := st.RenewLease(ctx, "pop3/1", "node-a", time.Minute); !ok {
		t.Fatal("holder cannot renew")
	}
	must(t, st.ReleaseLease(ctx, "pop3/1", "node-a"))
	// Expiry.
	ok, err = st.AcquireLease(ctx, "l2", "x", 20*time.Millisecond)
	must(t, err)
	time.Sleep(50 * time.Millisecond)
	if ok2, _ := st.RenewLease(ctx, "l2", "x", time.Minute); !ok || ok2 {
		t.Fatalf("renew of expired lease: %v %v", ok, ok2)
	}
	if ok, _ := st.AcquireLease(ctx, "l2", "y", time.Minute); !ok {
		t.Fatal("expired lease not taken over")
	}
	if _, err := st.AcquireLease(ctx, "l3", "y", 0); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Fatalf("zero ttl: %v", err)
	}
	// Concurrent acquisition: exactly one winner.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.AcquireLease(ctx, "race", string(rune('a'+i)), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d winners", winners)
	}

	now := time.Now()
	reserve := func(keys []string, at time.Time) {
		t.Helper()
		_, err := st.ReserveAuthFailure(ctx, keys, make([]int, len(keys)), at.Add(-time.Minute), at)
		must(t, err)
	}
	reserve([]string{"ip:1.2.3.4", "user:a"}, now.Add(-time.Hour))
	reserve([]string{"ip:1.2.3.4"}, now)
	n, err := st.AuthFailures(ctx, []string{"ip:1.2.3.4", "user:a", "user:z"}, now.Add(-time.Minute))
	must(t, err)
	if n["ip:1.2.3.4"] != 1 || n["user:a"] != 0 || n["user:z"] != 0 {
		t.Fatalf("failures %v", n)
	}
	n, err = st.AuthFailures(ctx, []string{"ip:1.2.3.4", "user:a"}, now.Add(-2*time.Hour))
	must(t, err)
	if n["ip:1.2.3.4"] != 2 || n["user:a"] != 1 {
		t.Fatalf("failures %v", n)
	}
	must(t, st.ReleaseAuthFailure(ctx, mailstore.AuthReservation{}, []string{"ip:1.2.3.4"}))
	n, err = st.AuthFailures(ctx, []string{"ip:1.2.3.4"}, time.Time{})
	must(t, err)
	if n["ip:1.2.3.4"] != 0 {
		t.Fatalf("after reset %v", n)
	}
	if _, err := st.ReserveAuthFailure(ctx, []string{strings.Repeat("k", 1000)}, []int{0}, now, now); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Fatalf("long key: %v", err)
	}
}

func TestBadInputDoesNotCorrupt(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	if _, err := st.CreateAccount(ctx, "a@example.org", "h"); !errors.Is(err, mailstore.ErrExists) {
		t.Fatalf("duplicate account: %v", err)
	}
	if _, err := st.CreateAccount(ctx, "x@unknown.org", "h"); !errors.Is(err, mailstore.ErrNoSuchDomain) {
		t.Fatalf("account in unknown domain: %v", err)
	}
	if _, err := st.CreateAccount(ctx, strings.Repeat("x", 300)+"@example.org", "h"); !errors.Is(err, mailstore.ErrInvalidAddress) {
		t.Fatalf("long address: %v", err)
	}
	if _, err := st.CreateAccount(ctx, "y@example.org", "h\x00"); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Fatalf("NUL hash: %v", err)
	}
	if err := st.CreateDomain(ctx, "example.org"); !errors.Is(err, mailstore.ErrExists) {
		t.Fatalf("duplicate domain: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, a.ID, strings.Repeat("x", 1001), ""); !errors.Is(err, mailstore.ErrInvalidName) {
		t.Fatalf("long name: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, a.ID, "inbox", ""); !errors.Is(err, mailstore.ErrExists) {
		t.Fatalf("create INBOX: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, a.ID, "x", `\Bogus`); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Fatalf("bad special-use: %v", err)
	}
	if _, err := st.CreateMailbox(ctx, 99999, "x", ""); !errors.Is(err, mailstore.ErrNoSuchAccount) {
		t.Fatalf("mailbox for no account: %v", err)
	}
	in := inbox(t, st, a.ID)
	if _, err := st.StoreFlags(ctx, a.ID, in.ID, nil, mailstore.FlagsAdd, mailstore.Flags{Keywords: []string{"bad kw"}}, 0); !errors.Is(err, mailstore.ErrInvalidArgument) {
		t.Fatalf("bad keyword: %v", err)
	}
	// A message with NUL bytes, 8-bit garbage and no header/body separator.
	body := "Subject: \xff\xfe\x00odd\r\nX: \x00\r\nno separator \x00 \xc3"
	res := deliver(t, st, body, mailstore.Recipient{AccountID: a.ID})
	if got := readAll(t, st, a.ID, in.ID, res.Delivered[0].UID, 0, -1); got != body {
		t.Fatalf("odd message read back %q", got)
	}
	if _, err := st.Search(ctx, a.ID, in.ID, &mailstore.SearchCriteria{Text: []string{"\x00\xff"}}); err != nil {
		t.Fatalf("odd search: %v", err)
	}
	// Empty message.
	res, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: strings.NewReader("")})
	must(t, err)
	if got := readAll(t, st, a.ID, in.ID, res.Delivered[0].UID, 0, -1); got != "" {
		t.Fatalf("empty message read back %q", got)
	}
	mbs, err := st.ListMailboxes(ctx, a.ID)
	must(t, err)
	if len(mbs) != len(mailstore.DefaultMailboxes) {
		t.Fatalf("mailboxes changed: %d", len(mbs))
	}
	checkInvariants(t, st)
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestSearchFoldMatchesToLower(t *testing.T) {
	for _, s := range []string{"", "abc", "ABC def", "Grüße AUS Köln", "İSTANBUL", "MIXED\x00NUL", "bad \xff utf8 ABC", strings.Repeat("Hello World ", 1000)} {
		got := postgres.SearchFold(s)
		want := strings.ToLower(strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", " "))
		if got != want {
			t.Errorf("SearchFold(%q) = %q, want %q", s, got, want)
		}
		// Large messages' text is folded piecewise (the parser passes valid
		// UTF-8 in whole characters): the same result, cut anywhere at a
		// character start.
		if utf8.ValidString(s) {
			step := 1 + len(s)/100 // every cut of the short strings, some of the long one
			for cut := 0; cut <= len(s); cut += step {
				if cut < len(s) && !utf8.RuneStart(s[cut]) {
					continue
				}
				if got := string(postgres.AppendFold(postgres.AppendFold(nil, []byte(s[:cut])), []byte(s[cut:]))); got != want {
					t.Errorf("AppendFold(%q) cut at %d = %q, want %q", s, cut, got, want)
					break
				}
			}
		}
	}
}
