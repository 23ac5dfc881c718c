package pop3d

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// The maildrop lock.
//
// RFC 1939 §8 expects the server to lock the maildrop for the length of a
// session. Postrider nodes share nothing but the database, so the lock is a
// store lease named "pop3:<account id>", held by a holder string unique to
// the session (node id and random octets), taken for LockTTL and renewed
// every LockRenewInterval while the session lives. QUIT and disconnect
// release it; if the node dies, the lease simply expires, so the user is
// blocked for at most LockTTL (30 s by default). A second session anywhere
// in the cluster gets "-ERR [IN-USE]" (RFC 2449 §8.1.2).
//
// A session that cannot renew its lease for a whole TTL (database gone,
// or another holder took the expired lease) may no longer own the
// maildrop: it is closed without committing anything.
//
// A session that ends while the database is unreachable cannot release its
// lease, which would then block the user for the rest of the TTL after the
// database is back. So the holder is remembered as an orphan of this node
// (orphanLeases): a background loop retries the release every
// releaseRetryInterval, each time with a fresh short context, until it
// succeeds or the lease has expired anyway (bounded by the TTL); and a new
// login on this node that finds the maildrop taken first releases this
// node's orphan itself, so it succeeds at once even before the loop's next
// try. Releasing is always safe: it deletes the lease only while the
// orphan's holder still has it, so it can never take a lock another
// session (on any node) acquired meanwhile. A login arriving at another node
// waits for this node's retry loop (or, if this node died, the TTL).
// The alternative, recognising a stale holder by its node and session id,
// would need the store to report a lease's holder; the orphan list knows
// the exact holder string without that.

// Timing of the background release of orphaned leases.
const (
	releaseTimeout       = 5 * time.Second
	releaseRetryInterval = 500 * time.Millisecond
)

// orphanLeases are the leases this node's ended sessions could not release:
// lease name → holder.
type orphanLeases struct {
	mu sync.Mutex
	m  map[string]string
	// freed wakes the logins of this node that wait for a lock another
	// session of this node holds, when that session releases it (the
	// commonest case: a client that sends QUIT and reconnects at once, to
	// the same node). Logins waiting for another node's session poll.
	freed map[string]*freedWait
}

type freedWait struct {
	ch      chan struct{}
	waiters int
}

// waitFreed returns a channel closed when a session of this node releases
// the lock name; call done when no longer waiting.
func (o *orphanLeases) waitFreed(name string) (ch <-chan struct{}, done func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.freed == nil {
		o.freed = map[string]*freedWait{}
	}
	w := o.freed[name]
	if w == nil {
		w = &freedWait{ch: make(chan struct{})}
		o.freed[name] = w
	}
	w.waiters++
	return w.ch, func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		if w.waiters--; w.waiters == 0 && o.freed[name] == w {
			delete(o.freed, name)
		}
	}
}

// signalFreed wakes the logins waiting for the lock name.
func (o *orphanLeases) signalFreed(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w := o.freed[name]; w != nil {
		close(w.ch)
		delete(o.freed, name)
	}
}

func (o *orphanLeases) add(name, holder string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]string{}
	}
	o.m[name] = holder
}

func (o *orphanLeases) get(name string) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h, ok := o.m[name]
	return h, ok
}

// remove forgets name's orphan if it is still holder's.
func (o *orphanLeases) remove(name, holder string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m[name] == holder {
		delete(o.m, name)
	}
}

func leaseName(accountID int64) string {
	return "pop3:" + strconv.FormatInt(accountID, 10)
}

func newHolder(nodeID string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return nodeID + "/" + hex.EncodeToString(b[:])
}

type lease struct {
	store   Store
	orphans *orphanLeases
	name    string
	holder  string
	ttl     time.Duration
	every   time.Duration
	log     *slog.Logger
	onLost  func()

	mu     sync.Mutex
	lastOK time.Time
	lost   bool
	taken  bool // lost because another holder has it

	stop chan struct{}
	done chan struct{}
}

// leaseWait bounds how long a login waits for a maildrop lock held by
// another session (polled every leasePoll) before [IN-USE].
const (
	leaseWait = 5 * time.Second
	leasePoll = 50 * time.Millisecond
)

