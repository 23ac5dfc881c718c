package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// TestListenerSurvivesPartition: when the listening connection goes
// silent without closing (a primary cut off by a partition), the listener
// notices within its probe interval, reconnects and catches up, so a
// session of this node hears other nodes' writes again.
func TestListenerSurvivesPartition(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	other := pgtest.OpenStore(t, url) // another node, straight to the server
	ctx := ctxT(t)
	must(t, other.CreateDomain(ctx, "example.org"))
	acc, err := other.CreateAccount(ctx, "alice@example.org", "x")
	must(t, err)
	inbox, err := other.GetMailbox(ctx, acc.ID, "INBOX")
	must(t, err)

	proxy, purl := pgtest.NewProxy(t, url)
	octx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.Open(octx, purl, postgres.Options{ListenProbeInterval: 300 * time.Millisecond})
	must(t, err)
	t.Cleanup(st.Close)
	ch, unsubscribe := st.Subscribe(acc.ID)
	defer unsubscribe()

	// heard reports whether a write on the other node wakes this node's
	// subscriber within d (writing again every 200 ms).
	heard := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			_, err := other.Append(ctx, acc.ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: x\r\n\r\ny\r\n"))
			must(t, err)
			select {
			case <-ch:
				return true
			case <-time.After(200 * time.Millisecond):
			}
		}
		return false
	}
	if !heard(10 * time.Second) {
		t.Fatal("the listener never heard the other node")
	}
	proxy.Freeze()
	// Drain a wake-up already queued, then wait for the listener to
	// notice the silent connection (probe after 300 ms, failing 300 ms
	// later), reconnect and hear the other node again.
	select {
	case <-ch:
	case <-time.After(50 * time.Millisecond):
	}
	if !heard(10 * time.Second) {
		t.Fatal("with its connection silent, the listener did not reconnect")
	}
}
