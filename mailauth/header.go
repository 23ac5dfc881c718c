package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// DefaultMaxHeader bounds the header section read into memory (the rest
// of a message is only ever streamed). smtpd refuses larger header
// sections before the checks run, with the same default.
const DefaultMaxHeader = 256 << 10

// ErrHeaderTooLarge is returned for a header section over its bound.
var ErrHeaderTooLarge = errors.New("mailauth: header section too large")

// readHeader reads the header section of a message (RFC 5322 §2.1): every
// line up to and including the first empty one, or the whole message when
// it has none. It returns the section and a reader of the rest. A line
// ends in LF (CRLF in what smtpd stores; a bare LF is taken as an end too,
// so that no reader of the result finds a field boundary this one did
// not).
func readHeader(r io.Reader, max int) (hdr []byte, rest io.Reader, err error) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(hdr)+len(line) > max {
			return nil, nil, ErrHeaderTooLarge
		}
		hdr = append(hdr, line...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			return hdr, br, nil
		case err != nil:
			return nil, nil, err
		}
		if isBlankLine(line) && (len(hdr) == len(line) || hdr[len(hdr)-len(line)-1] == '\n') {
			return hdr, br, nil
		}
	}
}

func isBlankLine(l []byte) bool {
	return bytes.Equal(l, []byte("\r\n")) || bytes.Equal(l, []byte("\n"))
}

// field is one header field: its raw octets (with its line ends, as
// folded) and its name.
type field struct {
	raw  []byte
	name string
}

// value returns the field body unfolded (RFC 5322 §2.2.3): line ends
// removed, the whitespace after them kept.
func (f field) value() string {
	i := bytes.IndexByte(f.raw, ':')
	v := f.raw[i+1:]
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(v)
}

// splitFields splits a header section into fields. A line that starts
// with a space or tab continues the field before it (RFC 5322 §2.2.3); a
// line that has no colon (not a field) becomes a field without a name, so
// that it is kept as it is. The empty line that ends the section is not a
// field.
func splitFields(hdr []byte) []field {
	var out []field
	for len(hdr) > 0 {
		i := bytes.IndexByte(hdr, '\n')
		line := hdr
		if i >= 0 {
			line = hdr[:i+1]
		}
		hdr = hdr[len(line):]
		if isBlankLine(line) {
			out = append(out, field{raw: line, name: "\n"})
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 && out[len(out)-1].name != "\n" {
			f := &out[len(out)-1]
			f.raw = f.raw[:len(f.raw)+len(line)] // lines are contiguous in hdr
			continue
		}
		name := ""
		if c := bytes.IndexByte(line, ':'); c > 0 {
			name = strings.TrimRight(string(line[:c]), " \t")
		}
		out = append(out, field{raw: line, name: name})
	}
	return out
}

// fieldsNamed returns the unfolded values of the fields named name
// (compared case-insensitively, RFC 5322 §1.2.2).
func fieldsNamed(fs []field, name string) []string {
	var out []string
	for _, f := range fs {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value())
		}
	}
	return out
}

// StripAuthResults returns the message of r without the
// Authentication-Results: fields that claim authservID, or whose
// authserv-id cannot be read (RFC 8601 §5: a receiver removes the ones a
// sender forged in its name before it adds its own; an unreadable one
// serves nobody and might read as ours to a lenient parser). Only the
// header section is held in memory (at most max octets, else
// ErrHeaderTooLarge from the first Read); the body streams through.
func StripAuthResults(r io.Reader, authservID string, max int) io.Reader {
	if max <= 0 {
		max = DefaultMaxHeader
	}
	return &stripReader{src: r, id: authservID, max: max}
}

type stripReader struct {
	src io.Reader
	id  string
	max int
	out io.Reader // set by the first Read
	n   int       // fields removed
}

func (s *stripReader) Read(p []byte) (int, error) {
	if s.out == nil {
		hdr, rest, err := readHeader(s.src, s.max)
		if err != nil {
			return 0, err
		}
		var kept []byte
		kept, s.n = filterAuthResults(hdr, s.id)
		s.out = io.MultiReader(bytes.NewReader(kept), rest)
	}
	return s.out.Read(p)
}

// filterAuthResults returns hdr without the Authentication-Results: fields
// to remove (see StripAuthResults) and how many it removed.
func filterAuthResults(hdr []byte, authservID string) ([]byte, int) {
	fs := splitFields(hdr)
	drop := 0
	for _, f := range fs {
		if isOurAuthResults(f, authservID) {
			drop++
		}
	}
	if drop == 0 {
		return hdr, 0
	}
	out := make([]byte, 0, len(hdr))
	for _, f := range fs {
		if !isOurAuthResults(f, authservID) {
			out = append(out, f.raw...)
		}
	}
	return out, drop
}

func isOurAuthResults(f field, authservID string) bool {
	if !strings.EqualFold(f.name, "Authentication-Results") {
		return false
	}
	id, ok := parseAuthservID(f.value())
	return !ok || sameHost(id, authservID)
}

// sameHost compares two host names as DNS does: case-insensitively, a
// final dot ignored.
func sameHost(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// parseAuthservID reads the authserv-id at the start of an
// Authentication-Results: field body (RFC 8601 §2.2: [CFWS] authserv-id,
// where authserv-id is a value, RFC 2045 §5.1: a token or a
// quoted-string). ok is false when there is none.
func parseAuthservID(v string) (string, bool) {
	i, ok := skipCFWS(v, 0)
	if !ok || i >= len(v) {
		return "", false
	}
	if v[i] == '"' {
		s, _, ok := quotedString(v, i)
		return s, ok && s != ""
	}
	j := i
	for j < len(v) && isTokenChar(v[j]) {
		j++
	}
	if j == i {
		return "", false
	}
	// The id ends at CFWS or ";" (or the end, for "id; none" variants
	// written without a space).
	if j < len(v) && v[j] != ';' && v[j] != ' ' && v[j] != '\t' && v[j] != '(' {
		return "", false
	}
	return v[i:j], true
}

// maxCommentDepth bounds nested comments (RFC 5322 §3.2.2).
const maxCommentDepth = 32

// skipCFWS skips folding white space and comments from v[i:]; ok is false
// for an unterminated or too deeply nested comment.
func skipCFWS(v string, i int) (int, bool) {
	for i < len(v) {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '(':
			depth := 0
			for ; i < len(v); i++ {
				switch v[i] {
				case '\\':
					i++ // quoted-pair
				case '(':
					depth++
					if depth > maxCommentDepth {
						return i, false
					}
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
			}
			if depth != 0 {
				return i, false
			}
			i++
		default:
			return i, true
		}
	}
	return i, true
}

// quotedString reads the quoted-string at v[i] (RFC 5322 §3.2.4) and
// returns its content without quoting and the index after it.
func quotedString(v string, i int) (string, int, bool) {
	var b strings.Builder
	for j := i + 1; j < len(v); j++ {
		switch c := v[j]; c {
		case '\\':
			if j+1 >= len(v) {
				return "", j, false
			}
			j++
			b.WriteByte(v[j])
		case '"':
			return b.String(), j + 1, true
		default:
			b.WriteByte(c)
		}
	}
	return "", len(v), false
}

// isTokenChar: RFC 2045 §5.1 token characters (printable US-ASCII but
// SPACE and tspecials).
func isTokenChar(c byte) bool {
	return c > 0x20 && c < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(c))
}
