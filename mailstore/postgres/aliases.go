package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// An alias row maps an address ("local@domain", or "@domain") to a local
// account (target_id) or forwards it to an external address
// (target_address), never both (migration 0006).

// aliasTarget normalises an alias target: ext as
// mailstore.NormalizeRemoteAddress returns it, with its domain, and local
// the account address it names when its domain is local ("" when it cannot
// be an account's address).
func aliasTarget(target string) (ext, dom, local string, err error) {
	ext, dom, err = mailstore.NormalizeRemoteAddress(target)
	if err != nil {
		return "", "", "", err
	}
	if l, err := mailstore.NormalizeAddress(ext); err == nil {
		local = l
	}
	return ext, dom, local, nil
}

// CreateAlias implements mailstore.Directory in one statement: a target in
// a local domain must be an account; any other is an external address.
func (s *Store) CreateAlias(ctx context.Context, alias, target string) error {
	al, err := mailstore.NormalizeAliasAddress(alias)
	if err != nil {
		return err
	}
	ext, tdom, local, err := aliasTarget(target)
	if err != nil {
		return err
	}
	_, dom := mailstore.SplitAddress(al)
	// An account's own address always reaches the account (recipients
	// resolve to accounts before aliases), so an alias with that address
	// would never apply: refuse it rather than accept a silent no-op.
	var ok, domOK, isAccount, localTarget bool
	err = s.pool.QueryRow(ctx, `
		WITH t AS (SELECT id FROM accounts WHERE address = $3),
		     d AS (SELECT 1 FROM domains WHERE name = $2),
		     td AS (SELECT 1 FROM domains WHERE name = $5),
		     acc AS (SELECT 1 FROM accounts WHERE address = $1),
		     ins AS (INSERT INTO aliases (alias, domain, target_id, target_address)
		             SELECT $1, $2, t.id, NULL FROM t, d WHERE NOT EXISTS (SELECT 1 FROM acc)
		             UNION ALL
		             SELECT $1, $2, NULL, $4 FROM d
		              WHERE NOT EXISTS (SELECT 1 FROM td) AND NOT EXISTS (SELECT 1 FROM acc)
		             RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM t), EXISTS (SELECT 1 FROM d), EXISTS (SELECT 1 FROM acc), EXISTS (SELECT 1 FROM td)`,
		al, dom, local, ext, tdom).Scan(&ok, &domOK, &isAccount, &localTarget)
	switch {
	case pgCode(err) == "23505":
		return fmt.Errorf("create alias %s -> %s: %w", al, ext, mailstore.ErrExists)
	case err != nil:
		return mapErr("create alias", err)
	case isAccount:
		return fmt.Errorf("create alias %s: %w: %s is an account, and mail to it always reaches that account", al, mailstore.ErrExists, al)
	case !domOK:
		return fmt.Errorf("create alias %s: %w", al, mailstore.ErrNoSuchDomain)
	case localTarget && !ok:
		return fmt.Errorf("create alias %s -> %s: %w", al, ext, mailstore.ErrNoSuchAccount)
	}
	return nil
}

// DeleteAlias implements mailstore.Directory.
func (s *Store) DeleteAlias(ctx context.Context, alias, target string) error {
	al, err := mailstore.NormalizeAliasAddress(alias)
	if err != nil {
		return err
	}
	var n int64
	if target == "" {
		tag, err := s.pool.Exec(ctx, `DELETE FROM aliases WHERE alias = $1`, al)
		if err != nil {
			return mapErr("delete alias", err)
		}
		n = tag.RowsAffected()
	} else {
		ext, _, local, err := aliasTarget(target)
		if err != nil {
			return err
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM aliases WHERE alias = $1
			AND (target_id = (SELECT id FROM accounts WHERE address = $2) OR target_address = $3)`, al, local, ext)
		if err != nil {
			return mapErr("delete alias", err)
		}
		n = tag.RowsAffected()
	}
	if n == 0 {
		return fmt.Errorf("delete alias %s: %w", al, mailstore.ErrNoSuchAlias)
	}
	return nil
}

// ListAliases implements mailstore.Directory.
func (s *Store) ListAliases(ctx context.Context, domain string) ([]mailstore.Alias, error) {
	q := `SELECT al.alias, coalesce(a.address, al.target_address) FROM aliases al LEFT JOIN accounts a ON a.id = al.target_id`
	args := []any{}
	if domain != "" {
		d, err := mailstore.NormalizeDomain(domain)
		if err != nil {
			return nil, err
		}
		q += ` WHERE al.domain = $1`
		args = append(args, d)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY 1, 2`, args...)
	if err != nil {
		return nil, mapErr("list aliases", err)
	}
	res, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (mailstore.Alias, error) {
		var a mailstore.Alias
		err := r.Scan(&a.Alias, &a.Target)
		return a, err
	})
	return res, mapErr("list aliases", err)
}

