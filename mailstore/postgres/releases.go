package postgres

import (
	"context"
	"time"
)

// Deferred release of contents.
//
// An expunge removes its messages, leaves tombstones and gives back quota
// in its transaction, under the account and mailbox row locks, and
// commits synchronously. Releasing the contents of those messages (the
// reference counts and, for the last reference, the content row with its
// chunks and text, mostly TOAST) measured as two thirds of the blocks and
// half the WAL of an expunge of ten-kilobyte messages, all of it while
// every delivery to the mailbox waited. So pr_expunge only records the
// content ids (content_releases, migration 0009), and after its commit one
// goroutine per Store releases them in small transactions of their own
// (pr_release_pending), outside any account or mailbox lock. Until then a
// content's refcount still counts the removed messages: its storage is
// freed a moment later, nothing is read from it, and a delivery of the
// same octets meanwhile shares it as usual. Pending rows left by a node
// that stopped before releasing them (or by a database crash, which undoes
// an asynchronous release) are taken by the next drain on any node: each
// Store drains once when it opens and after each of its expunges.

// releaseBatch is how many pending rows (expunges) one transaction releases.
const releaseBatch = 32

// releaseCoalesce is how long the release goroutine lets expunges gather
// after the first wakes it, so that one transaction releases what several
// expunges left: under imaptest's sessions-open load a release ran for
// every two or three expunges, each a transaction of its own (with its
// commit and its scan of content_releases) for a few rows. Storage is
// freed that much later; nothing reads a released content.
const releaseCoalesce = 100 * time.Millisecond

// signalRelease wakes the release goroutine (non-blocking; a pending wake
// covers this one too).
func (s *Store) signalRelease() {
	s.releaseDirty.Store(true)
	select {
	case s.releaseWake <- struct{}{}:
	default:
	}
}

// runReleases drains pending releases whenever woken, until ctx ends.
func (s *Store) runReleases(ctx context.Context) {
	defer close(s.releaseDone)
	for first := true; ; first = false {
		select {
		case <-ctx.Done():
			return
		case <-s.releaseWake:
		}
		// The first drain (what a stopped node left, signalled by Open)
		// runs at once.
		if !first {
			t := time.NewTimer(releaseCoalesce)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		s.releaseDirty.Store(false)
		err := s.drainReleases(ctx)
		s.releaseRuns.Add(1)
		switch {
		case err == nil || ctx.Err() != nil:
		case pgCode(err) == "42883":
			// pr_release_pending is not there: a schema before version 9.
			s.log.Debug("no release of pending contents before the schema is migrated", "err", err)
		default:
			// The rows stay; the next expunge or Open drains them.
			s.releaseDirty.Store(true)
			s.log.Warn("releasing the contents of expunged messages failed", "err", err)
		}
	}
}

// drainReleases runs pr_release_pending until a call finds fewer pending
// rows than it may take, free of other callers (who release theirs).
func (s *Store) drainReleases(ctx context.Context) error {
	for failures := 0; ; {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT pr_release_pending(p_limit => $1)`, releaseBatch).Scan(&n); err != nil {
			if failures++; retryable(err) && failures < 4 {
				continue
			}
			return mapErr("release contents", err)
		}
		if n < releaseBatch {
			return nil
		}
		failures = 0
	}
}

// finishReleases drains, at Close, what this Store's expunges left
// pending, for a bounded time (the rest stays for another node).
func (s *Store) finishReleases() {
	if !s.releaseDirty.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.drainReleases(ctx); err != nil {
		s.log.Warn("releasing the contents of expunged messages at close failed", "err", err)
	}
}
