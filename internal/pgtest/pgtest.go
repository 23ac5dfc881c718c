// Package pgtest gives tests a real, freshly migrated PostgreSQL database.
//
// The server is found in this order: POSTRIDER_TEST_DATABASE_URL; a
// PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); otherwise a
// throw-away cluster started by scripts/pgcluster.sh (which installs
// Debian's postgresql package when no server binaries exist). Each process
// migrates one template database once; every test gets its own clone, so
// tests run in parallel.
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

var (
	setupOnce sync.Once
	setupErr  error
	baseURL   string // URL of the server's maintenance database
	template  string // name of this process's migrated template
	counter   atomic.Int64
)

// ServerURL returns the URL of the maintenance database of the test server,
// starting one if needed.
func ServerURL(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	return baseURL
}

// NewDatabase creates a fresh, migrated database for the test and returns
// its URL. The database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ServerURL(t)
	name := fmt.Sprintf("prt_%d_%d", os.Getpid(), counter.Add(1))
	ctx := context.Background()
	if err := exec1(ctx, baseURL, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		_ = exec1(context.Background(), baseURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return WithDatabase(baseURL, name)
}

// NewEmptyDatabase creates a database without migrations.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	ServerURL(t)
	name := fmt.Sprintf("prt_%d_%d", os.Getpid(), counter.Add(1))
	if err := exec1(context.Background(), baseURL, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		_ = exec1(context.Background(), baseURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return WithDatabase(baseURL, name)
}

// NewStore opens a store on a fresh database; it is closed at cleanup.
func NewStore(t testing.TB) mailstore.Store {
	t.Helper()
	return OpenStore(t, NewDatabase(t))
}

// OpenStore opens another store handle (another "node") on a database.
func OpenStore(t testing.TB, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatalf("pgtest: open store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// WithDatabase returns base with its database name replaced.
func WithDatabase(base, db string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + db
	return u.String()
}

func exec1(ctx context.Context, url, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, sql)
	return err
}

func setup() error {
	u, err := findServer()
	if err != nil {
		return err
	}
	baseURL = u
	ctx := context.Background()
	dropStale(ctx)
	template = fmt.Sprintf("prt_tpl_%d", os.Getpid())
	if err := exec1(ctx, baseURL, "DROP DATABASE IF EXISTS "+template+" WITH (FORCE)"); err != nil {
		return err
	}
	if err := exec1(ctx, baseURL, "CREATE DATABASE "+template); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	if err := postgres.Migrate(ctx, WithDatabase(baseURL, template)); err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	return exec1(ctx, baseURL, "ALTER DATABASE "+template+" WITH IS_TEMPLATE true")
}

var staleRe = regexp.MustCompile(`^prt_(?:tpl_)?(\d+)(?:_\d+)?$`)

// dropStale removes databases left by test processes that no longer run.
func dropStale(ctx context.Context) {
	c, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return
	}
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'prt\\_%'")
	var stale []string
	if err == nil {
		for rows.Next() {
			var n string
			if rows.Scan(&n) != nil {
				continue
			}
			m := staleRe.FindStringSubmatch(n)
			if m == nil {
				continue
			}
			pid, _ := strconv.Atoi(m[1])
			if pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH {
				stale = append(stale, n)
			}
		}
		rows.Close()
	}
	for _, n := range stale {
		_, _ = c.Exec(ctx, "ALTER DATABASE "+n+" WITH IS_TEMPLATE false")
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+n+" WITH (FORCE)")
	}
	c.Close(ctx)
}

func reachable(u string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return false
	}
	defer c.Close(context.Background())
	return c.Ping(ctx) == nil
}

func findServer() (string, error) {
	if u := os.Getenv("POSTRIDER_TEST_DATABASE_URL"); u != "" {
		if !reachable(u) {
			return "", fmt.Errorf("POSTRIDER_TEST_DATABASE_URL=%q is not reachable", u)
		}
		return u, nil
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second); err == nil {
		c.Close()
		u := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
		if reachable(u) {
			return u, nil
		}
	}
	// Start (or reuse) a throw-away cluster.
	script, err := findScript()
	if err != nil {
		return "", err
	}
	out, err := exec.Command("bash", script, "start").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("%s start: %v: %s", script, err, ee.Stderr)
		}
		return "", fmt.Errorf("%s start: %v", script, err)
	}
	u := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(u, '\n'); i >= 0 {
		u = u[i+1:]
	}
	if !reachable(u) {
		return "", fmt.Errorf("cluster started by %s at %q is not reachable", script, u)
	}
	return u, nil
}

func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "pgcluster.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scripts/pgcluster.sh not found above the working directory")
		}
		dir = parent
	}
}