// Resolve implements the lookup order of the contract in one query: exact
// account (1), exact alias (2), local part without "+tag" as account (3)
// and alias (4), the domain's catch-all (5); row 0 says the domain is
// local. An alias row brings an account or a forward address.
func (s *Store) Resolve(ctx context.Context, address string) (mailstore.Resolution, error) {
	addr, err := mailstore.NormalizeAddress(address)
	if err != nil {
		return mailstore.Resolution{}, err
	}
	local, dom := mailstore.SplitAddress(addr)
	base := addr
	if i := strings.Index(local, mailstore.SubaddressDelimiter); i > 0 {
		base = local[:i] + "@" + dom
	}
	rows, err := s.pool.Query(ctx, `
		SELECT 0 AS p, NULL::bigint AS id, NULL::text, NULL::text, NULL::bigint, NULL::bigint, NULL::timestamptz, NULL::text AS fwd
		  FROM domains WHERE name = $3
		UNION ALL
		SELECT 1, `+accountCols+`, NULL FROM accounts WHERE address = $1
		UNION ALL
		SELECT 2, a.id, a.address, a.password_hash, a.quota_limit, a.msg_limit, a.created_at, al.target_address
		  FROM aliases al LEFT JOIN accounts a ON a.id = al.target_id WHERE al.alias = $1
		UNION ALL
		SELECT 3, `+accountCols+`, NULL FROM accounts WHERE address = $2 AND $2 <> $1
		UNION ALL
		SELECT 4, a.id, a.address, a.password_hash, a.quota_limit, a.msg_limit, a.created_at, al.target_address
		  FROM aliases al LEFT JOIN accounts a ON a.id = al.target_id WHERE al.alias = $2 AND $2 <> $1
		UNION ALL
		SELECT 5, a.id, a.address, a.password_hash, a.quota_limit, a.msg_limit, a.created_at, al.target_address
		  FROM aliases al LEFT JOIN accounts a ON a.id = al.target_id WHERE al.alias = '@' || $3
		ORDER BY 1, 2`, addr, base, dom)
	if err != nil {
		return mailstore.Resolution{}, mapErr("resolve recipient", err)
	}
	defer rows.Close()
	isLocal := false
	best := -1
	var res mailstore.Resolution
	for rows.Next() {
		var p int
		var id, quota, msgs *int64
		var address, hash, fwd *string
		var created *time.Time
		if err := rows.Scan(&p, &id, &address, &hash, &quota, &msgs, &created, &fwd); err != nil {
			return mailstore.Resolution{}, mapErr("resolve recipient", err)
		}
		if p == 0 {
			isLocal = true
			continue
		}
		if best >= 0 && p != best {
			break
		}
		best = p
		// Accounts come ordered by id; forwards are sorted below (in Go:
		// the database's collation need not be bytewise).
		switch {
		case id != nil:
			if n := len(res.Accounts); n > 0 && res.Accounts[n-1].ID == *id {
				continue
			}
			res.Accounts = append(res.Accounts, mailstore.Account{ID: *id, Address: *address, PasswordHash: *hash,
				QuotaLimit: *quota, MessageLimit: *msgs, CreatedAt: deref(created)})
		case fwd != nil:
			res.Forwards = append(res.Forwards, *fwd)
		}
	}
	if err := rows.Err(); err != nil {
		return mailstore.Resolution{}, mapErr("resolve recipient", err)
	}
	if !isLocal {
		return mailstore.Resolution{}, fmt.Errorf("resolve %s: %w", addr, mailstore.ErrNotLocalDomain)
	}
	slices.Sort(res.Forwards)
	res.Forwards = slices.Compact(res.Forwards)
	if len(res.Accounts) == 0 && len(res.Forwards) == 0 {
		return mailstore.Resolution{}, fmt.Errorf("resolve %s: %w", addr, mailstore.ErrNoSuchRecipient)
	}
	return res, nil
}

// ResolveRecipient implements mailstore.Directory: Resolve's accounts.
func (s *Store) ResolveRecipient(ctx context.Context, address string) ([]mailstore.Account, error) {
	r, err := s.Resolve(ctx, address)
	if err != nil {
		return nil, err
	}
	if len(r.Accounts) == 0 {
		return nil, fmt.Errorf("resolve %s: %w: forwarded to external addresses only", address, mailstore.ErrNoSuchRecipient)
	}
	return r.Accounts, nil
}
