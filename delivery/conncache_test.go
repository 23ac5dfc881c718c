package delivery

import (
	"strings"
	"sync"
	"testing"
)

// step runs one claim and its jobs to the end, like RunOnce but without
// closing the idle connections after it.
func step(e *Engine) {
	var wg sync.WaitGroup
	for e.claim(&wg) {
	}
	wg.Wait()
}

// TestConnectionCache: the connection of a finished job carries the next
// job's messages to the same target while it is fresh (RSET first), for at
// most MaxPerConn messages in all; an expired one is closed with QUIT, and
// one the receiver has closed meanwhile costs nothing but a new connection.
func TestConnectionCache(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt})
	w.zone.add(t, "reuse.test. A "+ip)
	cfg := w.config()
	cfg.MaxPerConn = 3
	e := w.engine(cfg)
	send := func(n int) {
		t.Helper()
		for range n {
			w.enqueueBody("alice@sender.test", nil, plainBody, rr("a@reuse.test")...)
		}
		step(e)
	}
	check := func(when string, accepts, msgs, quits int) {
		t.Helper()
		got := rcv.snapshot()
		q := 0
		for _, c := range got.cmds {
			if strings.EqualFold(c, "QUIT") {
				q++
			}
		}
		if got.accepts != accepts || len(got.msgs) != msgs || q != quits {
			t.Fatalf("%s: %d connections, %d messages, %d QUITs; want %d, %d, %d", when, got.accepts, len(got.msgs), q, accepts, msgs, quits)
		}
	}
	send(1)
	check("first job", 1, 1, 0)
	send(1)
	check("second job, same connection", 1, 2, 0)
	send(2) // the third message fills the connection; the fourth needs another
	waitFor(t, "the full connection's QUIT", func() bool { return strings.Contains(strings.Join(rcv.snapshot().cmds, "\n"), "QUIT") })
	check("two more", 2, 4, 1)

	// Idle for connIdle: not used again, and closed by the next prune.
	w.clock.advance(connIdle)
	send(1)
	check("after connIdle", 3, 5, 1)
	e.conns.prune(w.clock.Now(), false)
	waitFor(t, "the expired connection's QUIT", func() bool { return strings.Count(strings.Join(rcv.snapshot().cmds, "\n"), "QUIT") == 2 })

	// The receiver drops the idle connection: the next job delivers over a
	// new one, and its transaction is not failed for it.
	rcv.dropAll()
	id := w.enqueueBody("alice@sender.test", nil, plainBody, rr("b@reuse.test")...)
	step(e)
	check("after the receiver dropped the idle connection", 4, 6, 2)
	if _, ok := w.item(id); ok {
		t.Errorf("item %d still queued: %+v", id, w.rcptState(id))
	}

	// RunOnce (and shutdown) leave nothing open.
	w.enqueueBody("alice@sender.test", nil, plainBody, rr("c@reuse.test")...)
	e.RunOnce(bg)
	check("RunOnce", 4, 7, 3)
	if items, err := w.store.ListQueue(bg, 0); err != nil || len(items) != 0 {
		t.Errorf("queue after every delivery: %d items, %v", len(items), err)
	}
}
