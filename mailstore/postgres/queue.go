package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postrider/postrider/mailstore"
)

// The outbound queue (migration 0006): queue_items hold a reference on a
// stored content and the transaction's envelope; queue_recipients one row
// per remote recipient. Deliver queues (pr_deliver → pr_enqueue); the
// delivery workers claim, read and finish items here.

// itemCols are the queue_items columns scanItems reads, from alias q. A
// due-at-once item (next_attempt '-infinity') shows its creation time.
const itemCols = `q.id, q.mail_from, q.sender_account, q.params::text, q.size, q.created_at,
	greatest(q.next_attempt, q.created_at), q.warned_at, q.lease_holder, q.lease_until`

// rcptCols are the queue_recipients columns scanItems reads, from alias r
// (NULL when an item has no recipient row to show).
const rcptCols = `r.id, r.address, r.domain, r.orcpt, r.notify, r.state, r.attempts, r.last_attempt,
	r.last_code, r.last_reply, r.remote_mta`

// scanItems reads rows of itemCols and rcptCols, ordered by item, into
// items with their recipients, and closes rows. withBody: a last column
// holds the item's body (claimSQL).
func scanItems(rows pgx.Rows, withBody bool) ([]mailstore.QueueItem, error) {
	defer rows.Close()
	var items []mailstore.QueueItem
	for rows.Next() {
		var it mailstore.QueueItem
		var params string
		var warned, leaseUntil, last *time.Time
		var holder, addr, dom, orcpt, notify, state, code, reply, mta *string
		var rid *int64
		var attempts *int32
		dst := []any{&it.ID, &it.MailFrom, &it.SenderAccount, &params, &it.Size, &it.CreatedAt,
			&it.NextAttempt, &warned, &holder, &leaseUntil,
			&rid, &addr, &dom, &orcpt, &notify, &state, &attempts, &last, &code, &reply, &mta}
		var body []byte
		if withBody {
			dst = append(dst, &body)
		}
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		if body != nil && int64(len(body)) != it.Size {
			return nil, fmt.Errorf("queue item %d: %d octets read for a body of %d", it.ID, len(body), it.Size)
		}
		if withBody && body == nil && it.Size == 0 {
			body = []byte{} // an empty message has no chunk
		}
		if body != nil {
			it.Body = body
		}
		if n := len(items); n == 0 || items[n-1].ID != it.ID {
			if params != "{}" {
				if err := json.Unmarshal([]byte(params), &it.Params); err != nil {
					return nil, fmt.Errorf("queue item %d: params: %w", it.ID, err)
				}
			}
			it.WarnedAt, it.LeaseUntil = deref(warned), deref(leaseUntil)
			if holder != nil {
				it.LeaseHolder = *holder
			}
			items = append(items, it)
		}
		if rid == nil {
			continue
		}
		cur := &items[len(items)-1]
		cur.Recipients = append(cur.Recipients, mailstore.QueueRecipient{
			ID: *rid, Address: *addr, Domain: *dom, ORCPT: *orcpt, Notify: *notify,
			State: mailstore.QueueRecipientState(*state), Attempts: int(*attempts), LastAttempt: deref(last),
			LastCode: *code, LastReply: *reply, RemoteMTA: *mta,
		})
	}
	return items, rows.Err()
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// checkHolder validates a lease holder name.
func checkHolder(holder string) error {
	if holder == "" || len(holder) > MaxLeaseNameLength || !utf8.ValidString(holder) || strings.IndexByte(holder, 0) >= 0 {
		return fmt.Errorf("%w: bad queue lease holder", mailstore.ErrInvalidArgument)
	}
	return nil
}

// claimBodyMax is the largest message ClaimQueue returns with its item
// (QueueItem.Body): a claim of MaxQueueClaim items holds at most that
// many times as much; the delivery engine claims a few hundred.
const claimBodyMax = 64 << 10

// claimSQL claims (up to $4 items due at $1, leased to $2 until $3) and
// returns them with their pending recipients, and the body of those of at
// most $5 octets (one chunk) in the row of their first recipient.
const claimSQL = `
	WITH c AS (
		SELECT id, next_attempt AS due FROM queue_items
		 WHERE next_attempt <= $1 AND (lease_until IS NULL OR lease_until <= $1)
		 ORDER BY next_attempt, id
		 LIMIT $4
		   FOR UPDATE SKIP LOCKED
	), q AS (
		UPDATE queue_items qi SET lease_holder = $2, lease_until = $3, next_attempt = $3
		  FROM c WHERE qi.id = c.id
		RETURNING qi.*, c.due
	)
	SELECT ` + itemCols + `, ` + rcptCols + `,
	       CASE WHEN q.size <= $5 AND row_number() OVER (PARTITION BY q.id ORDER BY r.id) = 1
	            THEN (SELECT ch.data FROM chunks ch WHERE ch.content_id = q.content_id AND ch.seq = 0) END
	  FROM q LEFT JOIN queue_recipients r ON r.item_id = q.id AND r.state = 'pending'
	 ORDER BY q.due, q.id, r.id`

// ClaimQueue implements mailstore.Queue in one statement. The scan of
// queue_items_due stops at now: leased items lie above it (a claim moves
// next_attempt to the lease's end), so it reads only items it may take,
// and those a concurrent claim holds locked, which it skips. Messages of
// up to claimBodyMax octets come along (QueueItem.Body): most mail, which
// then costs its delivery worker no OpenQueued query.
func (s *Store) ClaimQueue(ctx context.Context, holder string, now time.Time, lease time.Duration, max int) ([]mailstore.QueueItem, error) {
	if err := checkHolder(holder); err != nil {
		return nil, err
	}
	if lease <= 0 || max <= 0 || max > MaxQueueClaim {
		return nil, fmt.Errorf("%w: queue claim of %d items for %v", mailstore.ErrInvalidArgument, max, lease)
	}
	rows, err := s.pool.Query(ctx, claimSQL, now, holder, now.Add(lease), max, int64(min(claimBodyMax, ChunkSize)))
	if err != nil {
		return nil, mapErr("claim queue", err)
	}
	items, err := scanItems(rows, true)
	return items, mapErr("claim queue", err)
}

// RenewQueueLease implements mailstore.Queue; the IDs come back ascending.
func (s *Store) RenewQueueLease(ctx context.Context, holder string, ids []int64, now time.Time, lease time.Duration) ([]int64, error) {
	if err := checkHolder(holder); err != nil {
		return nil, err
	}
	if lease <= 0 || len(ids) > MaxQueueClaim {
		return nil, fmt.Errorf("%w: lease renewal of %d items for %v", mailstore.ErrInvalidArgument, len(ids), lease)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `UPDATE queue_items SET lease_until = $3, next_attempt = $3
		WHERE id = ANY ($1) AND lease_holder = $2 RETURNING id`, ids, holder, now.Add(lease))
	if err != nil {
		return nil, mapErr("renew queue lease", err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, mapErr("renew queue lease", err)
	}
	slices.Sort(held)
	return held, nil
}

// OpenQueued implements mailstore.Queue like OpenMessage: the first query
// finds the item's content and returns its first chunk.
func (s *Store) OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error) {
	var r msgReader
	var first []byte
	err := s.pool.QueryRow(ctx, `
		SELECT c.id, c.size, c.chunk_size,
		       (SELECT ch.data FROM chunks ch WHERE ch.content_id = c.id AND ch.seq = 0)
		  FROM queue_items q JOIN contents c ON c.id = q.content_id
		 WHERE q.id = $1`, id).Scan(&r.contentID, &r.size, &r.chunkSize, &first)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("open queued %d: %w", id, mailstore.ErrNoSuchQueueItem)
	}
	if err != nil {
		return nil, mapErr("open queued", err)
	}
	r.ctx, r.s = ctx, s
	r.end = r.size
	if int64(len(first)) > r.end {
		first = first[:r.end]
	}
	r.cur = first
	return &r, nil
}

