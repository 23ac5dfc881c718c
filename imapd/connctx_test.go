package imapd

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// ctxStore records the contexts the server passes to the store.
type ctxStore struct {
	mailstore.Store
	mu   sync.Mutex
	ctxs []context.Context
}

func (s *ctxStore) MailboxStatusByName(ctx context.Context, accountID int64, name string) (mailstore.MailboxStatus, error) {
	s.mu.Lock()
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	return s.Store.MailboxStatusByName(ctx, accountID, name)
}

// Store calls run under the connection's context: when the connection
// ends, its queries are cancelled, while the server and other connections
// go on.
func TestStoreCallsUseConnectionContext(t *testing.T) {
	e := newEnv(t)
	cs := &ctxStore{Store: e.store}
	_, addr := e.startServer(cs)
	c := dialAddr(t, addr)
	c.login("alice")
	if r := c.cmd("s", "STATUS INBOX (MESSAGES)"); !strings.HasPrefix(r[len(r)-1], "s OK") {
		t.Fatalf("STATUS: %q", r)
	}
	cs.mu.Lock()
	if len(cs.ctxs) == 0 {
		cs.mu.Unlock()
		t.Fatal("STATUS did not reach the store")
	}
	ctx := cs.ctxs[len(cs.ctxs)-1]
	cs.mu.Unlock()
	if ctx.Err() != nil {
		t.Fatal("context already done while the connection is open")
	}
	c.conn.Close()
	waitFor(t, func() bool { return ctx.Err() != nil })
	// The server goes on.
	c2 := dialAddr(t, addr)
	c2.login("alice")
	c2.cmd("s", "STATUS INBOX (MESSAGES)")
}
