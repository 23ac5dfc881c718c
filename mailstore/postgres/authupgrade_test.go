package postgres_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore/postgres"
)

// Failures recorded before version 7 (no in_flight column) are decided
// failures after the upgrade: they count for the delays as they did, while
// new reservations are in flight until confirmed.
func TestUpgradeAuthFailuresDecided(t *testing.T) {
	ctx := ctxT(t)
	url := pgtest.NewEmptyDatabase(t)
	must(t, postgres.MigrateTo(ctx, url, 6))
	now := time.Now().Truncate(time.Second)
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(context.Background())
	// As version 6 recorded them: a wrong password's reservation (attempt
	// id) and a failure from before version 5 (no attempt).
	_, err = conn.Exec(ctx, `INSERT INTO auth_failures (key, at, attempt) VALUES
		('ip:192.0.2.1', $1, nextval('auth_attempt_ids')), ('user:old@example.org', $1, currval('auth_attempt_ids')),
		('ip:192.0.2.1', $1, NULL)`, now.Add(-time.Minute))
	must(t, err)
	must(t, postgres.Migrate(ctx, url))

	st := pgtest.OpenStore(t, url)
	keys := []string{"ip:192.0.2.1", "user:old@example.org"}
	r, err := st.ReserveAuthFailure(ctx, keys, []int{50, 0}, now.Add(-time.Hour), now)
	must(t, err)
	want := map[string]int{"ip:192.0.2.1": 2, "user:old@example.org": 1}
	if !r.Reserved || !maps.Equal(r.Counts, want) || !maps.Equal(r.Decided, want) {
		t.Fatalf("first reservation after the upgrade = %+v; want counts and decided %v", r, want)
	}
	r2, err := st.ReserveAuthFailure(ctx, keys, []int{50, 0}, now.Add(-time.Hour), now)
	must(t, err)
	if wantN := map[string]int{"ip:192.0.2.1": 3, "user:old@example.org": 2}; !maps.Equal(r2.Counts, wantN) || !maps.Equal(r2.Decided, want) {
		t.Fatalf("second reservation = %+v; want counts %v, decided %v", r2, wantN, want)
	}
}
