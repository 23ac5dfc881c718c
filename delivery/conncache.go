package delivery

import (
	"sync"
	"time"
)

// connCache keeps the connection of a finished job open for a short while
// (connIdle) for the next job to the same target, as Postfix's connection
// cache does for a relayhost or a busy destination. Under load the engine
// claims a few messages at a time (each enqueue kicks it), so without it
// every few messages paid a TCP handshake, the greeting, EHLO, QUIT and the
// teardown, on both sides: measured at the submission benchmark's rate,
// 523 connections for 3,000 messages. A connection carries at most
// MaxPerConn messages in all (session.sent), then it is closed with QUIT
// like any other.
type connCache struct {
	mu     sync.Mutex
	idle   map[target][]idleSession
	closed bool
}

type idleSession struct {
	s     *session
	since time.Time
}

// connIdle is how long a connection waits for its next job: long enough to
// bridge the gaps between claims under load, short enough not to hold a
// receiver's connection slot for nothing (Postfix:
// smtp_connection_cache_time_limit, 2s).
const connIdle = 2 * time.Second

// maxIdlePerTarget bounds the connections kept for one target.
const maxIdlePerTarget = 8

// get returns the most recently used idle connection to t, or nil. Older
// ones stay for prune to close.
func (c *connCache) get(t target, now time.Time) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.idle[t]
	n := len(l)
	if n == 0 || now.Sub(l[n-1].since) >= connIdle {
		return nil
	}
	s := l[n-1].s
	c.set(t, l[:n-1])
	return s
}

func (c *connCache) set(t target, l []idleSession) {
	if len(l) == 0 {
		delete(c.idle, t)
		return
	}
	c.idle[t] = l
}

// put keeps s for the next job to t, or says QUIT when it has carried
// max messages, the cache is full for t or closed (shutdown).
func (c *connCache) put(t target, s *session, now time.Time, max int) {
	c.mu.Lock()
	if c.closed || s.broken != nil || s.sent >= max || len(c.idle[t]) >= maxIdlePerTarget {
		c.mu.Unlock()
		go s.quit()
		return
	}
	if c.idle == nil {
		c.idle = map[target][]idleSession{}
	}
	c.idle[t] = append(c.idle[t], idleSession{s: s, since: now})
	c.mu.Unlock()
}

// prune says QUIT to the connections idle for connIdle or more; with all,
// to every idle one.
func (c *connCache) prune(now time.Time, all bool) {
	var old []*session
	c.mu.Lock()
	for t, l := range c.idle {
		keep := l[:0]
		for _, is := range l {
			if all || now.Sub(is.since) >= connIdle {
				old = append(old, is.s)
			} else {
				keep = append(keep, is)
			}
		}
		c.set(t, keep)
	}
	c.mu.Unlock()
	// QUIT waits for its reply (bounded): not in the caller's way, but
	// done before a shutdown or RunOnce returns.
	var wg sync.WaitGroup
	for _, s := range old {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.quit()
		}()
	}
	if all {
		wg.Wait()
	}
}

// close closes every idle connection, and put keeps none from then on
// (shutdown).
func (c *connCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.prune(time.Time{}, true)
}
