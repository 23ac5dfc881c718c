package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

func testDeliverMany(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	type rcpt struct {
		acct  mailstore.Account
		mbox  mailstore.Mailbox
		flags mailstore.Flags
	}
	var rcpts []rcpt
	var list []mailstore.Recipient
	for i, addr := range []string{"alice@example.org", "bob@example.org", "carol@other.example"} {
		a := fx.account(addr)
		r := rcpt{acct: a, mbox: fx.mailbox(a.ID, "INBOX")}
		rc := mailstore.Recipient{AccountID: a.ID}
		if i == 2 {
			r.flags = mailstore.Flags{System: mailstore.FlagSeen, Keywords: []string{"$Junk"}}
			rc.Flags = r.flags
			rc.Mailbox = "inbox" // names are normalised
		}
		rcpts = append(rcpts, r)
		list = append(list, rc)
	}
	body := simpleMessage("to many", "hello all\nsecond line")
	res, err := st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:   "sender@remote.example",
		Recipients: list,
		Body:       bytes.NewReader(body),
		Params:     map[string]string{"ENVID": "abc123", "RET": "HDRS"},
	})
	must(t, err, "Deliver to three recipients")
	if res.Size != int64(len(body)) {
		t.Errorf("DeliveryResult.Size = %d, want %d", res.Size, len(body))
	}
	if len(res.Delivered) != len(rcpts) {
		t.Fatalf("DeliveryResult.Delivered has %d entries, want %d: %+v", len(res.Delivered), len(rcpts), res.Delivered)
	}
	firstUID := map[int64]uint32{}
	for _, r := range rcpts {
		i := slices.IndexFunc(res.Delivered, func(d mailstore.Delivered) bool { return d.AccountID == r.acct.ID })
		if i < 0 {
			t.Errorf("no Delivered entry for %s", r.acct.Address)
			continue
		}
		d := res.Delivered[i]
		if d.MailboxID != r.mbox.ID || d.UID < r.mbox.UIDNext {
			t.Errorf("%s: Delivered = %+v; want mailbox %d and UID >= %d", r.acct.Address, d, r.mbox.ID, r.mbox.UIDNext)
		}
		firstUID[r.acct.ID] = d.UID
		ms := fx.list(r.acct.ID, r.mbox.ID, nil)
		if len(ms) != 1 || ms[0].UID != d.UID || ms[0].Size != int64(len(body)) || !sameFlags(ms[0].Flags, r.flags) || ms[0].ModSeq == 0 {
			t.Errorf("%s: ListMessages = %+v; want one message UID %d size %d flags %s", r.acct.Address, ms, d.UID, len(body), flagString(r.flags))
		}
		if got := fx.mustRead(r.acct.ID, r.mbox.ID, d.UID); !bytes.Equal(got, body) {
			t.Errorf("%s: stored message differs from the delivered one", r.acct.Address)
		}
		s := fx.status(r.acct.ID, r.mbox.ID)
		wantUnseen := uint32(1)
		if r.flags.System&mailstore.FlagSeen != 0 {
			wantUnseen = 0
		}
		if s.Messages != 1 || s.Size != int64(len(body)) || s.Unseen != wantUnseen || s.UIDNext <= d.UID || s.HighestModSeq < ms[0].ModSeq {
			t.Errorf("%s: MailboxStatus = %+v after delivery of UID %d (modseq %d)", r.acct.Address, s, d.UID, ms[0].ModSeq)
		}
		fx.checkQuota(r.acct.ID, int64(len(body)), r.acct.Address)
	}

	// A second delivery with an explicit internal date gets higher UIDs.
	date := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	body2 := simpleMessage("again", "more")
	res2, err := st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:     "",
		Recipients:   []mailstore.Recipient{{AccountID: rcpts[0].acct.ID}, {AccountID: rcpts[1].acct.ID}},
		Body:         bytes.NewReader(body2),
		InternalDate: date,
	})
	must(t, err, "Deliver with null reverse-path and internal date")
	for _, d := range res2.Delivered {
		if d.UID <= firstUID[d.AccountID] {
			t.Errorf("second delivery to account %d got UID %d, not above %d", d.AccountID, d.UID, firstUID[d.AccountID])
		}
		ms := fx.list(d.AccountID, d.MailboxID, mailstore.UIDs(d.UID))
		if len(ms) != 1 || !sameSecond(ms[0].InternalDate, date) {
			t.Errorf("second delivery: ListMessages = %+v, want internal date %v", ms, date)
		}
	}
	if len(res2.Delivered) != 2 {
		t.Errorf("second delivery: Delivered = %+v, want 2 entries", res2.Delivered)
	}
	if ms := fx.list(rcpts[2].acct.ID, rcpts[2].mbox.ID, nil); len(ms) != 1 {
		t.Errorf("carol was not a recipient of the second delivery but has %d messages", len(ms))
	}

	// The same octets delivered again (content stored once) survive the
	// expunge of the first copy, for every holder.
	again := fx.deliver(body, mailstore.Recipient{AccountID: rcpts[0].acct.ID})
	fx.expunge(rcpts[0].acct.ID, rcpts[0].mbox.ID, mailstore.UIDs(firstUID[rcpts[0].acct.ID]), false)
	if got := fx.mustRead(rcpts[0].acct.ID, rcpts[0].mbox.ID, again.Delivered[0].UID); !bytes.Equal(got, body) {
		t.Errorf("identical content delivered again is unreadable after the first copy was expunged")
	}
	if got := fx.mustRead(rcpts[1].acct.ID, rcpts[1].mbox.ID, firstUID[rcpts[1].acct.ID]); !bytes.Equal(got, body) {
		t.Errorf("another recipient's copy changed after one recipient expunged theirs")
	}
	fx.checkQuota(rcpts[0].acct.ID, int64(len(body)+len(body2)), rcpts[0].acct.Address+" after re-delivery and expunge")
}

