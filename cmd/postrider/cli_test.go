package main_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/pgtest"
)

func TestConcurrentMigrateOnEmptyDatabase(t *testing.T) {
	url := pgtest.NewEmptyDatabase(t)
	env := []string{"POSTRIDER_DATABASE_URL=" + url}
	var wg sync.WaitGroup
	results := make([]result, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCLI(t, env, "", "migrate")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("migrate #%d exited %d: %s", i, r.code, r.stderr)
		}
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var total, distinct int
	if err := c.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&total, &distinct); err != nil {
		t.Fatal(err)
	}
	if total == 0 || total != distinct {
		t.Fatalf("schema_migrations has %d rows for %d versions: migrations applied more than once", total, distinct)
	}
	// A further run is a no-op.
	if r := runCLI(t, env, "", "migrate"); r.code != 0 {
		t.Fatalf("re-run: %d %s", r.code, r.stderr)
	}
	var again int
	_ = c.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&again)
	if again != total {
		t.Fatalf("re-run changed schema_migrations from %d to %d rows", total, again)
	}
}

func TestAdminCommands(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := []string{"POSTRIDER_DATABASE_URL=" + url}
	ok := func(stdin string, args ...string) string {
		t.Helper()
		r := runCLI(t, env, stdin, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		return r.stdout
	}
	fail := func(wantInErr string, stdin string, args ...string) {
		t.Helper()
		r := runCLI(t, env, stdin, args...)
		if r.code == 0 {
			t.Fatalf("%v succeeded, want failure", args)
		}
		if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(wantInErr)) {
			t.Fatalf("%v: stderr %q does not mention %q", args, r.stderr, wantInErr)
		}
	}

	ok("", "domain", "add", "Example.ORG")
	fail("already exists", "", "domain", "add", "example.org")
	fail("invalid", "", "domain", "add", "bad_domain!")
	if out := ok("", "domain", "list"); strings.TrimSpace(out) != "example.org" {
		t.Fatalf("domain list = %q", out)
	}
	ok("s3cret pass\n", "user", "add", "Alice@example.org")
	fail("already exists", "x\n", "user", "add", "alice@example.org")
	fail("no such domain", "x\n", "user", "add", "bob@unknown.test")
	fail("invalid address", "x\n", "user", "add", "not-an-address")
	fail("empty password", "\n", "user", "add", "carol@example.org")
	fail("no password", "", "user", "add", "carol@example.org")
	if out := ok("", "user", "list"); !strings.Contains(out, "alice@example.org") || strings.Contains(out, "carol") {
		t.Fatalf("user list = %q", out)
	}

	// The stored hash verifies through the auth module, before and after passwd.
	st := pgtest.OpenStore(t, url)
	authn := auth.New(st, auth.Options{})
	ctx := context.Background()
	if _, err := authn.Authenticate(ctx, "alice@example.org", "s3cret pass", mustAddr("127.0.0.1")); err != nil {
		t.Fatalf("login after user add: %v", err)
	}
	ok("n3w-pass\n", "user", "passwd", "alice@example.org")
	if _, err := authn.Authenticate(ctx, "alice@example.org", "s3cret pass", mustAddr("127.0.0.2")); err == nil {
		t.Fatal("old password still works after passwd")
	}
	if _, err := authn.Authenticate(ctx, "alice@example.org", "n3w-pass", mustAddr("127.0.0.3")); err != nil {
		t.Fatalf("login after passwd: %v", err)
	}
	fail("no such account", "x\n", "user", "passwd", "nobody@example.org")

	ok("", "user", "quota", "alice@example.org", "10M")
	if out := ok("", "user", "list", "example.org"); !strings.Contains(out, "10M") {
		t.Fatalf("quota not shown: %q", out)
	}
	fail("size", "", "user", "quota", "alice@example.org", "lots")
	ok("", "user", "quota", "alice@example.org", "--messages", "2500")
	if out := ok("", "user", "list", "example.org"); !strings.Contains(out, "10M") || !strings.Contains(out, "2500") {
		t.Fatalf("message limit not shown, or storage limit lost: %q", out)
	}
	ok("", "user", "quota", "alice@example.org", "20M", "--messages=0")
	if out := ok("", "user", "list", "example.org"); !strings.Contains(out, "20M") || strings.Contains(out, "2500") {
		t.Fatalf("quota 20M and unlimited messages not shown: %q", out)
	}
	fail("not a number", "", "user", "quota", "alice@example.org", "--messages", "-3")
	fail("not a number", "", "user", "quota", "alice@example.org", "--messages", "many")
	fail("twice", "", "user", "quota", "alice@example.org", "--messages", "1", "--messages", "2")
	fail("unknown flag", "", "user", "quota", "alice@example.org", "1M", "--bytes", "2")
	fail("usage", "", "user", "quota", "alice@example.org")

	ok("", "alias", "add", "postmaster@example.org", "alice@example.org")
	ok("", "alias", "add", "@example.org", "alice@example.org")
	fail("no such account", "", "alias", "add", "x@example.org", "ghost@example.org")
	if out := ok("", "alias", "list"); !strings.Contains(out, "postmaster@example.org\talice@example.org") || !strings.Contains(out, "@example.org\talice@example.org") {
		t.Fatalf("alias list = %q", out)
	}
	ok("", "alias", "remove", "postmaster@example.org")
	if out := ok("", "alias", "list"); strings.Contains(out, "postmaster") {
		t.Fatalf("alias not removed: %q", out)
	}

	fail("still has accounts", "", "domain", "remove", "example.org")
	ok("", "user", "remove", "alice@example.org")
	// Aliases that pointed only to the removed account go with it.
	if out := ok("", "alias", "list"); strings.TrimSpace(out) != "" {
		t.Fatalf("aliases left after user remove: %q", out)
	}
	fail("no such alias", "", "alias", "remove", "@example.org")
	ok("", "domain", "remove", "example.org")
	if out := ok("", "domain", "list"); strings.TrimSpace(out) != "" {
		t.Fatalf("domains left: %q", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"user"}, {"user", "add"}, {"domain", "add", "a", "b"}, {"alias", "zap"}} {
		r := runCLI(t, nil, "", args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"--help"}, {"user", "add", "--help"}, {"alias", "-h"}, {"serve", "--help"}} {
		// Help, not an attempt: no database is configured here.
		r := runCLI(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "postrider serve") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the usage on stdout", args, r.code, r.stdout, r.stderr)
		}
	}
	r := runCLI(t, nil, "", "domain", "list")
	if r.code == 0 || !strings.Contains(r.stderr, "POSTRIDER_DATABASE_URL") {
		t.Errorf("missing database URL not reported: %d %q", r.code, r.stderr)
	}
	r = runCLI(t, []string{"POSTRIDER_DATABASE_URL=postgres://x@127.0.0.1:1/x", "POSTRIDER_LOG_LEVEL=loud"}, "", "serve")
	if r.code != 2 || !strings.Contains(r.stderr, "POSTRIDER_LOG_LEVEL") {
		t.Errorf("bad log level: %d %q", r.code, r.stderr)
	}
}

