package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// testQueueClaimExclusive: claimers on two handles, several each, claim at
// once until nothing is left; every item is claimed by exactly one of them.
func testQueueClaimExclusive(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	const items = 40
	want := make([]int64, items)
	for i := range want {
		want[i] = a.enqueue(simpleMessage(fmt.Sprintf("item %d", i), "x"), nil, "one@remote.example", "two@other.example").QueueID
	}
	now := time.Now()
	var mu sync.Mutex
	claimedBy := map[int64][]string{}
	var wg sync.WaitGroup
	for w := range 6 {
		fx := []*fixture{a, b}[w%2]
		holder := fmt.Sprintf("node-%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := fx.st.ClaimQueue(fx.ctx, holder, now, time.Hour, 3)
				if err != nil {
					t.Errorf("ClaimQueue by %s: %v", holder, err)
					return
				}
				// Nothing claimable: what is left is held by concurrent
				// claims, which return it.
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, it := range got {
					claimedBy[it.ID] = append(claimedBy[it.ID], holder)
					if it.LeaseHolder != holder || len(it.Recipients) != 2 {
						t.Errorf("claimed item %d: holder %q, %d recipients; want %q and 2", it.ID, it.LeaseHolder, len(it.Recipients), holder)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, id := range want {
		if hs := claimedBy[id]; len(hs) != 1 {
			t.Errorf("item %d claimed by %v, want exactly one holder", id, hs)
		} else if it := b.queueItem(id); it.LeaseHolder != hs[0] {
			t.Errorf("item %d: lease holder %q, but claimed by %s", id, it.LeaseHolder, hs[0])
		}
	}
	if len(claimedBy) != items {
		t.Errorf("%d items claimed, want %d", len(claimedBy), items)
	}
	if got := b.claimQueue("late", now, time.Hour, 100); len(got) != 0 {
		t.Errorf("claim while every item is leased = %v", itemIDs(got))
	}
}

// testQueueLeaseExpiry: a node that stops renewing loses its items when
// the lease ends; another node takes them over, and the first one's late
// results are refused without effect.
func testQueueLeaseExpiry(t *testing.T, f Factory) {
	a, b := pairOrSingle(t, f)
	id := a.enqueue(simpleMessage("lease", "x"), nil, "one@remote.example", "two@remote.example").QueueID
	t0 := time.Now().Truncate(time.Second)
	got := a.claimQueue("node-a", t0, time.Minute, 10)
	if len(got) != 1 || got[0].ID != id || got[0].LeaseHolder != "node-a" || !near(got[0].LeaseUntil, t0.Add(time.Minute)) ||
		!near(got[0].NextAttempt, t0.Add(time.Minute)) {
		t.Fatalf("claim = %+v, want item %d leased to node-a until %v (its next attempt)", got, id, t0.Add(time.Minute))
	}
	rcpts := got[0].Recipients
	if got := b.claimQueue("node-b", t0.Add(30*time.Second), time.Minute, 10); len(got) != 0 {
		t.Errorf("claim of a live lease = %v", itemIDs(got))
	}
	if held, err := a.st.RenewQueueLease(a.ctx, "node-a", []int64{id, 1 << 40}, t0.Add(30*time.Second), time.Minute); err != nil || !slices.Equal(held, []int64{id}) {
		t.Errorf("RenewQueueLease by the holder = %v, %v; want [%d]", held, err, id)
	}
	if got := b.claimQueue("node-b", t0.Add(61*time.Second), time.Minute, 10); len(got) != 0 {
		t.Errorf("claim of a renewed lease = %v", itemIDs(got))
	}
	// node-a dies: at the end of its lease node-b takes over.
	got = b.claimQueue("node-b", t0.Add(90*time.Second), time.Minute, 10)
	if len(got) != 1 || got[0].ID != id || got[0].LeaseHolder != "node-b" {
		t.Fatalf("claim after the lease ended = %+v, want item %d for node-b", got, id)
	}
	if held, err := a.st.RenewQueueLease(a.ctx, "node-a", []int64{id}, t0.Add(91*time.Second), time.Minute); err != nil || len(held) != 0 {
		t.Errorf("RenewQueueLease by the former holder = %v, %v; want none", held, err)
	}
	err := a.st.FinishAttempt(a.ctx, "node-a", mailstore.QueueAttempt{ItemID: id, At: t0.Add(95 * time.Second), Results: []mailstore.QueueRecipientResult{
		{RecipientID: rcpts[0].ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 ok"},
		{RecipientID: rcpts[1].ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 ok"}}})
	if wantErr(t, err, "FinishAttempt by the former holder", mailstore.ErrLeaseLost) && errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		t.Errorf("FinishAttempt by the former holder: %v also matches ErrNoSuchQueueItem, but the item exists", err)
	}
	it := b.queueItem(id)
	if it.LeaseHolder != "node-b" || it.Recipients[0].Attempts != 0 || it.Recipients[1].State != mailstore.RcptPending {
		t.Errorf("after a refused FinishAttempt: %+v", it)
	}
	b.finish("node-b", mailstore.QueueAttempt{ItemID: id, At: t0.Add(100 * time.Second), Next: t0.Add(10 * time.Minute), Results: []mailstore.QueueRecipientResult{
		{RecipientID: rcpts[0].ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 ok"}}})
	it = a.queueItem(id)
	if it.LeaseHolder != "" || !it.LeaseUntil.IsZero() || it.Recipients[0].State != mailstore.RcptDelivered || it.Recipients[1].State != mailstore.RcptPending {
		t.Errorf("after node-b's attempt: %+v", it)
	}
	// The lease was released: node-a may claim it when it is due.
	if got := a.claimQueue("node-a", t0.Add(11*time.Minute), time.Minute, 10); len(got) != 1 || len(got[0].Recipients) != 1 || got[0].Recipients[0].ID != rcpts[1].ID {
		t.Errorf("claim when due again = %+v, want the item with its pending recipient", got)
	}
}

// testQueueFinish: one attempt delivers one recipient, defers one, fails
// one; the item waits for its next attempt with the pending one only; the
// last result removes the item and its body, but not the body's local copy.
func testQueueFinish(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	alice := fx.account("alice@example.org")
	body := simpleMessage("shared with a local copy", "hello")
	res := fx.enqueue(body, []mailstore.Recipient{{AccountID: alice.ID}}, "r1@remote.example", "r2@remote.example", "r3@other.example")
	t0 := time.Now().Truncate(time.Second)
	items := fx.claimQueue("w", t0, time.Hour, 10)
	if len(items) != 1 || len(items[0].Recipients) != 3 {
		t.Fatalf("claim = %+v, want one item with 3 recipients", items)
	}
	r := items[0].Recipients
	fx.finish("w", mailstore.QueueAttempt{ItemID: res.QueueID, At: t0, Next: t0.Add(10 * time.Minute), Warned: t0,
		Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[0].ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 2.0.0 queued as 1234", RemoteMTA: "mx1.remote.example"},
			{RecipientID: r[1].ID, State: mailstore.RcptPending, Code: "4.4.1", Reply: "451 4.4.1 try later", RemoteMTA: "mx1.remote.example"},
			{RecipientID: r[2].ID, State: mailstore.RcptFailed, Code: "5.1.1", Reply: "550 5.1.1 no such user\r\n550 5.1.1 really", RemoteMTA: "mx.other.example"},
		}})
	it := fx.queueItem(res.QueueID)
	wantR := []struct {
		state             mailstore.QueueRecipientState
		code, reply, host string
	}{
		{mailstore.RcptDelivered, "2.0.0", "250 2.0.0 queued as 1234", "mx1.remote.example"},
		{mailstore.RcptPending, "4.4.1", "451 4.4.1 try later", "mx1.remote.example"},
		{mailstore.RcptFailed, "5.1.1", "550 5.1.1 no such user\r\n550 5.1.1 really", "mx.other.example"},
	}
	for i, w := range wantR {
		g := it.Recipients[i]
		if g.State != w.state || g.LastCode != w.code || g.LastReply != w.reply || g.RemoteMTA != w.host || g.Attempts != 1 || !near(g.LastAttempt, t0) {
			t.Errorf("recipient %d after the attempt = %+v, want %v %s %q from %s, 1 attempt at %v", i, g, w.state, w.code, w.reply, w.host, t0)
		}
	}
	if it.LeaseHolder != "" || !near(it.NextAttempt, t0.Add(10*time.Minute)) || !near(it.WarnedAt, t0) {
		t.Errorf("item after the attempt: lease %q, next %v, warned %v", it.LeaseHolder, it.NextAttempt, it.WarnedAt)
	}
	if s, err := st.QueueStats(ctx, t0); err != nil || s.Items != 1 || s.Recipients != 1 {
		t.Errorf("QueueStats = %+v, %v; want 1 item with 1 pending recipient", s, err)
	}
	if got := fx.claimQueue("w", t0.Add(5*time.Minute), time.Hour, 10); len(got) != 0 {
		t.Errorf("claim before the next attempt = %v", itemIDs(got))
	}
	items = fx.claimQueue("w", t0.Add(11*time.Minute), time.Hour, 10)
	if len(items) != 1 || len(items[0].Recipients) != 1 || items[0].Recipients[0].ID != r[1].ID || !near(items[0].WarnedAt, t0) {
		t.Fatalf("claim when due = %+v, want the item with r2 only, warned at %v", items, t0)
	}
	t1 := t0.Add(11 * time.Minute)

	// Results that do not fit the item are refused whole.
	snap := fx.snapshot()
	for _, bad := range []struct {
		name string
		a    mailstore.QueueAttempt
	}{
		{"a delivered recipient", mailstore.QueueAttempt{ItemID: res.QueueID, Next: t1.Add(time.Hour), Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: mailstore.RcptPending}, {RecipientID: r[0].ID, State: mailstore.RcptDelivered}}}},
		{"a recipient twice", mailstore.QueueAttempt{ItemID: res.QueueID, Next: t1.Add(time.Hour), Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: mailstore.RcptPending}, {RecipientID: r[1].ID, State: mailstore.RcptPending}}}},
		// The same with final results only (which end an item at once).
		{"a delivered recipient, all final", mailstore.QueueAttempt{ItemID: res.QueueID, Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: mailstore.RcptDelivered}, {RecipientID: r[0].ID, State: mailstore.RcptDelivered}}}},
		{"a recipient twice, all final", mailstore.QueueAttempt{ItemID: res.QueueID, Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: mailstore.RcptFailed}, {RecipientID: r[1].ID, State: mailstore.RcptFailed}}}},
		{"another item's recipient", mailstore.QueueAttempt{ItemID: res.QueueID, Next: t1.Add(time.Hour), Results: []mailstore.QueueRecipientResult{
			{RecipientID: 1 << 40, State: mailstore.RcptDelivered}}}},
		{"an unknown state", mailstore.QueueAttempt{ItemID: res.QueueID, Next: t1.Add(time.Hour), Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: "bounced"}}}},
		{"no next attempt while pending", mailstore.QueueAttempt{ItemID: res.QueueID, Results: []mailstore.QueueRecipientResult{
			{RecipientID: r[1].ID, State: mailstore.RcptPending, Code: "4.0.0"}}}},
	} {
		wantErr(t, st.FinishAttempt(ctx, "w", bad.a), "FinishAttempt with "+bad.name, mailstore.ErrInvalidArgument)
	}
	if d := diffSnapshots(snap, fx.snapshot()); d != "" {
		t.Errorf("refused FinishAttempt calls changed the store:%s", d)
	}

	fx.finish("w", mailstore.QueueAttempt{ItemID: res.QueueID, At: t1, Results: []mailstore.QueueRecipientResult{
		{RecipientID: r[1].ID, State: mailstore.RcptDelivered, Code: "2.0.0", Reply: "250 ok"}}})
	_, err := st.GetQueueItem(ctx, res.QueueID)
	wantErr(t, err, "GetQueueItem of a finished item", mailstore.ErrNoSuchQueueItem)
	_, err = st.OpenQueued(ctx, res.QueueID)
	wantErr(t, err, "OpenQueued of a finished item", mailstore.ErrNoSuchQueueItem)
	err = st.FinishAttempt(ctx, "w", mailstore.QueueAttempt{ItemID: res.QueueID, At: t1})
	if wantErr(t, err, "FinishAttempt of a finished item", mailstore.ErrLeaseLost) && !errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		t.Errorf("FinishAttempt of a finished item: %v does not match ErrNoSuchQueueItem", err)
	}
	// The body's local copy is untouched.
	d := res.Delivered[0]
	if got := fx.mustRead(d.AccountID, d.MailboxID, d.UID); string(got) != string(body) {
		t.Errorf("local copy after the queue item finished: %d octets, want %d", len(got), len(body))
	}
	if s, err := st.QueueStats(ctx, t1); err != nil || s != (mailstore.QueueStats{}) {
		t.Errorf("QueueStats of an empty queue = %+v, %v", s, err)
	}
	if items, err := st.ListQueue(ctx, 0); err != nil || len(items) != 0 {
		t.Errorf("ListQueue of an empty queue = %v, %v", itemIDs(items), err)
	}
	// A failed recipient also ends its item.
	res = fx.enqueue(body, nil, "gone@remote.example")
	items = fx.claimQueue("w", t1, time.Hour, 10)
	fx.finish("w", mailstore.QueueAttempt{ItemID: res.QueueID, At: t1, Results: []mailstore.QueueRecipientResult{
		{RecipientID: items[0].Recipients[0].ID, State: mailstore.RcptFailed, Code: "5.4.7", Reply: "delivery time expired"}}})
	_, err = st.GetQueueItem(ctx, res.QueueID)
	wantErr(t, err, "GetQueueItem after its last recipient failed", mailstore.ErrNoSuchQueueItem)
}

