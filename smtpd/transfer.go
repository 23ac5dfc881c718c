package smtpd

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"
)

// The message transfer commands: DATA (RFC 5321 §4.1.1.4) and BDAT
// (RFC 3030), and their readers of the raw input.

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// cmdData receives a message up to its end marker.
func cmdData(c *conn, arg string) {
	s := c.sess
	switch {
	case arg != "":
		c.reply(replyErr(501, 5, 5, 4, "DATA takes no parameters"))
		return
	case s.tx == nil:
		c.reply(replyErr(503, 5, 5, 1, "MAIL first (RFC 5321 §4.1.4)"))
		return
	case s.tx.bdat:
		c.reply(replyErr(503, 5, 5, 1, "DATA not permitted after BDAT (RFC 3030 §2)"))
		return
	case s.tx.empty():
		// RFC 5321 §4.1.1.4: "no valid recipients".
		c.reply(replyErr(554, 5, 5, 1, "No valid recipients"))
		return
	}
	c.send(354, "Start mail input; end with <CRLF>.<CRLF>")
	s.beginMessage()
	c.beginTransfer()
	dr := dataReader{c: c, afterCRLF: true} // the DATA line ended in CRLF
	bp := copyBufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(&s.msg, &dr, *bp)
	copyBufPool.Put(bp)
	c.verb = "MESSAGE"
	if err != nil {
		c.reply(s.failMessage(err))
		c.close()
		return
	}
	c.reply(s.endMessage())
}

// dataReader reads DATA content from the connection's input: it returns
// it dot-unstuffed (RFC 5321 §4.5.2) and ends (io.EOF) at the end marker.
// Only <CRLF>.<CRLF> ends the data (RFC 5321 §4.1.1.4): a "." line that
// ends in a bare LF, or that follows a line ending in a bare LF
// (<LF>.<LF>, <LF>.<CR><LF>, <CR><LF>.<LF>), is message content, kept as
// it is, never an end: no SMTP smuggling (CVE-2023-51764 class).
// Dot-unstuffing, SMTP's transparency rule for CRLF lines, applies to the
// lines after a CRLF: clients that end lines in bare LF (curl
// --upload-file with a Unix text file) stuff only after CRLF, and their
// "." lines must stay as they are. A line ending in <CR><CR><LF> does not
// count as ending in CRLF either: a reader that takes the bare CR as a
// line end sees an empty line there, and the "." after it would be content
// to some and an end to others. A line is whatever ends in LF; its length
// is not bounded here (the scanner and MaxMessageSize bound what is kept),
// and nothing is buffered but the "." or ".<CR>" at the start of a line.
type dataReader struct {
	c         *conn
	st        int
	afterCRLF bool // the previous line ended in CRLF (and not CR CR LF)
	crs       int  // CRs (0, 1, 2 or more) at the end of the line so far
	done      bool
}

const (
	drBOL   = iota // at the beginning of a line
	drDot          // held: "." at the beginning of a line after CRLF
	drDotCR        // held: ".<CR>" at the beginning of a line after CRLF
	drLine         // in a line
)

