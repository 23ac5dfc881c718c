package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// contentRefs returns the reference count of the content with body's
// octets, or -1 when it is not stored.
func contentRefs(t *testing.T, st *postgres.Store, body string) int64 {
	t.Helper()
	var n int64
	err := st.Pool().QueryRow(ctxT(t), `SELECT refcount FROM contents WHERE sha256 = sha256($1::bytea)`, []byte(body)).Scan(&n)
	if err == pgx.ErrNoRows {
		return -1
	}
	must(t, err)
	return n
}

// A queue item holds one reference on its content, shared with the
// content's local copies; finishing or removing the item releases it, and
// the content goes with its last reference.
func TestQueueContentRefcount(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	enqueue := func(body string, local ...mailstore.Recipient) int64 {
		t.Helper()
		res, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: local, Body: strings.NewReader(body),
			Remote: []mailstore.RemoteRecipient{{Address: "x@remote.example"}}})
		must(t, err)
		return res.QueueID
	}
	finish := func(id int64) {
		t.Helper()
		items, err := st.ClaimQueue(ctx, "w", time.Now(), time.Minute, 100)
		must(t, err)
		for _, it := range items {
			if it.ID == id {
				must(t, st.FinishAttempt(ctx, "w", mailstore.QueueAttempt{ItemID: id, Results: []mailstore.QueueRecipientResult{
					{RecipientID: it.Recipients[0].ID, State: mailstore.RcptDelivered}}}))
				return
			}
		}
		t.Fatalf("item %d not claimable", id)
	}
	check := func(body string, want int64, when string) {
		t.Helper()
		if got := contentRefs(t, st, body); got != want {
			t.Errorf("%s: refcount %d, want %d (-1: gone)", when, got, want)
		}
		checkInvariants(t, st)
	}

	// A remote-only delivery stores a queue-only content: one reference,
	// no SHA-256, no parse or search data (deliver.go, queueOnly).
	queueOnly := func(id int64, when string) int64 {
		t.Helper()
		var cid, refs int64
		var sha, parsed *string
		var hdrs, text string
		must(t, st.Pool().QueryRow(ctx, `SELECT c.id, c.refcount, c.sha256::text, c.parsed::text, c.search_headers, c.search_text
			FROM queue_items q JOIN contents c ON c.id = q.content_id WHERE q.id = $1`, id).Scan(&cid, &refs, &sha, &parsed, &hdrs, &text))
		if refs != 1 || sha != nil || parsed != nil || hdrs != "" || text != "" {
			t.Errorf("%s: content refcount %d, sha256 %v, parsed %v, %d+%d octets of search text; want a queue-only content",
				when, refs, sha, parsed, len(hdrs), len(text))
		}
		return cid
	}
	gone := func(cid int64, when string) {
		t.Helper()
		var n int
		must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM contents WHERE id = $1) + (SELECT count(*) FROM chunks WHERE content_id = $1)`, cid).Scan(&n))
		if n != 0 {
			t.Errorf("%s: %d rows of content %d left", when, n, cid)
		}
	}
	remoteOnly := msg("remote-only", "x")
	id := enqueue(remoteOnly)
	cid := queueOnly(id, "remote-only delivery")
	check(remoteOnly, -1, "remote-only delivery (nothing to share)")
	finish(id)
	gone(cid, "remote-only item finished")

	both := msg("both", "y")
	id = enqueue(both, mailstore.Recipient{AccountID: a.ID}, mailstore.Recipient{AccountID: a.ID, Mailbox: "Archive"})
	check(both, 3, "two local copies and a queue item")
	id2 := enqueue(both)
	cid2 := queueOnly(id2, "the same octets queued again, remote only")
	check(both, 3, "the same octets queued again, remote only")
	finish(id)
	check(both, 2, "one item finished")
	must(t, st.RemoveQueueItem(ctx, id2))
	gone(cid2, "the remote-only item removed")
	check(both, 2, "the remote-only item removed")
	_, err := st.Expunge(ctx, a.ID, inbox(t, st, a.ID).ID, nil, false)
	must(t, err)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)
	_, err = st.Expunge(ctx, a.ID, arch.ID, nil, false)
	must(t, err)
	must(t, st.DrainReleases(ctx)) // released after the expunges (releases.go)
	check(both, -1, "local copies expunged")

	// A large (streamed) body: the queue item keeps it after the local
	// copy is expunged, and it streams back whole.
	big := msg("big", strings.Repeat("0123456789abcdef\r\n", 40000))
	id = enqueue(big, mailstore.Recipient{AccountID: a.ID})
	_, err = st.Expunge(ctx, a.ID, inbox(t, st, a.ID).ID, nil, false)
	must(t, err)
	must(t, st.DrainReleases(ctx))
	check(big, 1, "large body after its local copy was expunged")
	rc, err := st.OpenQueued(ctx, id)
	must(t, err)
	var got bytes.Buffer
	_, err = got.ReadFrom(rc)
	must(t, err)
	rc.Close()
	if got.String() != big {
		t.Errorf("queued large body: %d octets back, want %d", got.Len(), len(big))
	}
	finish(id)
	check(big, -1, "large body's item finished")
	var rows int
	must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM chunks) + (SELECT count(*) FROM content_text)
		+ (SELECT count(*) FROM queue_items) + (SELECT count(*) FROM queue_recipients)`).Scan(&rows))
	if rows != 0 {
		t.Errorf("%d chunk, text and queue rows left", rows)
	}
}

