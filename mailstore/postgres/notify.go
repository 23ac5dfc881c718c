package postgres

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the LISTEN/NOTIFY channel; the payload is a
// comma-separated list of the decimal account IDs whose mail changed (one
// notification per batch, not per account: a delivery to many accounts
// would otherwise cost a queue entry, a wire message and a wake-up per
// account on every listening node).
const notifyChannel = "postrider_changes"

const notifySQL = `SELECT pg_notify('` + notifyChannel + `', p) FROM unnest($1::text[]) p`

// maxNotifyPayload bounds one payload, below PostgreSQL's limit of 8000
// bytes.
const maxNotifyPayload = 7000

// notifyPayloads renders ids as payloads of at most maxNotifyPayload bytes.
func notifyPayloads(ids []int64) []string {
	var out []string
	buf := make([]byte, 0, min(maxNotifyPayload, 20*len(ids)))
	for _, id := range ids {
		if len(buf) > 0 && len(buf)+21 > maxNotifyPayload {
			out = append(out, string(buf))
			buf = buf[:0]
		}
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendInt(buf, id, 10)
	}
	if len(buf) > 0 {
		out = append(out, string(buf))
	}
	return out
}

// parseNotifyPayload calls fn for each account ID of a payload; it reports
// false when the payload is malformed (IDs before the fault are passed).
func parseNotifyPayload(payload string, fn func(int64)) bool {
	for {
		field, rest, more := strings.Cut(payload, ",")
		id, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return false
		}
		fn(id)
		if !more {
			return true
		}
		payload = rest
	}
}

// Writers do not NOTIFY inside their transactions: a transaction that
// notifies holds a cluster-wide lock from pre-commit until its commit
// record is flushed, which serialises every writer's fsync and defeats
// group commit. Instead, after commit, they queue the account IDs here and
// one goroutine per Store sends them, coalesced, in small WAL-free (hence
// flush-free) transactions. A notification lost to a crash or a broken
// connection only delays subscribers: they catch up by modseq, and every
// listener wakes all its subscribers when it (re)connects.
type notifier struct {
	mu      sync.Mutex
	pending map[int64]struct{}
	wake    chan struct{}
}

func newNotifier() *notifier {
	return &notifier{pending: map[int64]struct{}{}, wake: make(chan struct{}, 1)}
}

// maxPendingNotifies bounds the queue; beyond it, IDs are dropped (see
// above: that costs latency only).
const maxPendingNotifies = 100000

// notifyAccounts queues notifications for committed changes.
func (s *Store) notifyAccounts(ids []int64) {
	n := s.notifier
	n.mu.Lock()
	for _, id := range ids {
		if len(n.pending) < maxPendingNotifies {
			n.pending[id] = struct{}{}
		}
	}
	n.mu.Unlock()
	signal(n.wake)
}

// sendNotifications runs until ctx ends, sending queued notifications.
func (s *Store) sendNotifications(ctx context.Context) {
	defer close(s.notifyDone)
	n := s.notifier
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		for {
			n.mu.Lock()
			ids := make([]int64, 0, len(n.pending))
			for id := range n.pending {
				ids = append(ids, id)
			}
			clear(n.pending)
			n.mu.Unlock()
			if len(ids) == 0 {
				break
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.pool.Exec(sctx, notifySQL, notifyPayloads(ids))
			cancel()
			if err == nil {
				backoff = 50 * time.Millisecond
				continue
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("sending change notifications failed", "err", err, "accounts", len(ids))
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, s.opts.ListenBackoffMax)
			s.notifyAccounts(ids)
		}
	}
}

// hub fans notifications out to in-process subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[int64]map[*chan struct{}]struct{}
}

func newHub() *hub { return &hub{subs: map[int64]map[*chan struct{}]struct{}{}} }

func (h *hub) subscribe(accountID int64) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	key := &ch
	h.mu.Lock()
	m := h.subs[accountID]
	if m == nil {
		m = map[*chan struct{}]struct{}{}
		h.subs[accountID] = m
	}
	m[key] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			if m := h.subs[accountID]; m != nil {
				delete(m, key)
				if len(m) == 0 {
					delete(h.subs, accountID)
				}
			}
			h.mu.Unlock()
		})
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default: // a value is already pending; it covers this change too
	}
}

func (h *hub) notify(accountID int64) {
	h.mu.Lock()
	for k := range h.subs[accountID] {
		signal(*k)
	}
	h.mu.Unlock()
}

func (h *hub) notifyAll() {
	h.mu.Lock()
	for _, m := range h.subs {
		for k := range m {
			signal(*k)
		}
	}
	h.mu.Unlock()
}

// Subscribe implements mailstore.Store. Values arrive after commits on any
// node (via LISTEN/NOTIFY) and after the listener (re)connects, when
// notifications may have been missed.
func (s *Store) Subscribe(accountID int64) (<-chan struct{}, func()) {
	return s.hub.subscribe(accountID)
}

// listen keeps one dedicated connection (outside the pool) listening on
// notifyChannel, reconnecting with exponential backoff until ctx ends.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	defer close(s.listenDone)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cfg, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
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
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return err
	}
	connected()
	// Anything committed while we were not listening was missed: wake
	// every subscriber so it catches up from the database.
	s.hub.notifyAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if !parseNotifyPayload(n.Payload, s.hub.notify) {
			s.log.Warn("ignoring malformed notification payload", "channel", n.Channel)
		}
	}
}

// flushNotifications sends what is queued now (Close calls it, so that a
// write just before Close still wakes the other nodes).
func (s *Store) flushNotifications() {
	n := s.notifier
	n.mu.Lock()
	ids := make([]int64, 0, len(n.pending))
	for id := range n.pending {
		ids = append(ids, id)
	}
	clear(n.pending)
	n.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, notifySQL, notifyPayloads(ids)); err != nil {
		s.log.Warn("sending change notifications at close failed", "err", err, "accounts", len(ids))
	}
}
