package smtpd

import (
	"bytes"
)

// dataError is a message refused for its content.
type dataError struct {
	reason string // metrics label
	msg    string
}

func (e *dataError) Error() string { return e.msg }

var (
	errBareCR = &dataError{"bare_cr", "bare CR in message data"}
	errBareLF = &dataError{"bare_lf", "bare LF in message data"}
	errNUL    = &dataError{"nul", "NUL in message data"}
	errHeader = &dataError{"header_too_large", "header section too large"}
	errSize   = &dataError{"too_large", "message too large"}
)

// dataScanner checks message content as it streams (after msgWriter
// turned bare LFs into CRLF): CR and LF only as CRLF (RFC 5321 §2.3.8; a
// downstream reader that takes a bare CR or LF as a line end is open to
// SMTP smuggling, CVE-2023-51764), no NUL (RFC 5322 §2.3 / RFC 6152 §2), and a
// bounded header section. It optionally keeps a copy of the header
// section (bounded by maxHeader) for the submission From: check, the
// loop checks and DKIM signing.
type dataScanner struct {
	maxHeader int64
	capture   bool

	prevCR   bool
	inHeader bool
	lineLen  int64
	hdrLen   int64
	header   []byte
}

func newDataScanner(maxHeader int64, capture bool) dataScanner {
	return dataScanner{maxHeader: maxHeader, capture: capture, inHeader: true}
}

// scan checks the next octets of the message.
func (d *dataScanner) scan(p []byte) error {
	hdrEnd := -1 // index in p just past the header section's empty line
	for i, b := range p {
		switch b {
		case '\r':
			if d.prevCR {
				return errBareCR
			}
			d.prevCR = true
			continue
		case '\n':
			if !d.prevCR {
				return errBareLF
			}
			d.prevCR = false
			if d.inHeader && hdrEnd < 0 {
				if d.lineLen == 0 {
					hdrEnd = i + 1
				}
				d.lineLen = 0
			}
			continue
		case 0:
			return errNUL
		}
		if d.prevCR {
			return errBareCR
		}
		d.lineLen++
	}
	if !d.inHeader {
		return nil
	}
	n := len(p)
	if hdrEnd >= 0 {
		n = hdrEnd
		d.inHeader = false
	}
	d.hdrLen += int64(n)
	if d.hdrLen > d.maxHeader {
		return errHeader
	}
	if d.capture {
		d.header = append(d.header, p[:n]...)
	}
	return nil
}

// finish checks the end of the message.
func (d *dataScanner) finish() error {
	if d.prevCR {
		return errBareCR
	}
	return nil
}

// headerFields splits a header section into unfolded fields
// (RFC 5322 §2.2.3). Lines end in CRLF (the scanner guarantees it).
func headerFields(hdr []byte) []string {
	var fields []string
	var cur []byte
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.Index(hdr, []byte("\r\n")); i >= 0 {
			line = hdr[:i]
			hdr = hdr[i+2:]
		} else {
			hdr = nil
		}
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				cur = append(cur, line...)
			}
			continue
		}
		if cur != nil {
			fields = append(fields, string(cur))
		}
		cur = append([]byte(nil), line...)
	}
	if cur != nil {
		fields = append(fields, string(cur))
	}
	return fields
}
