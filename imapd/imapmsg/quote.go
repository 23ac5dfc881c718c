// Package imapmsg renders the message data items of IMAP FETCH from what
// mailstore/msgparse recorded at delivery: ENVELOPE and BODY/BODYSTRUCTURE
// (RFC 9051 §7.5.2, RFC 3501 §7.4.2), and it maps BODY[<section>] and
// BINARY[<section>] (RFC 9051 §6.4.5, RFC 3516) to byte ranges of the stored
// message, header filters and content-transfer decoders.
//
// Nothing here re-parses a stored message: only header blocks named by
// HEADER.FIELDS are scanned (FilterHeader), and BINARY decodes a stream.
// Every function does work linear in its input, with bounded recursion.
package imapmsg

import (
	"bytes"
	"strconv"
)

// quotable reports whether s can be sent as an IMAP quoted string: every
// octet is a 7-bit TEXT-CHAR (RFC 9051 §9: CHAR except CR and LF; CHAR
// excludes NUL). 8-bit data and line breaks go in a literal instead.
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c >= 0x80 || c == '\r' || c == '\n' {
			return false
		}
	}
	return true
}

// writeString writes s as an IMAP string (RFC 9051 §4.3): a quoted string
// when it is 7-bit safe, otherwise a synchronizing literal {n}CRLF... . NUL
// octets, which no IMAP string may carry (CHAR8 = %x01-ff), are dropped.
func writeString(w *bytes.Buffer, s string) {
	if quotable(s) {
		w.WriteByte('"')
		for i := 0; i < len(s); i++ {
			// quoted-specials must be escaped (RFC 9051 §9 QUOTED-CHAR).
			if s[i] == '"' || s[i] == '\\' {
				w.WriteByte('\\')
			}
			w.WriteByte(s[i])
		}
		w.WriteByte('"')
		return
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			n--
		}
	}
	w.WriteByte('{')
	w.WriteString(strconv.Itoa(n))
	w.WriteString("}\r\n")
	for i := 0; i < len(s); i++ {
		if s[i] != 0 {
			w.WriteByte(s[i])
		}
	}
}

// writeNString writes s as an nstring: NIL when empty.
func writeNString(w *bytes.Buffer, s string) {
	if s == "" {
		w.WriteString("NIL")
		return
	}
	writeString(w, s)
}

// writeNumber writes n as an IMAP number (RFC 9051 §9: 32-bit unsigned);
// values outside that range (corrupt records) are clamped so that the
// output stays grammatical.
func writeNumber(w *bytes.Buffer, n int64) {
	if n < 0 {
		n = 0
	} else if n > 1<<32-1 {
		n = 1<<32 - 1
	}
	w.WriteString(strconv.FormatInt(n, 10))
}
