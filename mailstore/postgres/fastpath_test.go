package postgres_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// asyncFuncs are the functions that commit asynchronously
// (synchronous_commit off for the calling transaction): flag changes and
// \Recent claims, login-failure records, outbound attempt records, the
// release of contents whose messages an expunge removed (and committed
// synchronously) before. None creates or removes a message of a mailbox.
var asyncFuncs = []string{"pr_auth_confirm", "pr_auth_release", "pr_auth_reserve", "pr_claim_recent",
	"pr_finish_attempt", "pr_release_pending", "pr_store_flags"}

// messageFuncs create or remove messages (or their contents): they commit
// synchronously, so none may call an asynchronous one.
var messageFuncs = []string{"pr_copy", "pr_delete_contents", "pr_delete_mailboxes", "pr_deliver", "pr_enqueue",
	"pr_expunge", "pr_release_contents", "pr_store_content"}

// TestSyncCommitOnlyForFlagChanges: the flag-only functions switch
// synchronous_commit off for the transaction that calls them, and only when
// they write; every other function leaves it alone, so deliveries, appends,
// copies, moves and expunges commit synchronously. Checked in explicit
// transactions (the setting a function leaves is the one COMMIT uses), and
// in the functions' definitions: no other pr_ function mentions the setting,
// and none has a SET clause for it (which would undo the change at function
// exit).
func TestSyncCommitOnlyForFlagChanges(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)
	for i := 0; i < 3; i++ {
		deliver(t, st, msg("s"+string(rune('a'+i)), "x"), mailstore.Recipient{AccountID: a.ID})
	}

	rows, err := st.Pool().Query(ctx, `
		SELECT p.proname, p.prosrc, coalesce(array_to_string(p.proconfig, ','), '')
		  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = current_schema() AND p.proname LIKE 'pr\_%'`)
	must(t, err)
	var mention []string
	srcs := map[string]string{}
	for rows.Next() {
		var name, src, cfg string
		must(t, rows.Scan(&name, &src, &cfg))
		srcs[name] = src
		if strings.Contains(strings.ToLower(src), "synchronous_commit") {
			mention = append(mention, name)
		}
		if strings.Contains(strings.ToLower(cfg), "synchronous_commit") {
			t.Errorf("%s has a SET clause for synchronous_commit", name)
		}
	}
	must(t, rows.Err())
	slices.Sort(mention)
	if !slices.Equal(mention, asyncFuncs) {
		t.Errorf("functions that set synchronous_commit: %v; want exactly %v", mention, asyncFuncs)
	}
	for _, m := range messageFuncs {
		src, ok := srcs[m]
		if !ok {
			t.Errorf("no function %s", m)
		}
		for _, f := range asyncFuncs {
			if strings.Contains(src, f+"(") {
				t.Errorf("%s calls %s, which commits asynchronously", m, f)
			}
		}
	}

	// setting runs sql (one call) in a transaction and returns the
	// transaction's synchronous_commit after it; the transaction is rolled
	// back.
	setting := func(what, sql string, args ...any) string {
		t.Helper()
		tx, err := st.Pool().Begin(ctx)
		must(t, err)
		defer tx.Rollback(ctx)
		r, err := tx.Query(ctx, sql, args...)
		must(t, err)
		r.Close()
		if r.Err() != nil {
			t.Fatalf("%s: %v", what, r.Err())
		}
		var v string
		must(t, tx.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&v))
		return v
	}
	var def string
	must(t, st.Pool().QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&def))
	if def == "off" {
		t.Skip("the server's default synchronous_commit is off")
	}
	const storeSQL = `SELECT * FROM pr_store_flags(p_account => $1, p_mailbox => $2, p_starts => $3, p_stops => $4,
		p_op => $5, p_flags => $6, p_keywords => $7, p_unchanged => 0)`
	all := []int64{1}
	end := []int64{1 << 32}
	for _, c := range []struct {
		what, sql string
		args      []any
		want      string
	}{
		{"STORE that changes flags", storeSQL, []any{a.ID, in.ID, all, end, 1, int16(mailstore.FlagFlagged), []string{}}, "off"},
		{"STORE that changes nothing", storeSQL, []any{a.ID, in.ID, all, end, 2, int16(mailstore.FlagFlagged), []string{}}, def},
		{"claim of new messages", `SELECT pr_claim_recent(p_account => $1, p_mailbox => $2)`, []any{a.ID, in.ID}, "off"},
		{"expunge", `SELECT * FROM pr_expunge(p_account => $1, p_mailbox => $2, p_starts => NULL, p_stops => NULL, p_only_deleted => false)`,
			[]any{a.ID, in.ID}, def},
		{"copy", `SELECT * FROM pr_copy(p_account => $1, p_src => $2, p_dst => $3, p_starts => $4, p_stops => $5, p_move => false)`,
			[]any{a.ID, in.ID, arch.ID, all, end}, def},
		{"move", `SELECT * FROM pr_copy(p_account => $1, p_src => $2, p_dst => $3, p_starts => $4, p_stops => $5, p_move => true)`,
			[]any{a.ID, in.ID, arch.ID, all, end}, def},
	} {
		if got := setting(c.what, c.sql, c.args...); got != c.want {
			t.Errorf("%s: synchronous_commit = %s at commit, want %s", c.what, got, c.want)
		}
	}
	// With nothing to claim (all claimed, committed).
	_, err = st.ClaimRecent(ctx, a.ID, in.ID)
	must(t, err)
	if got := setting("claim", `SELECT pr_claim_recent(p_account => $1, p_mailbox => $2)`, a.ID, in.ID); got != def {
		t.Errorf("claim with nothing to claim: synchronous_commit = %s, want %s", got, def)
	}
}

