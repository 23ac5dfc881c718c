package imapd

import (
	"errors"
	"os"
	"strings"

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
	if c.sel != nil {
		stop, exited := make(chan struct{}), make(chan struct{})
		go c.waker(c.sel.notify, stop, exited)
		defer func() {
			close(stop)
			<-exited
			c.takeWoken()
		}()
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
			c.p.done = true
			if errors.Is(err, mailstore.ErrNoSuchMailbox) {
				return errBye(codeNonexistent, "Selected mailbox was deleted; closing")
			}
			return err
		}
		if err := c.flushContexts(); err != nil {
			c.p.done = true
			return err
		}
		c.sendExpunges(true)
	}
}

// errWoken is returned by connReader when IDLE's waker asked the reader to
// look at the store.
var errWoken = errors.New("imapd: woken by a change notification")

// waker turns change notifications into wake-ups of the reading goroutine
// until stop is closed.
func (c *conn) waker(notify <-chan struct{}, stop <-chan struct{}, exited chan<- struct{}) {
	defer close(exited)
	for {
		select {
		case <-notify:
			c.mu.Lock()
			c.woken = true
			_ = c.raw.SetReadDeadline(pastDeadline)
			c.mu.Unlock()
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
