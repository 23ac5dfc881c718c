package postgres

import "context"

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
// (releases.go) now.
func (s *Store) DrainReleases(ctx context.Context) error { return s.drainReleases(ctx) }