func testDeliverToMailbox(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	fx.createMailbox(a.ID, "Lists/Go", "")
	for _, tc := range []struct{ name, want string }{
		{"Junk", "Junk"}, {"Lists/Go", "Lists/Go"}, {"", "INBOX"}, {"INBOX", "INBOX"},
	} {
		mb := fx.mailbox(a.ID, tc.want)
		before := fx.status(a.ID, mb.ID)
		body := simpleMessage("to "+tc.want, "x")
		r := fx.deliver(body, mailstore.Recipient{AccountID: a.ID, Mailbox: tc.name, Flags: mailstore.Flags{Keywords: []string{"$Label1"}}})
		if len(r.Delivered) != 1 || r.Delivered[0].MailboxID != mb.ID {
			t.Errorf("Deliver to %q: Delivered = %+v, want mailbox %q (%d)", tc.name, r.Delivered, tc.want, mb.ID)
			continue
		}
		after := fx.status(a.ID, mb.ID)
		if after.Messages != before.Messages+1 || after.UIDNext <= r.Delivered[0].UID || after.HighestModSeq <= before.HighestModSeq {
			t.Errorf("Deliver to %q: status before %+v after %+v", tc.name, before, after)
		}
		ms := fx.list(a.ID, mb.ID, mailstore.UIDs(r.Delivered[0].UID))
		if len(ms) != 1 || !sameFlags(ms[0].Flags, mailstore.Flags{Keywords: []string{"$Label1"}}) {
			t.Errorf("Deliver to %q: message = %+v", tc.name, ms)
		}
	}
}

