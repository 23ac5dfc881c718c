package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// --- login failures ---

func checkKeys(keys []string) error {
	if len(keys) > MaxAuthKeys {
		return fmt.Errorf("%w: more than %d keys", mailstore.ErrInvalidArgument, MaxAuthKeys)
	}
	for _, k := range keys {
		if k == "" || len(k) > MaxAuthKeyLength || !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0 {
			return fmt.Errorf("%w: bad auth-failure key", mailstore.ErrInvalidArgument)
		}
	}
	return nil
}

// ReserveAuthFailure implements mailstore.Store in one statement
// (pr_auth_reserve, functions/). About once a minute per node it also
// deletes failures older than Options.AuthFailureRetention.
func (s *Store) ReserveAuthFailure(ctx context.Context, keys []string, limits []int, since, at time.Time) (mailstore.AuthReservation, error) {
	r := mailstore.AuthReservation{Counts: make(map[string]int, len(keys)), Decided: make(map[string]int, len(keys)), Keys: keys, At: at}
	if err := checkKeys(keys); err != nil {
		return r, err
	}
	if len(limits) != len(keys) {
		return r, fmt.Errorf("%w: %d limits for %d keys", mailstore.ErrInvalidArgument, len(limits), len(keys))
	}
	lims := make([]int32, len(limits))
	for i, l := range limits {
		if l < 0 || l > math.MaxInt32 {
			return r, fmt.Errorf("%w: auth-failure limit %d", mailstore.ErrInvalidArgument, l)
		}
		lims[i] = int32(l)
	}
	if len(keys) == 0 {
		r.Reserved = true
		return r, nil
	}
	var counts, decided []int64
	var id *int64
	if err := s.pool.QueryRow(ctx, `SELECT r_counts, r_decided, r_attempt FROM pr_auth_reserve(p_keys => $1, p_limits => $2, p_since => $3, p_at => $4)`, keys, lims, since, at).Scan(&counts, &decided, &id); err != nil {
		return r, mapErr("reserve auth failure", err)
	}
	if len(counts) != len(keys) || len(decided) != len(keys) {
		return r, fmt.Errorf("reserve auth failure: %d counts and %d decided counts for %d keys", len(counts), len(decided), len(keys))
	}
	for i, k := range keys {
		r.Counts[k] = int(counts[i])
		r.Decided[k] = int(decided[i])
	}
	if id != nil {
		r.Reserved, r.ID = true, *id
	}
	now := time.Now()
	if next := s.nextPrune.Load(); now.UnixNano() >= next &&
		s.nextPrune.CompareAndSwap(next, now.Add(time.Minute+rand.N(time.Minute)).UnixNano()) {
		if _, err := s.pool.Exec(ctx, `DELETE FROM auth_failures WHERE at < $1`, now.Add(-s.opts.AuthFailureRetention)); err != nil {
			s.log.Warn("pruning auth failures failed", "err", err)
		}
	}
	return r, nil
}

// ConfirmAuthFailure implements mailstore.Store in one statement
// (pr_auth_confirm, asynchronous commit: see there why that is enough).
func (s *Store) ConfirmAuthFailure(ctx context.Context, r mailstore.AuthReservation) error {
	if r.ID == 0 || len(r.Keys) == 0 {
		return nil
	}
	if err := checkKeys(r.Keys); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `SELECT pr_auth_confirm(p_keys => $1, p_at => $2, p_attempt => $3)`, r.Keys, r.At, r.ID)
	return mapErr("confirm auth failure", err)
}

// ReleaseAuthFailure implements mailstore.Store in one statement
// (pr_auth_release).
func (s *Store) ReleaseAuthFailure(ctx context.Context, r mailstore.AuthReservation, forget []string) error {
	if r.ID == 0 {
		r.Keys = nil
	}
	if err := checkKeys(r.Keys); err != nil {
		return err
	}
	if err := checkKeys(forget); err != nil {
		return err
	}
	if len(r.Keys) == 0 && len(forget) == 0 {
		return nil
	}
	var id *int64
	if r.ID != 0 {
		id = &r.ID
	}
	if forget == nil {
		forget = []string{}
	}
	_, err := s.pool.Exec(ctx, `SELECT pr_auth_release(p_keys => $1, p_at => $2, p_attempt => $3, p_forget => $4)`, r.Keys, r.At, id, forget)
	return mapErr("release auth failure", err)
}

// AuthFailures implements mailstore.Store; every requested key is in the
// result (0 when it has no failures).
func (s *Store) AuthFailures(ctx context.Context, keys []string, since time.Time) (map[string]int, error) {
	if err := checkKeys(keys); err != nil {
		return nil, err
	}
	res := make(map[string]int, len(keys))
	for _, k := range keys {
		res[k] = 0
	}
	if len(keys) == 0 {
		return res, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT key, count(*) FROM auth_failures WHERE key = ANY ($1) AND at >= $2 GROUP BY key`, keys, since)
	if err != nil {
		return nil, mapErr("auth failures", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, mapErr("auth failures", err)
		}
		res[k] = int(n)
	}
	return res, mapErr("auth failures", rows.Err())
}

// --- leases (times are the database's clock, shared by all nodes) ---

func checkLease(name, holder string, ttl time.Duration, needTTL bool) error {
	for _, v := range []string{name, holder} {
		if v == "" || len(v) > MaxLeaseNameLength || !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: bad lease name or holder", mailstore.ErrInvalidArgument)
		}
	}
	if needTTL && ttl <= 0 {
		return fmt.Errorf("%w: lease ttl must be positive", mailstore.ErrInvalidArgument)
	}
	return nil
}

// AcquireLease implements mailstore.Store with one atomic upsert.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(name, holder, ttl, true); err != nil {
		return false, err
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `
		INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, clock_timestamp() + $3::float8 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
		 WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= clock_timestamp()
		RETURNING true`, name, holder, ttl.Microseconds()).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return ok, mapErr("acquire lease", err)
}

// RenewLease implements mailstore.Store; an expired lease is no longer held.
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(name, holder, ttl, true); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET expires_at = clock_timestamp() + $3::float8 * interval '1 microsecond'
		WHERE name = $1 AND holder = $2 AND expires_at > clock_timestamp()`, name, holder, ttl.Microseconds())
	if err != nil {
		return false, mapErr("renew lease", err)
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease implements mailstore.Store; releasing a lease not held is
// not an error.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder, 0, false); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return mapErr("release lease", err)
}
