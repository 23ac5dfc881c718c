package imapd

import (
	"bufio"
	"compress/flate"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"
)

// writeBufSize is the size of a connection's output buffer. Buffers are
// pooled and only held while a command is being answered, so idle
// connections cost none.
const writeBufSize = 4096

// maxQuotedLen is the longest string sent as a quoted string; longer ones
// are sent as literals.
const maxQuotedLen = 1024

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}

// respWriter writes IMAP responses (RFC 9051 §7). Errors are sticky: after
// the first write error every call is a no-op and err reports it.
type respWriter struct {
	dst io.Writer
	bw  *bufio.Writer
	// z compresses the output after COMPRESS DEFLATE (deflate set; RFC
	// 4978). It is taken from deflatePool with bw and given back with it
	// (compress.go says why).
	z       *flate.Writer
	deflate bool
	err     error
	// utf8 allows raw UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT
	// enabled, RFC 9051 §4.3, RFC 6855 §3); otherwise 8-bit strings are sent
	// as literals.
	utf8 bool
}

func (w *respWriter) buf() *bufio.Writer {
	if w.bw == nil {
		w.bw = writerPool.Get().(*bufio.Writer)
		if w.deflate {
			w.z = deflatePool.Get().(*flate.Writer)
			w.z.Reset(w.dst)
			w.bw.Reset(w.z)
		} else {
			w.bw.Reset(w.dst)
		}
	}
	return w.bw
}

// str writes s as is.
func (w *respWriter) str(s string) {
	if w.err == nil {
		_, w.err = w.buf().WriteString(s)
	}
}

// raw writes b as is.
func (w *respWriter) raw(b []byte) {
	if w.err == nil {
		_, w.err = w.buf().Write(b)
	}
}

func (w *respWriter) byte(c byte) {
	if w.err == nil {
		w.err = w.buf().WriteByte(c)
	}
}

func (w *respWriter) sp() { w.byte(' ') }

func (w *respWriter) crlf() { w.str("\r\n") }

func (w *respWriter) num(n uint64) {
	if w.err == nil {
		var b [20]byte
		_, w.err = w.buf().Write(strconv.AppendUint(b[:0], n, 10))
	}
}

func (w *respWriter) num32(n uint32) { w.num(uint64(n)) }

// astring writes s as an atom when it is one (RFC 9051 §9 astring), else
// as a string.
func (w *respWriter) astring(s string) {
	if isAtom(s) && s != "NIL" {
		w.str(s)
		return
	}
	w.string(s)
}

// string writes s as a quoted string when possible, else as a literal
// (RFC 9051 §4.3).
func (w *respWriter) string(s string) {
	if w.quotable(s) {
		w.byte('"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				w.byte('\\')
			}
			w.byte(s[i])
		}
		w.byte('"')
		return
	}
	w.literalHeader(int64(len(s)), false)
	w.str(s)
}

// quotable reports whether s can be a quoted string: no CR, LF or NUL,
// short, and 8-bit only as valid UTF-8 when UTF-8 is allowed.
func (w *respWriter) quotable(s string) bool {
	if len(s) > maxQuotedLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' {
			return false
		}
		if c >= 0x80 && !w.utf8 {
			return false
		}
	}
	return !w.utf8 || utf8.ValidString(s)
}

// literalHeader writes "{n}" CRLF, or "~{n}" CRLF for a literal8 (RFC 3516
// §4.2); the caller writes exactly n octets next.
func (w *respWriter) literalHeader(n int64, binary bool) {
	if binary {
		w.byte('~')
	}
	w.byte('{')
	w.num(uint64(n))
	w.str("}\r\n")
}

// copyN copies exactly n octets from r. A short or failing source is an
// error that poisons the writer: the literal length has been promised, so
// the connection must be dropped.
func (w *respWriter) copyN(r io.Reader, n int64) error {
	if w.err != nil {
		return w.err
	}
	m, err := io.CopyN(w.buf(), r, n)
	if m == n {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	w.err = err
	return err
}

// flush sends buffered output; on a compressed connection it ends with a
// deflate sync flush, so that the client can decompress all of it at once
// (RFC 4978 §4: the sender flushes when it has nothing more to send).
func (w *respWriter) flush() error {
	if w.err == nil && w.bw != nil {
		w.err = w.bw.Flush()
		if w.err == nil && w.z != nil {
			w.err = w.z.Flush()
		}
	}
	return w.err
}

// release flushes and returns the buffer to the pool.
func (w *respWriter) release() error {
	err := w.flush()
	if w.bw != nil {
		w.bw.Reset(nil)
		writerPool.Put(w.bw)
		w.bw = nil
	}
	if w.z != nil {
		w.z.Reset(io.Discard)
		deflatePool.Put(w.z)
		w.z = nil
	}
	return err
}

// isAtom reports whether s is a non-empty atom (RFC 9051 §9 ATOM-CHAR).
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtomChar(s[i]) {
			return false
		}
	}
	return true
}

// isAtomChar: any CHAR except atom-specials (RFC 9051 §9):
// "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials.
func isAtomChar(c byte) bool {
	if c <= 0x1f || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAstringChar: ATOM-CHAR / resp-specials (RFC 9051 §9).
func isAstringChar(c byte) bool { return isAtomChar(c) || c == ']' }

// isListChar: ATOM-CHAR / list-wildcards / resp-specials (RFC 9051 §9).
func isListChar(c byte) bool { return isAstringChar(c) || c == '%' || c == '*' }