func testAppend(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	before := fx.status(a.ID, inbox.ID)
	date := time.Date(2023, 5, 6, 7, 8, 9, 0, time.FixedZone("UTC+2", 2*3600))
	body := simpleMessage("appended", "text")
	r := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{
		System:   mailstore.FlagSeen | mailstore.FlagFlagged,
		Keywords: []string{"$Forwarded", "$forwarded", "Custom"},
	}, date, body)
	if r.UIDValidity != before.UIDValidity || r.UID < before.UIDNext {
		t.Errorf("AppendResult = %+v; want UIDVALIDITY %d and UID >= %d", r, before.UIDValidity, before.UIDNext)
	}
	ms := fx.list(a.ID, inbox.ID, mailstore.UIDs(r.UID))
	if len(ms) != 1 {
		t.Fatalf("ListMessages after Append = %+v", ms)
	}
	m := ms[0]
	want := mailstore.Flags{System: mailstore.FlagSeen | mailstore.FlagFlagged, Keywords: []string{"$Forwarded", "Custom"}}
	if !sameFlags(m.Flags, want) || !slices.Contains(m.Flags.Keywords, "$Forwarded") {
		t.Errorf("appended flags = %s, want %s (keywords deduplicated case-insensitively, first spelling kept)", flagString(m.Flags), flagString(want))
	}
	if !sameSecond(m.InternalDate, date) {
		t.Errorf("appended internal date = %v, want %v", m.InternalDate, date)
	}
	if m.ModSeq <= before.HighestModSeq || m.Size != int64(len(body)) {
		t.Errorf("appended message = %+v; want modseq > %d, size %d", m, before.HighestModSeq, len(body))
	}
	after := fx.status(a.ID, inbox.ID)
	if after.Messages != 1 || after.Unseen != 0 || after.UIDNext <= r.UID || after.HighestModSeq < m.ModSeq || after.Size != int64(len(body)) {
		t.Errorf("MailboxStatus after Append = %+v", after)
	}
	if got := fx.mustRead(a.ID, inbox.ID, r.UID); !bytes.Equal(got, body) {
		t.Errorf("appended message content differs")
	}

	// A zero date means now; UIDs and modseqs keep growing.
	r2 := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, time.Time{}, simpleMessage("second", "2"))
	m2 := fx.list(a.ID, inbox.ID, mailstore.UIDs(r2.UID))
	if r2.UID <= r.UID || len(m2) != 1 || m2[0].ModSeq <= m.ModSeq || m2[0].InternalDate.IsZero() || m2[0].InternalDate.Year() < 2024 {
		t.Errorf("second Append: %+v, listing %+v; want UID > %d, modseq > %d, internal date set to now", r2, m2, r.UID, m.ModSeq)
	}

	drafts := fx.mailbox(a.ID, "Drafts")
	fx.appendMsg(a.ID, drafts.ID, mailstore.Flags{System: mailstore.FlagDraft | mailstore.FlagDeleted}, fixedDate, simpleMessage("draft", "d"))
	if s := fx.status(a.ID, drafts.ID); s.Messages != 1 || s.Deleted != 1 || s.Unseen != 1 {
		t.Errorf("Drafts status = %+v; want 1 message, 1 deleted, 1 unseen", s)
	}
	if s := fx.status(a.ID, inbox.ID); s.Messages != 2 || s.Unseen != 1 {
		t.Errorf("INBOX status = %+v; want 2 messages, 1 unseen", s)
	}
	fx.checkQuota(a.ID, -1, "after appends")
}

