package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// invariants are the bookkeeping rules the write functions maintain
// without foreign keys or triggers; each query returns violations.
var invariants = []struct{ name, sql string }{
	{"mailbox counters", `
		SELECT mb.id FROM mailboxes mb LEFT JOIN LATERAL (
			SELECT count(*) AS n, coalesce(sum(size), 0) AS sz,
			       count(*) FILTER (WHERE flags & 1 = 0) AS unseen, count(*) FILTER (WHERE flags & 8 <> 0) AS del
			  FROM messages m WHERE m.mailbox_id = mb.id) c ON true
		 WHERE (mb.msg_count, mb.msg_size, mb.msg_unseen, mb.msg_deleted) <> (c.n, c.sz, c.unseen, c.del)`},
	{"quota used", `
		SELECT a.id FROM accounts a
		 WHERE a.quota_used <> (SELECT coalesce(sum(m.size), 0) FROM messages m JOIN mailboxes mb ON mb.id = m.mailbox_id
		                         WHERE mb.account_id = a.id)`},
	// Pending releases (0009) hold the references of expunged messages
	// until pr_release_pending gives them back.
	{"refcount", `
		SELECT c.id FROM contents c
		 WHERE c.refcount <> (SELECT count(*) FROM messages m WHERE m.content_id = c.id)
		                   + (SELECT count(*) FROM queue_items q WHERE q.content_id = c.id)
		                   + (SELECT count(*) FROM content_releases r, unnest(r.content_ids) x WHERE x = c.id)
		    OR c.refcount <= 0`},
	{"pending releases", `
		SELECT x FROM content_releases r, unnest(r.content_ids) x WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = x)`},
	// A content without SHA-256 is queue-only (deliver.go, queueOnly): no
	// message row may point to it, and it carries no parse or search data.
	{"queue-only contents", `
		SELECT c.id FROM contents c
		 WHERE c.sha256 IS NULL
		   AND (EXISTS (SELECT 1 FROM messages m WHERE m.content_id = c.id)
		        OR c.parsed IS NOT NULL OR c.search_headers <> '' OR c.search_text <> '' OR c.text_pieces <> 0)`},
	{"parsed contents", `SELECT c.id FROM contents c WHERE c.sha256 IS NOT NULL AND c.parsed IS NULL`},
	{"orphan queue items", `SELECT q.id FROM queue_items q WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = q.content_id)`},
	{"queue items pending", `
		SELECT q.id FROM queue_items q
		 WHERE NOT EXISTS (SELECT 1 FROM queue_recipients r WHERE r.item_id = q.id AND r.state = 'pending')`},
	{"orphan queue recipients", `
		SELECT r.id FROM queue_recipients r WHERE NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.id = r.item_id)`},
	{"chunks complete", `
		SELECT c.id FROM contents c
		 WHERE (SELECT count(*) FROM chunks k WHERE k.content_id = c.id) <> (c.size + c.chunk_size - 1) / c.chunk_size
		    OR (SELECT coalesce(sum(octet_length(k.data)), 0) FROM chunks k WHERE k.content_id = c.id) <> c.size`},
	{"orphan chunks", `SELECT content_id FROM chunks k WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = k.content_id)`},
	{"text pieces complete", `
		SELECT c.id FROM contents c
		 WHERE (SELECT count(*) FILTER (WHERE t.seq BETWEEN 0 AND c.text_pieces - 1) FROM content_text t WHERE t.content_id = c.id) <> c.text_pieces
		    OR (SELECT count(*) FROM content_text t WHERE t.content_id = c.id) <> c.text_pieces
		    OR (c.text_pieces > 0 AND c.search_text <> '')`},
	{"orphan text pieces", `SELECT content_id FROM content_text t WHERE NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = t.content_id)`},
	{"crlf size", `
		SELECT m.mailbox_id FROM messages m JOIN contents c ON c.id = m.content_id
		 WHERE m.crlf_size < m.size OR m.crlf_size > 2 * m.size + 2
		    -- parsed may hold \u0000, which ->> refuses; a quote in a
		    -- JSON string is escaped, so this finds the top-level key.
		    OR m.crlf_size IS DISTINCT FROM substring(c.parsed::text FROM '"crlf_size":(\d+)')::bigint`},
	{"orphan messages", `
		SELECT m.mailbox_id FROM messages m
		 WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.id = m.mailbox_id)
		    OR NOT EXISTS (SELECT 1 FROM contents c WHERE c.id = m.content_id)`},
	{"orphan tombstones", `SELECT e.mailbox_id FROM expunged e WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.id = e.mailbox_id)`},
	{"uids below uidnext", `
		SELECT mb.id FROM mailboxes mb
		 WHERE EXISTS (SELECT 1 FROM messages m WHERE m.mailbox_id = mb.id AND (m.uid >= mb.uidnext OR m.modseq > mb.highestmodseq))
		    OR EXISTS (SELECT 1 FROM expunged e WHERE e.mailbox_id = mb.id AND (e.uid >= mb.uidnext OR e.modseq > mb.highestmodseq))
		    OR EXISTS (SELECT 1 FROM expunged e JOIN messages m ON m.mailbox_id = e.mailbox_id AND m.uid = e.uid
		                WHERE e.mailbox_id = mb.id)`},
	{"stage empty", `SELECT content_id FROM content_stage`},
	// The \Recent watermark (0009) never passes uidnext.
	{"recent watermark", `
		SELECT r.mailbox_id FROM mailbox_recent r JOIN mailboxes mb ON mb.id = r.mailbox_id
		 WHERE r.recent_uid < 1 OR r.recent_uid > mb.uidnext`},
}

