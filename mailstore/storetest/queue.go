package storetest

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// The outbound queue (mailstore.Queue and Delivery.Remote): queued in the
// delivery's transaction, body stored once, claims and leases, attempts.

func remotes(addrs ...string) []mailstore.RemoteRecipient {
	rs := make([]mailstore.RemoteRecipient, len(addrs))
	for i, a := range addrs {
		rs[i] = mailstore.RemoteRecipient{Address: a}
	}
	return rs
}

// enqueue delivers body to the local recipients and queues it for the
// remote addresses.
func (fx *fixture) enqueue(body []byte, local []mailstore.Recipient, remote ...string) mailstore.DeliveryResult {
	fx.t.Helper()
	r, err := fx.st.Deliver(fx.ctx, &mailstore.Delivery{
		MailFrom: "sender@example.org", Recipients: local, Body: bytes.NewReader(body), Remote: remotes(remote...),
	})
	must(fx.t, err, "Deliver with remote recipients")
	if r.QueueID == 0 {
		fx.t.Fatalf("Deliver with remote recipients: QueueID 0")
	}
	return r
}

func (fx *fixture) queueItem(id int64) mailstore.QueueItem {
	fx.t.Helper()
	it, err := fx.st.GetQueueItem(fx.ctx, id)
	must(fx.t, err, fmt.Sprintf("GetQueueItem %d", id))
	return it
}

func (fx *fixture) claimQueue(holder string, now time.Time, lease time.Duration, n int) []mailstore.QueueItem {
	fx.t.Helper()
	items, err := fx.st.ClaimQueue(fx.ctx, holder, now, lease, n)
	must(fx.t, err, "ClaimQueue "+holder)
	return items
}

func (fx *fixture) finish(holder string, a mailstore.QueueAttempt) {
	fx.t.Helper()
	must(fx.t, fx.st.FinishAttempt(fx.ctx, holder, a), fmt.Sprintf("FinishAttempt %d by %s", a.ItemID, holder))
}

