package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestMaintenancePrunesOnce: two nodes run the maintenance loop on one
// database; the tombstones are pruned, by one node per interval (the
// lease), and both loops stop when their context ends.
func TestMaintenancePrunesOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	a, b := pgtest.OpenStore(t, url), pgtest.OpenStore(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	acct, err := a.CreateAccount(ctx, "u@example.org", "hash")
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := a.GetMailbox(ctx, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := a.Append(ctx, acct.ID, inbox.ID, mailstore.Flags{}, time.Time{}, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Expunge(ctx, acct.ID, inbox.ID, nil, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the tombstones are now older than the retention below

	var logs syncBuffer
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, st := range []mailstore.Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runMaintenance(lctx, st, 10*time.Millisecond, time.Hour, 0, "node"+string(rune('a'+i)), logs.logger())
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "pruned tombstones") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // give the other node its chance to (wrongly) prune too
	stop()
	wg.Wait()
	out := logs.String()
	if n := strings.Count(out, "pruned tombstones"); n != 1 {
		t.Fatalf("%d prune runs logged, want 1 (one node per interval):\n%s", n, out)
	}
	if !strings.Contains(out, `"pruned":3`) {
		t.Errorf("log does not report 3 tombstones pruned:\n%s", out)
	}
	c, err := b.Changes(ctx, acct.ID, inbox.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !c.VanishedIncomplete || len(c.Vanished) != 0 {
		t.Errorf("after pruning: Changes(1) = vanished %v, incomplete %v; want none kept, incomplete", c.Vanished, c.VanishedIncomplete)
	}
}

// syncBuffer collects JSON log lines from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(b, nil)) }
