package imapmsg

import "bytes"

// FilterHeader returns the subset of a header block that BODY[HEADER.FIELDS
// (fields)] (not=false) or BODY[HEADER.FIELDS.NOT (fields)] (not=true)
// returns (RFC 9051 §6.4.5): the fields whose name matches one of fields,
// or, with not, those whose name matches none. Matching is
// case-insensitive (ASCII) but otherwise exact; a field keeps its
// continuation lines (RFC 5322 §2.2.3 folding) and its original bytes.
//
// The block ends at its first empty line or at the end of header. The
// result always ends with the empty line CRLF, which "is included in all
// header fetches"; a last line lacking its line break gets CRLF. Lines
// before the first field that start with white space belong to no field
// (kept only by .NOT), and a line without a colon is a field named by the
// whole line, minus trailing white space. Work is one pass over header.
func FilterHeader(header []byte, fields []string, not bool) []byte {
	want := make(map[string]struct{}, len(fields))
	maxName := 0
	for _, f := range fields {
		want[string(lowerASCII(nil, []byte(f)))] = struct{}{}
		maxName = max(maxName, len(f))
	}
	capacity := 64
	if not {
		capacity = len(header) + 2
	}
	out := make([]byte, 0, capacity)
	var lower []byte // scratch for the lower-cased field name
	keep := not      // lines before any field belong to a nameless field
	for len(header) > 0 {
		line := header
		if i := bytes.IndexByte(header, '\n'); i >= 0 {
			line, header = header[:i+1], header[i+1:]
		} else {
			header = nil
		}
		content := line
		if n := len(content); n > 0 && content[n-1] == '\n' {
			content = content[:n-1]
		}
		if n := len(content); n > 0 && content[n-1] == '\r' {
			content = content[:n-1]
		}
		if len(content) == 0 {
			break // the empty line that ends the header (RFC 5322 §2.1)
		}
		if content[0] != ' ' && content[0] != '\t' {
			name := content
			if i := bytes.IndexByte(content, ':'); i >= 0 {
				name = content[:i]
			}
			name = bytes.TrimRight(name, " \t")
			match := false
			if len(name) <= maxName {
				lower = lowerASCII(lower[:0], name)
				_, match = want[string(lower)]
			}
			keep = match != not
		}
		if !keep {
			continue
		}
		if line[len(line)-1] == '\n' {
			out = append(out, line...)
		} else {
			out = append(out, content...)
			out = append(out, '\r', '\n')
		}
	}
	return append(out, '\r', '\n')
}

// lowerASCII appends b lower-cased (ASCII letters only) to dst.
func lowerASCII(dst, b []byte) []byte {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