func TestConfigCommandListsEveryVariable(t *testing.T) {
	r := runCLI(t, nil, "", "config")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	for _, v := range []string{"POSTRIDER_DATABASE_URL", "POSTRIDER_DATA_DIR", "POSTRIDER_HOSTNAME", "POSTRIDER_SMTP_ADDR",
		"POSTRIDER_SUBMISSION_ADDR", "POSTRIDER_SUBMISSIONS_ADDR", "POSTRIDER_IMAP_ADDR", "POSTRIDER_IMAPS_ADDR",
		"POSTRIDER_POP3_ADDR", "POSTRIDER_POP3S_ADDR", "POSTRIDER_HTTP_ADDR", "POSTRIDER_TLS_CERT_FILE", "POSTRIDER_TLS_KEY_FILE",
		"POSTRIDER_ALLOW_INSECURE_AUTH", "POSTRIDER_TRUSTED_PROXIES", "POSTRIDER_MAX_MESSAGE_SIZE", "POSTRIDER_RELAY_HOST",
		"POSTRIDER_LOG_LEVEL", "POSTRIDER_LOG_FORMAT"} {
		if !strings.Contains(r.stdout, v+" ") {
			t.Errorf("config output lacks %s", v)
		}
	}
	if !strings.Contains(r.stdout, "52428800") {
		t.Error("config output lacks the MAX_MESSAGE_SIZE default")
	}
}

func TestReadmeConfigTableIsCurrent(t *testing.T) {
	r := runCLI(t, nil, "", "config", "-markdown")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), r.stdout) {
		t.Fatalf("README.md's configuration table differs from `postrider config -markdown`; paste:\n%s", r.stdout)
	}
}