func testListMessages(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	u := fx.appendN(a.ID, inbox.ID, 6)
	if !strictlyAscending(u) {
		t.Fatalf("appended UIDs not ascending: %v", u)
	}
	cases := []struct {
		name string
		set  mailstore.UIDSet
		want []uint32
	}{
		{"nil is all", nil, u},
		{"empty set is none", mailstore.UIDSet{}, nil},
		{"single", mailstore.UIDs(u[3]), []uint32{u[3]}},
		{"two singles", mailstore.UIDs(u[1], u[3]), []uint32{u[1], u[3]}},
		{"range", mailstore.UIDSet{{Start: u[1], Stop: u[3]}}, u[1:4]},
		{"open-ended", mailstore.UIDSet{{Start: u[2], Stop: 0}}, u[2:]},
		{"1:*", mailstore.UIDSet{{Start: 1, Stop: 0}}, u},
		{"beyond the last", mailstore.UIDSet{{Start: u[5] + 1, Stop: 0}}, nil},
		{"overlapping ranges", mailstore.UIDSet{{Start: u[0], Stop: u[2]}, {Start: u[1], Stop: u[3]}}, u[:4]},
		{"ranges out of order", mailstore.UIDSet{{Start: u[4], Stop: u[5]}, {Start: u[0], Stop: u[0]}}, []uint32{u[0], u[4], u[5]}},
		{"max uint32", mailstore.UIDSet{{Start: 4294967295, Stop: 4294967295}}, nil},
	}
	check := func(when string) {
		for _, tc := range cases {
			ms := fx.list(a.ID, inbox.ID, tc.set)
			if got := uidsOf(ms); !equalUIDs(got, tc.want) {
				t.Errorf("%s: ListMessages(%s %v) = %v, want %v", when, tc.name, tc.set, got, tc.want)
			}
			for _, m := range ms {
				if m.ModSeq == 0 || m.Size <= 0 || m.InternalDate.IsZero() {
					t.Errorf("%s: ListMessages(%s): incomplete row %+v", when, tc.name, m)
				}
			}
		}
	}
	check("before expunge")

	// A large set of disjoint ranges (an IMAP client's "1,3,5,..."), as
	// every method taking a set sees it.
	var big mailstore.UIDSet
	for i := uint32(0); i < 20_000; i++ {
		big = append(big, mailstore.UIDRange{Start: u[0] + 2*i, Stop: u[0] + 2*i})
	}
	wantBig := []uint32{u[0], u[2], u[4]}
	if u[1] != u[0]+1 || u[2] != u[0]+2 || u[4] != u[0]+4 {
		wantBig = slices.DeleteFunc(slices.Clone(u), func(v uint32) bool { return !big.Contains(v) })
	}
	if got := uidsOf(fx.list(a.ID, inbox.ID, big)); !equalUIDs(got, wantBig) {
		t.Errorf("ListMessages with 20000 ranges = %v, want %v", got, wantBig)
	}
	got, err := fx.st.Search(fx.ctx, a.ID, inbox.ID, &mailstore.SearchCriteria{UIDs: []mailstore.UIDSet{big}})
	if err != nil || !equalUIDs(got, wantBig) {
		t.Errorf("Search with 20000 UID ranges = %v, %v; want %v", got, err, wantBig)
	}
	r := fx.storeFlags(a.ID, inbox.ID, big, mailstore.FlagsAdd, fl(0, "$Odd"), 0)
	if got := sortedUIDs(uidsOf(r.Updated)); !equalUIDs(got, wantBig) {
		t.Errorf("StoreFlags with 20000 ranges updated %v, want %v", got, wantBig)
	}
	fx.storeFlags(a.ID, inbox.ID, big, mailstore.FlagsRemove, fl(0, "$Odd"), 0)

	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(u[1], u[4]), false)
	gone := func(x []uint32) []uint32 {
		return slices.DeleteFunc(slices.Clone(x), func(v uint32) bool { return v == u[1] || v == u[4] })
	}
	for i := range cases {
		cases[i].want = gone(cases[i].want)
	}
	check("after expunge")
}

