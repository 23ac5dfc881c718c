package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// --- domains ---

func (s *Store) CreateDomain(ctx context.Context, name string) error {
	d, err := mailstore.NormalizeDomain(name)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO domains (name) VALUES ($1)`, d)
	return mapErr("create domain", err)
}

func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	d, err := mailstore.NormalizeDomain(name)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM domains WHERE name = $1`, d)
	if pgCode(err) == "23503" { // foreign_key_violation: accounts or aliases use it
		return fmt.Errorf("delete domain %s: %w", d, mailstore.ErrDomainNotEmpty)
	}
	if err != nil {
		return mapErr("delete domain", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete domain %s: %w", d, mailstore.ErrNoSuchDomain)
	}
	return nil
}

func (s *Store) ListDomains(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT name FROM domains ORDER BY name`)
	if err != nil {
		return nil, mapErr("list domains", err)
	}
	ds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ds, mapErr("list domains", err)
}

func (s *Store) IsLocalDomain(ctx context.Context, name string) (bool, error) {
	d, err := mailstore.NormalizeDomain(name)
	if err != nil {
		return false, nil // not a valid domain name, so certainly not ours
	}
	var ok bool
	err = s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM domains WHERE name = $1)`, d).Scan(&ok)
	return ok, mapErr("is local domain", err)
}

// --- accounts ---

const accountCols = `id, address, password_hash, quota_limit, created_at`

func scanAccount(row pgx.Row) (mailstore.Account, error) {
	var a mailstore.Account
	err := row.Scan(&a.ID, &a.Address, &a.PasswordHash, &a.QuotaLimit, &a.CreatedAt)
	return a, err
}

func checkHash(hash string) error {
	if len(hash) > MaxPasswordHashLength || !utf8.ValidString(hash) || strings.IndexByte(hash, 0) >= 0 {
		return fmt.Errorf("%w: bad password hash", mailstore.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) CreateAccount(ctx context.Context, address, passwordHash string) (mailstore.Account, error) {
	addr, err := mailstore.NormalizeAddress(address)
	if err != nil {
		return mailstore.Account{}, err
	}
	if err := checkHash(passwordHash); err != nil {
		return mailstore.Account{}, err
	}
	_, dom := mailstore.SplitAddress(addr)
	names := make([]string, len(mailstore.DefaultMailboxes))
	uses := make([]string, len(mailstore.DefaultMailboxes))
	for i, m := range mailstore.DefaultMailboxes {
		names[i], uses[i] = m.Name, m.SpecialUse
	}
	// One statement: the account, its default mailboxes (in order, so their
	// ids and UIDVALIDITY values ascend) and their subscriptions.
	row := s.pool.QueryRow(ctx, `
		WITH a AS (
			INSERT INTO accounts (address, domain, password_hash) VALUES ($1, $2, $3)
			RETURNING `+accountCols+`
		), mb AS (
			INSERT INTO mailboxes (account_id, name, special_use, uidvalidity)
			SELECT a.id, d.n, d.u, nextval('uidvalidity_seq')
			  FROM a, unnest($4::text[], $5::text[]) WITH ORDINALITY AS d(n, u, i) ORDER BY d.i
		), sub AS (
			INSERT INTO subscriptions (account_id, name) SELECT a.id, n FROM a, unnest($4::text[]) n
		)
		SELECT `+accountCols+` FROM a`, addr, dom, passwordHash, names, uses)
	acct, err := scanAccount(row)
	switch pgCode(err) {
	case "23503":
		return mailstore.Account{}, fmt.Errorf("create account %s: %w", addr, mailstore.ErrNoSuchDomain)
	case "23505":
		return mailstore.Account{}, fmt.Errorf("create account %s: %w", addr, mailstore.ErrExists)
	}
	if err != nil {
		return mailstore.Account{}, mapErr("create account", err)
	}
	return acct, nil
}

func (s *Store) DeleteAccount(ctx context.Context, address string) error {
	addr, err := mailstore.NormalizeAddress(address)
	if err != nil {
		return err
	}
	var deleted int64
	for attempt := 0; ; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var id int64
			if err := tx.QueryRow(ctx, `SELECT id FROM accounts WHERE address = $1 FOR UPDATE`, addr).Scan(&id); err != nil {
				if errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("delete account %s: %w", addr, mailstore.ErrNoSuchAccount)
				}
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT pr_delete_mailboxes(p_account => $1, p_ids => ARRAY(SELECT id FROM mailboxes WHERE account_id = $1))`, id); err != nil {
				return err
			}
			// Aliases pointing to it and subscriptions go by ON DELETE CASCADE.
			_, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
			deleted = id
			return err
		})
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		if err == nil {
			s.notifyAccounts([]int64{deleted})
		}
		return mapErr("delete account", err)
	}
}

func (s *Store) GetAccount(ctx context.Context, address string) (mailstore.Account, error) {
	addr, err := mailstore.NormalizeAddress(address)
	if err != nil {
		return mailstore.Account{}, err
	}
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE address = $1`, addr))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("get account %s: %w", addr, mailstore.ErrNoSuchAccount)
	}
	return a, mapErr("get account", err)
}