func (d *dataReader) Read(p []byte) (int, error) {
	c := d.c
	n := 0
	for !d.done && len(p)-n >= 2 { // room for what is held, ".<CR>"
		in := c.buf[c.r:c.w]
		if len(in) == 0 {
			if n > 0 {
				return n, nil // return what we have before waiting
			}
			if err := c.fillData(); err != nil {
				return 0, err
			}
			continue
		}
		switch d.st {
		case drBOL:
			if in[0] == '.' && d.afterCRLF {
				d.st = drDot
				c.r++
				continue
			}
			d.st = drLine
		case drDot:
			switch in[0] {
			case '\r':
				d.st = drDotCR
				c.r++
			case '\n':
				// ".<LF>": a bare LF never ends the data.
				n += copy(p[n:], ".\n")
				c.r++
				d.st, d.afterCRLF = drBOL, false
			default:
				// A stuffed line: its first dot goes (RFC 5321 §4.5.2).
				d.st = drLine
			}
		case drDotCR:
			if in[0] == '\n' {
				c.r++
				d.done = true // <CRLF>.<CRLF>
				break
			}
			// ".<CR>" and more: a stuffed line beginning with CR.
			p[n] = '\r'
			n++
			d.st, d.crs = drLine, 1
		case drLine:
			room := len(p) - n
			i := bytes.IndexByte(in, '\n')
			if i < 0 || i >= room {
				k := min(len(in), room)
				copy(p[n:], in[:k])
				n += k
				c.r += k
				d.crs = trailingCRs(in[:k], d.crs)
				continue
			}
			copy(p[n:], in[:i+1])
			n += i + 1
			c.r += i + 1
			d.afterCRLF = trailingCRs(in[:i], d.crs) == 1
			d.st, d.crs = drBOL, 0
		}
	}
	if d.done && n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// trailingCRs counts the CRs at the end of a line whose earlier part
// ended in prev CRs (counts above 2 do not matter).
func trailingCRs(b []byte, prev int) int {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == '\r' && n < 2; i-- {
		n++
	}
	if n == len(b) {
		n = min(n+prev, 2)
	}
	return n
}

// cmdBdat receives one chunk (RFC 3030 §2). The chunk is read whatever the
// reply, so that the session stays in step; a refused chunk fails the
// transaction.
func cmdBdat(c *conn, arg string) {
	size, last, r := parseBdat(arg)
	if r != nil {
		c.reply(r)
		if size < 0 {
			// A size we cannot read past: we would lose step.
			c.close()
		}
		return
	}
	s := c.sess
	switch {
	case c.helo == "":
		r = replyErr(503, 5, 5, 1, "Send EHLO first (RFC 5321 §4.1.4)")
	case s.tx == nil:
		r = replyErr(503, 5, 5, 1, "MAIL first (RFC 5321 §4.1.4)")
	case s.tx.empty():
		r = replyErr(554, 5, 5, 1, "No valid recipients")
	}
	if r != nil {
		c.beginTransfer()
		if err := c.readChunk(size, io.Discard); err != nil {
			c.reply(c.dead.(*reply))
			c.close()
			return
		}
		c.reply(r)
		return
	}
	if !s.tx.bdat {
		s.tx.bdat = true
		s.beginMessage()
		c.beginTransfer()
	}
	if err := c.readChunk(size, &s.msg); err != nil {
		c.reply(s.failMessage(err))
		c.close()
		return
	}
	switch {
	case s.msg.err != nil:
		c.reply(s.failMessage(s.msg.err))
	case !last:
		c.reply(replyErr(250, 2, 0, 0, strconv.FormatInt(size, 10)+" octets received"))
	default:
		c.reply(s.endMessage())
	}
}

// parseBdat parses "chunk-size [LAST]" (RFC 3030 §2). A size of more
// than maxMessageSizeCap is refused with size -1: the connection must
// close, as the chunk cannot be skipped.
func parseBdat(arg string) (size int64, last bool, r *reply) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return 0, false, replyErr(501, 5, 5, 4, "Syntax: BDAT chunk-size [LAST]")
	}
	if strings.Trim(f[0], "0123456789") != "" {
		return 0, false, replyErr(501, 5, 5, 4, "Syntax: BDAT chunk-size [LAST]")
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n > maxMessageSizeCap {
		return -1, false, replyErr(552, 5, 3, 4, "Chunk size exceeds fixed maximum message size, closing connection")
	}
	return n, len(f) == 2, nil
}

// readChunk passes exactly size octets of input to w. A connection that
// ends first fails the transfer (c.dead).
func (c *conn) readChunk(size int64, w io.Writer) error {
	for size > 0 {
		if c.r == c.w {
			if err := c.fillData(); err != nil {
				return err
			}
		}
		k := int(min(int64(c.w-c.r), size))
		_, _ = w.Write(c.buf[c.r : c.r+k])
		c.r += k
		size -= int64(k)
	}
	return nil
}
