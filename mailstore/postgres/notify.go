package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// notifyChannel is the LISTEN/NOTIFY channel. A payload is a
// comma-separated list of changes (payload.go): "account:mailbox:modseq"
// when a writer knows the mailbox and its new highest mod-sequence, or
// "account" alone when any mailbox of the account may have changed (a
// mailbox renamed or deleted, an account deleted). One notification per
// batch, not per account: a delivery to many accounts would otherwise cost
// a queue entry, a wire message and a wake-up per account on every
// listening node.
const notifyChannel = "postrider_changes"

// notifyCoalesce is how long the sender lets changes gather before it
// sends them to the other nodes (sendNotifications).
const notifyCoalesce = 3 * time.Millisecond

// Its second argument is a stamp for notifyStampChannel, or empty.
const notifySQL = `SELECT pg_notify('` + notifyChannel + `', p) FROM unnest($1::text[]) p
	UNION ALL SELECT pg_notify('` + notifyStampChannel + `', $2::text) WHERE $2::text <> ''`

// change is one committed change a notification carries: the account, and
// the mailbox with its highest mod-sequence after the change; mailbox 0
// means any mailbox of the account ("unknown").
type change struct {
	account, mailbox int64
	modseq           int64
}

// mailboxChange is the change of one mailbox to highest mod-sequence
// modseq.
func mailboxChange(account, mailbox int64, modseq uint64) []change {
	return []change{{account: account, mailbox: mailbox, modseq: int64(modseq)}}
}

// accountChange is a change to any mailbox of account.
func accountChange(account int64) []change { return []change{{account: account}} }

// notifyUncertain is for a write that failed without telling whether it
// committed (a broken connection, not an error the database reported,
// which rolls the transaction back): every mailbox of its accounts counts
// as possibly changed, on every node, so that no session takes its view
// as current when it may not be.
func (s *Store) notifyUncertain(err error, accounts ...int64) {
	var pe *pgconn.PgError
	if err == nil || errors.As(err, &pe) {
		return
	}
	cs := make([]change, len(accounts))
	for i, a := range accounts {
		cs[i] = change{account: a}
	}
	s.notifyChanges(cs)
}

// Writers do not NOTIFY inside their transactions: a transaction that
// notifies holds a cluster-wide lock from pre-commit until its commit
// record is flushed, which serialises every writer's fsync and defeats
// group commit. Instead, after commit, they record the change in this
// node's hub (its sessions know at once) and queue it here; one goroutine
// per Store sends the queue, coalesced, in small WAL-free (hence
// flush-free) transactions. A notification lost to a crash or a broken
// connection only delays other nodes' sessions until the mailbox's next
// notification or a NOOP; every listener counts everything as changed
// when it (re)connects.
type notifier struct {
	mu       sync.Mutex
	pending  map[changeKey]int64 // highest modseq per mailbox; mailbox 0: unknown
	overflow bool                // entries were dropped: send "everything may have changed"
	since    time.Time           // when the oldest pending change was committed
	wake     chan struct{}
}

type changeKey struct{ account, mailbox int64 }

func newNotifier() *notifier {
	return &notifier{pending: map[changeKey]int64{}, wake: make(chan struct{}, 1)}
}

// maxPendingNotifies bounds the queue; beyond it, entries are replaced by
// one "everything may have changed" (payload.go), which costs every
// subscriber on every node one catch-up.
const maxPendingNotifies = 100000

// notifyChanges records committed changes in this node's hub and queues
// them for the other nodes.
func (s *Store) notifyChanges(cs []change) {
	if len(cs) == 0 {
		return
	}
	s.hub.record(cs)
	n := s.notifier
	n.mu.Lock()
	if n.since.IsZero() {
		n.since = time.Now()
	}
	for _, c := range cs {
		k := changeKey{c.account, c.mailbox}
		if old, ok := n.pending[k]; ok {
			n.pending[k] = max(old, c.modseq)
			continue
		}
		if len(n.pending) >= maxPendingNotifies {
			n.overflow = true
			continue
		}
		n.pending[k] = c.modseq
	}
	n.mu.Unlock()
	signal(n.wake)
}

// take empties the queue: the changes to send, or all when entries were
// dropped, and when the oldest of them was committed.
func (n *notifier) take() (cs []change, all bool, since time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	since, n.since = n.since, time.Time{}
	if n.overflow {
		clear(n.pending)
		n.overflow = false
		return nil, true, since
	}
	if len(n.pending) == 0 {
		return nil, false, since
	}
	cs = make([]change, 0, len(n.pending))
	for k, m := range n.pending {
		// An account-level entry covers the account's mailboxes.
		if _, acct := n.pending[changeKey{k.account, 0}]; acct && k.mailbox != 0 {
			continue
		}
		cs = append(cs, change{account: k.account, mailbox: k.mailbox, modseq: m})
	}
	clear(n.pending)
	return cs, false, since
}

// requeue puts back changes that could not be sent (the hub has them).
func (n *notifier) requeue(cs []change, all bool, since time.Time) {
	n.mu.Lock()
	if n.since.IsZero() || since.Before(n.since) {
		n.since = since
	}
	n.overflow = n.overflow || all
	for _, c := range cs {
		k := changeKey{c.account, c.mailbox}
		if old, ok := n.pending[k]; ok || len(n.pending) < maxPendingNotifies {
			n.pending[k] = max(old, c.modseq)
		} else {
			n.overflow = true
		}
	}
	n.mu.Unlock()
	signal(n.wake)
}

