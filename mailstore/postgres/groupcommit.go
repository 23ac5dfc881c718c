package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Group commit for deliveries to one mailbox.
//
// A delivery holds its mailbox's row (for UIDNEXT) and its account's row
// (for the quota) from its updates until its commit record is on disk, so
// concurrent deliveries to one mailbox run one disk flush after another:
// ten SMTP sessions sending to one user were limited by the flush time,
// not by the CPU. So deliveries of a small message to a single mailbox go
// through a per-mailbox queue on each node: when none is running for that
// mailbox the delivery runs at once, as before; the ones that arrive
// meanwhile wait and are then committed together, in one transaction with
// one flush (pr_deliver once per message, in arrival order). Every caller
// gets its own result only after that commit, so a message is still
// acknowledged only once it is durable. If the shared transaction fails
// (one message over quota, say), each message is delivered on its own, so
// one failure never takes the others with it.
//
// Only single-mailbox deliveries are combined: the shared transaction then
// locks one account row and one mailbox row, as a single delivery does,
// and the lock order of the write functions holds. One difference: the
// second and later messages store their content while the transaction
// already holds those two rows, so if another transaction is inserting the
// very same octets and waits for one of those rows, PostgreSQL reports a
// deadlock after deadlock_timeout; the group is then redone one by one.

// maxGroup bounds the deliveries committed together.
const maxGroup = 32

type groupKey struct {
	account, mailbox int64 // mailbox 0: by name
	name             string
}

type groupReq struct {
	args []any
	done chan groupRes
}

type groupRes struct {
	rows []delivered
	err  error
}

type groupQueue struct {
	busy    bool
	waiting []*groupReq
}

type groupCommitter struct {
	mu     sync.Mutex
	queues map[groupKey]*groupQueue
}

func keyOf(t target) groupKey {
	k := groupKey{account: t.account, name: t.name}
	if t.mailbox != nil {
		k.mailbox, k.name = *t.mailbox, ""
	}
	return k
}

// deliverGrouped runs pr_deliver (args) for a single-mailbox delivery,
// committed alone or together with others to the same mailbox.
func (s *Store) deliverGrouped(ctx context.Context, key groupKey, args []any) ([]delivered, error) {
	g := &s.groups
	g.mu.Lock()
	q := g.queues[key]
	if q == nil {
		q = &groupQueue{}
		g.queues[key] = q
	}
	if q.busy {
		req := &groupReq{args: args, done: make(chan groupRes, 1)}
		q.waiting = append(q.waiting, req)
		g.mu.Unlock()
		r := <-req.done
		return r.rows, r.err
	}
	q.busy = true
	g.mu.Unlock()
	rows, _, err := s.deliverAlone(ctx, args)
	s.handOff(ctx, key, q)
	return rows, err
}

// handOff ends a queue's turn: with deliveries waiting, a goroutine
// commits them (the caller returns now); otherwise the queue goes.
func (s *Store) handOff(ctx context.Context, key groupKey, q *groupQueue) {
	g := &s.groups
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(q.waiting) == 0 {
		q.busy = false
		delete(g.queues, key)
		return
	}
	go s.drainGroup(context.WithoutCancel(ctx), key, q)
}

// drainGroup commits the waiting deliveries, up to maxGroup at a time,
// until none is left.
func (s *Store) drainGroup(ctx context.Context, key groupKey, q *groupQueue) {
	g := &s.groups
	for {
		g.mu.Lock()
		n := min(len(q.waiting), maxGroup)
		batch := q.waiting[:n:n]
		q.waiting = q.waiting[n:]
		if n == 0 {
			q.busy = false
			delete(g.queues, key)
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, groupTimeout)
		s.commitGroup(cctx, batch)
		cancel()
	}
}

// groupTimeout bounds one group's commit (the callers wait for it).
const groupTimeout = time.Minute

// commitGroup delivers the batch in one transaction, or each alone if that
// fails.
func (s *Store) commitGroup(ctx context.Context, batch []*groupReq) {
	if len(batch) > 1 {
		res, err := s.deliverTogether(ctx, batch)
		if err == nil {
			var cs []change
			for i := range batch {
				cs = append(cs, deliveredChanges(res[i])...)
			}
			s.notifyChanges(cs)
			s.groupedCommits.Add(1)
			for i, r := range batch {
				r.done <- groupRes{rows: res[i]}
			}
			return
		}
		// A statement failed: the server rolled the transaction back, and
		// each message is delivered on its own below. Any other failure
		// (the connection, say) leaves the commit's outcome unknown, as for
		// a single delivery: each caller gets the error, nothing is
		// delivered twice.
		s.groupFallbacks.Add(1)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			for _, r := range batch {
				s.notifyUncertain(err, deliverAccounts(r.args)...)
			}
			err = mapErr("deliver", err)
			for _, r := range batch {
				r.done <- groupRes{err: err}
			}
			return
		}
	}
	for _, r := range batch {
		rows, _, err := s.deliverAlone(ctx, r.args)
		r.done <- groupRes{rows: rows, err: err}
	}
}

// deliverTogether runs every pr_deliver of the batch and the commit in one
// round trip.
func (s *Store) deliverTogether(ctx context.Context, batch []*groupReq) ([][]delivered, error) {
	out := make([][]delivered, len(batch))
	err := s.txBatch(ctx, func(b *pgx.Batch) {
		for _, r := range batch {
			b.Queue(deliverSQL, r.args...)
		}
	}, func(br pgx.BatchResults) error {
		for i := range batch {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			if out[i], err = scanDelivered(rows, nil); err != nil {
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

// txBatch runs the statements queue adds as one transaction in one round
// trip (BEGIN, the statements, COMMIT in a pipelined batch); read takes
// the statements' results in order. On any error the transaction is
// rolled back.
func (s *Store) txBatch(ctx context.Context, queue func(*pgx.Batch), read func(pgx.BatchResults) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	queue(b)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := read(br); err != nil {
			return err
		}
		_, err := br.Exec()
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		rollback(conn)
	}
	return err
}

// deliverAlone runs one pr_deliver as its own transaction, retried on
// deadlock; with remote recipients in args it returns the queue item's id.
func (s *Store) deliverAlone(ctx context.Context, args []any) ([]delivered, int64, error) {
	for attempt := 0; ; attempt++ {
		rows, qid, err := s.runDeliver(ctx, nil, args)
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, 0, mapErr("deliver", err)
		}
		return rows, qid, nil
	}
}