// TestFlagCommitDoesNotLeak: the flag functions' setting is local to their
// transaction. On a pool of one connection, a delivery after a STORE and a
// claim runs with the server's synchronous_commit.
func TestFlagCommitDoesNotLeak(t *testing.T) {
	_, url, a := fixture(t)
	ctx := ctxT(t)
	st, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 1})
	must(t, err)
	defer st.Close()
	var def string
	must(t, st.Pool().QueryRow(ctx, `SHOW synchronous_commit`).Scan(&def))
	in := inbox(t, st, a.ID)
	u := deliver(t, st, msg("leak", "x"), mailstore.Recipient{AccountID: a.ID}).Delivered[0].UID
	r, err := st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(u), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	must(t, err)
	if len(r.Updated) != 1 {
		t.Fatalf("STORE updated %d", len(r.Updated))
	}
	cl, err := st.ClaimRecent(ctx, a.ID, in.ID)
	must(t, err)
	if len(cl) != 1 {
		t.Fatalf("claimed %v", cl)
	}
	var got string
	must(t, st.Pool().QueryRow(ctx, `SHOW synchronous_commit`).Scan(&got))
	if got != def {
		t.Errorf("after a STORE and a claim, the connection's synchronous_commit is %s, want %s", got, def)
	}
}

// TestNoopWritesTakeNoLock: with the account and mailbox rows locked by
// another transaction (as a delivery holds them until its commit), a STORE
// that changes nothing, an EXPUNGE that finds nothing and a \Recent claim
// with nothing to claim still answer, and so does a claim of new messages
// (it locks only the watermark row). Had any of them waited for a row
// lock, it would hang here until the test's context ended.
func TestNoopWritesTakeNoLock(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	u1 := deliver(t, st, msg("n1", "x"), mailstore.Recipient{AccountID: a.ID}).Delivered[0].UID
	deliver(t, st, msg("n2", "x"), mailstore.Recipient{AccountID: a.ID})
	_, err := st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(u1), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	must(t, err)
	before, err := st.MailboxStatus(ctx, a.ID, in.ID)
	must(t, err)

	tx, err := st.Pool().Begin(ctx)
	must(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR NO KEY UPDATE`, a.ID)
	must(t, err)
	_, err = tx.Exec(ctx, `UPDATE mailboxes SET highestmodseq = highestmodseq WHERE id = $1`, in.ID)
	must(t, err)

	r, err := st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDs(u1), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagSeen}, 0)
	must(t, err)
	if len(r.Updated)+len(r.Modified) != 0 {
		t.Errorf("no-op STORE reported %+v", r)
	}
	r, err = st.StoreFlags(ctx, a.ID, in.ID, mailstore.UIDSet{{Start: 1, Stop: 0}}, mailstore.FlagsRemove, mailstore.Flags{System: mailstore.FlagDeleted, Keywords: []string{"nope"}}, 0)
	must(t, err)
	if len(r.Updated)+len(r.Modified) != 0 {
		t.Errorf("no-op STORE -FLAGS reported %+v", r)
	}
	for _, set := range []mailstore.UIDSet{nil, {{Start: 1, Stop: 0}}} {
		for _, onlyDeleted := range []bool{true, false} {
			if !onlyDeleted && set == nil {
				continue // would remove every message
			}
			s := set
			if !onlyDeleted {
				s = mailstore.UIDs(999)
			}
			x, err := st.Expunge(ctx, a.ID, in.ID, s, onlyDeleted)
			must(t, err)
			if len(x.UIDs) != 0 || x.HighestModSeq != before.HighestModSeq {
				t.Errorf("no-op EXPUNGE %v (only \\Deleted %v) = %+v, want nothing at highestmodseq %d", s, onlyDeleted, x, before.HighestModSeq)
			}
		}
	}
	cl, err := st.ClaimRecent(ctx, a.ID, in.ID)
	must(t, err)
	if len(cl) != 2 {
		t.Errorf("first claim = %v, want both messages", cl)
	}
	cl, err = st.ClaimRecent(ctx, a.ID, in.ID)
	must(t, err)
	if len(cl) != 0 {
		t.Errorf("second claim = %v, want nothing", cl)
	}
	must(t, tx.Rollback(ctx))
	after, err := st.MailboxStatus(ctx, a.ID, in.ID)
	must(t, err)
	if after.HighestModSeq != before.HighestModSeq || after.Messages != 2 || after.Unseen != 1 || after.Deleted != 0 || after.Recent != 0 {
		t.Errorf("status after the no-ops = %+v; before %+v", after, before)
	}
}

// TestClaimRecentAfterMailboxDelete: a claim racing the deletion of its
// mailbox ends with ErrNoSuchMailbox or a claim, never another error (the
// watermark row's foreign key), and the watermark row goes with the
// mailbox.
func TestClaimRecentAfterMailboxDelete(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		name := "Box" + strings.Repeat("x", i)
		mb, err := st.CreateMailbox(ctx, a.ID, name, "")
		must(t, err)
		deliver(t, st, msg("d"+name, "x"), mailstore.Recipient{AccountID: a.ID, Mailbox: name})
		done := make(chan error, 1)
		go func() {
			_, err := st.ClaimRecent(ctx, a.ID, mb.ID)
			done <- err
		}()
		must(t, st.DeleteMailbox(ctx, a.ID, name))
		if err := <-done; err != nil && !errorsIs(err, mailstore.ErrNoSuchMailbox) {
			t.Fatalf("claim racing the deletion of %s: %v", name, err)
		}
		if _, err := st.ClaimRecent(ctx, a.ID, mb.ID); !errorsIs(err, mailstore.ErrNoSuchMailbox) {
			t.Fatalf("claim after the deletion of %s: %v, want ErrNoSuchMailbox", name, err)
		}
	}
	var n int
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM mailbox_recent r
		WHERE NOT EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.id = r.mailbox_id)`).Scan(&n))
	if n != 0 {
		t.Errorf("%d watermark rows outlived their mailboxes", n)
	}
	checkInvariants(t, st)
}