// payloadsOf renders what take returned.
func payloadsOf(cs []change, all bool) []string {
	if all {
		return []string{allChanged}
	}
	return notifyPayloads(cs)
}

// sendNotifications runs until ctx ends, sending queued notifications.
func (s *Store) sendNotifications(ctx context.Context) {
	defer close(s.notifyDone)
	n := s.notifier
	backoff := 50 * time.Millisecond
	var lastStamp time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		// Let the changes of a few milliseconds gather into one statement
		// (one transaction, one commit): under imaptest's sessions-open
		// load the statements carried two or three changes each, one
		// transaction for every two writes. Sessions on this node were
		// woken already (hub.record); other nodes learn this much later.
		t := time.NewTimer(notifyCoalesce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		for {
			cs, all, since := n.take()
			if len(cs) == 0 && !all {
				break
			}
			stamp := ""
			if now := time.Now(); now.Sub(lastStamp) >= notifyStampEvery && !since.IsZero() {
				stamp, lastStamp = notifyStamp(since), now
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.pool.Exec(sctx, notifySQL, payloadsOf(cs, all), stamp)
			cancel()
			if err == nil {
				backoff = 50 * time.Millisecond
				continue
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("sending change notifications failed", "err", err, "changes", len(cs))
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, s.opts.ListenBackoffMax)
			n.requeue(cs, all, since)
		}
	}
}

// flushNotifications sends what is queued now (Close calls it, so that a
// write just before Close still wakes the other nodes).
func (s *Store) flushNotifications() {
	cs, all, _ := s.notifier.take()
	if len(cs) == 0 && !all {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, notifySQL, payloadsOf(cs, all), ""); err != nil {
		s.log.Warn("sending change notifications at close failed", "err", err, "changes", len(cs))
	}
}

// listen keeps one dedicated connection (outside the pool) listening on
// notifyChannel, reconnecting with exponential backoff until ctx ends.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	defer close(s.listenDone)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cfg, func() { backoff = 50 * time.Millisecond })
		s.hub.disconnected()
		if ctx.Err() != nil {
			return
		}
		s.listenReconnects.Add(1)
		s.log.Warn("notification listener disconnected; reconnecting", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, s.opts.ListenBackoffMax)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, ch := range []string{notifyChannel, notifyStampChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			return err
		}
	}
	connected()
	// Anything committed while we were not listening was missed: every
	// mailbox counts as changed, and every subscriber is woken to catch up
	// from the database.
	s.hub.connected()
	var cs []change
	for {
		wctx, cancel := context.WithTimeout(ctx, s.opts.ListenProbeInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() == nil && wctx.Err() != nil && pgconn.Timeout(err) {
			// Quiet for a while: make sure the connection still leads to
			// the primary (see probeListener), then wait on.
			if err := probeListener(ctx, conn, min(s.opts.ListenProbeInterval, 5*time.Second)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if s.ownPIDs.has(n.PID) {
			continue // sent by this Store, whose hub recorded it at commit
		}
		if n.Channel == notifyStampChannel {
			if t, ok := parseNotifyStamp(n.Payload); ok && s.opts.Observer.NotifyLag != nil {
				s.opts.Observer.NotifyLag(max(time.Since(t), 0))
			}
			continue
		}
		cs = cs[:0]
		all := false
		ok := parseNotifyPayload(n.Payload, func(c change) { cs = append(cs, c) }, func() { all = true })
		switch {
		case !ok:
			// Not ours to understand (a newer node's format?): whatever
			// it says, something changed.
			s.log.Warn("malformed notification payload; counting everything as changed", "channel", n.Channel)
			s.hub.connected()
		case all:
			s.hub.connected()
		default:
			s.hub.record(cs)
		}
	}
}

// probeListener checks a listening connection that has been quiet. A
// primary that vanished without closing it (a network partition, a host
// that froze) would leave the listener waiting until TCP keepalive gives up,
// tens of minutes, while the pool has long moved to the new primary and
// this node's IDLE sessions hear nothing of other nodes' writes. A server
// that is in recovery (a former primary turned standby) receives no
// NOTIFY from the writers either. Either way the listener reconnects
// (with target_session_attrs=read-write, to the primary) and catches up.
func probeListener(ctx context.Context, conn *pgx.Conn, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var standby bool
	if err := conn.QueryRow(pctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return fmt.Errorf("probing the listening connection: %w", err)
	}
	if standby {
		return errors.New("the listening connection's server is in recovery (no longer the primary)")
	}
	return nil
}

// pidSet holds the backend process IDs of a pool's open connections. A
// notification from one of them is this node's own: PostgreSQL gives no
// two live backends the same PID, and a PID leaves the set when its
// connection closes, before another backend can reuse it.
type pidSet struct {
	mu   sync.Mutex
	pids map[uint32]struct{}
}

func (p *pidSet) add(pid uint32) {
	p.mu.Lock()
	p.pids[pid] = struct{}{}
	p.mu.Unlock()
}

func (p *pidSet) remove(pid uint32) {
	p.mu.Lock()
	delete(p.pids, pid)
	p.mu.Unlock()
}

func (p *pidSet) has(pid uint32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.pids[pid]
	return ok
}
