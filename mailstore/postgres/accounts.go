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

const accountCols = `id, address, password_hash, quota_limit, msg_limit, created_at`

func scanAccount(row pgx.Row) (mailstore.Account, error) {
	var a mailstore.Account
	err := row.Scan(&a.ID, &a.Address, &a.PasswordHash, &a.QuotaLimit, &a.MessageLimit, &a.CreatedAt)
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
			s.notifyChanges(accountChange(deleted))
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

func (s *Store) SetMessageQuota(ctx context.Context, accountID int64, limit int64) error {
	if limit < 0 {
		return fmt.Errorf("%w: negative message quota", mailstore.ErrInvalidArgument)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE accounts SET msg_limit = $2 WHERE id = $1`, accountID, limit)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("set message quota: %w", mailstore.ErrNoSuchAccount)
	}
	return mapErr("set message quota", err)
}

func (s *Store) Quota(ctx context.Context, accountID int64) (mailstore.Quota, error) {
	var q mailstore.Quota
	err := s.pool.QueryRow(ctx, `SELECT quota_used, quota_limit, msg_used, msg_limit FROM accounts WHERE id = $1`,
		accountID).Scan(&q.StorageUsed, &q.StorageLimit, &q.MessagesUsed, &q.MessagesLimit)
	if errors.Is(err, pgx.ErrNoRows) {
		return mailstore.Quota{}, fmt.Errorf("quota: %w", mailstore.ErrNoSuchAccount)
	}
	return q, mapErr("quota", err)
}

func (s *Store) DeletedSize(ctx context.Context, accountID, mailboxID int64) (int64, error) {
	// The \Deleted messages come from the partial index messages_deleted
	// (0009): as many rows as there are such messages, not the mailbox.
	var n int64
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT coalesce(sum(m.size), 0) FROM messages m WHERE m.mailbox_id = mb.id AND m.flags & 8 <> 0)
		  FROM mailboxes mb WHERE mb.id = $2 AND mb.account_id = $1`, accountID, mailboxID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("deleted size: %w", mailstore.ErrNoSuchMailbox)
	}
	return n, mapErr("deleted size", err)
}

func (s *Store) QuotaUsage(ctx context.Context, accountID int64) (used, limit int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT quota_used, quota_limit FROM accounts WHERE id = $1`, accountID).Scan(&used, &limit)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("quota usage: %w", mailstore.ErrNoSuchAccount)
	}
	return used, limit, mapErr("quota usage", err)
}

// Aliases and recipient resolution are in aliases.go.

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