// TestWritesReadOnlyTheirMessages: a STORE, an EXPUNGE, a COPY and a MOVE
// of three messages of a mailbox of 20,000 read a few dozen blocks, not
// the mailbox, while they hold its row. (As plain joins of the UID ranges
// to messages, their generic plans read every message of the mailbox: a
// few hundred blocks here; the mailbox was locked meanwhile.) Counted as
// the buffers of the whole call, nested statements included, on its
// second run in the session (the first plans the statements).
func TestWritesReadOnlyTheirMessages(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)
	deliver(t, st, msg("big", "x"), mailstore.Recipient{AccountID: a.ID})
	const n = 20000
	// Copies of the first message's row, with the bookkeeping the write
	// functions keep (counters, quota, reference count).
	_, err = st.Pool().Exec(ctx, `
		WITH c AS (SELECT content_id, size FROM messages WHERE mailbox_id = $1 AND uid = 1),
		ins AS (
			INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
			SELECT $1, g, g + 1, g + 1, (CASE WHEN g IN (50, 9000, 19999) THEN 8 ELSE 0 END)::smallint, '{}',
			       now(), c.size, c.size, c.content_id
			  FROM c, generate_series(2, $2::int) g),
		r AS (UPDATE contents SET refcount = refcount + $2 - 1 WHERE id = (SELECT content_id FROM c)),
		q AS (UPDATE accounts SET quota_used = quota_used + ($2 - 1) * (SELECT size FROM c) WHERE id = $3)
		UPDATE mailboxes SET uidnext = $2 + 1, highestmodseq = $2 + 1, msg_count = $2, msg_deleted = 3,
			msg_size = $2 * (SELECT size FROM c), msg_unseen = $2 WHERE id = $1`, in.ID, n, a.ID)
	must(t, err)
	_, err = st.Pool().Exec(ctx, `VACUUM ANALYZE messages`)
	must(t, err)
	checkInvariants(t, st)

	conn, err := st.Pool().Acquire(ctx)
	must(t, err)
	defer conn.Release()
	blocks := func(sql string, args ...any) int {
		t.Helper()
		tx, err := conn.Begin(ctx)
		must(t, err)
		defer tx.Rollback(ctx)
		var raw string
		must(t, tx.QueryRow(ctx, `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&raw))
		var plan []struct {
			Plan struct {
				Hit  int `json:"Shared Hit Blocks"`
				Read int `json:"Shared Read Blocks"`
			} `json:"Plan"`
		}
		must(t, json.Unmarshal([]byte(raw), &plan))
		return plan[0].Plan.Hit + plan[0].Plan.Read
	}
	three := []any{[]int64{50, 9000, 19999}, []int64{50, 9000, 19999}}
	for _, c := range []struct {
		what, sql string
		args      []any
	}{
		{"STORE +FLAGS \\Seen on 3 UIDs", `SELECT * FROM pr_store_flags(p_account => $1, p_mailbox => $2, p_starts => $3,
			p_stops => $4, p_op => 1, p_flags => 1::smallint, p_keywords => '{}', p_unchanged => 0)`, append([]any{a.ID, in.ID}, three...)},
		{"UID EXPUNGE of 3 UIDs", `SELECT * FROM pr_expunge(p_account => $1, p_mailbox => $2, p_starts => $3, p_stops => $4,
			p_only_deleted => true)`, append([]any{a.ID, in.ID}, three...)},
		{"EXPUNGE (3 \\Deleted)", `SELECT * FROM pr_expunge(p_account => $1, p_mailbox => $2, p_starts => '{1}',
			p_stops => '{4294967295}', p_only_deleted => true)`, []any{a.ID, in.ID}},
		{"COPY of 3 UIDs", `SELECT * FROM pr_copy(p_account => $1, p_src => $2, p_dst => $3, p_starts => $4, p_stops => $5,
			p_move => false)`, append([]any{a.ID, in.ID, arch.ID}, three...)},
		{"MOVE of 3 UIDs", `SELECT * FROM pr_copy(p_account => $1, p_src => $2, p_dst => $3, p_starts => $4, p_stops => $5,
			p_move => true)`, append([]any{a.ID, in.ID, arch.ID}, three...)},
	} {
		blocks(c.sql, c.args...)
		b := blocks(c.sql, c.args...)
		t.Logf("%s: %d blocks", c.what, b)
		if b > 150 {
			t.Errorf("%s in a mailbox of %d messages read %d blocks; want a few dozen", c.what, n, b)
		}
	}
}

// TestDeferredRelease: an expunge leaves its contents' release pending
// (content_releases) and the release follows its commit. A node that stops
// before releasing leaves the rows to the next Store that opens; a
// delivery of the same octets while the release is pending keeps its own
// content.
func TestDeferredRelease(t *testing.T) {
	st, url, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	body := msg("deferred", strings.Repeat("d", 3000))
	deliver(t, st, body, mailstore.Recipient{AccountID: a.ID})
	other := deliver(t, st, msg("other", "o"), mailstore.Recipient{AccountID: a.ID}).Delivered[0].UID
	refs := func() (n int) {
		t.Helper()
		err := st.Pool().QueryRow(ctx, `SELECT coalesce(sum(refcount), 0) FROM contents WHERE sha256 = sha256($1::bytea)`, []byte(body)).Scan(&n)
		must(t, err)
		return n
	}
	pending := func() (n int) {
		t.Helper()
		must(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM content_releases`).Scan(&n))
		return n
	}
	// An expunge that commits and whose node stops before releasing: the
	// function alone, without the Store's release afterwards.
	expungeOnly := func(uid uint32) {
		t.Helper()
		var got []int64
		must(t, st.Pool().QueryRow(ctx, `SELECT o_uids FROM pr_expunge(p_account => $1, p_mailbox => $2,
			p_starts => $3, p_stops => $3, p_only_deleted => false)`, a.ID, in.ID, []int64{int64(uid)}).Scan(&got))
		if len(got) != 1 {
			t.Fatalf("pr_expunge of UID %d removed %v", uid, got)
		}
	}
	// Nothing wakes the Store's release goroutine after its first drain
	// (Open's) but the Store's own expunges.
	must(t, st.WaitFirstRelease(ctx))
	expungeOnly(1)
	if p, r := pending(), refs(); p != 1 || r != 1 {
		t.Fatalf("after the expunge: %d pending releases, refcount %d; want 1 and 1", p, r)
	}
	checkInvariants(t, st)
	// The same octets again, while the release is pending: a content of
	// their own (0010), which the pending release leaves alone.
	again := deliver(t, st, body, mailstore.Recipient{AccountID: a.ID}).Delivered[0].UID
	if r := refs(); r != 2 {
		t.Fatalf("delivery during the pending release: refcount %d, want 2", r)
	}
	checkInvariants(t, st)

	// A Store that opens drains what was left.
	st2, err := postgres.Open(ctx, url, postgres.Options{})
	must(t, err)
	for pending() != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("a newly opened Store never released the pending contents")
		case <-time.After(10 * time.Millisecond):
		}
	}
	st2.Close()
	if r := refs(); r != 1 {
		t.Errorf("after the release: refcount %d, want 1 (the second delivery)", r)
	}
	if got := readAll(t, st, a.ID, in.ID, again, 0, -1); got != body {
		t.Errorf("the message that shared the content reads %d octets, want %d", len(got), len(body))
	}
	checkInvariants(t, st)

	// Through the Store: released after the commit, by the Store itself.
	x, err := st.Expunge(ctx, a.ID, in.ID, mailstore.UIDs(again, other), false)
	must(t, err)
	if len(x.UIDs) != 2 {
		t.Fatalf("Expunge removed %v", x.UIDs)
	}
	for pending() != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the Store never released the contents of its expunge")
		case <-time.After(10 * time.Millisecond):
		}
	}
	var n int
	must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM contents) + (SELECT count(*) FROM chunks)`).Scan(&n))
	if n != 0 {
		t.Errorf("%d content and chunk rows left after every message was expunged", n)
	}
	checkInvariants(t, st)
}
