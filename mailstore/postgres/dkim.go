package postgres

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// Bounds of the DKIM keys and cluster secrets.
const (
	// MaxDKIMKeySize bounds a stored private key (the PKCS #8 DER of an
	// RSA-4096 key is about 2.4 KB).
	MaxDKIMKeySize = 16 << 10
	// MinRSABits: RFC 8301 §3.2, signers MUST use at least 1024 bits.
	MinRSABits = 1024
	// MaxSecretSize bounds a cluster secret; MaxSecretNameLength its name.
	MaxSecretSize       = 64 << 10
	MaxSecretNameLength = 200
)

// normalizeSelector checks a DKIM selector (RFC 6376 §3.1: sub-domain
// labels separated by dots) and returns it in lower case (DNS names are
// case-insensitive).
func normalizeSelector(sel string) (string, error) {
	if strings.HasSuffix(sel, ".") {
		return "", fmt.Errorf("%w: DKIM selector %q", mailstore.ErrInvalidArgument, sel)
	}
	s, err := mailstore.NormalizeDomain(sel)
	if err != nil {
		return "", fmt.Errorf("%w: DKIM selector %q", mailstore.ErrInvalidArgument, sel)
	}
	return s, nil
}

// checkDKIMKey checks that der is a PKCS #8 private key of algorithm alg.
func checkDKIMKey(alg string, der []byte) error {
	if len(der) == 0 || len(der) > MaxDKIMKeySize {
		return fmt.Errorf("%w: DKIM private key of %d octets", mailstore.ErrInvalidArgument, len(der))
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return fmt.Errorf("%w: DKIM private key: %v", mailstore.ErrInvalidArgument, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		if alg == "ed25519" { // RFC 8463
			return nil
		}
	case *rsa.PrivateKey:
		if alg == "rsa" {
			if k.N.BitLen() < MinRSABits {
				return fmt.Errorf("%w: RSA DKIM key of %d bits (RFC 8301 §3.2: at least %d)", mailstore.ErrInvalidArgument, k.N.BitLen(), MinRSABits)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: DKIM private key is a %T, algorithm %q", mailstore.ErrInvalidArgument, key, alg)
}

// AddDKIMKey implements mailstore.DKIMKeys.
func (s *Store) AddDKIMKey(ctx context.Context, k mailstore.DKIMKey) error {
	dom, err := mailstore.NormalizeDomain(k.Domain)
	if err != nil {
		return err
	}
	sel, err := normalizeSelector(k.Selector)
	if err != nil {
		return err
	}
	if err := checkDKIMKey(k.Algorithm, k.PrivateKey); err != nil {
		return err
	}
	var created, signFrom, retired *time.Time
	if !k.CreatedAt.IsZero() {
		created = &k.CreatedAt
	}
	if !k.SignFrom.IsZero() {
		signFrom = &k.SignFrom
	}
	if !k.RetiredAt.IsZero() {
		retired = &k.RetiredAt
	}
	// A NULL sign_from reads as created_at (migration 0008).
	_, err = s.pool.Exec(ctx, `INSERT INTO dkim_keys (domain, selector, algorithm, private_key, created_at, sign_from, retired_at)
		VALUES ($1, $2, $3, $4, coalesce($5, now()), $6, $7)`, dom, sel, k.Algorithm, k.PrivateKey, created, signFrom, retired)
	switch pgCode(err) {
	case "23503":
		return fmt.Errorf("add DKIM key %s._domainkey.%s: %w", sel, dom, mailstore.ErrNoSuchDomain)
	case "23505":
		return fmt.Errorf("add DKIM key %s._domainkey.%s: %w", sel, dom, mailstore.ErrExists)
	}
	return mapErr("add DKIM key", err)
}

// ListDKIMKeys implements mailstore.DKIMKeys; ErrNoSuchDomain when domain
// is not "" and not local.
func (s *Store) ListDKIMKeys(ctx context.Context, domain string) ([]mailstore.DKIMKey, error) {
	var rows pgx.Rows
	var err error
	const cols = `k.domain, k.selector, k.algorithm, k.private_key, k.created_at, coalesce(k.sign_from, k.created_at), k.retired_at`
	if domain == "" {
		rows, err = s.pool.Query(ctx, `SELECT `+cols+` FROM dkim_keys k ORDER BY k.domain, k.created_at DESC, k.selector`)
	} else {
		d, nerr := mailstore.NormalizeDomain(domain)
		if nerr != nil {
			return nil, nerr
		}
		// The domain row tells an unknown domain from one without keys.
		rows, err = s.pool.Query(ctx, `SELECT `+cols+` FROM domains d LEFT JOIN dkim_keys k ON k.domain = d.name
			WHERE d.name = $1 ORDER BY k.created_at DESC, k.selector`, d)
		domain = d
	}
	if err != nil {
		return nil, mapErr("list DKIM keys", err)
	}
	defer rows.Close()
	var keys []mailstore.DKIMKey
	found := false
	for rows.Next() {
		found = true
		var dom, sel, alg *string
		var der []byte
		var created, signFrom, retired *time.Time
		if err := rows.Scan(&dom, &sel, &alg, &der, &created, &signFrom, &retired); err != nil {
			return nil, mapErr("list DKIM keys", err)
		}
		if dom == nil {
			continue // a domain without keys
		}
		keys = append(keys, mailstore.DKIMKey{Domain: *dom, Selector: *sel, Algorithm: *alg, PrivateKey: der,
			CreatedAt: deref(created), SignFrom: deref(signFrom), RetiredAt: deref(retired)})
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("list DKIM keys", err)
	}
	if domain != "" && !found {
		return nil, fmt.Errorf("list DKIM keys of %s: %w", domain, mailstore.ErrNoSuchDomain)
	}
	return keys, nil
}

// RetireDKIMKeys implements mailstore.DKIMKeys in one statement. A zero at
// means now.
func (s *Store) RetireDKIMKeys(ctx context.Context, domain string, keep []string, at time.Time) error {
	dom, err := mailstore.NormalizeDomain(domain)
	if err != nil {
		return err
	}
	ks := make([]string, len(keep))
	for i, k := range keep {
		ks[i] = strings.ToLower(k)
	}
	var when *time.Time
	if !at.IsZero() {
		when = &at
	}
	var ok bool
	err = s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE dkim_keys SET retired_at = coalesce($3, now())
			 WHERE domain = $1 AND retired_at IS NULL AND NOT (selector = ANY ($2))
			RETURNING 1
		)
		SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1)`, dom, ks, when).Scan(&ok)
	if err != nil {
		return mapErr("retire DKIM keys", err)
	}
	if !ok {
		return fmt.Errorf("retire DKIM keys of %s: %w", dom, mailstore.ErrNoSuchDomain)
	}
	return nil
}

// DeleteDKIMKey implements mailstore.DKIMKeys.
func (s *Store) DeleteDKIMKey(ctx context.Context, domain, selector string) error {
	dom, err := mailstore.NormalizeDomain(domain)
	if err != nil {
		return err
	}
	sel := strings.ToLower(selector)
	tag, err := s.pool.Exec(ctx, `DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2`, dom, sel)
	if err != nil {
		return mapErr("delete DKIM key", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete DKIM key %s._domainkey.%s: %w", sel, dom, mailstore.ErrNoSuchKey)
	}
	return nil
}

// ClusterSecret implements mailstore.DKIMKeys: read; else generate, insert
// unless someone did meanwhile (ON CONFLICT DO NOTHING waits for a
// concurrent insert of the name to commit) and read again. The second
// read is a statement of its own: one statement's snapshot would not see
// a row committed while it ran.
func (s *Store) ClusterSecret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	if name == "" || len(name) > MaxSecretNameLength || !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("%w: bad cluster secret name", mailstore.ErrInvalidArgument)
	}
	read := func() ([]byte, error) {
		var v []byte
		err := s.pool.QueryRow(ctx, `SELECT secret FROM cluster_secrets WHERE name = $1`, name).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		return v, mapErr("cluster secret", err)
	}
	v, err := read()
	if err != nil || v != nil {
		return v, err
	}
	nv, err := gen()
	if err != nil {
		return nil, err
	}
	if len(nv) == 0 || len(nv) > MaxSecretSize {
		return nil, fmt.Errorf("%w: cluster secret of %d octets", mailstore.ErrInvalidArgument, len(nv))
	}
	err = s.pool.QueryRow(ctx, `INSERT INTO cluster_secrets (name, secret) VALUES ($1, $2)
		ON CONFLICT (name) DO NOTHING RETURNING secret`, name, nv).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, mapErr("cluster secret", err)
	}
	if v, err = read(); err == nil && v == nil {
		err = fmt.Errorf("cluster secret %q: stored by another node but not found", name)
	}
	return v, err
}
