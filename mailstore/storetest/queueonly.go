package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// A message queued for remote recipients only may be stored without the
// parse results and search data a mailbox copy needs (the PostgreSQL
// store does so). Whatever a backend does there, the same octets
// delivered to a mailbox before, with or after such a queued copy must
// read, parse and search in full, and the two must live and go
// independently.

// finishAll records delivery to every pending recipient of the items, so
// they are done and removed.
func (fx *fixture) finishAll(holder string, now time.Time, items []mailstore.QueueItem) {
	fx.t.Helper()
	for _, it := range items {
		var rs []mailstore.QueueRecipientResult
		for _, r := range it.Recipients {
			rs = append(rs, mailstore.QueueRecipientResult{RecipientID: r.ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 ok"})
		}
		fx.finish(holder, mailstore.QueueAttempt{ItemID: it.ID, At: now, Results: rs})
	}
}

// checkFull checks a mailbox copy of body: it reads back, its parse
// results name the subject, and SEARCH finds it by subject, by a header
// and by a word of its body.
func (fx *fixture) checkFull(what string, acct, mbox int64, uid uint32, body []byte, subject, word string) {
	t := fx.t
	t.Helper()
	if got, err := fx.read(acct, mbox, uid, 0, -1); err != nil || !bytes.Equal(got, body) {
		t.Errorf("%s: read %d octets, %v; want the %d delivered", what, len(got), err, len(body))
	}
	ds, err := fx.st.FetchDetails(fx.ctx, acct, mbox, mailstore.UIDs(uid))
	switch {
	case err != nil || len(ds) != 1:
		t.Errorf("%s: FetchDetails = %d details, %v", what, len(ds), err)
	case ds[0].Parsed == nil || ds[0].Parsed.Envelope.Subject != subject || ds[0].Parsed.HeaderSize == 0 || ds[0].Parsed.Structure.Subtype != "plain":
		t.Errorf("%s: parse results %+v, want the envelope with subject %q, a header size and a text/plain structure", what, ds[0].Parsed, subject)
	}
	for _, c := range []struct {
		name string
		c    mailstore.SearchCriteria
	}{
		{"SUBJECT", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "Subject", Value: subject}}}},
		{"FROM", mailstore.SearchCriteria{Header: []mailstore.HeaderCriterion{{Key: "From", Value: "sender@remote.example"}}}},
		{"BODY", mailstore.SearchCriteria{Body: []string{word}}},
		{"TEXT", mailstore.SearchCriteria{Text: []string{strings.ToUpper(word)}}},
	} {
		got, err := fx.st.Search(fx.ctx, acct, mbox, &c.c)
		if err != nil || !slices.Contains(got, uid) {
			t.Errorf("%s: SEARCH %s = %v, %v; want UID %d among them", what, c.name, got, err, uid)
		}
	}
}

