package pop3d

import (
	"bufio"
	"bytes"
	"errors"
)

// errTopDone stops the copy of a message once TOP has sent the lines asked
// for; it is not an error for the client.
var errTopDone = errors.New("pop3d: TOP line limit reached")

var crlf = []byte("\r\n")

// msgWriter turns stored message octets into the body of a POP3 multi-line
// response (RFC 1939 §3):
//
//   - every line ending — CRLF, a bare LF or a bare CR — is sent as CRLF, so
//     the client never sees a lone CR or LF (stored messages come from SMTP
//     with CRLF, but IMAP APPEND may have stored bare LFs);
//   - a line that begins with "." gets one more "." (byte-stuffing);
//   - finish adds a CRLF when the message does not end with a line ending,
//     then the terminating ".CRLF".
//
// n counts the octets of the normalised message: everything sent except the
// stuffing dots and the terminating line. That is the size LIST and STAT
// report, which RFC 1939 §5 (STAT) and §11 define as the size with CRLF line
// ends and without byte-stuffing — what the client holds after undoing the
// stuffing. The store records it at delivery (MessageMeta.CRLFSize); RETR
// compares the count with it as a consistency check.
//
// For TOP (RFC 1939 §7) limit >= 0 stops output after the header, the
// empty line that ends it and limit lines of the body; Write then returns
// errTopDone.
type msgWriter struct {
	w   *bufio.Writer
	n   int64
	err error

	bol       bool // at the beginning of a line
	pendingCR bool // a CR ended the previous chunk

	limit    int64 // body lines for TOP; < 0 means the whole message
	inHeader bool
	body     int64
	done     bool
}

func newMsgWriter(w *bufio.Writer, topLines int64) *msgWriter {
	return &msgWriter{w: w, bol: true, limit: topLines, inHeader: true, done: false}
}

func (m *msgWriter) emit(p []byte) {
	m.n += int64(len(p))
	if m.err == nil {
		_, m.err = m.w.Write(p)
	}
}

func (m *msgWriter) stuff() {
	if m.err == nil {
		m.err = m.w.WriteByte('.')
	}
}

// endLine records that a line ending was sent; empty says whether the line
// had no content (the end of the header).
func (m *msgWriter) endLine(empty bool) {
	m.bol = true
	if m.limit < 0 {
		return
	}
	if m.inHeader {
		if empty {
			m.inHeader = false
			if m.limit == 0 {
				m.done = true
			}
		}
		return
	}
	m.body++
	if m.body >= m.limit {
		m.done = true
	}
}

// indexEOL returns the index of the first CR or LF in p, or -1.
func indexEOL(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if j := bytes.IndexByte(p[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// Write processes the next chunk of the stored message.
func (m *msgWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && !m.done && m.err == nil {
		if m.pendingCR {
			m.pendingCR = false
			m.emit(crlf)
			m.endLine(m.bol)
			if p[0] == '\n' {
				p = p[1:]
			}
			continue
		}
		if m.bol && p[0] == '.' {
			m.stuff()
		}
		i := indexEOL(p)
		if i < 0 {
			m.emit(p)
			m.bol = false
			break
		}
		if p[i] == '\r' && i+1 == len(p) {
			// A CR at the end of the chunk: the next chunk says whether it
			// is half of a CRLF or a bare CR.
			if i > 0 {
				m.emit(p[:i])
				m.bol = false
			}
			m.pendingCR = true
			break
		}
		empty := i == 0 && m.bol
		if p[i] == '\r' && p[i+1] == '\n' {
			m.emit(p[:i+2]) // the common case: copy the line with its CRLF
			p = p[i+2:]
		} else {
			m.emit(p[:i]) // bare LF or bare CR: send CRLF instead
			m.emit(crlf)
			p = p[i+1:]
		}
		m.endLine(empty)
	}
	if m.err != nil {
		return 0, m.err
	}
	if m.done {
		return total, errTopDone
	}
	return total, nil
}

// finish completes the last line and writes the terminating ".CRLF".
func (m *msgWriter) finish() error {
	if !m.done {
		if m.pendingCR {
			m.pendingCR = false
			m.emit(crlf)
			m.endLine(m.bol)
		}
		if !m.bol && !m.done {
			m.emit(crlf)
			m.endLine(false)
		}
	}
	if m.err == nil {
		_, m.err = m.w.WriteString(".\r\n")
	}
	return m.err
}

// writeWhole sends a whole message held in memory as the body of a
// multi-line response, terminator included: exactly what msgWriter sends
// for it, and the same count of octets (msgWriter.n). A message whose line
// endings are all CRLF, ending with one (as SMTP stores them), goes out in
// a few large writes, one per line that needs byte-stuffing (RFC 1939 §3):
// two vector counts and one IndexByte per line instead of msgWriter's work
// per line, which cost as much CPU as sending the octets. Anything else (a
// bare CR or LF, no final line ending) goes through msgWriter. stuff is
// scratch space for the offsets of the lines to stuff.
func writeWhole(w *bufio.Writer, p []byte, stuff *[]int) (int64, error) {
	if len(p) > 0 && (len(p) < 2 || p[len(p)-2] != '\r' || p[len(p)-1] != '\n' ||
		bytes.Count(p, cr) != bytes.Count(p, lf)) {
		return writeNormalised(w, p)
	}
	// As many CRs as LFs, and (checked here) a CR before every LF: no bare
	// CR or LF.
	at := (*stuff)[:0]
	if len(p) > 0 && p[0] == '.' {
		at = append(at, 0)
	}
	for i := 0; ; i++ {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || p[i-1] != '\r' {
			*stuff = at
			return writeNormalised(w, p)
		}
		if i+1 < len(p) && p[i+1] == '.' {
			at = append(at, i+1)
		}
	}
	*stuff = at
	start := 0
	for _, k := range at {
		if _, err := w.Write(p[start:k]); err != nil {
			return 0, err
		}
		if err := w.WriteByte('.'); err != nil {
			return 0, err
		}
		start = k
	}
	if _, err := w.Write(p[start:]); err != nil {
		return 0, err
	}
	_, err := w.WriteString(".\r\n")
	return int64(len(p)), err
}

// writeNormalised sends p through msgWriter, terminator included.
func writeNormalised(w *bufio.Writer, p []byte) (int64, error) {
	mw := newMsgWriter(w, -1)
	if _, err := mw.Write(p); err != nil {
		return 0, err
	}
	return mw.n, mw.finish()
}

var (
	cr = []byte{'\r'}
	lf = []byte{'\n'}
)