func testOpenMessage(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	size := int64(3<<20 + 12345)
	body := genMessage(size, 7)
	uid := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, body).UID

	type rng struct{ off, n int64 }
	ranges := []rng{{0, -1}, {0, 0}, {0, 1}, {1, 10}, {size - 5, 100}, {size, 10}, {size, -1}, {size - 1, -1}, {2_500_000, 600_000}, {100, size}}
	for _, k := range []int64{1, 2, 4, 8, 16, 32} {
		ranges = append(ranges, rng{k*65536 - 1, 2}, rng{k*65536 - 3, 7}, rng{k * 65536, -1})
	}
	for _, k := range []int64{1, 2, 3} {
		ranges = append(ranges, rng{k<<20 - 1, 2}, rng{k<<20 - 100, 1 << 20})
	}
	for _, r := range ranges {
		got, err := fx.read(a.ID, inbox.ID, uid, r.off, r.n)
		if err != nil {
			t.Errorf("OpenMessage(offset %d, length %d): %v", r.off, r.n, err)
			continue
		}
		end := size
		if r.n >= 0 {
			end = min(r.off+r.n, size)
		}
		want := body[min(r.off, size):end]
		if !bytes.Equal(got, want) {
			t.Errorf("OpenMessage(offset %d, length %d): got %d octets, want %d (first difference at %d)",
				r.off, r.n, len(got), len(want), firstDiff(got, want))
		}
	}

	// Tiny reads and two readers interleaved on one handle.
	rc, err := st.OpenMessage(ctx, a.ID, inbox.ID, uid, 0, -1)
	must(t, err, "OpenMessage")
	head := make([]byte, 3000)
	if _, err := io.ReadFull(iotest.OneByteReader(rc), head); err != nil || !bytes.Equal(head, body[:3000]) {
		t.Errorf("one-byte reads: %v, equal=%v", err, bytes.Equal(head, body[:3000]))
	}
	must(t, rc.Close(), "Close")
	r1, err := st.OpenMessage(ctx, a.ID, inbox.ID, uid, 0, -1)
	must(t, err, "OpenMessage r1")
	r2, err := st.OpenMessage(ctx, a.ID, inbox.ID, uid, 1000, -1)
	must(t, err, "OpenMessage r2")
	var b1, b2 bytes.Buffer
	for done1, done2 := false, false; !done1 || !done2; {
		if !done1 {
			n, err := io.CopyN(&b1, r1, 100_000)
			done1 = err != nil || n < 100_000
		}
		if !done2 {
			n, err := io.CopyN(&b2, r2, 70_000)
			done2 = err != nil || n < 70_000
		}
	}
	r1.Close()
	r2.Close()
	if !bytes.Equal(b1.Bytes(), body) || !bytes.Equal(b2.Bytes(), body[1000:]) {
		t.Errorf("interleaved readers: got %d and %d octets, want %d and %d", b1.Len(), b2.Len(), len(body), len(body)-1000)
	}
	// Cancelling the context in the middle of a read ends the stream (with
	// an error or not, but without hanging) and leaves the store usable.
	cctx, cancel := context.WithCancel(ctx)
	rc, err = st.OpenMessage(cctx, a.ID, inbox.ID, uid, 0, -1)
	must(t, err, "OpenMessage with a cancellable context")
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Errorf("first read: %v", err)
	}
	cancel()
	if n, err := io.Copy(io.Discard, rc); err == nil && n != size-1000 {
		t.Errorf("read after cancel returned %d octets without error; want an error or the whole rest (%d)", n, size-1000)
	}
	rc.Close()
	// A reader closed early releases its resources: many more opens work.
	for i := 0; i < 20; i++ {
		rc, err := st.OpenMessage(ctx, a.ID, inbox.ID, uid, 0, -1)
		must(t, err, fmt.Sprintf("OpenMessage #%d after early closes", i))
		if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
			t.Errorf("read after early closes: %v", err)
		}
		rc.Close()
	}

	_, err = st.OpenMessage(ctx, a.ID, inbox.ID, uid+100, 0, -1)
	wantErr(t, err, "OpenMessage of a UID never assigned", mailstore.ErrNoSuchMessage)
	_, err = st.OpenMessage(ctx, a.ID, inbox.ID, uid, -1, 10)
	wantErr(t, err, "OpenMessage with a negative offset", mailstore.ErrInvalidArgument)
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(uid), false)
	_, err = st.OpenMessage(ctx, a.ID, inbox.ID, uid, 0, -1)
	wantErr(t, err, "OpenMessage after expunge", mailstore.ErrNoSuchMessage)
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