// testQueueAdmin: listing, retry, removal and their interplay with leases.
func testQueueAdmin(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	st, ctx := fx.st, fx.ctx
	var ids []int64
	for i := range 3 {
		ids = append(ids, fx.enqueue(simpleMessage(fmt.Sprintf("admin %d", i), "x"), nil, fmt.Sprintf("r%d@remote.example", i)).QueueID)
	}
	if items, err := st.ListQueue(ctx, 2); err != nil || !slices.Equal(itemIDs(items), ids[:2]) {
		t.Errorf("ListQueue(2) = %v, %v; want the oldest two %v", itemIDs(items), err, ids[:2])
	}
	if items, err := st.ListQueue(ctx, 0); err != nil || !slices.Equal(itemIDs(items), ids) || len(items[2].Recipients) != 1 {
		t.Errorf("ListQueue(0) = %v, %v; want %v", itemIDs(items), err, ids)
	}
	t0 := time.Now().Truncate(time.Second)
	// Every item tried once and deferred by an hour.
	for _, it := range fx.claimQueue("w", t0, time.Hour, 10) {
		fx.finish("w", mailstore.QueueAttempt{ItemID: it.ID, At: t0, Next: t0.Add(time.Hour), Results: []mailstore.QueueRecipientResult{
			{RecipientID: it.Recipients[0].ID, State: mailstore.RcptPending, Code: "4.4.2", Reply: "connection dropped"}}})
	}
	if got := fx.claimQueue("w", t0, time.Hour, 10); len(got) != 0 {
		t.Errorf("claim of deferred items = %v", itemIDs(got))
	}
	if n, err := st.RetryQueue(ctx, []int64{ids[1], 1 << 40}); err != nil || n != 1 {
		t.Errorf("RetryQueue(one) = %d, %v; want 1", n, err)
	}
	if got := fx.claimQueue("w", t0, time.Hour, 10); !slices.Equal(itemIDs(got), ids[1:2]) || got[0].Recipients[0].Attempts != 1 {
		t.Errorf("claim after RetryQueue(one) = %+v, want %d", got, ids[1])
	}
	if n, err := st.RetryQueue(ctx, []int64{}); err != nil || n != 0 {
		t.Errorf("RetryQueue(empty) = %d, %v", n, err)
	}
	// Retry all: the leased item keeps its lease.
	if n, err := st.RetryQueue(ctx, nil); err != nil || n != 3 {
		t.Errorf("RetryQueue(all) = %d, %v; want 3", n, err)
	}
	if got := fx.claimQueue("other", t0, time.Hour, 10); !slices.Equal(itemIDs(got), []int64{ids[0], ids[2]}) {
		t.Errorf("claim after RetryQueue(all) = %v, want %v (not the leased %d)", itemIDs(got), []int64{ids[0], ids[2]}, ids[1])
	}
	// Removal of a leased item: its holder's results are refused.
	must(t, st.RemoveQueueItem(ctx, ids[1]), "RemoveQueueItem of a leased item")
	err := st.FinishAttempt(ctx, "w", mailstore.QueueAttempt{ItemID: ids[1], At: t0})
	if wantErr(t, err, "FinishAttempt of a removed item", mailstore.ErrLeaseLost) && !errors.Is(err, mailstore.ErrNoSuchQueueItem) {
		t.Errorf("FinishAttempt of a removed item: %v does not match ErrNoSuchQueueItem", err)
	}
	wantErr(t, st.RemoveQueueItem(ctx, ids[1]), "RemoveQueueItem twice", mailstore.ErrNoSuchQueueItem)
	_, err = st.OpenQueued(ctx, ids[1])
	wantErr(t, err, "OpenQueued of a removed item", mailstore.ErrNoSuchQueueItem)
	if held, err := st.RenewQueueLease(ctx, "w", []int64{ids[1]}, t0, time.Hour); err != nil || len(held) != 0 {
		t.Errorf("RenewQueueLease of a removed item = %v, %v", held, err)
	}
	if s, err := st.QueueStats(ctx, t0); err != nil || s.Items != 2 || s.Recipients != 2 {
		t.Errorf("QueueStats = %+v, %v; want 2 items, 2 recipients", s, err)
	}
	for _, bad := range []struct {
		name   string
		holder string
		lease  time.Duration
		n      int
	}{{"no holder", "", time.Hour, 1}, {"no lease", "w", 0, 1}, {"no items", "w", time.Hour, 0}, {"a NUL in the holder", "w\x00", time.Hour, 1}} {
		_, err := st.ClaimQueue(ctx, bad.holder, t0, bad.lease, bad.n)
		wantErr(t, err, "ClaimQueue with "+bad.name, mailstore.ErrInvalidArgument)
	}
}
