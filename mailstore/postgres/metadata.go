package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postrider/postrider/mailstore"
)

// GetMetadata implements mailstore.Store: one query. An entry below a
// requested name is found by prefix (names are lower-case ASCII without
// "%", "*" or "//", so "name/" is a plain prefix); its depth is its count
// of "/" minus the requested name's.
func (s *Store) GetMetadata(ctx context.Context, accountID int64, mailbox string, names []string, depth int) ([]mailstore.MetadataEntry, error) {
	for _, n := range names {
		if _, ok := mailstore.NormalizeMetadataLookup(n); !ok || n != strings.ToLower(n) {
			return nil, fmt.Errorf("%w: metadata entry name %q", mailstore.ErrInvalidArgument, n)
		}
	}
	if names == nil {
		names = []string{}
	}
	mailbox, err := metadataMailbox(mailbox)
	if err != nil {
		return nil, fmt.Errorf("get metadata: %w", err)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT mb.mid IS NOT NULL, e.name, e.value
		  FROM (SELECT CASE WHEN $2 = '' THEN 0
		                    ELSE (SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2) END AS mid) mb
		  LEFT JOIN LATERAL (
		      SELECT DISTINCT m.name, m.value
		        FROM metadata m
		        JOIN unnest($3::text[]) AS r(name)
		          ON m.name = r.name
		          OR ($4 <> 0 AND left(m.name, length(r.name) + 1) = r.name || '/'
		              AND ($4 < 0 OR length(m.name) - length(replace(m.name, '/', ''))
		                             - length(r.name) + length(replace(r.name, '/', '')) <= $4))
		       WHERE m.account_id = $1 AND coalesce(m.mailbox_id, 0) = mb.mid
		       ORDER BY m.name
		       LIMIT $5
		  ) e ON true`, accountID, mailbox, names, depth, mailstore.MaxMetadataAccount)
	if err != nil {
		return nil, mapErr("get metadata", err)
	}
	var out []mailstore.MetadataEntry
	found := false
	for rows.Next() {
		var name *string
		var value []byte
		if err := rows.Scan(&found, &name, &value); err != nil {
			rows.Close()
			return nil, mapErr("get metadata", err)
		}
		if name != nil {
			out = append(out, mailstore.MetadataEntry{Name: *name, Value: value})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapErr("get metadata", err)
	}
	if !found {
		return nil, fmt.Errorf("get metadata: %w", mailstore.ErrNoSuchMailbox)
	}
	return out, nil
}

// SetMetadata implements mailstore.Store via pr_set_metadata: one
// statement, all entries or none.
func (s *Store) SetMetadata(ctx context.Context, accountID int64, mailbox string, entries []mailstore.MetadataEntry) error {
	mailbox, err := metadataMailbox(mailbox)
	if err != nil {
		return fmt.Errorf("set metadata: %w", err)
	}
	names := make([]string, len(entries))
	values := make([][]byte, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if n, ok := mailstore.NormalizeMetadataName(e.Name); !ok || n != e.Name {
			return fmt.Errorf("%w: metadata entry name %q", mailstore.ErrInvalidArgument, e.Name)
		}
		if seen[e.Name] {
			return fmt.Errorf("%w: metadata entry %q given twice", mailstore.ErrInvalidArgument, e.Name)
		}
		seen[e.Name] = true
		if len(e.Value) > mailstore.MaxMetadataValue {
			return fmt.Errorf("%w: metadata value of %d octets", mailstore.ErrInvalidArgument, len(e.Value))
		}
		names[i] = e.Name
		if e.Value != nil {
			values[i] = e.Value
			if len(e.Value) == 0 {
				values[i] = []byte{} // an empty value, not NULL
			}
		}
	}
	_, err = s.pool.Exec(ctx, `SELECT pr_set_metadata(p_account => $1, p_mailbox => $2, p_names => $3, p_values => $4,
		p_max_object => $5, p_max_account => $6)`,
		accountID, mailbox, names, values, mailstore.MaxMetadataObject, mailstore.MaxMetadataAccount)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "PR005" {
		return fmt.Errorf("set metadata: %w", mailstore.ErrMetadataTooMany)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("set metadata: %w", mailstore.ErrNoSuchMailbox)
	}
	return mapErr("set metadata", err)
}

// metadataMailbox normalises a mailbox name ("INBOX" in any case), keeping
// "" (the server); a name that cannot exist is ErrNoSuchMailbox.
func metadataMailbox(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	n, err := mailstore.NormalizeMailboxName(name)
	if err != nil {
		return "", mailstore.ErrNoSuchMailbox
	}
	return n, nil
}