func (s *Store) GetAccountByID(ctx context.Context, id int64) (mailstore.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+` FROM accounts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return a, fmt.Errorf("get account %d: %w", id, mailstore.ErrNoSuchAccount)
	}
	return a, mapErr("get account", err)
}

func (s *Store) ListAccounts(ctx context.Context, domain string) ([]mailstore.Account, error) {
	var rows pgx.Rows
	var err error
	if domain == "" {
		rows, err = s.pool.Query(ctx, `SELECT `+accountCols+` FROM accounts ORDER BY address`)
	} else {
		d, nerr := mailstore.NormalizeDomain(domain)
		if nerr != nil {
			return nil, nerr
		}
		rows, err = s.pool.Query(ctx, `SELECT `+accountCols+` FROM accounts WHERE domain = $1 ORDER BY address`, d)
	}
	if err != nil {
		return nil, mapErr("list accounts", err)
	}
	as, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (mailstore.Account, error) { return scanAccount(r) })
	return as, mapErr("list accounts", err)
}

func (s *Store) SetPasswordHash(ctx context.Context, accountID int64, hash string) error {
	if err := checkHash(hash); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE accounts SET password_hash = $2 WHERE id = $1`, accountID, hash)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("set password: %w", mailstore.ErrNoSuchAccount)
	}
	return mapErr("set password", err)
}

func (s *Store) SetQuota(ctx context.Context, accountID int64, limit int64) error {
	if limit < 0 {
		return fmt.Errorf("%w: negative quota", mailstore.ErrInvalidArgument)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE accounts SET quota_limit = $2 WHERE id = $1`, accountID, limit)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("set quota: %w", mailstore.ErrNoSuchAccount)
	}
	return mapErr("set quota", err)
}

func (s *Store) QuotaUsage(ctx context.Context, accountID int64) (used, limit int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT quota_used, quota_limit FROM accounts WHERE id = $1`, accountID).Scan(&used, &limit)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("quota usage: %w", mailstore.ErrNoSuchAccount)
	}
	return used, limit, mapErr("quota usage", err)
}

// --- aliases ---

func (s *Store) CreateAlias(ctx context.Context, alias, target string) error {
	al, err := mailstore.NormalizeAliasAddress(alias)
	if err != nil {
		return err
	}
	tg, err := mailstore.NormalizeAddress(target)
	if err != nil {
		return err
	}
	_, dom := mailstore.SplitAddress(al)
	// An account's own address always reaches the account (recipients
	// resolve to accounts before aliases), so an alias with that address
	// would never apply: refuse it rather than accept a silent no-op.
	var ok, domOK, isAccount bool
	err = s.pool.QueryRow(ctx, `
		WITH t AS (SELECT id FROM accounts WHERE address = $3),
		     d AS (SELECT 1 FROM domains WHERE name = $2),
		     acc AS (SELECT 1 FROM accounts WHERE address = $1),
		     ins AS (INSERT INTO aliases (alias, domain, target_id)
		             SELECT $1, $2, t.id FROM t, d WHERE NOT EXISTS (SELECT 1 FROM acc) RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM t), EXISTS (SELECT 1 FROM d), EXISTS (SELECT 1 FROM acc)`, al, dom, tg).Scan(&ok, &domOK, &isAccount)
	switch {
	case pgCode(err) == "23505":
		return fmt.Errorf("create alias %s -> %s: %w", al, tg, mailstore.ErrExists)
	case err != nil:
		return mapErr("create alias", err)
	case isAccount:
		return fmt.Errorf("create alias %s: %w: %s is an account, and mail to it always reaches that account", al, mailstore.ErrExists, al)
	case !domOK:
		return fmt.Errorf("create alias %s: %w", al, mailstore.ErrNoSuchDomain)
	case !ok:
		return fmt.Errorf("create alias %s -> %s: %w", al, tg, mailstore.ErrNoSuchAccount)
	}
	return nil
}

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
		tg, err := mailstore.NormalizeAddress(target)
		if err != nil {
			return err
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM aliases WHERE alias = $1
			AND target_id = (SELECT id FROM accounts WHERE address = $2)`, al, tg)
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

func (s *Store) ListAliases(ctx context.Context, domain string) ([]mailstore.Alias, error) {
	q := `SELECT al.alias, a.address FROM aliases al JOIN accounts a ON a.id = al.target_id`
	args := []any{}
	if domain != "" {
		d, err := mailstore.NormalizeDomain(domain)
		if err != nil {
			return nil, err
		}
		q += ` WHERE al.domain = $1`
		args = append(args, d)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY al.alias, a.address`, args...)
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

