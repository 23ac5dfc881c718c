package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

//go:embed functions/*.sql
var functionFS embed.FS

// migrateLockKey is the pg_advisory_lock key that serialises Migrate calls
// of every process against one database ("postride" in ASCII).
const migrateLockKey int64 = 0x706f737472696465

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. File names
// are NNNN_name.sql; versions must be unique.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]bool{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("postgres: bad migration file name %q", name)
		}
		if seen[v] {
			return nil, fmt.Errorf("postgres: duplicate migration version %d", v)
		}
		seen[v] = true
		b, err := migrationFS.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// latestVersion is the version the code expects the database to have.
func latestVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// Migrate applies the embedded migrations that the database lacks, each in
// its own transaction, recording them in schema_migrations. It holds a
// session advisory lock meanwhile, so processes starting together migrate
// once: the others wait and then find nothing to do.
func Migrate(ctx context.Context, databaseURL string) error {
	return migrateTo(ctx, databaseURL, 0)
}

// migrateTo is Migrate stopping after version upTo (0: the latest); the
// upgrade tests use it to build a database of an older version.
func migrateTo(ctx context.Context, databaseURL string, upTo int) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("postgres: migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		// Closing the session also releases the lock; unlock explicitly so
		// a pooled or long-lived connection would not keep it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey)
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("postgres: migrate: create schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("postgres: migrate: read versions: %w", err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("postgres: migrate: read versions: %w", err)
	}
	for _, v := range vs {
		applied[int(v)] = true
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if upTo > 0 && m.version > upTo {
			break
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// Simple protocol: a migration file holds many statements.
			if _, err := tx.Exec(ctx, m.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migrate: apply %s: %w", m.name, err)
		}
	}
	if upTo > 0 && upTo < ms[len(ms)-1].version {
		// An older schema (upgrade tests): the functions are written for
		// the latest one.
		return nil
	}
	if err := applyFunctions(ctx, conn); err != nil {
		return fmt.Errorf("postgres: migrate: functions: %w", err)
	}
	return nil
}

// function is one functions/*.sql file: the definition of one pr_*
// function, named after it.
type function struct {
	name, sql, sum string
}

func functionFiles() ([]function, error) {
	entries, err := fs.ReadDir(functionFS, "functions")
	if err != nil {
		return nil, err
	}
	var fns []function
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".sql")
		if !ok {
			continue
		}
		if !strings.HasPrefix(name, "pr_") {
			return nil, fmt.Errorf("postgres: function file %q: names must start with pr_", e.Name())
		}
		b, err := functionFS.ReadFile(path.Join("functions", e.Name()))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		fns = append(fns, function{name: name, sql: string(b), sum: hex.EncodeToString(sum[:])})
	}
	return fns, nil
}

// applyFunctions makes the database's pr_* functions exactly those of
// functions/: in one transaction (under the migration lock), a function
// whose file changed since it was applied (or that has no record: a
// database from before functions/ existed) is dropped with every overload
// and created again; a pr_* function no file defines is dropped. Dropping
// first lets a file change a signature or a result type, which CREATE OR
// REPLACE refuses. Nothing is done when every file is as recorded, so
// starting a node costs two catalog queries.
func applyFunctions(ctx context.Context, conn *pgx.Conn) error {
	fns, err := functionFiles()
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_functions (
		name       text PRIMARY KEY,
		sha256     text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT f.name, f.sha256, EXISTS (SELECT 1 FROM pg_proc p
				WHERE p.proname = f.name AND p.pronamespace = current_schema()::regnamespace)
			  FROM schema_functions f`)
		if err != nil {
			return err
		}
		recorded := map[string]string{}
		var name, sum string
		var exists bool
		_, err = pgx.ForEachRow(rows, []any{&name, &sum, &exists}, func() error {
			if exists {
				recorded[name] = sum
			}
			return nil
		})
		if err != nil {
			return err
		}
		want := map[string]bool{}
		var stale []function
		for _, f := range fns {
			want[f.name] = true
			if recorded[f.name] != f.sum {
				stale = append(stale, f)
			}
		}
		// Functions no file defines any more.
		rows, err = tx.Query(ctx, `SELECT DISTINCT proname::text FROM pg_proc
			WHERE pronamespace = current_schema()::regnamespace AND proname LIKE 'pr\_%'`)
		if err != nil {
			return err
		}
		present, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		var gone []string
		for _, p := range present {
			if !want[p] {
				gone = append(gone, p)
			}
		}
		if len(stale) == 0 && len(gone) == 0 {
			return nil
		}
		// Bodies are checked when they run; the files may call each other
		// in any order.
		if _, err := tx.Exec(ctx, `SET LOCAL check_function_bodies = off`); err != nil {
			return err
		}
		drop := func(name string) error {
			rows, err := tx.Query(ctx, `SELECT oid::regprocedure::text FROM pg_proc
				WHERE pronamespace = current_schema()::regnamespace AND proname = $1`, name)
			if err != nil {
				return err
			}
			sigs, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, sig := range sigs {
				if _, err := tx.Exec(ctx, `DROP FUNCTION `+sig); err != nil {
					return fmt.Errorf("drop %s: %w", sig, err)
				}
			}
			return nil
		}
		for _, name := range gone {
			if err := drop(name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM schema_functions WHERE name = $1`, name); err != nil {
				return err
			}
		}
		for _, f := range stale {
			if err := drop(f.name); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, f.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("%s.sql: %w", f.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_functions (name, sha256) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET sha256 = excluded.sha256, applied_at = now()`, f.name, f.sum); err != nil {
				return err
			}
		}
		return nil
	})
}
