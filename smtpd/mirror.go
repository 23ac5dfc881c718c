package smtpd

import (
	"bytes"
	"strconv"
	"strings"
)

// Helpers with which guardConn mirrors go-smtp's reader exactly, and the
// raw line-discipline check.

// validLine reports whether line ends in CRLF and has no other CR or LF.
func validLine(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' {
		return false
	}
	return bytes.IndexByte(line[:n-2], '\r') < 0 && bytes.IndexByte(line[:n-2], '\n') < 0
}

// commandVerb returns the upper-case verb the way go-smtp's parseCmd finds
// it (four letters, then end of line or a space), or "".
func commandVerb(text []byte) string {
	if len(text) == 4 || len(text) > 5 && text[4] == ' ' {
		return strings.ToUpper(string(text[:4]))
	}
	return ""
}

// bdatChunkSize mirrors go-smtp's parseCmd and handleBdat: it returns the
// chunk size when go-smtp will read a chunk after this command line (it
// does whenever the size parses, even if it then refuses the chunk).
func bdatChunkSize(line string) (size int64, last, ok bool) {
	if strings.HasPrefix(strings.ToUpper(line), "STARTTLS") {
		return 0, false, false
	}
	if len(line) <= 5 || line[4] != ' ' || strings.ToUpper(line[:4]) != "BDAT" {
		return 0, false, false
	}
	args := strings.Fields(strings.TrimSpace(line[5:]))
	if len(args) == 0 || len(args) > 2 {
		return 0, false, false
	}
	if len(args) == 2 {
		if !strings.EqualFold(args[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false, false
	}
	return int64(n), last, true
}

// rawScan checks that CR and LF occur only as CRLF and that there is no
// NUL, across reads.
type rawScan struct{ prevCR bool }

func (r *rawScan) scan(p []byte) error {
	for _, b := range p {
		switch {
		case b == '\r':
			if r.prevCR {
				return errBareCR
			}
			r.prevCR = true
		case b == '\n':
			if !r.prevCR {
				return errBareLF
			}
			r.prevCR = false
		case b == 0:
			return errNUL
		case r.prevCR:
			return errBareCR
		}
	}
	return nil
}

// go-smtp's end-of-data states (data.go), mirrored exactly.
const (
	dsBeginLine = iota
	dsDot
	dsDotCR
	dsCR
	dsData
)

// scanDataEnd advances go-smtp's DATA state machine over p and returns how
// many octets belong to the message (through the end marker) and whether
// the end marker was reached.
func scanDataEnd(st *int, p []byte) (int, bool) {
	for i, b := range p {
		switch *st {
		case dsBeginLine:
			switch b {
			case '.':
				*st = dsDot
			case '\r':
				*st = dsCR
			default:
				*st = dsData
			}
		case dsDot:
			if b == '\r' {
				*st = dsDotCR
			} else {
				*st = dsData
			}
		case dsDotCR:
			if b == '\n' {
				return i + 1, true
			}
			*st = dsData
		case dsCR:
			if b == '\n' {
				*st = dsBeginLine
			} else {
				*st = dsData
			}
		case dsData:
			if b == '\r' {
				*st = dsCR
			}
		}
	}
	return len(p), false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// maskCommand renders a command for the protocol trace without secrets.
func maskCommand(verb string, text []byte) string {
	if verb == "AUTH" {
		f := strings.Fields(string(text))
		if len(f) > 2 {
			return f[0] + " " + f[1] + " <initial response>"
		}
	}
	return string(text)
}
