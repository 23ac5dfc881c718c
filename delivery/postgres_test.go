package delivery

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// pgNodes opens n store handles ("nodes") on one fresh database.
func pgNodes(t *testing.T, n int) []Store {
	t.Helper()
	url := pgtest.NewDatabase(t)
	var out []Store
	for range n {
		st := pgtest.OpenStore(t, url)
		out = append(out, st)
	}
	return out
}

// pgWorld is a world whose store is PostgreSQL, on the real clock.
func pgWorld(t *testing.T, nodes int) (*world, []Store) {
	t.Helper()
	w := newWorld(t)
	sts := pgNodes(t, nodes)
	w.store, w.mem = sts[0], nil
	return w, sts
}

func (w *world) pgEngine(st Store, holder string, lease time.Duration) *Engine {
	w.t.Helper()
	cfg := w.config()
	cfg.Now, cfg.Holder, cfg.Lease, cfg.PollInterval = time.Now, holder, lease, 20*time.Millisecond
	cfg.Workers, cfg.MaxPerConn = 4, 2
	e, err := New(cfg, st)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func queueEmpty(w *world) func() bool {
	return func() bool {
		its, err := w.store.ListQueue(bg, 0)
		if err != nil {
			w.t.Fatal(err)
		}
		return len(its) == 0
	}
}

func TestPostgresTwoNodesNeverDeliverTwice(t *testing.T) {
	w, sts := pgWorld(t, 2)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	w.zone.add(t, "pgtwice.test. A "+ip)
	const n = 20
	for i := range n {
		w.enqueue("alice@sender.test", nil, fmt.Sprintf("r%d@pgtwice.test", i))
	}
	for i, st := range sts {
		w.pgEngine(st, fmt.Sprintf("pgnode%d", i), time.Minute).Start()
	}
	waitFor(t, "every message", queueEmpty(w))
	seen := map[string]int{}
	for _, m := range rcv.messages() {
		for _, r := range m.Rcpts {
			seen[r]++
		}
	}
	for i := range n {
		if c := seen[fmt.Sprintf("r%d@pgtwice.test", i)]; c != 1 {
			t.Errorf("r%d delivered %d times", i, c)
		}
	}
}

func TestPostgresKilledNodeTakenOver(t *testing.T) {
	w, sts := pgWorld(t, 2)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.block = make(chan struct{})
	defer close(rcv.block)
	w.zone.add(t, "pgkill.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "x@pgkill.test")

	a := w.pgEngine(sts[0], "pgnodeA", 2*time.Second)
	a.Start()
	waitFor(t, "node A in the middle of the transaction", func() bool { return rcv.blocked.Load() })
	dead, cancel := context.WithCancel(bg)
	cancel()
	_ = a.Shutdown(dead) // killed: nothing recorded
	it, ok := w.item(id)
	if !ok || it.Recipients[0].Attempts != 0 || it.LeaseHolder != "pgnodeA" {
		t.Fatalf("after the kill: %+v", it)
	}
	w.pgEngine(sts[1], "pgnodeB", 2*time.Second).Start()
	waitFor(t, "node B to deliver after A's lease", func() bool { _, ok := w.item(id); return !ok })
	if m := rcv.messages(); len(m) != 1 {
		t.Fatalf("delivered %d times", len(m))
	}
}

func TestPostgresBounceToSenderInbox(t *testing.T) {
	w, sts := pgWorld(t, 1)
	st := sts[0].(mailstore.Store)
	if err := st.CreateDomain(bg, "sender.test"); err != nil {
		t.Fatal(err)
	}
	acct, err := st.CreateAccount(bg, "alice@sender.test", "x")
	if err != nil {
		t.Fatal(err)
	}
	w.zone.add(t, "pgnull.test. MX 0 .")
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.rcptHook = func(to string, _ int) error {
		if strings.HasPrefix(to, "bad") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	w.zone.add(t, "pgthree.test. A "+ip)
	res, err := st.Deliver(bg, &mailstore.Delivery{MailFrom: "alice@sender.test", SenderAccount: acct.ID,
		Body:   strings.NewReader("From: alice@sender.test\r\nSubject: three\r\n\r\nhello\r\n"),
		Remote: []mailstore.RemoteRecipient{{Address: "ok1@pgthree.test"}, {Address: "bad@pgthree.test"}, {Address: "ok2@pgthree.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.pgEngine(sts[0], "pgnode", time.Minute).RunOnce(bg)
	if _, err := st.GetQueueItem(bg, res.QueueID); err == nil {
		t.Fatal("item still queued")
	}
	inbox, err := st.GetMailbox(bg, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.ListMessages(bg, acct.ID, inbox.ID, nil)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX has %d messages (%v), want the one DSN", len(msgs), err)
	}
	rc, err := st.OpenMessage(bg, acct.ID, inbox.ID, msgs[0].UID, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, b)
	if len(p.Recipients) != 1 || p.Recipients[0].Get("Final-Recipient") != "rfc822; bad@pgthree.test" {
		t.Fatalf("DSN recipients %v", p.Recipients)
	}
	if m := rcv.messages(); len(m) != 1 || len(m[0].Rcpts) != 2 {
		t.Fatalf("receiver got %+v", m)
	}
}