// testQueueOnlyContent: remote-only, mixed and local deliveries of the same
// octets, small and of several chunks, in every order.
func testQueueOnlyContent(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	inbox := fx.mailbox(alice.ID, "INBOX")
	now := time.Now().Truncate(time.Second)
	for _, size := range []struct {
		name string
		pad  int
	}{{"small", 0}, {"several chunks", 700_000}} {
		msg := func(subject, word string) []byte {
			var pad strings.Builder
			for pad.Len() < size.pad {
				pad.WriteString("filler text of a large message\n")
			}
			return simpleMessage(subject, pad.String()+"the last word is "+word+"\n")
		}

		// Remote only first, then the same octets to a mailbox.
		b1 := msg("queued first "+size.name, "zanzibar")
		q1, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "alice@example.org", Body: bytes.NewReader(b1),
			Remote: remotes("x@remote.example"), SenderAccount: alice.ID})
		must(t, err, "remote-only Deliver")
		if got, err := fx.readQueued(q1.QueueID); err != nil || !bytes.Equal(got, b1) {
			t.Errorf("%s: queued body reads %d octets, %v; want %d", size.name, len(got), err, len(b1))
		}
		l1 := fx.deliver(b1, mailstore.Recipient{AccountID: alice.ID})
		fx.checkFull(size.name+", delivered after a remote-only copy", alice.ID, inbox.ID, l1.Delivered[0].UID, b1, "queued first "+size.name, "zanzibar")
		// The queued copy goes; the mailbox copy stays whole.
		fx.finishAll("w", now, fx.claimQueue("w", now, time.Hour, 10))
		fx.checkFull(size.name+", after its remote-only twin was sent", alice.ID, inbox.ID, l1.Delivered[0].UID, b1, "queued first "+size.name, "zanzibar")
		if _, err := st.OpenQueued(ctx, q1.QueueID); err == nil {
			t.Errorf("%s: the sent item is still queued", size.name)
		}

		// One delivery to a mailbox and to a remote recipient: the local
		// copy parses and searches; the queued one reads back; either
		// may go first.
		b2 := msg("mixed "+size.name, "kilimanjaro")
		m2, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "alice@example.org", Body: bytes.NewReader(b2),
			Recipients: []mailstore.Recipient{{AccountID: alice.ID}}, Remote: remotes("y@remote.example"), SenderAccount: alice.ID})
		must(t, err, "mixed Deliver")
		fx.checkFull(size.name+", mixed delivery", alice.ID, inbox.ID, m2.Delivered[0].UID, b2, "mixed "+size.name, "kilimanjaro")
		fx.expunge(alice.ID, inbox.ID, mailstore.UIDs(m2.Delivered[0].UID), false)
		if got, err := fx.readQueued(m2.QueueID); err != nil || !bytes.Equal(got, b2) {
			t.Errorf("%s: queued body of a mixed delivery after its local copy was expunged: %d octets, %v; want %d", size.name, len(got), err, len(b2))
		}
		fx.finishAll("w", now, fx.claimQueue("w", now, time.Hour, 10))

		// A mailbox copy first, then the same octets remote only, then
		// the mailbox copy goes before the queued one.
		b3 := msg("local first "+size.name, "timbuktu")
		l3 := fx.deliver(b3, mailstore.Recipient{AccountID: alice.ID})
		q3, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "alice@example.org", Body: bytes.NewReader(b3),
			Remote: remotes("z@remote.example"), SenderAccount: alice.ID})
		must(t, err, "remote-only Deliver of a stored message")
		fx.checkFull(size.name+", with a remote-only twin queued", alice.ID, inbox.ID, l3.Delivered[0].UID, b3, "local first "+size.name, "timbuktu")
		fx.expunge(alice.ID, inbox.ID, mailstore.UIDs(l3.Delivered[0].UID), false)
		if got, err := fx.readQueued(q3.QueueID); err != nil || !bytes.Equal(got, b3) {
			t.Errorf("%s: queued body after its mailbox twin was expunged: %d octets, %v; want %d", size.name, len(got), err, len(b3))
		}
		// And delivered to the mailbox again while the queued copy waits.
		l4 := fx.deliver(b3, mailstore.Recipient{AccountID: alice.ID})
		fx.checkFull(size.name+", delivered again while queued", alice.ID, inbox.ID, l4.Delivered[0].UID, b3, "local first "+size.name, "timbuktu")
		fx.finishAll("w", now, fx.claimQueue("w", now, time.Hour, 10))
		fx.checkFull(size.name+", after the queued twin was sent", alice.ID, inbox.ID, l4.Delivered[0].UID, b3, "local first "+size.name, "timbuktu")
	}
	if items, err := st.ListQueue(ctx, 0); err != nil || len(items) != 0 {
		t.Errorf("queue at the end = %v, %v; want empty", itemIDs(items), err)
	}

	// A remote-only delivery keeps its envelope like any other: the
	// parameters, the sender, the recipients in order with their DSN
	// parameters.
	params := map[string]string{"ret": "FULL", "envid": "q-only"}
	res, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "alice@example.org", Body: bytes.NewReader(simpleMessage("envelope", "e")),
		Params: params, SenderAccount: alice.ID, Remote: []mailstore.RemoteRecipient{
			{Address: "z@remote.example", Notify: "FAILURE", ORCPT: "rfc822;z@remote.example"}, {Address: "a@other.example"}}})
	must(t, err, "remote-only Deliver with parameters")
	it := fx.queueItem(res.QueueID)
	if it.MailFrom != "alice@example.org" || it.SenderAccount != alice.ID || len(it.Params) != 2 || it.Params["envid"] != "q-only" ||
		len(it.Recipients) != 2 || it.Recipients[0].Address != "z@remote.example" || it.Recipients[0].Notify != "FAILURE" ||
		it.Recipients[0].ORCPT != "rfc822;z@remote.example" || it.Recipients[1].Address != "a@other.example" ||
		it.Recipients[1].Domain != "other.example" || it.Recipients[0].ID >= it.Recipients[1].ID {
		t.Errorf("remote-only queue item = %+v", it)
	}
	fx.checkQuota(alice.ID, fx.sumSizes(alice.ID), fmt.Sprintf("after %s", t.Name()))
}

