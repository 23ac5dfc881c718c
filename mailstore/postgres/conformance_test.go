package postgres_test

import (
	"testing"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/storetest"
)

// TestConformance runs the store conformance suite against PostgreSQL: a
// fresh migrated database per subtest, and two handles ("two nodes") on one
// database for the cross-handle checks.
func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Factory{
		New: func(t *testing.T) mailstore.Store { return pgtest.NewStore(t) },
		NewPair: func(t *testing.T) (a, b mailstore.Store) {
			url := pgtest.NewDatabase(t)
			return pgtest.OpenStore(t, url), pgtest.OpenStore(t, url)
		},
	})
}
