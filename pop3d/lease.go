package pop3d

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/postrider/postrider/mailstore"
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

func leaseName(accountID int64) string {
	return "pop3:" + strconv.FormatInt(accountID, 10)
}

func newHolder(nodeID string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return nodeID + "/" + hex.EncodeToString(b[:])
}

type lease struct {
	store  mailstore.Store
	name   string
	holder string
	ttl    time.Duration
	every  time.Duration
	log    *slog.Logger
	onLost func()

	mu     sync.Mutex
	lastOK time.Time
	lost   bool

	stop chan struct{}
	done chan struct{}
}

// acquireLease takes the lock; ok is false when another session holds it.
func acquireLease(ctx context.Context, st mailstore.Store, accountID int64, nodeID string, ttl, every time.Duration, log *slog.Logger) (*lease, bool, error) {
	l := &lease{
		store:  st,
		name:   leaseName(accountID),
		holder: newHolder(nodeID),
		ttl:    ttl,
		every:  every,
		log:    log,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	start := time.Now()
	ok, err := st.AcquireLease(ctx, l.name, l.holder, ttl)
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
			l.log.Warn("pop3: maildrop lock lost; closing the session", slog.String("lease", l.name))
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
		l.lost = true
	case time.Since(l.lastOK) >= l.ttl:
		// The renewals failed for a whole TTL: another node may have
		// taken the lease meanwhile.
		l.log.Warn("pop3: cannot renew maildrop lock", slog.String("lease", l.name), slog.Any("error", err))
		l.lost = true
	default:
		l.log.Debug("pop3: maildrop lock renewal failed; will retry", slog.Any("error", err))
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

// release stops renewing and gives the lease back.
func (l *lease) release() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	lost := l.lost
	l.mu.Unlock()
	if lost {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.store.ReleaseLease(ctx, l.name, l.holder); err != nil {
		// It expires by itself within the TTL.
		l.log.Warn("pop3: cannot release maildrop lock", slog.String("lease", l.name), slog.Any("error", err))
	}
}
