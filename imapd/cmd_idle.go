package imapd

import (
	"errors"
	"os"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// IDLE (RFC 2177, RFC 9051 §6.3.13).
//
// The connection's goroutine waits for the client's DONE as it waits for a
// command, so Shutdown wakes it the same way and an idle connection costs
// one goroutine. With a mailbox selected, a small second goroutine waits
// for the store's change notifications (from any node) and wakes the reader
// through its read deadline; the reader then sends the updates and goes on
// reading the line where it was. The idle timeout (Limits.IdleTimeout, at
// least 30 minutes by default as RFC 9051 §5.4 asks) is the read deadline.
//
// A catch-up that fails because the store is unavailable (a database
// failover) does not end IDLE: the client asked for nothing, and a tagged
// NO in the middle of IDLE is a reply it does not expect. The session stays
// in IDLE and tries again after a growing pause (idleRetryMin..Max), so it
// shows every change once the database is back.
func cmdIdle(c *conn, cx *cmdCtx) error {
	if err := c.p.end(); err != nil {
		return err
	}
	if c.sel != nil {
		if err := c.refreshView(); err != nil {
			return err
		}
		if err := c.flushContexts(); err != nil {
			return err
		}
		c.sendExpunges(true)
	}
	if err := c.continueReq("idling"); err != nil {
		return err
	}
	c.srv.metrics.idle.Inc()
	defer c.srv.metrics.idle.Dec()
	var retry chan time.Duration // to the waker: wake me after this long
	backoff := idleRetryMin
	if c.sel != nil {
		stop, exited := make(chan struct{}), make(chan struct{})
		retry = make(chan time.Duration, 1)
		go c.waker(c.sel.notify, retry, stop, exited)
		defer func() {
			close(stop)
			<-exited
			c.takeWoken()
		}()
	}
	if c.sel != nil && c.w.deflate {
		// The inflater cannot be woken (compress.go): updates are sent
		// from within the read.
		c.onWake = c.idleWake
		defer func() { c.onWake = nil }()
	}
	c.p.done = false
	c.p.line, c.p.pos = c.p.line[:0], 0
	for {
		// Idle connections hold no output buffer.
		if err := c.w.release(); err != nil {
			return errClosed
		}
		c.setWaiting(true)
		err := c.p.readMore()
		c.setWaiting(false)
		woken := c.takeWoken()
		if err == nil {
			c.p.done = true
			if !strings.EqualFold(string(c.p.line), "DONE") {
				return errBad("Expected DONE")
			}
			return nil
		}
		if c.isInterrupted() {
			c.p.done = true
			return errBye(codeUnavailable, "Server shutting down")
		}
		var ioe *ioError
		if !woken || !errors.As(err, &ioe) || !(errors.Is(ioe.err, errWoken) || errors.Is(ioe.err, os.ErrDeadlineExceeded)) {
			return err
		}
		// Woken for any change of the account: catch up only when it may
		// concern this mailbox.
		if err := c.refreshView(); err != nil {
			if errors.Is(err, mailstore.ErrUnavailable) && retry != nil {
				c.log.Debug("catch-up in IDLE failed; retrying", "err", err, "after", backoff)
				select {
				case retry <- backoff:
				default:
				}
				backoff = min(2*backoff, idleRetryMax)
				continue
			}
			c.p.done = true
			if errors.Is(err, mailstore.ErrNoSuchMailbox) {
				return errBye(codeNonexistent, "Selected mailbox was deleted; closing")
			}
			return err
		}
		if err := c.flushContexts(); err != nil {
			// The changes stay noted: the next wake-up tries again.
			if errors.Is(err, mailstore.ErrUnavailable) && retry != nil {
				c.log.Debug("context updates in IDLE failed; retrying", "err", err, "after", backoff)
				select {
				case retry <- backoff:
				default:
				}
				backoff = min(2*backoff, idleRetryMax)
				continue
			}
			c.p.done = true
			return err
		}
		backoff = idleRetryMin
		c.sendExpunges(true)
	}
}

// The pauses between catch-up attempts in IDLE while the store is
// unavailable: a PostgreSQL failover measured a few seconds
// (internal/clustertest TestDatabaseFailover).
const (
	idleRetryMin = 250 * time.Millisecond
	idleRetryMax = 5 * time.Second
)

// errWoken is returned by connReader when IDLE's waker asked the reader to
// look at the store.
var errWoken = errors.New("imapd: woken by a change notification")

// waker turns change notifications, and the retries IDLE asks for, into
// wake-ups of the reading goroutine until stop is closed.
func (c *conn) waker(notify <-chan struct{}, retry <-chan time.Duration, stop <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	var timer *time.Timer
	var fire <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	wake := func() {
		c.mu.Lock()
		c.woken = true
		_ = c.raw.SetReadDeadline(pastDeadline)
		c.mu.Unlock()
	}
	for {
		select {
		case <-notify:
			wake()
		case d := <-retry:
			if timer != nil {
				timer.Stop()
			}
			timer = time.NewTimer(d)
			fire = timer.C
		case <-fire:
			fire = nil
			wake()
		case <-stop:
			return
		}
	}
}

// takeWoken reports and clears a pending wake-up.
func (c *conn) takeWoken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.woken
	c.woken = false
	return w
}