func checkInvariants(t testing.TB, st *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	for _, inv := range invariants {
		rows, err := st.Pool().Query(ctx, inv.sql)
		must(t, err)
		var bad []int64
		for rows.Next() {
			var id int64
			must(t, rows.Scan(&id))
			bad = append(bad, id)
		}
		rows.Close()
		must(t, rows.Err())
		if len(bad) > 0 {
			t.Errorf("invariant %q violated for ids %v", inv.name, bad)
		}
	}
}

// TestInvariantsUnderConcurrentChurn runs random writes of every kind from
// several workers on three accounts sharing contents, then checks the
// bookkeeping (counters, quota, reference counts, chunks, tombstones).
func TestInvariantsUnderConcurrentChurn(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	accts := []int64{a.ID}
	for _, addr := range []string{"b@example.org", "c@example.org"} {
		x, err := st.CreateAccount(ctx, addr, "h")
		must(t, err)
		accts = append(accts, x.ID)
	}
	bodies := []string{msg("s1", "shared one"), msg("s2", strings.Repeat("shared two\r\n", 200)),
		msg("big", strings.Repeat("0123456789abcdef", 20000))} // > ChunkSize: streamed path
	names := []string{"INBOX", "Archive", "Trash", "Work"}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; i < 40; i++ {
				acct := accts[rng.IntN(len(accts))]
				mbName := names[rng.IntN(len(names))]
				mb, err := st.GetMailbox(ctx, acct, mbName)
				if errors.Is(err, mailstore.ErrNoSuchMailbox) {
					_, err = st.CreateMailbox(ctx, acct, mbName, "")
					if err != nil && !errors.Is(err, mailstore.ErrExists) {
						t.Error(err)
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				var opErr error
				switch op := rng.IntN(11); op {
				case 0, 1:
					var rc []mailstore.Recipient
					for _, x := range accts {
						if rng.IntN(2) == 0 {
							rc = append(rc, mailstore.Recipient{AccountID: x, Mailbox: mbName, Flags: mailstore.Flags{System: mailstore.SystemFlag(rng.IntN(32))}})
						}
					}
					// Some deliveries also go to remote recipients, or
					// only to them: queue items share the contents.
					var remote []mailstore.RemoteRecipient
					if rng.IntN(3) == 0 {
						remote = []mailstore.RemoteRecipient{{Address: "x@remote.example"}, {Address: "y@other.example"}}
					}
					if len(rc) == 0 && remote == nil {
						rc = []mailstore.Recipient{{AccountID: acct}}
					}
					_, opErr = st.Deliver(ctx, &mailstore.Delivery{Recipients: rc, Remote: remote, Body: strings.NewReader(bodies[rng.IntN(len(bodies))])})
				case 2:
					_, opErr = st.StoreFlags(ctx, acct, mb.ID, mailstore.UIDSet{{Start: uint32(rng.IntN(5) + 1), Stop: 0}},
						mailstore.FlagOp(rng.IntN(3)), mailstore.Flags{System: mailstore.SystemFlag(rng.IntN(32)), Keywords: []string{"k" + fmt.Sprint(rng.IntN(3))}}, 0)
				case 3:
					_, opErr = st.Expunge(ctx, acct, mb.ID, mailstore.UIDs(uint32(rng.IntN(8)+1)), rng.IntN(2) == 0)
				case 4:
					dst, err := st.GetMailbox(ctx, acct, names[rng.IntN(len(names))])
					if err != nil {
						continue
					}
					if rng.IntN(2) == 0 {
						_, opErr = st.Copy(ctx, acct, mb.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, dst.ID)
					} else {
						_, opErr = st.Move(ctx, acct, mb.ID, mailstore.UIDSet{{Start: uint32(rng.IntN(5) + 1), Stop: 0}}, dst.ID)
					}
				case 5:
					if mbName != "INBOX" {
						opErr = st.DeleteMailbox(ctx, acct, mbName)
					}
				case 6:
					if mbName == "Work" {
						opErr = st.RenameMailbox(ctx, acct, "Work", "Work2")
						if opErr == nil {
							opErr = st.RenameMailbox(ctx, acct, "Work2", "Work")
						}
					}
				case 7:
					_, opErr = st.Expunge(ctx, acct, mb.ID, nil, true)
				case 8:
					opErr = queueWork(ctx, st, fmt.Sprintf("w%d", w), rng)
				case 9:
					_, opErr = st.ClaimRecent(ctx, acct, mb.ID)
				case 10:
					// Mostly no-ops: \Seen or \Deleted as it already is.
					f := mailstore.Flags{System: []mailstore.SystemFlag{mailstore.FlagSeen, mailstore.FlagDeleted}[rng.IntN(2)]}
					_, opErr = st.StoreFlags(ctx, acct, mb.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, mailstore.FlagOp(rng.IntN(2)+1), f, 0)
				}
				if opErr != nil && !errors.Is(opErr, mailstore.ErrNoSuchMailbox) && !errors.Is(opErr, mailstore.ErrExists) {
					t.Errorf("worker %d op on %s: %v", w, mbName, opErr)
				}
			}
		}()
	}
	wg.Wait()
	checkInvariants(t, st)
	must(t, st.DrainReleases(ctx))
	checkInvariants(t, st)
	// Deleting the accounts and delivering the queue releases everything.
	for _, addr := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		must(t, st.DeleteAccount(ctx, addr))
	}
	checkInvariants(t, st)
	for {
		items, err := st.ClaimQueue(ctx, "drain", time.Now().Add(time.Hour), time.Minute, 100)
		must(t, err)
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			var rs []mailstore.QueueRecipientResult
			for _, r := range it.Recipients {
				rs = append(rs, mailstore.QueueRecipientResult{RecipientID: r.ID, State: mailstore.RcptDelivered})
			}
			must(t, st.FinishAttempt(ctx, "drain", mailstore.QueueAttempt{ItemID: it.ID, Results: rs}))
		}
	}
	checkInvariants(t, st)
	var n int
	must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM contents) + (SELECT count(*) FROM chunks)
		+ (SELECT count(*) FROM content_text) + (SELECT count(*) FROM messages) + (SELECT count(*) FROM expunged) + (SELECT count(*) FROM mailboxes)
		+ (SELECT count(*) FROM queue_items) + (SELECT count(*) FROM queue_recipients) + (SELECT count(*) FROM content_releases)`).Scan(&n))
	if n != 0 {
		t.Fatalf("%d rows left after deleting every account", n)
	}
}

// queueWork is one delivery worker's turn: claim a few due items and, for
// each, deliver one recipient and defer the others, fail them all, or
// remove the item.
func queueWork(ctx context.Context, st *postgres.Store, holder string, rng *rand.Rand) error {
	now := time.Now()
	items, err := st.ClaimQueue(ctx, holder, now, time.Minute, 2)
	if err != nil {
		return err
	}
	for _, it := range items {
		var rs []mailstore.QueueRecipientResult
		switch rng.IntN(3) {
		case 0:
			if err := st.RemoveQueueItem(ctx, it.ID); err != nil {
				return err
			}
			continue
		case 1:
			for i, r := range it.Recipients {
				state := mailstore.RcptPending
				if i == 0 {
					state = mailstore.RcptDelivered
				}
				rs = append(rs, mailstore.QueueRecipientResult{RecipientID: r.ID, State: state, Code: "4.0.0"})
			}
		default:
			for _, r := range it.Recipients {
				rs = append(rs, mailstore.QueueRecipientResult{RecipientID: r.ID, State: mailstore.RcptFailed, Code: "5.0.0"})
			}
		}
		if err := st.FinishAttempt(ctx, holder, mailstore.QueueAttempt{ItemID: it.ID, At: now, Next: now, Results: rs}); err != nil {
			return err
		}
	}
	return nil
}