// ClaimQueue brings the bodies of messages of up to 64 KiB along, once per
// item whatever its recipients; larger ones are read with OpenQueued.
func TestQueueClaimBodies(t *testing.T) {
	st, _, _ := fixture(t)
	ctx := ctxT(t)
	sizes := map[int64]int{}
	bodies := map[int64]string{}
	for _, n := range []int{0, 100, 10_000, 64 << 10, 64<<10 + 1, 300_000} {
		body := strings.Repeat("x", n)
		res, err := st.Deliver(ctx, &mailstore.Delivery{Body: strings.NewReader(body),
			Remote: []mailstore.RemoteRecipient{{Address: "a@remote.example"}, {Address: "b@remote.example"}, {Address: "c@other.example"}}})
		must(t, err)
		sizes[res.QueueID], bodies[res.QueueID] = n, body
	}
	items, err := st.ClaimQueue(ctx, "w", time.Now(), time.Minute, 100)
	must(t, err)
	if len(items) != len(sizes) {
		t.Fatalf("claimed %d items, want %d", len(items), len(sizes))
	}
	for _, it := range items {
		n := sizes[it.ID]
		switch {
		case len(it.Recipients) != 3:
			t.Errorf("item of %d octets: %d recipients", n, len(it.Recipients))
		case n <= 64<<10 && (it.Body == nil || string(it.Body) != bodies[it.ID]):
			t.Errorf("item of %d octets: claimed with a body of %d octets (nil: %v)", n, len(it.Body), it.Body == nil)
		case n > 64<<10 && it.Body != nil:
			t.Errorf("item of %d octets: claimed with its body", n)
		}
	}
}

// planNode is the part of an EXPLAIN (FORMAT JSON) node this test reads.
type planNode struct {
	NodeType        string     `json:"Node Type"`
	Relation        string     `json:"Relation Name"`
	Index           string     `json:"Index Name"`
	ActualRows      float64    `json:"Actual Rows"`
	RemovedByFilter float64    `json:"Rows Removed by Filter"`
	Plans           []planNode `json:"Plans"`
}

func walkPlan(n planNode, f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		walkPlan(c, f)
	}
}

// ClaimQueue on a large queue with few due items reads only those: the
// waiting and the leased items (next_attempt at the lease's end) lie
// beyond the index range it scans.
func TestQueueClaimReadsOnlyDueItems(t *testing.T) {
	st, _, _ := fixture(t)
	ctx := ctxT(t)
	for i := range 3 {
		_, err := st.Deliver(ctx, &mailstore.Delivery{Body: strings.NewReader(msg("due", strings.Repeat("x", i))),
			Remote: []mailstore.RemoteRecipient{{Address: "x@remote.example"}}})
		must(t, err)
	}
	now := time.Now()
	// Waiting and leased items, written directly: only their place in the
	// index matters here.
	_, err := st.Pool().Exec(ctx, `
		INSERT INTO queue_items (content_id, mail_from, size, next_attempt)
		SELECT 0, '', 1, $1::timestamptz + g * interval '1 second' FROM generate_series(1, 20000) g`, now)
	must(t, err)
	_, err = st.Pool().Exec(ctx, `
		INSERT INTO queue_items (content_id, mail_from, size, next_attempt, lease_holder, lease_until)
		SELECT 0, '', 1, $1::timestamptz + interval '1 minute', 'other', $1::timestamptz + interval '1 minute'
		  FROM generate_series(1, 5000)`, now)
	must(t, err)
	_, err = st.Pool().Exec(ctx, `ANALYZE queue_items`)
	must(t, err)
	tx, err := st.Pool().Begin(ctx)
	must(t, err)
	defer tx.Rollback(context.Background())
	var plan []struct {
		Plan planNode `json:"Plan"`
	}
	var raw string
	must(t, tx.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+postgres.ClaimSQL, now, "w", now.Add(time.Minute), 10, 65536).Scan(&raw))
	must(t, json.Unmarshal([]byte(raw), &plan))
	var due, seq int
	walkPlan(plan[0].Plan, func(n planNode) {
		if n.Relation != "queue_items" {
			return
		}
		if n.NodeType == "Seq Scan" {
			seq++
		}
		if n.Index == "queue_items_due" {
			due++
			if n.ActualRows != 3 || n.RemovedByFilter != 0 {
				t.Errorf("scan of queue_items_due: %v rows, %v removed by filter; want the 3 due items only", n.ActualRows, n.RemovedByFilter)
			}
		}
	})
	if due != 1 || seq != 0 {
		t.Errorf("claim plan: %d scans of queue_items_due, %d sequential scans of queue_items; want 1 and 0:\n%s", due, seq, raw)
	}
}