// ResolveRecipient implements the lookup order of the contract in one
// query: exact account (1), exact alias (2), local part without "+tag" as
// account (3) and alias (4), the domain's catch-all (5).
func (s *Store) ResolveRecipient(ctx context.Context, address string) ([]mailstore.Account, error) {
	addr, err := mailstore.NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	local, dom := mailstore.SplitAddress(addr)
	base := addr
	if i := strings.Index(local, mailstore.SubaddressDelimiter); i > 0 {
		base = local[:i] + "@" + dom
	}
	rows, err := s.pool.Query(ctx, `
		SELECT 0 AS p, 0::bigint, '', '', 0::bigint, now() FROM domains WHERE name = $3
		UNION ALL
		SELECT 1, `+accountCols+` FROM accounts WHERE address = $1
		UNION ALL
		SELECT 2, a.id, a.address, a.password_hash, a.quota_limit, a.created_at
		  FROM aliases al JOIN accounts a ON a.id = al.target_id WHERE al.alias = $1
		UNION ALL
		SELECT 3, `+accountCols+` FROM accounts WHERE address = $2 AND $2 <> $1
		UNION ALL
		SELECT 4, a.id, a.address, a.password_hash, a.quota_limit, a.created_at
		  FROM aliases al JOIN accounts a ON a.id = al.target_id WHERE al.alias = $2 AND $2 <> $1
		UNION ALL
		SELECT 5, a.id, a.address, a.password_hash, a.quota_limit, a.created_at
		  FROM aliases al JOIN accounts a ON a.id = al.target_id WHERE al.alias = '@' || $3
		ORDER BY 1, 2`, addr, base, dom)
	if err != nil {
		return nil, mapErr("resolve recipient", err)
	}
	defer rows.Close()
	local0 := false
	best := -1
	var res []mailstore.Account
	for rows.Next() {
		var p int
		var a mailstore.Account
		if err := rows.Scan(&p, &a.ID, &a.Address, &a.PasswordHash, &a.QuotaLimit, &a.CreatedAt); err != nil {
			return nil, mapErr("resolve recipient", err)
		}
		if p == 0 {
			local0 = true
			continue
		}
		if best >= 0 && p != best {
			break
		}
		best = p
		if n := len(res); n > 0 && res[n-1].ID == a.ID {
			continue
		}
		res = append(res, a)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("resolve recipient", err)
	}
	if !local0 {
		return nil, fmt.Errorf("resolve %s: %w", addr, mailstore.ErrNotLocalDomain)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("resolve %s: %w", addr, mailstore.ErrNoSuchRecipient)
	}
	return res, nil
}

func (s *Store) AccountAddresses(ctx context.Context, accountID int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT address FROM (
			SELECT 0 AS o, address FROM accounts WHERE id = $1
			UNION ALL
			SELECT 1, alias FROM aliases WHERE target_id = $1 AND alias NOT LIKE '@%'
		) x ORDER BY o, address`, accountID)
	if err != nil {
		return nil, mapErr("account addresses", err)
	}
	as, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, mapErr("account addresses", err)
	}
	if len(as) == 0 {
		return nil, fmt.Errorf("account addresses: %w", mailstore.ErrNoSuchAccount)
	}
	return as, nil
}