func (fx *fixture) readQueued(id int64) ([]byte, error) {
	rc, err := fx.st.OpenQueued(fx.ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// Small reads: the reader must stitch chunks together itself.
	var out bytes.Buffer
	buf := make([]byte, 1000)
	for {
		n, err := rc.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func itemIDs(items []mailstore.QueueItem) []int64 {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	return ids
}

// near compares instants to the millisecond (stores may keep microseconds).
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d < time.Millisecond && d > -time.Millisecond
}

// testQueueDeliver: local and remote recipients of one delivery; the queue
// item's envelope and recipients as documented; quota counts local copies
// only; the queued body reads back.
func testQueueDeliver(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	body := simpleMessage("to the world", "hello")
	params := map[string]string{"ret": "HDRS", "envid": "queued-1"}
	before := time.Now()
	res, err := st.Deliver(ctx, &mailstore.Delivery{
		MailFrom:   "alice@example.org",
		Recipients: []mailstore.Recipient{{AccountID: bob.ID}},
		Body:       bytes.NewReader(body),
		Params:     params,
		Remote: []mailstore.RemoteRecipient{
			{Address: "Dave@Remote.EXAMPLE", ORCPT: "rfc822;Dave@Remote.EXAMPLE", Notify: "FAILURE,DELAY"},
			{Address: "carol@Bücher.example"},
			{Address: "Dave@remote.example", Notify: "NEVER"}, // the same recipient: queued once
			{Address: `"dan smith"@remote.example`},
			{Address: `"erin"@remote.example`},
		},
		SenderAccount: alice.ID,
	})
	must(t, err, "Deliver to local and remote recipients")
	if res.QueueID == 0 || len(res.Delivered) != 1 || res.Delivered[0].AccountID != bob.ID || res.Size != int64(len(body)) {
		t.Fatalf("Deliver = %+v, want one local copy for bob, a queue id and size %d", res, len(body))
	}
	it := fx.queueItem(res.QueueID)
	if it.ID != res.QueueID || it.MailFrom != "alice@example.org" || it.SenderAccount != alice.ID || it.Size != int64(len(body)) ||
		!maps.Equal(it.Params, params) || it.LeaseHolder != "" || !it.LeaseUntil.IsZero() || !it.WarnedAt.IsZero() {
		t.Errorf("GetQueueItem = %+v", it)
	}
	if it.CreatedAt.Before(before.Add(-time.Minute)) || it.CreatedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("CreatedAt = %v, want about %v", it.CreatedAt, before)
	}
	if it.NextAttempt.After(time.Now().Add(time.Minute)) {
		t.Errorf("NextAttempt = %v, want due now", it.NextAttempt)
	}
	want := []mailstore.QueueRecipient{
		{Address: "Dave@remote.example", Domain: "remote.example", ORCPT: "rfc822;Dave@Remote.EXAMPLE", Notify: "FAILURE,DELAY"},
		{Address: "carol@xn--bcher-kva.example", Domain: "xn--bcher-kva.example"},
		{Address: `"dan smith"@remote.example`, Domain: "remote.example"},
		{Address: "erin@remote.example", Domain: "remote.example"},
	}
	if len(it.Recipients) != len(want) {
		t.Fatalf("queued recipients = %+v, want %d", it.Recipients, len(want))
	}
	for i, r := range it.Recipients {
		w := want[i]
		w.ID, w.State = r.ID, mailstore.RcptPending
		if r != w || r.ID == 0 || (i > 0 && r.ID <= it.Recipients[i-1].ID) {
			t.Errorf("recipient %d = %+v, want %+v (IDs ascending in the given order)", i, r, w)
		}
	}
	if got, err := fx.readQueued(res.QueueID); err != nil || !bytes.Equal(got, body) {
		t.Errorf("OpenQueued = %d octets, %v; want the %d delivered", len(got), err, len(body))
	}
	if got := fx.mustRead(bob.ID, res.Delivered[0].MailboxID, res.Delivered[0].UID); !bytes.Equal(got, body) {
		t.Errorf("local copy differs from the delivered body")
	}
	fx.checkQuota(bob.ID, int64(len(body)), "after a delivery to bob and remote recipients")
	fx.checkQuota(alice.ID, 0, "the sender of queued mail")
	if items, err := st.ListQueue(ctx, 0); err != nil || !slices.Equal(itemIDs(items), []int64{res.QueueID}) {
		t.Errorf("ListQueue = %v, %v", itemIDs(items), err)
	}
	now := time.Now()
	if s, err := st.QueueStats(ctx, now.Add(time.Hour)); err != nil || s.Items != 1 || s.Recipients != 4 ||
		s.OldestAge < 59*time.Minute || s.OldestAge > 61*time.Minute {
		t.Errorf("QueueStats an hour later = %+v, %v; want 1 item, 4 recipients, about an hour old", s, err)
	}

	// Quota does not apply to remote recipients: bob, over quota, still
	// sends to them.
	must(t, st.SetQuota(ctx, bob.ID, 1), "SetQuota")
	res2, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "bob@example.org", Body: bytes.NewReader(simpleMessage("out", "x")),
		Remote: remotes("x@remote.example"), SenderAccount: bob.ID})
	must(t, err, "remote-only Deliver by an account over quota")
	if len(res2.Delivered) != 0 || res2.QueueID == 0 || res2.QueueID == res.QueueID {
		t.Errorf("remote-only Deliver = %+v", res2)
	}
	fx.checkQuota(bob.ID, int64(len(body)), "after a remote-only delivery")

	// Items queued by Deliver are due at any now (whatever the claimer's
	// clock), oldest first.
	items := fx.claimQueue("early-node", now.Add(-24*time.Hour), 48*time.Hour, 10)
	if !slices.Equal(itemIDs(items), []int64{res.QueueID, res2.QueueID}) {
		t.Errorf("claim by a node a day behind = %v, want both items", itemIDs(items))
	}

	// Invalid remote addresses fail the whole delivery.
	snap := fx.snapshot()
	for _, bad := range []string{"", "nobody", "@remote.example", "a@", "a@[192.0.2.1]", "a@-bad.example", "a@remote..example",
		"a\x00b@remote.example", "a\r\nb@remote.example", strings.Repeat("x", 65) + "@remote.example", "a@" + strings.Repeat("b.", 130) + "example",
		"\xff@remote.example"} {
		_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}},
			Body: bytes.NewReader(simpleMessage("bad", "b")), Remote: remotes("ok@remote.example", bad)})
		if !wantErr(t, err, fmt.Sprintf("Deliver to remote %q", bad), mailstore.ErrInvalidAddress) {
			continue
		}
	}
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("refused deliveries changed the store:%s", d)
	}
}