// testQueueFinishMany: FinishAttempts records each attempt as
// FinishAttempt would, whatever the others: done, still pending, a lost
// lease, refused results.
func testQueueFinishMany(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	t0 := time.Now().Truncate(time.Second)
	var ids []int64
	for i := range 5 {
		ids = append(ids, fx.enqueue(simpleMessage(fmt.Sprint("many ", i), "m"), nil, "a@remote.example", "b@remote.example").QueueID)
	}
	// The last item is claimed by another holder.
	items := fx.claimQueue("w", t0, time.Hour, 4)
	other := fx.claimQueue("other", t0, time.Hour, 10)
	if len(items) != 4 || len(other) != 1 || other[0].ID != ids[4] {
		t.Fatalf("claims: %v and %v", itemIDs(items), itemIDs(other))
	}
	byID := map[int64]mailstore.QueueItem{}
	for _, it := range append(items, other...) {
		byID[it.ID] = it
	}
	res := func(id int64, states ...mailstore.QueueRecipientState) []mailstore.QueueRecipientResult {
		var out []mailstore.QueueRecipientResult
		for i, s := range states {
			out = append(out, mailstore.QueueRecipientResult{RecipientID: byID[id].Recipients[i].ID, State: s, Code: "2.0.0", Reply: "250 ok"})
		}
		return out
	}
	d, p := mailstore.RcptDelivered, mailstore.RcptPending
	bad := res(ids[3], d)
	bad[0].RecipientID = byID[ids[0]].Recipients[0].ID // another item's recipient
	errs := st.FinishAttempts(ctx, "w", []mailstore.QueueAttempt{
		{ItemID: ids[3], At: t0, Results: bad},
		{ItemID: ids[0], At: t0, Results: res(ids[0], d, d)},
		{ItemID: ids[4], At: t0, Results: res(ids[4], d, d)},
		{ItemID: ids[1], At: t0, Next: t0.Add(time.Hour), Results: res(ids[1], d, p)},
		{ItemID: ids[2], At: t0, Results: []mailstore.QueueRecipientResult{{RecipientID: byID[ids[2]].Recipients[0].ID, State: "bounced"}}},
	})
	if len(errs) != 5 || !errors.Is(errs[0], mailstore.ErrInvalidArgument) || errs[1] != nil || !errors.Is(errs[2], mailstore.ErrLeaseLost) ||
		errs[3] != nil || !errors.Is(errs[4], mailstore.ErrInvalidArgument) {
		t.Fatalf("FinishAttempts = %v", errs)
	}
	if _, err := st.GetQueueItem(ctx, ids[0]); !errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		t.Errorf("the delivered item: %v", err)
	}
	if it := fx.queueItem(ids[1]); len(it.Recipients) != 2 || it.Recipients[0].State != d || it.Recipients[1].State != p ||
		!near(it.NextAttempt, t0.Add(time.Hour)) || it.LeaseHolder != "" {
		t.Errorf("the item left pending: %+v", it)
	}
	for _, id := range []int64{ids[2], ids[3], ids[4]} {
		if it := fx.queueItem(id); it.Recipients[0].State != p || it.Recipients[0].Attempts != 0 || it.LeaseHolder == "" {
			t.Errorf("item %d changed by a refused attempt: %+v", id, it)
		}
	}

	// All valid: all recorded.
	errs = st.FinishAttempts(ctx, "w", []mailstore.QueueAttempt{
		{ItemID: ids[3], At: t0, Results: res(ids[3], d, d)},
		{ItemID: ids[2], At: t0, Results: res(ids[2], mailstore.RcptFailed, d)},
	})
	if len(errs) != 2 || errs[0] != nil || errs[1] != nil {
		t.Fatalf("FinishAttempts of two valid attempts = %v", errs)
	}
	for _, id := range ids[2:4] {
		if _, err := st.GetQueueItem(ctx, id); !errors.Is(err, mailstore.ErrNoSuchQueueItem) {
			t.Errorf("item %d after its last recipients: %v", id, err)
		}
	}
	if errs := st.FinishAttempts(ctx, "w", nil); len(errs) != 0 {
		t.Errorf("FinishAttempts of nothing = %v", errs)
	}
}
