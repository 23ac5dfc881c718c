package imapmsg

import (
	"bytes"
	"io"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseSection: ParseSection never panics, respects its bounds, and
// what it accepts survives re-formatting (fields as literals) and
// re-parsing unchanged.
func FuzzParseSection(f *testing.F) {
	for _, s := range []string{
		"", "HEADER", "TEXT", "1", "1.2.3", "1.MIME", "4.2.HEADER", "4.2.TEXT",
		"HEADER.FIELDS (From To Cc Subject Date Message-ID)",
		"HEADER.FIELDS.NOT (Received)", "1.2.HEADER.FIELDS (From To)",
		`HEADER.FIELDS ("X-Odd \"Name\"" From)`, "HEADER.FIELDS ({4}\r\nDate From)",
		"HEADER.FIELDS ({4+}\r\nDate)", "header.fields (references in-reply-to)",
		"4294967295", "0", "1.", "MIME", "HEADER.FIELDS ()", "HEADER.FIELDS ({99}\r\nx)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSection(spec)
		if err != nil {
			return
		}
		if len(s.Part) > maxPartDepth || len(s.Fields) > maxFields {
			t.Fatalf("bounds exceeded: %d parts, %d fields", len(s.Part), len(s.Fields))
		}
		for _, p := range s.Part {
			if p < 1 {
				t.Fatalf("part number %d", p)
			}
		}
		hasFields := s.Specifier == "HEADER.FIELDS" || s.Specifier == "HEADER.FIELDS.NOT"
		if hasFields != (len(s.Fields) > 0) {
			t.Fatalf("specifier %q with %d fields", s.Specifier, len(s.Fields))
		}
		if s.Specifier == "MIME" && len(s.Part) == 0 {
			t.Fatal("MIME without part")
		}
		again, err := ParseSection(sectionString(s))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("re-parse of %q: %#v, %v; want %#v", sectionString(s), again, err, s)
		}
	})
}

// FuzzFilterHeader: the HEADER.FIELDS and HEADER.FIELDS.NOT results
// partition the lines of the header block, each ends with the blank line,
// and every kept field's name is (or is not) one of the requested names.
func FuzzFilterHeader(f *testing.F) {
	f.Add([]byte(sampleHeader), "to,subject", false)
	f.Add([]byte(sampleHeader), "received", true)
	f.Add([]byte("A: 1\r\nB: 2\r\n c\r\n\r\nbody"), "b", false)
	f.Add([]byte(" orphan\r\nA: 1\nB: 2"), "a,", true)
	f.Add([]byte("garbage\r\nSubject : x\r\n\r"), "SUBJECT", false)
	f.Add([]byte(""), "", false)
	f.Fuzz(func(t *testing.T, header []byte, list string, not bool) {
		fields := strings.Split(list, ",")
		if len(fields) > maxFields {
			fields = fields[:maxFields]
		}
		out := FilterHeader(header, fields, not)
		other := FilterHeader(header, fields, !not)
		for _, o := range [][]byte{out, other} {
			if !bytes.HasSuffix(o, []byte("\r\n")) || len(o) > len(header)+4 {
				t.Fatalf("bad result %q for %q", o, header)
			}
		}
		// Lines of the block: up to the first empty line.
		lines := 0
		for rest := header; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i+1], rest[i+1:]
			} else {
				rest = nil
			}
			if len(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))) == 0 {
				break
			}
			lines++
		}
		if got := bytes.Count(out, []byte("\n")) + bytes.Count(other, []byte("\n")); got != lines+2 {
			t.Fatalf("results have %d lines, block has %d: %q / %q from %q", got, lines, out, other, header)
		}
		want := map[string]bool{}
		for _, f := range fields {
			want[string(lowerASCII(nil, []byte(f)))] = true
		}
		for _, line := range bytes.SplitAfter(out[:len(out)-2], []byte("\n")) {
			if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
				continue
			}
			name, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
			name = bytes.TrimRight(name, " \t")
			if want[string(lowerASCII(nil, name))] == not {
				t.Fatalf("line %q kept with fields %q not=%v", line, fields, not)
			}
		}
	})
}

// FuzzDecode: the decoders never panic, give the same result whatever the
// read sizes, and BinarySize agrees with the decoded length; quoted-
// printable output is never longer than its input, base64 at most 3/4.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n"), true)
	f.Add([]byte("caf=C3=A9 =\r\nsoft  \r\nx=4"), false)
	f.Add([]byte("=\r=\n= \t\r\n=ZZ"), false)
	f.Fuzz(func(t *testing.T, in []byte, b64 bool) {
		enc := "quoted-printable"
		if b64 {
			enc = "base64"
		}
		r, err := DecodeReader(bytes.NewReader(in), enc)
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		r, _ = DecodeReader(iotest.OneByteReader(bytes.NewReader(in)), enc)
		if out2, err := io.ReadAll(r); err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("one-byte reads differ: %q vs %q", out, out2)
		}
		if n, err := BinarySize(bytes.NewReader(in), enc); err != nil || n != int64(len(out)) {
			t.Fatalf("BinarySize %d, %v; decoded %d", n, err, len(out))
		}
		if (b64 && len(out) > len(in)*3/4) || len(out) > len(in) {
			t.Fatalf("%d octets decoded from %d", len(out), len(in))
		}
	})
}

// FuzzWriteString: every string is written as a well-formed quoted string
// or literal that reads back as the input minus NUL octets.
func FuzzWriteString(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c`, "ü", "a\r\nb", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var w bytes.Buffer
		writeString(&w, s)
		got, ok := readIMAPString(w.String())
		if !ok || got != strings.ReplaceAll(s, "\x00", "") {
			t.Fatalf("writeString(%q) = %q", s, w.String())
		}
	})
}

// readIMAPString reads one whole quoted string or literal (RFC 9051 §4.3).
func readIMAPString(s string) (string, bool) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"':
				return b.String(), i == len(s)-1
			case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
				i++
				b.WriteByte(s[i])
			case c == '\\' || c == 0 || c == '\r' || c == '\n' || c >= 0x80:
				return "", false
			default:
				b.WriteByte(c)
			}
		}
		return "", false
	}
	num, rest, ok := strings.Cut(strings.TrimPrefix(s, "{"), "}\r\n")
	n, err := strconv.Atoi(num)
	if !ok || !strings.HasPrefix(s, "{") || err != nil || n != len(rest) || strings.IndexByte(rest, 0) >= 0 {
		return "", false
	}
	return rest, true
}
