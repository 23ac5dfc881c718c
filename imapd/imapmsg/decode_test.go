package imapmsg

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
	"testing/iotest"
)

func decodeAll(t *testing.T, in, enc string) string {
	t.Helper()
	// Every reader shape must give the same result.
	var first string
	for i, wrap := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
		iotest.DataErrReader,
	} {
		r, err := DecodeReader(wrap(strings.NewReader(in)), enc)
		if err != nil {
			t.Fatalf("DecodeReader(%q): %v", enc, err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if i == 0 {
			first = string(out)
		} else if string(out) != first {
			t.Fatalf("reader %d: %q, want %q", i, out, first)
		}
	}
	n, err := BinarySize(strings.NewReader(in), enc)
	if err != nil || n != int64(len(first)) {
		t.Fatalf("BinarySize = %d, %v; want %d", n, err, len(first))
	}
	return first
}

func TestDecodeBase64(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"aGVsbG8gd29ybGQ=", "hello world"},
		{"aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", "hello world"},
		{" aGVs bG8g\td29y\nbGQ= ", "hello world"},
		{"aGVsbG8gd29ybGQ", "hello world"},                   // missing padding
		{"aGVsbG8gd29ybA==", "hello worl"},                   // two pad characters
		{"aGVsbG8gd29ybGQ=\r\n-- \r\nfooter", "hello world"}, // data ends at the padding
		{"aGVs*bG8!gd29y~bGQ=", "hello world"},               // octets outside the alphabet are ignored
		{"=aGk=", "hi"},                                      // leading "=" is noise
		{"aGk", "hi"},
		{"YQ", "a"},
		{"Y", ""}, // a lone sextet holds no octet
		{"AAEC/w==", "\x00\x01\x02\xff"},
	}
	for _, tc := range tests {
		if got := decodeAll(t, tc.in, "base64"); got != tc.want {
			t.Errorf("base64 %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDecodeBase64MatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for size := range 300 {
		data := make([]byte, size*37%5000)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		enc := base64.StdEncoding.EncodeToString(data)
		var wrapped strings.Builder
		for len(enc) > 76 { // RFC 2045 §6.8 lines of at most 76 characters
			wrapped.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		wrapped.WriteString(enc + "\r\n")
		if got := decodeAll(t, wrapped.String(), "BASE64"); got != string(data) {
			t.Fatalf("size %d: mismatch", len(data))
		}
	}
}

func TestDecodeQuotedPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"caf=C3=A9", "café"},
		{"caf=c3=a9", "café"},              // lower-case hex accepted
		{"a=3Db", "a=b"},                   // escaped "="
		{"soft=\r\nbreak", "softbreak"},    // RFC 2045 §6.7 rule 5
		{"soft=\nbreak", "softbreak"},      // LF-only soft break
		{"soft= \t\r\nbreak", "softbreak"}, // white space after a soft-break "="
		{"trailing   \r\nspace\t\r\n", "trailing\r\nspace\r\n"}, // rule 3: trailing white space deleted
		{"in ner  space", "in ner  space"},
		{"hard\r\nbreak\n", "hard\r\nbreak\n"},
		{"end=", "end"},                  // soft break at the very end
		{"end   ", "end"},                // trailing space at the end
		{"bad=ZZ", "bad=ZZ"},             // malformed escape passed through
		{"bad=4", "bad=4"},               // truncated escape
		{"bad=4G", "bad=4G"},             // half-valid escape
		{"x= y", "x= y"},                 // "=" followed by space then text
		{"x=\ry", "x=\ry"},               // "=" CR without LF
		{"a\rb", "a\rb"},                 // bare CR passes
		{"a \rb", "a \rb"},               // space before a bare CR is not trailing
		{"==41", "=A"},                   // "=" then a valid escape
		{"\x00\x01\xff", "\x00\x01\xff"}, // other octets pass through
		{"a=\r\n=\r\nb", "ab"},
		{"tab\t=\r\nnext", "tab\tnext"},
	}
	for _, tc := range tests {
		if got := decodeAll(t, tc.in, "quoted-printable"); got != tc.want {
			t.Errorf("qp %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDecodeQuotedPrintableBounded(t *testing.T) {
	// A huge run of white space is not held back whole.
	in := "a" + strings.Repeat(" ", 1<<20) + "b"
	if got := decodeAll(t, in, "quoted-printable"); got != in {
		t.Fatalf("got %d bytes", len(got))
	}
	in = "a=" + strings.Repeat(" ", 3*maxPendingSpace) + "b"
	if got := decodeAll(t, in, "quoted-printable"); got != in {
		t.Fatalf("got %q", got)
	}
	// A line far longer than any buffer decodes (mime/quotedprintable
	// would fail with bufio.ErrBufferFull).
	in = strings.Repeat("=41", 100000)
	if got := decodeAll(t, in, "quoted-printable"); got != strings.Repeat("A", 100000) {
		t.Fatalf("long line: %d bytes", len(got))
	}
}

func TestDecodeQuotedPrintableMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("ab =\t\r\n\x00\xe9")
	for n := range 300 {
		data := make([]byte, n*13%3000)
		for i := range data {
			data[i] = alphabet[rng.IntN(len(alphabet))]
		}
		// Canonical text: CRLF line breaks only (RFC 2045 §6.7 encodes
		// line breaks as such; bare CR/LF would be escaped).
		text := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r", ""), "\n", "\r\n")
		var enc bytes.Buffer
		w := quotedprintable.NewWriter(&enc)
		if _, err := w.Write([]byte(text)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := decodeAll(t, enc.String(), "quoted-printable"); got != text {
			t.Fatalf("round trip of %q via %q gave %q", text, enc.String(), got)
		}
	}
}

func TestDecodePassThroughAndUnknown(t *testing.T) {
	for _, enc := range []string{"", "7bit", "8BIT", "Binary", " binary ", "?junk"} {
		r := strings.NewReader("x=41\r\n")
		d, err := DecodeReader(r, enc)
		if err != nil || d != io.Reader(r) {
			t.Errorf("%q: not passed through (%v)", enc, err)
		}
	}
	for _, enc := range []string{"x-uuencode", "uuencode", "base32"} {
		if _, err := DecodeReader(strings.NewReader(""), enc); !errors.Is(err, ErrUnknownEncoding) {
			t.Errorf("%q: %v", enc, err)
		}
		if _, err := BinarySize(strings.NewReader(""), enc); !errors.Is(err, ErrUnknownEncoding) {
			t.Errorf("BinarySize %q: %v", enc, err)
		}
	}
}

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("boom")
	r, err := DecodeReader(io.MultiReader(strings.NewReader("aGVsbG8="), iotest.ErrReader(boom)), "base64")
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if !errors.Is(err, boom) || string(out) != "hello" {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, err := BinarySize(iotest.ErrReader(boom), "quoted-printable"); !errors.Is(err, boom) {
		t.Fatalf("BinarySize: %v", err)
	}
}