// acquireLease takes the lock; ok is false when another session holds it.
// A lock held by an orphan of this node (see orphanLeases) is released
// first.
func acquireLease(ctx context.Context, st Store, orphans *orphanLeases, accountID int64, nodeID string, ttl, every time.Duration, log *slog.Logger) (*lease, bool, error) {
	l := &lease{
		store:   st,
		orphans: orphans,
		name:    leaseName(accountID),
		holder:  newHolder(nodeID),
		ttl:     ttl,
		every:   every,
		log:     log,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	start := time.Now()
	ok, err := st.AcquireLease(ctx, l.name, l.holder, ttl)
	if h, orphan := orphans.get(l.name); err == nil && !ok && orphan {
		if err = st.ReleaseLease(ctx, l.name, h); err == nil {
			orphans.remove(l.name, h)
			log.Info("released this node's orphaned maildrop lock", slog.String("lease", l.name))
			start = time.Now()
			ok, err = st.AcquireLease(ctx, l.name, l.holder, ttl)
		}
	}
	// A client that sends QUIT and reconnects at once (a download script,
	// a client's next poll) finds its previous session still in the UPDATE
	// state, committing its \Seen flags and about to release the lock
	// (RFC 1939 §6). Wait for that before answering [IN-USE]: measured
	// with pop3-download.py on 3,000 messages, the quitting session still
	// held the lock about 2 s after its QUIT was sent (why so long is not
	// yet known; a wait of 1.5 s was not enough).
	// The wait stays well inside the lock's lifetime (a sixth of it), so
	// that a lock a dead node left still answers [IN-USE] before it
	// expires rather than a login that waited it out.
	// A release by a session of this node wakes the wait at once.
	for deadline := time.Now().Add(min(leaseWait, ttl/6)); err == nil && !ok && time.Now().Before(deadline); {
		// (A release between the last attempt and this registration is
		// missed: the poll below still finds it.)
		freed, done := orphans.waitFreed(l.name)
		t := time.NewTimer(leasePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			done()
			return nil, false, ctx.Err()
		case <-freed:
		case <-t.C:
		}
		t.Stop()
		done()
		start = time.Now()
		ok, err = st.AcquireLease(ctx, l.name, l.holder, ttl)
	}
	if err != nil || !ok {
		return nil, ok, err
	}
	l.lastOK = start
	return l, true, nil
}

// start runs the renewal loop; onLost is called (once, from the loop) if
// the lease is lost.
func (l *lease) start(onLost func()) {
	l.onLost = onLost
	go l.run()
}

func (l *lease) run() {
	defer close(l.done)
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if !l.renew() {
			l.log.Warn("maildrop lock lost; closing the session", slog.String("lease", l.name))
			if l.onLost != nil {
				l.onLost()
			}
			return
		}
	}
}

// renew extends the lease; false once it is (or may be) lost.
func (l *lease) renew() bool {
	ctx, cancel := context.WithTimeout(context.Background(), l.every)
	defer cancel()
	start := time.Now()
	ok, err := l.store.RenewLease(ctx, l.name, l.holder, l.ttl)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.lost:
	case err == nil && ok:
		l.lastOK = start
	case err == nil && !ok:
		l.lost, l.taken = true, true
	case time.Since(l.lastOK) >= l.ttl:
		// The renewals failed for a whole TTL: another node may have
		// taken the lease meanwhile.
		l.log.Warn("cannot renew maildrop lock", slog.String("lease", l.name), slog.Any("err", err))
		l.lost = true
	default:
		l.log.Debug("maildrop lock renewal failed; will retry", slog.Any("err", err))
	}
	return !l.lost
}

// held renews the lease now and reports whether the session still owns
// the maildrop with time to spare (the lease was confirmed less than
// TTL minus one renewal interval ago); the UPDATE state (QUIT) checks it
// before changing anything.
func (l *lease) held() bool {
	if !l.renew() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.lastOK) < l.ttl-l.every
}

// release stops renewing and gives the lease back; if the store cannot be
// reached, the lease becomes an orphan released in the background.
func (l *lease) release() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	taken, lastOK := l.taken, l.lastOK
	l.mu.Unlock()
	if taken {
		return // someone else's now
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	err := l.store.ReleaseLease(ctx, l.name, l.holder)
	cancel()
	if err == nil {
		l.orphans.signalFreed(l.name)
		return
	}
	// Held at most until lastOK+TTL (the database's expiry is later than
	// lastOK, taken before the renewal was sent); one interval of margin.
	until := lastOK.Add(l.ttl + l.every)
	if !time.Now().Before(until) {
		return
	}
	l.log.Warn("cannot release maildrop lock; retrying in the background", slog.String("lease", l.name), slog.Any("err", err))
	l.orphans.add(l.name, l.holder)
	go l.releaseLater(until)
}

// releaseLater retries the release of an orphaned lease until it succeeds
// or the lease has expired by itself.
func (l *lease) releaseLater(until time.Time) {
	defer l.orphans.remove(l.name, l.holder)
	t := time.NewTicker(releaseRetryInterval)
	defer t.Stop()
	for range t.C {
		if !time.Now().Before(until) {
			return
		}
		if h, _ := l.orphans.get(l.name); h != l.holder {
			return // a new login on this node released it
		}
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		err := l.store.ReleaseLease(ctx, l.name, l.holder)
		cancel()
		if err == nil {
			l.log.Info("orphaned maildrop lock released", slog.String("lease", l.name))
			return
		}
	}
}