const detailMessage = "From: Alice Example <alice@example.org>\r\n" +
	"To: Bob <bob@example.org>, carol@example.org\r\n" +
	"Subject: =?UTF-8?Q?Caf=C3=A9?= menu\r\n" +
	"Date: Tue, 02 Jan 2024 15:04:05 +0100\r\n" +
	"Message-ID: <menu-1@example.org>\r\n" +
	"In-Reply-To: <prev@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=C3=A9 menu\r\n" +
	"second line\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<p>Caf&eacute; menu</p>\r\n" +
	"--b1--\r\n" +
	"epilogue\r\n"

func testFetchDetails(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	other := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("other", "o")).UID
	uid := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{System: mailstore.FlagSeen}, fixedDate, []byte(detailMessage)).UID
	gone := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, simpleMessage("gone", "g")).UID
	fx.expunge(a.ID, inbox.ID, mailstore.UIDs(gone), false)

	ds, err := st.FetchDetails(ctx, a.ID, inbox.ID, mailstore.UIDs(uid, gone))
	must(t, err, "FetchDetails")
	if len(ds) != 1 || ds[0].UID != uid || ds[0].Parsed == nil {
		t.Fatalf("FetchDetails(%d, expunged %d) = %+v; want exactly the one live message with Parsed", uid, gone, ds)
	}
	d := ds[0]
	meta := fx.list(a.ID, inbox.ID, mailstore.UIDs(uid))[0]
	if d.ModSeq != meta.ModSeq || d.Size != meta.Size || !sameFlags(d.Flags, meta.Flags) || !sameSecond(d.InternalDate, meta.InternalDate) {
		t.Errorf("FetchDetails meta %+v differs from ListMessages %+v", d.MessageMeta, meta)
	}
	p := d.Parsed
	msg := detailMessage
	hdrEnd := int64(strings.Index(msg, "\r\n\r\n") + 4)
	if p.Size != int64(len(msg)) || p.HeaderSize != hdrEnd || p.Lines != int64(strings.Count(msg, "\n")) {
		t.Errorf("Parsed Size/HeaderSize/Lines = %d/%d/%d, want %d/%d/%d", p.Size, p.HeaderSize, p.Lines, len(msg), hdrEnd, strings.Count(msg, "\n"))
	}
	if want := time.Date(2024, 1, 2, 15, 4, 5, 0, time.FixedZone("", 3600)); !p.Date.Equal(want) {
		t.Errorf("Parsed.Date = %v, want %v", p.Date, want)
	}
	e := p.Envelope
	if e.Date != "Tue, 02 Jan 2024 15:04:05 +0100" || e.Subject != "=?UTF-8?Q?Caf=C3=A9?= menu" ||
		e.MessageID != "<menu-1@example.org>" || e.InReplyTo != "<prev@example.org>" {
		t.Errorf("Envelope strings = %q / %q / %q / %q", e.Date, e.Subject, e.MessageID, e.InReplyTo)
	}
	if len(e.From) != 1 || e.From[0].Name != "Alice Example" || e.From[0].Mailbox != "alice" || e.From[0].Host != "example.org" {
		t.Errorf("Envelope.From = %+v", e.From)
	}
	if len(e.To) != 2 || e.To[0].Name != "Bob" || e.To[0].Mailbox != "bob" || e.To[1].Mailbox != "carol" || e.To[1].Host != "example.org" || e.To[1].Name != "" {
		t.Errorf("Envelope.To = %+v", e.To)
	}

	s := p.Structure
	if s.Type != "multipart" || s.Subtype != "alternative" || paramValue(s.Params, "boundary") != "b1" || len(s.Parts) != 2 {
		t.Fatalf("Structure = %s/%s params %v with %d parts", s.Type, s.Subtype, s.Params, len(s.Parts))
	}
	if s.HeaderOffset != 0 || s.HeaderSize != hdrEnd || s.BodyOffset != hdrEnd || s.BodySize != int64(len(msg))-hdrEnd {
		t.Errorf("top-level offsets = header %d+%d body %d+%d", s.HeaderOffset, s.HeaderSize, s.BodyOffset, s.BodySize)
	}
	// RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
	for i, want := range []struct{ typ, sub, enc, header, body string }{
		{"text", "plain", "quoted-printable", "Content-Type: text/plain", "Caf=C3=A9 menu\r\nsecond line"},
		{"text", "html", "", "Content-Type: text/html", "<p>Caf&eacute; menu</p>"},
	} {
		c := s.Parts[i]
		ho := int64(strings.Index(msg, want.header))
		bo := int64(strings.Index(msg, want.body))
		if c.Type != want.typ || c.Subtype != want.sub || !strings.EqualFold(c.Encoding, want.enc) || !strings.EqualFold(paramValue(c.Params, "charset"), "utf-8") {
			t.Errorf("part %d = %s/%s encoding %q params %v; want %s/%s %q charset utf-8", i+1, c.Type, c.Subtype, c.Encoding, c.Params, want.typ, want.sub, want.enc)
		}
		if c.HeaderOffset != ho || c.HeaderSize != bo-ho || c.BodyOffset != bo || c.BodySize != int64(len(want.body)) {
			t.Errorf("part %d offsets = header %d+%d body %d+%d; want header %d+%d body %d+%d",
				i+1, c.HeaderOffset, c.HeaderSize, c.BodyOffset, c.BodySize, ho, bo-ho, bo, len(want.body))
		}
		// The offsets address the stored octets.
		if got, err := fx.read(a.ID, inbox.ID, uid, c.BodyOffset, c.BodySize); err != nil || string(got) != want.body {
			t.Errorf("part %d: OpenMessage at its body offsets = %q, %v; want %q", i+1, got, err, want.body)
		}
	}

	all, err := st.FetchDetails(ctx, a.ID, inbox.ID, mailstore.UIDSet{{Start: 1, Stop: 0}})
	must(t, err, "FetchDetails 1:*")
	if got := []uint32{}; len(all) == 2 {
		got = append(got, all[0].UID, all[1].UID)
		if !slices.Equal(got, []uint32{other, uid}) {
			t.Errorf("FetchDetails(1:*) UIDs = %v, want [%d %d]", got, other, uid)
		}
	} else {
		t.Errorf("FetchDetails(1:*) returned %d messages, want 2", len(all))
	}
	for _, d := range all {
		if d.Parsed == nil || d.Parsed.Size != d.Size {
			t.Errorf("FetchDetails(1:*): UID %d Parsed = %+v", d.UID, d.Parsed)
		}
	}
}