// testQueueAtomic: the local copies and the queue item are committed
// together or not at all.
func testQueueAtomic(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	bob := fx.account("bob@example.org")
	fx.enqueue(simpleMessage("existing", "e"), []mailstore.Recipient{{AccountID: alice.ID}}, "old@remote.example")
	must(t, st.SetQuota(ctx, bob.ID, 10), "SetQuota")
	snap := fx.snapshot()
	for _, c := range []struct{ size, cut int }{{1000, 500}, {1000, 1000}, {600_000, 300_000}, {600_000, 600_000}} {
		body := genMessage(int64(c.size), uint64(c.size))[:c.cut]
		for _, local := range [][]mailstore.Recipient{nil, {{AccountID: alice.ID}}, {{AccountID: alice.ID}, {AccountID: alice.ID, Mailbox: "Archive"}}} {
			_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: local, Remote: remotes("x@remote.example", "y@other.example"),
				Body: &cutReader{data: body, err: io.ErrUnexpectedEOF}})
			checkTruncated(t, fmt.Sprintf("Deliver cut after %d of %d octets to %d local and 2 remote recipients", c.cut, c.size, len(local)),
				err, io.ErrUnexpectedEOF)
		}
	}
	// One local recipient over quota: nothing is queued either.
	for _, size := range []int64{2000, 600_000} {
		_, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: alice.ID}, {AccountID: bob.ID}},
			Remote: remotes("x@remote.example"), Body: newGenReader(size, 3)})
		wantErr(t, err, "Deliver with a local recipient over quota", mailstore.ErrOverQuota)
	}
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("failed deliveries changed the store:%s", d)
	}
}

// testQueueBodyStream: a remote-only delivery of a message of several
// chunks streams back whole.
func testQueueBodyStream(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	bodies := map[int64][]byte{}
	for _, size := range []int64{0, 1, 10_000, 64 << 10, 64<<10 + 1, 256 << 10, 256<<10 + 1, 700_000} {
		var body []byte
		if size > 0 {
			body = genMessage(max(size, 400), uint64(size))[:size]
		}
		res, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "", Body: bytes.NewReader(body), Remote: remotes("big@remote.example")})
		must(t, err, fmt.Sprintf("remote-only Deliver of %d octets", size))
		bodies[res.QueueID] = body
		if res.Size != size || len(res.Delivered) != 0 || res.QueueID == 0 {
			t.Errorf("Deliver of %d octets = %+v", size, res)
			continue
		}
		got, err := fx.readQueued(res.QueueID)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("OpenQueued of %d octets = %d octets, %v", size, len(got), err)
		}
		if it := fx.queueItem(res.QueueID); it.Size != size || it.MailFrom != "" {
			t.Errorf("queue item of %d octets: Size %d, MailFrom %q", size, it.Size, it.MailFrom)
		}
	}
	// A claim may bring an item's body along: then all of it.
	for _, it := range fx.claimQueue("w", time.Now(), time.Hour, 100) {
		if it.Body != nil && !bytes.Equal(it.Body, bodies[it.ID]) {
			t.Errorf("claimed item of %d octets came with a body of %d", it.Size, len(it.Body))
		}
	}
	_, err := st.OpenQueued(ctx, 1<<40)
	wantErr(t, err, "OpenQueued of an unknown item", mailstore.ErrNoSuchQueueItem)
	_, err = st.GetQueueItem(ctx, 1<<40)
	wantErr(t, err, "GetQueueItem of an unknown item", mailstore.ErrNoSuchQueueItem)
}
