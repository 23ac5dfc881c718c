package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"strconv"
	"time"
)

// The write side of guardConn: go-smtp's replies pass through a filter
// that counts errors, tracks the last reply code (for the read side's
// DATA and SASL decisions), advertises STARTTLS and swallows the reply to
// the synthetic RSET.

// Write passes go-smtp's replies to the client through the reply filter.
// Replies are buffered and sent when the server is about to wait for
// input (RFC 2920 §3.1: one write for a pipelined group), or when the
// buffer is large.
func (c *guardConn) Write(b []byte) (int, error) {
	if err := c.ensureInit(); err != nil {
		return 0, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n"))
		line := b
		if i >= 0 {
			line = b[:i+2]
		}
		b = b[len(line):]
		c.wbuf = c.filterReply(c.wbuf, line)
	}
	var err error
	if len(c.wbuf) >= writeFlushSize {
		err = c.flushLocked()
	}
	if c.errCount >= c.srv.cfg.MaxErrors {
		c.errCount = -1 << 30 // once
		tooManyErrors.Inc()
		c.log.Info("too many errors; closing")
		c.wbuf = append(c.wbuf, "421 4.7.0 "+c.srv.cfg.Hostname+" Too many errors, closing connection\r\n"...)
		c.closeTransportLocked()
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// writeFlushSize is the buffered reply size that forces a write.
const writeFlushSize = 4096

// flush sends buffered replies.
func (c *guardConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *guardConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	err := c.writeLocked(c.wbuf)
	if cap(c.wbuf) > 64<<10 {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	return err
}

// filterReply appends line to out, applying the reply-side rules.
func (c *guardConn) filterReply(out, line []byte) []byte {
	if len(line) < 4 {
		return append(out, line...)
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil {
		return append(out, line...)
	}
	final := line[3] != '-'
	if c.swallow > 0 {
		if final {
			c.swallow--
		}
		return out
	}
	if code == 235 && c.verb == "AUTH" && final {
		// go-smtp says 2.0.0; RFC 4954 §6 gives 2.7.0.
		line = []byte("235 2.7.0 Authentication successful\r\n")
	}
	out = append(out, line...)
	c.trace("S: " + string(bytes.TrimRight(line, "\r\n")))
	if c.greetPending != 0 {
		ehlo := c.greetPending == 1
		c.greetPending = 0
		if code == 250 {
			c.mu.Lock()
			c.greetedEpoch = c.epoch
			c.greetEHLO = ehlo
			offer := c.srv.cfg.TLS != nil && c.tlsState == nil
			c.mu.Unlock()
			if ehlo && !final && offer {
				// go-smtp never sees TLS, so we advertise it (RFC 3207 §4).
				out = append(out, "250-STARTTLS\r\n"...)
			}
		}
	}
	if final {
		if c.dead != nil {
			c.deadReplied = true
		}
		c.mu.Lock()
		c.lastReply = code
		c.mu.Unlock()
		commands.WithLabelValues(metricVerb(c.verb), strconv.Itoa(code/100)+"xx").Inc()
		// 452 (too many recipients, RFC 5321 §4.5.3.1.10) is ordinary
		// pipelining behaviour, not a client error.
		if code >= 400 && code != 452 {
			c.errCount++
		}
	}
	return out
}

// writeReply writes one reply line of our own through the filter.
func (c *guardConn) writeReply(s string) {
	_, _ = c.Write([]byte(s + "\r\n"))
}

// writeRaw writes a line without the filter (greeting refusals).
func (c *guardConn) writeRaw(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.writeLocked([]byte(s + "\r\n"))
}

func (c *guardConn) writeLocked(b []byte) error {
	tr := c.transport()
	_ = tr.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := tr.Write(b)
	return err
}

func (c *guardConn) trace(msg string) {
	if c.log.Enabled(context.Background(), LevelTrace) {
		c.log.Log(context.Background(), LevelTrace, msg)
	}
}

// beginShutdown sends 421 and closes if the client waits for a command;
// otherwise the connection closes at its next idle point.
func (c *guardConn) beginShutdown() {
	c.mu.Lock()
	c.closing = true
	idle := c.idle && !c.closed
	c.mu.Unlock()
	if !idle {
		return
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, "421 4.3.2 "+c.srv.cfg.Hostname+" Service shutting down, try again later\r\n"...)
	c.closeTransportLocked()
}

// closeTransport sends buffered replies and closes the socket (with a TLS
// close_notify). If a write is blocked, it just closes.
func (c *guardConn) closeTransport() {
	if c.wmu.TryLock() {
		defer c.wmu.Unlock()
		c.closeTransportLocked()
		return
	}
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	_ = c.raw.Close()
}

// closeTransportLocked is closeTransport with wmu held.
func (c *guardConn) closeTransportLocked() {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	tr := c.tr
	c.mu.Unlock()
	if already {
		return
	}
	_ = tr.SetWriteDeadline(time.Now().Add(shutdownWriteTimeout))
	_ = c.flushLocked()
	if tc, ok := tr.(*tls.Conn); ok {
		_ = tc.Close()
	}
	_ = c.raw.Close()
}
