package delivery

import (
	"bufio"
	"bytes"
	"io"
)

// maxReturnPathLine bounds a Return-Path: line that stripReturnPath will
// remove; a longer one (never written by us) is left alone.
const maxReturnPathLine = 4096

// stripReturnPath drops the Return-Path: fields at the top of a stored
// message. A message with local and remote recipients is stored once,
// with the Return-Path: that the final delivery of the local copies adds;
// RFC 5321 §4.4 says that a message relayed onwards must not carry one
// (the final receiver adds its own). The field is outside every DKIM
// signature we make, so signatures stay valid.
func stripReturnPath(r io.Reader) io.Reader {
	if m, ok := r.(*memBody); ok {
		// A message in memory (claimed with its item): no buffer to fill.
		return bytes.NewReader(m.b[returnPathLen(m.b[:min(len(m.b), maxReturnPathLine)]):])
	}
	br := bufio.NewReaderSize(r, maxReturnPathLine)
	// Peek fills the buffer (up to its size, or to the end of a short
	// message) before answering.
	buf, _ := br.Peek(maxReturnPathLine)
	return discard(br, returnPathLen(buf))
}

// returnPathLen returns the length of the Return-Path: fields at the
// start of buf, the first maxReturnPathLine octets of a message (or all of
// a shorter one).
func returnPathLen(buf []byte) int {
	n := 0
	for len(buf)-n >= len("return-path:") && bytes.EqualFold(buf[n:n+len("return-path:")], []byte("return-path:")) {
		// The field's first line and its continuation lines (RFC 5322
		// §2.2.3), all within the buffer.
		end := n
		for {
			i := bytes.IndexByte(buf[end:], '\n')
			if i < 0 {
				return n // too long, or no line end at all: leave it
			}
			end += i + 1
			if end == len(buf) && len(buf) == maxReturnPathLine {
				return n // the field may go on beyond the bound
			}
			if end < len(buf) && (buf[end] == ' ' || buf[end] == '\t') {
				continue
			}
			break
		}
		n = end
	}
	return n
}

// discard drops the first n buffered octets of br.
func discard(br *bufio.Reader, n int) io.Reader {
	_, _ = br.Discard(n) // n octets are buffered: cannot fail
	return br
}
