package smtpd_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// faultyStore wraps the real store with injectable failures.
type faultyStore struct {
	mailstore.Store
	deliver func(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error)
	resolve atomic.Bool // fail Resolve
}

func (f *faultyStore) Deliver(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
	if f.deliver != nil {
		return f.deliver(ctx, d)
	}
	return f.Store.Deliver(ctx, d)
}

func (f *faultyStore) Resolve(ctx context.Context, addr string) (mailstore.Resolution, error) {
	if f.resolve.Load() {
		return mailstore.Resolution{}, errors.New("connection refused (injected)")
	}
	return f.Store.Resolve(ctx, addr)
}

// TestStoreFailure: a failed delivery is a 451 4.3.0, never a 250, and
// stores nothing; a failed lookup is a 451 at RCPT.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fs := &faultyStore{}
	e := newEnv(t, withStore(func(st mailstore.Store) mailstore.Store {
		fs.Store = st
		fs.deliver = func(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
			if fail.Load() {
				// Read part of the body, then fail as a broken connection would.
				_, _ = io.CopyN(io.Discard, d.Body, 10)
				return mailstore.DeliveryResult{}, errors.New("write: broken pipe (injected)")
			}
			return st.Deliver(ctx, d)
		}
		return fs
	}))
	fail.Store(true)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	r := c.expect(451, "4.3.0")
	if strings.Contains(r.String(), "injected") || strings.Contains(r.String(), "pipe") {
		t.Errorf("internal error leaked to the client: %v", r)
	}
	fail.Store(false)
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	fs.resolve.Store(true)
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<bob@example.org>", 451, "4.3.0") // bob: not in the lookup cache
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
}

// TestReplyAfterCommit: the 250 is sent only after Deliver returned.
func TestReplyAfterCommit(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	e := newEnv(t, withStore(func(st mailstore.Store) mailstore.Store {
		return &faultyStore{Store: st, deliver: func(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
			entered <- struct{}{}
			<-release
			return st.Deliver(ctx, d)
		}}
	}))
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	<-entered
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := c.read(); err == nil {
		t.Fatalf("reply %v before the delivery returned", r)
	}
	close(release)
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.r.Reset(c.conn)
	c.expect(250)
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages", n)
	}
}

// TestShutdown: idle clients get 421; a transfer in progress finishes and
// is acknowledged, then its client gets 421; Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	idle := dial(t, e.inbound)
	idle.ehlo("client.example")
	busy := dial(t, e.submission)
	busy.ehlo("client.example")
	busy.login("alice@example.org", alicePass)
	busy.cmd("MAIL FROM:<alice@example.org>", 250)
	busy.cmd("RCPT TO:<bob@example.org>", 250)
	busy.cmd("DATA", 354)
	busy.send("From: alice@example.org\r\n\r\nfirst part\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	idle.expect(421, "4.3.2")
	idle.expectClosed()
	time.Sleep(200 * time.Millisecond)
	busy.send("second part\r\n.\r\n")
	busy.expect(250)
	busy.expect(421, "4.3.2")
	busy.expectClosed()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob has %d messages", n)
	}
	if _, err := dialErr(e.inbound); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

// TestShutdownDeadline: when the context ends, connections are closed and
// the delivery in progress is cancelled (no 250).
func TestShutdownDeadline(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	e := newEnv(t, withStore(func(st mailstore.Store) mailstore.Store {
		return &faultyStore{Store: st, deliver: func(ctx context.Context, d *mailstore.Delivery) (mailstore.DeliveryResult, error) {
			entered <- struct{}{}
			<-ctx.Done()
			return mailstore.DeliveryResult{}, ctx.Err()
		}}
	}))
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if r, err := c.read(); err == nil && r.Code == 250 {
		t.Fatalf("got 250 for a cancelled delivery")
	}
}

// TestResolveCacheRemoteDomains: "not one of our domains" is cached per
// domain, so a submission's further recipients in a domain already looked
// up cost no query (here: they still work while lookups fail), and port 25
// refuses them as before; another domain, and local users not yet looked
// up, still ask the store.
func TestResolveCacheRemoteDomains(t *testing.T) {
	t.Parallel()
	fs := &faultyStore{}
	e := newEnv(t, withStore(func(st mailstore.Store) mailstore.Store {
		fs.Store = st
		return fs
	}))
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	c.cmd("MAIL FROM:<alice@example.org>", 250)
	c.cmd("RCPT TO:<one@elsewhere.example>", 250)
	fs.resolve.Store(true)
	c.cmd("RCPT TO:<two@Elsewhere.EXAMPLE>", 250)
	c.cmd("RCPT TO:<three@other.example>", 451, "4.3.0")
	c.cmd("RCPT TO:<bob@example.org>", 451, "4.3.0")
	c.cmd("DATA", 354)
	c.send("From: alice@example.org\r\nSubject: out\r\n\r\nhello\r\n.\r\n")
	c.expect(250)
	items := e.queued()
	if len(items) != 1 || len(items[0].Recipients) != 2 {
		t.Fatalf("queued %+v, want one item for two recipients", items)
	}
	in := dial(t, e.inbound)
	in.ehlo("client.example")
	in.cmd("MAIL FROM:<s@remote.example>", 250)
	in.cmd("RCPT TO:<four@elsewhere.example>", 554, "5.7.1")
}
