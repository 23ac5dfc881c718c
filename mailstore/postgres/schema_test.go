package postgres_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore/postgres"
)

// schemaSnapshot renders what a migrated database is made of: columns,
// indexes, constraints, sequences and the full definition of every
// function, sorted, one line each.
func schemaSnapshot(t *testing.T, url string) []string {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, url)
	must(t, err)
	defer conn.Close(context.Background())
	var out []string
	for _, q := range []string{
		`SELECT format('column %s.%s %s null=%s default=%s', table_name, column_name, data_type, is_nullable, coalesce(column_default, ''))
		   FROM information_schema.columns WHERE table_schema = current_schema()`,
		`SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = current_schema()`,
		`SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
		   FROM pg_constraint WHERE connamespace = current_schema()::regnamespace`,
		`SELECT format('sequence %s', sequence_name) FROM information_schema.sequences WHERE sequence_schema = current_schema()`,
		`SELECT format('function %s', pg_get_functiondef(oid)) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace`,
		`SELECT format('table %s persistence=%s options=%s', relname, relpersistence, coalesce(reloptions::text, ''))
		   FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'`,
	} {
		rows, err := conn.Query(ctx, q)
		must(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		must(t, err)
		out = append(out, lines...)
	}
	sort.Strings(out)
	return out
}

func diffLines(a, b []string) string {
	in := func(xs []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range xs {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d strings.Builder
	for _, x := range a {
		if !mb[x] {
			fmt.Fprintf(&d, "\n- %.300s", x)
		}
	}
	for _, x := range b {
		if !ma[x] {
			fmt.Fprintf(&d, "\n+ %.300s", x)
		}
	}
	return d.String()
}

// A database migrated step by step from version 1, and one that an older
// release left with other function definitions (a changed body, a stale
// overload with another signature, a function no file defines, no record
// in schema_functions), both end identical to a fresh one: the functions
// are exactly those of functions/. A further Migrate changes nothing.
func TestSchemaFreshEqualsUpgraded(t *testing.T) {
	ctx := ctxT(t)
	fresh := pgtest.NewEmptyDatabase(t)
	must(t, postgres.Migrate(ctx, fresh))
	want := schemaSnapshot(t, fresh)
	if len(want) < 50 || !strings.Contains(strings.Join(want, "\n"), "FUNCTION public.pr_deliver(p_pending bigint") {
		t.Fatalf("snapshot looks empty or lacks pr_deliver: %d lines", len(want))
	}

	stepwise := pgtest.NewEmptyDatabase(t)
	for v := 1; v <= 3; v++ {
		must(t, postgres.MigrateTo(ctx, stepwise, v))
	}
	must(t, postgres.Migrate(ctx, stepwise))
	if d := diffLines(want, schemaSnapshot(t, stepwise)); d != "" {
		t.Errorf("step-by-step upgrade differs from a fresh database:%s", d)
	}

	old := pgtest.NewEmptyDatabase(t)
	must(t, postgres.Migrate(ctx, old))
	conn, err := pgx.Connect(ctx, old)
	must(t, err)
	defer conn.Close(context.Background())
	for _, q := range []string{
		`DROP TABLE schema_functions`,
		`CREATE OR REPLACE FUNCTION pr_kwnorm(kw text[]) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$ SELECT kw $$`,
		`CREATE FUNCTION pr_deliver(p_old integer) RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$`,
		`CREATE FUNCTION pr_obsolete() RETURNS void LANGUAGE sql AS $$ SELECT $$`,
	} {
		_, err := conn.Exec(ctx, q)
		must(t, err)
	}
	if d := diffLines(want, schemaSnapshot(t, old)); d == "" {
		t.Fatal("the simulated old database already equals a fresh one: the test would prove nothing")
	}
	must(t, postgres.Migrate(ctx, old))
	if d := diffLines(want, schemaSnapshot(t, old)); d != "" {
		t.Errorf("an old release's database differs from a fresh one after Migrate:%s", d)
	}

	// Once current, Migrate re-creates nothing (function oids stay).
	oids := func() string {
		var s string
		must(t, conn.QueryRow(ctx, `SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_proc
			WHERE pronamespace = current_schema()::regnamespace`).Scan(&s))
		return s
	}
	before := oids()
	must(t, postgres.Migrate(ctx, old))
	if after := oids(); after != before {
		t.Errorf("a Migrate with nothing to do re-created functions: %s -> %s", before, after)
	}
}