func paramValue(ps []msgparse.Param, name string) string {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p.Value
		}
	}
	return ""
}

// crlfNormalize is the reference for MessageMeta.CRLFSize: every line
// ending (CRLF, bare LF, bare CR) as CRLF, and a CRLF after a last line
// that lacks one — what a POP3 server sends (RFC 1939 §3).
func crlfNormalize(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out.WriteString("\r\n")
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out.WriteString("\r\n")
		default:
			out.WriteByte(c)
		}
	}
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\r\n")) {
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// testCRLFSize checks MessageMeta.CRLFSize wherever a MessageMeta comes
// back: after Deliver and Append, through Copy and Move, from
// ListMessages, Changes, StoreFlags and FetchDetails.
func testCRLFSize(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	a := fx.account("alice@example.org")
	inbox := fx.mailbox(a.ID, "INBOX")
	arch := fx.mailbox(a.ID, "Archive")
	var big strings.Builder
	big.WriteString("Subject: large with bare LFs\n\n")
	for big.Len() < 600_000 { // several store chunks in any backend
		big.WriteString("a line of a large message that ends in a bare LF\n")
	}
	cases := []struct {
		name string
		body []byte
	}{
		{"CRLF", simpleMessage("crlf", "one\ntwo")},
		{"bare LF", []byte("Subject: lf\n\nline one\nline two\n")},
		{"bare CR", []byte("Subject: cr\r\rline one\rline two\r")},
		{"mixed without final line ending", []byte("Subject: mixed\r\n\nline one\r\nline two\rlast")},
		{"large bare LF", []byte(big.String())},
	}
	check := func(what string, m mailstore.MessageMeta, body []byte) {
		t.Helper()
		want := int64(len(crlfNormalize(body)))
		if m.CRLFSize != want || m.Size != int64(len(body)) {
			t.Errorf("%s: Size %d, CRLFSize %d; want %d and %d", what, m.Size, m.CRLFSize, len(body), want)
		}
	}
	if n := len(crlfNormalize(cases[0].body)); n != len(cases[0].body) {
		t.Fatalf("test bug: the CRLF message normalises to %d octets, not %d", n, len(cases[0].body))
	}
	bodies := map[uint32][]byte{}
	since := fx.status(a.ID, inbox.ID).HighestModSeq
	for _, tc := range cases {
		d := fx.deliver(tc.body, mailstore.Recipient{AccountID: a.ID})
		ap := fx.appendMsg(a.ID, inbox.ID, mailstore.Flags{}, fixedDate, tc.body)
		for _, uid := range []uint32{d.Delivered[0].UID, ap.UID} {
			bodies[uid] = tc.body
			ms := fx.list(a.ID, inbox.ID, mailstore.UIDs(uid))
			if len(ms) != 1 {
				t.Fatalf("%s: ListMessages(%d) = %+v", tc.name, uid, ms)
			}
			check(fmt.Sprintf("%s: ListMessages(%d)", tc.name, uid), ms[0], tc.body)
		}
	}
	for _, m := range fx.list(a.ID, inbox.ID, nil) {
		check(fmt.Sprintf("ListMessages(all) uid %d", m.UID), m, bodies[m.UID])
	}
	for _, m := range fx.changes(a.ID, inbox.ID, since).Updated {
		check(fmt.Sprintf("Changes uid %d", m.UID), m, bodies[m.UID])
	}
	r := fx.storeFlags(a.ID, inbox.ID, nil, mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	if len(r.Updated) != len(bodies) {
		t.Errorf("StoreFlags updated %d messages, want %d", len(r.Updated), len(bodies))
	}
	for _, m := range r.Updated {
		check(fmt.Sprintf("StoreFlags uid %d", m.UID), m, bodies[m.UID])
	}
	ds, err := st.FetchDetails(ctx, a.ID, inbox.ID, nil)
	must(t, err, "FetchDetails")
	for _, d := range ds {
		check(fmt.Sprintf("FetchDetails uid %d", d.UID), d.MessageMeta, bodies[d.UID])
		if d.Parsed == nil || d.Parsed.CRLFSize != d.CRLFSize {
			t.Errorf("FetchDetails uid %d: parsed CRLFSize differs from the message's %d", d.UID, d.CRLFSize)
		}
	}

	// Copy to Archive, then Move back: the sizes travel with the messages.
	cr, err := st.Copy(ctx, a.ID, inbox.ID, nil, arch.ID)
	must(t, err, "Copy")
	inArch := map[uint32][]byte{}
	for i, src := range cr.SrcUIDs {
		inArch[cr.DstUIDs[i]] = bodies[src]
	}
	for _, m := range fx.list(a.ID, arch.ID, nil) {
		check(fmt.Sprintf("after Copy, Archive uid %d", m.UID), m, inArch[m.UID])
	}
	mr, err := st.Move(ctx, a.ID, arch.ID, nil, inbox.ID)
	must(t, err, "Move")
	moved := map[uint32][]byte{}
	for i, src := range mr.SrcUIDs {
		moved[mr.DstUIDs[i]] = inArch[src]
	}
	for _, m := range fx.list(a.ID, inbox.ID, mailstore.UIDSet{{Start: mr.DstUIDs[0], Stop: 0}}) {
		check(fmt.Sprintf("after Move, INBOX uid %d", m.UID), m, moved[m.UID])
	}
	if len(moved) != len(bodies) {
		t.Errorf("Move moved %d messages, want %d", len(moved), len(bodies))
	}
}