// clip makes a remote server's text storable (valid UTF-8, no NUL) and
// cuts it to at most n octets at a character boundary.
func clip(s string, n int) string {
	s = searchClean(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

const finishSQL = `SELECT pr_finish_attempt(p_item => $1, p_holder => $2, p_at => $3, p_rcpts => $4,
	p_states => $5, p_codes => $6, p_replies => $7, p_mtas => $8, p_next => $9, p_warned => $10)`

// finishArgs validates an attempt and returns finishSQL's arguments.
// Replies, codes and remote host names longer than MaxQueueReply octets
// are cut.
func finishArgs(holder string, a mailstore.QueueAttempt) ([]any, error) {
	if err := checkHolder(holder); err != nil {
		return nil, err
	}
	if len(a.Results) > MaxRecipients {
		return nil, fmt.Errorf("%w: more than %d attempt results", mailstore.ErrInvalidArgument, MaxRecipients)
	}
	n := len(a.Results)
	ids, states := make([]int64, n), make([]string, n)
	codes, replies, mtas := make([]string, n), make([]string, n), make([]string, n)
	for i, r := range a.Results {
		switch r.State {
		case mailstore.RcptPending, mailstore.RcptDelivered, mailstore.RcptFailed:
		default:
			return nil, fmt.Errorf("%w: recipient state %q", mailstore.ErrInvalidArgument, r.State)
		}
		ids[i], states[i] = r.RecipientID, string(r.State)
		codes[i], replies[i], mtas[i] = clip(r.Code, MaxQueueReply), clip(r.Reply, MaxQueueReply), clip(r.RemoteMTA, MaxQueueReply)
	}
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	var next, warned *time.Time
	if !a.Next.IsZero() {
		next = &a.Next
	}
	if !a.Warned.IsZero() {
		warned = &a.Warned
	}
	return []any{a.ItemID, holder, at, ids, states, codes, replies, mtas, next, warned}, nil
}

// finishOutcome turns pr_finish_attempt's outcome into FinishAttempt's
// error.
func finishOutcome(item int64, outcome string) error {
	switch outcome {
	case "gone":
		return fmt.Errorf("finish attempt of queue item %d: %w: %w", item, mailstore.ErrLeaseLost, mailstore.ErrNoSuchQueueItem)
	case "lost":
		return fmt.Errorf("finish attempt of queue item %d: %w", item, mailstore.ErrLeaseLost)
	}
	return nil
}

// finishOne runs pr_finish_attempt alone, retried on deadlock.
func (s *Store) finishOne(ctx context.Context, args []any) error {
	var outcome string
	var err error
	for attempt := 0; ; attempt++ {
		err = s.pool.QueryRow(ctx, finishSQL, args...).Scan(&outcome)
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		break
	}
	if err != nil {
		return mapErr("finish attempt", err)
	}
	return finishOutcome(args[0].(int64), outcome)
}

// FinishAttempt implements mailstore.Queue in one statement
// (pr_finish_attempt).
func (s *Store) FinishAttempt(ctx context.Context, holder string, a mailstore.QueueAttempt) error {
	args, err := finishArgs(holder, a)
	if err != nil {
		return err
	}
	return s.finishOne(ctx, args)
}

// FinishAttempts implements mailstore.Queue: pr_finish_attempt for each
// attempt, all in one transaction and one round trip (the commit, like
// each one's, asynchronous: see pr_finish_attempt), items in id order so
// that two such transactions lock them in the same order. A delivery
// worker finishes the messages of one connection together: one round
// trip and one commit instead of one per message. If a statement fails
// (an attempt whose results do not fit its item, a deadlock), nothing of
// the batch is kept and each attempt is recorded alone, so that one
// refusal never takes the others with it.
func (s *Store) FinishAttempts(ctx context.Context, holder string, as []mailstore.QueueAttempt) []error {
	errs := make([]error, len(as))
	args := make([][]any, len(as))
	var order []int
	for i, a := range as {
		if args[i], errs[i] = finishArgs(holder, a); errs[i] == nil {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(as[x].ItemID, as[y].ItemID) })
	if len(order) > 1 {
		outcomes, err := s.finishTogether(ctx, args, order)
		if err == nil {
			for k, i := range order {
				errs[i] = finishOutcome(as[i].ItemID, outcomes[k])
			}
			return errs
		}
	}
	for _, i := range order {
		errs[i] = s.finishOne(ctx, args[i])
	}
	return errs
}

// finishTogether runs the attempts args[order...] in one transaction.
func (s *Store) finishTogether(ctx context.Context, args [][]any, order []int) ([]string, error) {
	out := make([]string, len(order))
	err := s.txBatch(ctx, func(b *pgx.Batch) {
		for _, i := range order {
			b.Queue(finishSQL, args[i]...)
		}
	}, func(br pgx.BatchResults) error {
		for k := range order {
			if err := br.QueryRow().Scan(&out[k]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListQueue implements mailstore.Queue.
func (s *Store) ListQueue(ctx context.Context, max int) ([]mailstore.QueueItem, error) {
	var limit *int64
	if max > 0 {
		l := int64(max)
		limit = &l
	}
	rows, err := s.pool.Query(ctx, `
		WITH q AS (SELECT * FROM queue_items ORDER BY id LIMIT $1)
		SELECT `+itemCols+`, `+rcptCols+`
		  FROM q LEFT JOIN queue_recipients r ON r.item_id = q.id
		 ORDER BY q.id, r.id`, limit)
	if err != nil {
		return nil, mapErr("list queue", err)
	}
	items, err := scanItems(rows, false)
	return items, mapErr("list queue", err)
}

// GetQueueItem implements mailstore.Queue.
func (s *Store) GetQueueItem(ctx context.Context, id int64) (mailstore.QueueItem, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT `+itemCols+`, `+rcptCols+`
		  FROM queue_items q LEFT JOIN queue_recipients r ON r.item_id = q.id
		 WHERE q.id = $1
		 ORDER BY r.id`, id)
	if err != nil {
		return mailstore.QueueItem{}, mapErr("get queue item", err)
	}
	items, err := scanItems(rows, false)
	if err != nil {
		return mailstore.QueueItem{}, mapErr("get queue item", err)
	}
	if len(items) == 0 {
		return mailstore.QueueItem{}, fmt.Errorf("get queue item %d: %w", id, mailstore.ErrNoSuchQueueItem)
	}
	return items[0], nil
}

// RetryQueue implements mailstore.Queue: the items become due at once
// ('-infinity'), for every node whatever its clock.
func (s *Store) RetryQueue(ctx context.Context, ids []int64) (int, error) {
	if len(ids) > MaxQueueClaim {
		return 0, fmt.Errorf("%w: more than %d queue items", mailstore.ErrInvalidArgument, MaxQueueClaim)
	}
	const retry = `UPDATE queue_items SET next_attempt = '-infinity'`
	var tag pgconn.CommandTag
	var err error
	switch {
	case ids == nil:
		tag, err = s.pool.Exec(ctx, retry)
	case len(ids) == 0:
		return 0, nil
	default:
		tag, err = s.pool.Exec(ctx, retry+` WHERE id = ANY ($1)`, ids)
	}
	if err != nil {
		return 0, mapErr("retry queue", err)
	}
	return int(tag.RowsAffected()), nil
}

// RemoveQueueItem implements mailstore.Queue (pr_queue_remove).
func (s *Store) RemoveQueueItem(ctx context.Context, id int64) error {
	var found bool
	var err error
	for attempt := 0; ; attempt++ {
		err = s.pool.QueryRow(ctx, `SELECT pr_queue_remove(p_id => $1)`, id).Scan(&found)
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		break
	}
	if err != nil {
		return mapErr("remove queue item", err)
	}
	if !found {
		return fmt.Errorf("remove queue item %d: %w", id, mailstore.ErrNoSuchQueueItem)
	}
	return nil
}

// QueueStats implements mailstore.Queue. Every item has a pending
// recipient (an item without one is removed), so the items are all rows.
func (s *Store) QueueStats(ctx context.Context, now time.Time) (mailstore.QueueStats, error) {
	var st mailstore.QueueStats
	var items, rcpts int64
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM queue_items),
		(SELECT count(*) FROM queue_recipients WHERE state = 'pending'),
		(SELECT created_at FROM queue_items ORDER BY id LIMIT 1)`).Scan(&items, &rcpts, &oldest)
	if err != nil {
		return st, mapErr("queue stats", err)
	}
	st.Items, st.Recipients = int(items), int(rcpts)
	if oldest != nil && now.After(*oldest) {
		st.OldestAge = now.Sub(*oldest)
	}
	return st, nil
}
