package postgres_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// benchStore opens a store with room for 16 concurrent deliverers and
// creates n accounts.
func benchStore(b testing.TB, n int) (*postgres.Store, []int64) {
	b.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(b)
	st, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 24})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	must(b, st.CreateDomain(ctx, "example.org"))
	ids := make([]int64, n)
	for i := range ids {
		a, err := st.CreateAccount(ctx, fmt.Sprintf("u%d@example.org", i), "h")
		must(b, err)
		ids[i] = a.ID
	}
	return st, ids
}

// body10KB returns a distinct ~10 KB message (distinct contents, as real
// mail has: Received/Message-ID differ).
func body10KB(i int64) string {
	head := fmt.Sprintf("Received: from client.example.net by mx.example.org; Mon, 02 Jan 2006 15:04:05 +0000\r\n"+
		"From: Sender <sender@example.net>\r\nTo: rcpt@example.org\r\nSubject: benchmark message %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <%d.bench@example.net>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n", i, i)
	// The body lines are the same in every message (the header makes each
	// one distinct): built once, so that the benchmark's own work stays
	// small next to the store's.
	lines := (max(0, 10*1024-len(head)) + len(loremLine) - 1) / len(loremLine) // whole lines up to 10 KB or just over
	return head + loremBody[:lines*len(loremLine)]
}

const loremLine = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incid\r\n"

var loremBody = strings.Repeat(loremLine, 10*1024/len(loremLine)+2)

// BenchmarkDeliver10KBParallel16: single-recipient 10 KB deliveries from 16
// concurrent deliverers to 64 accounts (target: 2,000/s on 2 cores).
func BenchmarkDeliver10KBParallel16(b *testing.B) {
	st, ids := benchStore(b, 64)
	ctx := context.Background()
	b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
	var seq atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			_, err := st.Deliver(ctx, &mailstore.Delivery{MailFrom: "sender@example.net",
				Recipients: []mailstore.Recipient{{AccountID: ids[i%int64(len(ids))]}},
				Body:       strings.NewReader(body10KB(i))})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkDeliver1Rcpt is the sequential single-recipient baseline for
// BenchmarkDeliver100Rcpt (target: 100 recipients < 3x one).
func BenchmarkDeliver1Rcpt(b *testing.B) {
	st, ids := benchStore(b, 1)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: ids[0]}},
			Body: strings.NewReader(body10KB(int64(i)))}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliver100Rcpt: one 10 KB message to 100 accounts.
func BenchmarkDeliver100Rcpt(b *testing.B) {
	st, ids := benchStore(b, 100)
	ctx := context.Background()
	rcpts := make([]mailstore.Recipient, len(ids))
	for i, id := range ids {
		rcpts[i] = mailstore.Recipient{AccountID: id}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: rcpts, Body: strings.NewReader(body10KB(int64(i)))}); err != nil {
			b.Fatal(err)
		}
	}
}

// seedMailbox fills the account's INBOX with n messages sharing one
// content, directly in SQL (a fixture shortcut: n Deliver calls would take
// minutes), keeping refcount, quota and UIDNEXT/HIGHESTMODSEQ consistent.
func seedMailbox(b testing.TB, st *postgres.Store, acct int64, n int) mailstore.Mailbox {
	b.Helper()
	ctx := context.Background()
	deliver(b, st, body10KB(0), mailstore.Recipient{AccountID: acct})
	mb := inbox(b, st, acct)
	_, err := st.Pool().Exec(ctx, `
		WITH c AS (SELECT content_id, size, crlf_size FROM messages WHERE mailbox_id = $1 AND uid = 1),
		ins AS (
			INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
			SELECT $1, g, g + 1, g + 1, (CASE WHEN g % 3 = 0 THEN 1 ELSE 0 END)::smallint,
			       CASE WHEN g % 50 = 0 THEN ARRAY['$Forwarded'] ELSE '{}' END,
			       now() - g * interval '1 minute', c.size, c.crlf_size, c.content_id
			  FROM c, generate_series(2, $2::int) g),
		r AS (UPDATE contents SET refcount = refcount + $2 - 1 WHERE id = (SELECT content_id FROM c)),
		q AS (UPDATE accounts SET quota_used = quota_used + ($2 - 1) * (SELECT size FROM c) WHERE id = $3)
		UPDATE mailboxes SET uidnext = $2 + 1, highestmodseq = $2 + 1, msg_count = $2,
			msg_size = $2 * (SELECT size FROM c), msg_unseen = $2 - $2 / 3 WHERE id = $1`, mb.ID, n, acct)
	must(b, err)
	_, err = st.Pool().Exec(ctx, `VACUUM ANALYZE messages`)
	must(b, err)
	return inbox(b, st, acct)
}

// BenchmarkListMessages100k: all flags of a 100,000-message mailbox
// (target < 10 ms).
func BenchmarkListMessages100k(b *testing.B) {
	st, ids := benchStore(b, 1)
	mb := seedMailbox(b, st, ids[0], 100000)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, err := st.ListMessages(ctx, ids[0], mb.ID, nil)
		if err != nil || len(ms) != 100000 {
			b.Fatal(len(ms), err)
		}
	}
}

// BenchmarkChanges10: catch-up after 10 flag changes in a 100,000-message
// mailbox (target < 10 ms).
func BenchmarkChanges10(b *testing.B) {
	st, ids := benchStore(b, 1)
	mb := seedMailbox(b, st, ids[0], 100000)
	ctx := context.Background()
	since := mb.HighestModSeq
	for i := uint32(0); i < 10; i++ {
		_, err := st.StoreFlags(ctx, ids[0], mb.ID, mailstore.UIDs(1000+i*777), mailstore.FlagsAdd,
			mailstore.Flags{System: mailstore.FlagFlagged}, 0)
		must(b, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ch, err := st.Changes(ctx, ids[0], mb.ID, since)
		if err != nil || len(ch.Updated) != 10 {
			b.Fatal(len(ch.Updated), err)
		}
	}
}

// BenchmarkListMessages100kCold: the same without the node's list cache
// (a node's first SELECT of the mailbox).
func BenchmarkListMessages100kCold(b *testing.B) {
	st, ids := benchStore(b, 1)
	mb := seedMailbox(b, st, ids[0], 100000)
	ctx := context.Background()
	cold, err := postgres.Open(ctx, st.Pool().Config().ConnString(), postgres.Options{ListCacheMessages: -1})
	must(b, err)
	defer cold.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, err := cold.ListMessages(ctx, ids[0], mb.ID, nil)
		if err != nil || len(ms) != 100000 {
			b.Fatal(len(ms), err)
		}
	}
}
