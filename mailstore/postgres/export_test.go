package postgres

import (
	"context"
	"time"
)

// SearchFold exposes searchFold to the external tests.
var SearchFold = searchFold

// AppendFold and TextPieceSize expose the large-text internals to the
// external tests.
var AppendFold = appendFold

const TextPieceSize = textPieceSize

// MigrateTo exposes migrateTo to the upgrade tests.
var MigrateTo = migrateTo

// GroupedCommits reports how many transactions committed several
// deliveries together (groupcommit.go).
func (s *Store) GroupedCommits() int64 { return s.groupedCommits.Load() }

// GroupFallbacks reports how many shared delivery transactions failed and
// were redone one delivery at a time.
func (s *Store) GroupFallbacks() int64 { return s.groupFallbacks.Load() }

// ClaimSQL is ClaimQueue's statement, for the plan test.
const ClaimSQL = claimSQL

// DrainReleases releases the contents that expunges left pending
// (releases.go) now, and waits for the rows the release goroutine holds
// (which one drain skips) until none is left.
func (s *Store) DrainReleases(ctx context.Context) error {
	for {
		if err := s.drainReleases(ctx); err != nil {
			return err
		}
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM content_releases`).Scan(&n); err != nil || n == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WaitFirstRelease waits until the release goroutine finished the drain
// that Open asked for, so that a test can leave rows pending without that
// drain taking them.
func (s *Store) WaitFirstRelease(ctx context.Context) error {
	for s.releaseRuns.Load() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}
