package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// recorder collects what a Store's Observer is told.
type recorder struct {
	mu      sync.Mutex
	queries map[string]int // by kind and result
	lags    []time.Duration
}

func (r *recorder) observer() postgres.Observer {
	return postgres.Observer{
		Query: func(kind string, _ time.Duration, err error) {
			res := "ok"
			if err != nil {
				res = "error"
			}
			r.mu.Lock()
			r.queries[kind+" "+res]++
			r.mu.Unlock()
		},
		NotifyLag: func(lag time.Duration) {
			r.mu.Lock()
			r.lags = append(r.lags, lag)
			r.mu.Unlock()
		},
	}
}

func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queries[key]
}

func (r *recorder) lagged() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.lags...)
}

// TestObserverQueriesAndLag: the Observer hears every statement with its
// result, and the lag of another node's change notifications; its own
// node's notifications are not lag across nodes.
func TestObserverQueriesAndLag(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	other := pgtest.OpenStore(t, url)
	ctx := ctxT(t)
	r := &recorder{queries: map[string]int{}}
	st, err := postgres.Open(ctx, url, postgres.Options{Observer: r.observer()})
	must(t, err)
	t.Cleanup(st.Close)

	before := r.count("query ok")
	must(t, st.CreateDomain(ctx, "example.org"))
	acc, err := st.CreateAccount(ctx, "alice@example.org", "x")
	must(t, err)
	inbox, err := st.GetMailbox(ctx, acc.ID, "INBOX")
	must(t, err)
	if got := r.count("query ok"); got <= before {
		t.Fatalf("successful queries observed: %d before, %d after three calls", before, got)
	}
	errs := r.count("query error")
	if _, err := st.Pool().Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	if got := r.count("query error"); got != errs+1 {
		t.Fatalf("failed queries observed: %d, want %d", got, errs+1)
	}

	// This node's own write is no lag sample.
	_, err = st.Append(ctx, acc.ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: a\r\n\r\nb\r\n"))
	must(t, err)
	time.Sleep(300 * time.Millisecond)
	if l := r.lagged(); len(l) != 0 {
		t.Fatalf("own notifications measured as lag: %v", l)
	}
	// Another node's write is, within a bound.
	start := time.Now()
	_, err = other.Append(ctx, acc.ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: c\r\n\r\nd\r\n"))
	must(t, err)
	for len(r.lagged()) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no notification lag measured for another node's write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if l := r.lagged(); l[0] < 0 || l[0] > time.Since(start) {
		t.Fatalf("lag %v, outside [0, %v]", l[0], time.Since(start))
	}
	t.Logf("cross-node notification lag of one write: %v", r.lagged()[0])
}

// TestConnectionStatsCountReconnects: when every database connection
// breaks, the listener's reconnect and the pool's new connections are
// counted.
func TestConnectionStatsCountReconnects(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	proxy, purl := pgtest.NewProxy(t, url)
	octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(octx, purl, postgres.Options{ListenBackoffMax: 100 * time.Millisecond})
	must(t, err)
	t.Cleanup(st.Close)
	ctx := ctxT(t)
	must(t, st.Ping(ctx))
	opened, reconnects := st.ConnectionStats()
	if opened < 1 || reconnects != 0 {
		t.Fatalf("after Open: %d pool connections opened, %d listener reconnects", opened, reconnects)
	}
	proxy.Down()
	time.Sleep(200 * time.Millisecond)
	proxy.Up()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := st.Ping(ctx)
		o, rc := st.ConnectionStats()
		if err == nil && o > opened && rc >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the connections broke: ping %v, %d pool connections opened (was %d), %d listener reconnects", err, o, opened, rc)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
