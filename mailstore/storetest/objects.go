package storetest

import (
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testSaveDates: every message row has a save date (RFC 8514), set when
// the row is made: by Append, Deliver, Copy and Move, whatever the
// internal date; SaveDates reads them by UID set and SEARCH SAVED* keys
// compare them as dates.
func testSaveDates(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	alice := fx.account("alice@example.org")
	in := fx.mailbox(alice.ID, "INBOX")
	other := fx.createMailbox(alice.ID, "Other", "")
	before := time.Now().Add(-time.Minute)
	u1 := fx.appendMsg(alice.ID, in.ID, mailstore.Flags{}, fixedDate, simpleMessage("one", "1")).UID
	u2 := fx.deliver(simpleMessage("two", "2"), mailstore.Recipient{AccountID: alice.ID}).Delivered[0].UID
	ds, err := fx.st.SaveDates(fx.ctx, alice.ID, in.ID, nil)
	must(t, err, "SaveDates")
	if len(ds) != 2 || ds[0].UID != u1 || ds[1].UID != u2 {
		t.Fatalf("SaveDates = %v, want UIDs %d %d", ds, u1, u2)
	}
	after := time.Now().Add(time.Minute)
	for _, d := range ds {
		if d.At.Before(before) || d.At.After(after) {
			t.Errorf("save date %v of UID %d is not now (internal date %v)", d.At, d.UID, fixedDate)
		}
	}
	ds, err = fx.st.SaveDates(fx.ctx, alice.ID, in.ID, mailstore.UIDs(u2, u2+5))
	must(t, err, "SaveDates of a set")
	if len(ds) != 1 || ds[0].UID != u2 {
		t.Errorf("SaveDates(%d, %d) = %v", u2, u2+5, ds)
	}
	ds, err = fx.st.SaveDates(fx.ctx, alice.ID, other.ID, nil)
	if err != nil || len(ds) != 0 {
		t.Errorf("SaveDates of an empty mailbox = %v, %v", ds, err)
	}
	_, err = fx.st.SaveDates(fx.ctx, alice.ID, in.ID+other.ID+1000, nil)
	wantErr(t, err, "SaveDates of a missing mailbox", mailstore.ErrNoSuchMailbox)

	// Copy and Move make rows saved now, later than the source's.
	time.Sleep(20 * time.Millisecond)
	cr, err := fx.st.Copy(fx.ctx, alice.ID, in.ID, mailstore.UIDs(u1), other.ID)
	must(t, err, "Copy")
	mr, err := fx.st.Move(fx.ctx, alice.ID, in.ID, mailstore.UIDs(u2), other.ID)
	must(t, err, "Move")
	src, err := fx.st.SaveDates(fx.ctx, alice.ID, in.ID, nil)
	must(t, err, "SaveDates source")
	dst, err := fx.st.SaveDates(fx.ctx, alice.ID, other.ID, nil)
	must(t, err, "SaveDates destination")
	if len(src) != 1 || len(dst) != 2 || dst[0].UID != cr.DstUIDs[0] || dst[1].UID != mr.DstUIDs[0] {
		t.Fatalf("after copy and move: source %v, destination %v", src, dst)
	}
	if !dst[0].At.After(src[0].At) || !dst[1].At.After(src[0].At) {
		t.Errorf("copy/move kept old save dates: source %v, destination %v", src, dst)
	}

	// SEARCH SAVEDSINCE/SAVEDON/SAVEDBEFORE (dates in the server's zone).
	today := time.Now()
	search := func(c mailstore.SearchCriteria) []uint32 {
		u, err := fx.st.Search(fx.ctx, alice.ID, other.ID, &c)
		must(t, err, "Search")
		return u
	}
	if got := search(mailstore.SearchCriteria{SavedSince: today}); len(got) != 2 {
		t.Errorf("SAVEDSINCE today: %v", got)
	}
	if got := search(mailstore.SearchCriteria{SavedOn: today}); len(got) != 2 {
		t.Errorf("SAVEDON today: %v", got)
	}
	if got := search(mailstore.SearchCriteria{SavedBefore: today}); len(got) != 0 {
		t.Errorf("SAVEDBEFORE today: %v", got)
	}
	if got := search(mailstore.SearchCriteria{SavedSince: today.AddDate(0, 0, 1)}); len(got) != 0 {
		t.Errorf("SAVEDSINCE tomorrow: %v", got)
	}
	if got := search(mailstore.SearchCriteria{SavedBefore: today.AddDate(0, 0, 1), Since: fixedDate.AddDate(0, 0, 1)}); len(got) != 1 {
		t.Errorf("SAVEDBEFORE tomorrow SINCE after the appended one's date: %v", got)
	}
}

// testObjectIDs: a content id identifies a message across copies and
// moves (IMAP EMAILID), and differs between separate deliveries of the
// same small message; SearchCriteria.ContentIDs selects by it.
func testObjectIDs(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	in := fx.mailbox(alice.ID, "INBOX")
	other := fx.createMailbox(alice.ID, "Other", "")
	body := simpleMessage("same", "same octets")
	a1 := fx.appendMsg(alice.ID, in.ID, mailstore.Flags{}, fixedDate, body)
	a2 := fx.appendMsg(alice.ID, in.ID, mailstore.Flags{}, fixedDate, body)
	if a1.ContentID == a2.ContentID {
		t.Errorf("two appends of one small message share content %d", a1.ContentID)
	}
	cr, err := fx.st.Copy(fx.ctx, alice.ID, in.ID, mailstore.UIDs(a1.UID), other.ID)
	must(t, err, "Copy")
	mr, err := fx.st.Move(fx.ctx, alice.ID, in.ID, mailstore.UIDs(a2.UID), other.ID)
	must(t, err, "Move")
	ms := fx.list(alice.ID, other.ID, nil)
	if len(ms) != 2 || ms[0].UID != cr.DstUIDs[0] || ms[0].ContentID != a1.ContentID ||
		ms[1].UID != mr.DstUIDs[0] || ms[1].ContentID != a2.ContentID {
		t.Fatalf("copied/moved messages %+v, want contents %d %d", ms, a1.ContentID, a2.ContentID)
	}
	search := func(acct, mbox int64, ids ...int64) []uint32 {
		u, err := fx.st.Search(fx.ctx, acct, mbox, &mailstore.SearchCriteria{ContentIDs: ids})
		must(t, err, "Search")
		return u
	}
	if got := search(alice.ID, other.ID, a2.ContentID); !equalUIDs(got, mr.DstUIDs) {
		t.Errorf("search content %d: %v, want %v", a2.ContentID, got, mr.DstUIDs)
	}
	if got := search(alice.ID, in.ID, a1.ContentID); !equalUIDs(got, []uint32{a1.UID}) {
		t.Errorf("search content %d in INBOX: %v", a1.ContentID, got)
	}
	if got := search(alice.ID, other.ID, a1.ContentID, a2.ContentID); len(got) != 0 {
		t.Errorf("search two contents at once: %v", got)
	}
	// A multi-recipient delivery shares one content; another account's
	// mailbox never answers for alice's.
	dr := fx.deliver(simpleMessage("both", "b"), mailstore.Recipient{AccountID: alice.ID}, mailstore.Recipient{AccountID: bob.ID})
	if got := search(bob.ID, fx.mailbox(bob.ID, "INBOX").ID, dr.ContentID); len(got) != 1 {
		t.Errorf("bob's copy of a shared delivery: %v", got)
	}
	if got := search(bob.ID, fx.mailbox(bob.ID, "INBOX").ID, a1.ContentID); len(got) != 0 {
		t.Errorf("bob finds alice's content: %v", got)
	}
}

// testPreview: the parse result stored at delivery carries the preview
// text (RFC 8970), read back through MessageContents and FetchDetails.
func testPreview(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	alice := fx.account("alice@example.org")
	in := fx.mailbox(alice.ID, "INBOX")
	a := fx.appendMsg(alice.ID, in.ID, mailstore.Flags{}, fixedDate, simpleMessage("p", "Hello\r\n\r\n  preview\r\n"))
	cs, err := fx.st.MessageContents(fx.ctx, alice.ID, in.ID, []mailstore.ContentRef{{UID: a.UID}})
	must(t, err, "MessageContents")
	if len(cs) != 1 || cs[0].Parsed == nil || cs[0].Parsed.Preview == nil || *cs[0].Parsed.Preview != "Hello preview" {
		t.Fatalf("MessageContents preview: %+v", cs)
	}
	ds, err := fx.st.FetchDetails(fx.ctx, alice.ID, in.ID, nil)
	must(t, err, "FetchDetails")
	if len(ds) != 1 || ds[0].Parsed.Preview == nil || *ds[0].Parsed.Preview != "Hello preview" {
		t.Fatalf("FetchDetails preview: %+v", ds)
	}
}
