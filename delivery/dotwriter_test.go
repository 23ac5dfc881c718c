package delivery

import (
	"bufio"
	"bytes"
	"net/textproto"
	"testing"
)

// dotEncode writes msg through w in pieces of the given sizes (cycled).
func dotEncode(t testing.TB, msg []byte, pieces []int, std bool) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 64)
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	if std {
		w = textproto.NewWriter(bw).DotWriter()
	} else {
		w = &dotWriter{w: bw}
	}
	for i := 0; len(msg) > 0; i++ {
		n := len(msg)
		if len(pieces) > 0 {
			n = min(n, max(1, pieces[i%len(pieces)]))
		}
		if k, err := w.Write(msg[:n]); k != n || err != nil {
			t.Fatalf("Write of %d octets = %d, %v", n, k, err)
		}
		msg = msg[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The dot-stuffing writer writes what textproto's DotWriter writes
// (RFC 5321 §4.5.2: leading dots doubled, CRLF line ends, the final dot),
// whatever the pieces it is given.
func TestDotWriter(t *testing.T) {
	cases := []string{
		"", ".", "..", "a", "a\r\n", "a\n", "\r\n", "\n", "\r", "a\r", "a\rb\r\n", ".a\r\n.b\r\n..c\r\n",
		"line\r\n.\r\nafter\r\n", "bare\nlf\n.dot\n", "cr at end\r", "\r\n\n.\r.\n", "x\r\n\r\n.\r\n",
		"Subject: hi\r\n\r\n" + string(bytes.Repeat([]byte("0123456789.\r\n.leading\r\n"), 3000)),
	}
	for _, c := range cases {
		for _, pieces := range [][]int{nil, {1}, {2}, {3, 1}, {7, 5, 1}, {4096}} {
			want := dotEncode(t, []byte(c), pieces, true)
			if got := dotEncode(t, []byte(c), pieces, false); !bytes.Equal(got, want) {
				t.Errorf("%q in pieces %v: got %q, want %q", trimQ(c), pieces, trimQ(string(got)), trimQ(string(want)))
			}
		}
	}
}

// One difference: textproto takes the second CR of CR CR LF for data and
// writes CR CR CR LF; the line ends in the CRLF it has, and stays so.
func TestDotWriterCRCRLF(t *testing.T) {
	for _, pieces := range [][]int{nil, {1}, {2}} {
		if got := dotEncode(t, []byte("a\r\r\n.b\r\n"), pieces, false); string(got) != "a\r\r\n..b\r\n.\r\n" {
			t.Errorf("in pieces %v: %q", pieces, got)
		}
	}
}

func trimQ(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n.body\r\n..\r\n"), uint8(3))
	f.Add([]byte("a\nb\r\rc\r\n.\r"), uint8(1))
	f.Add([]byte(""), uint8(0))
	f.Fuzz(func(t *testing.T, msg []byte, piece uint8) {
		if len(msg) > 1<<16 || bytes.Contains(msg, []byte("\r\r")) {
			return // CR CR: see TestDotWriterCRCRLF
		}
		pieces := []int{int(piece), int(piece) / 2, 1}
		if want, got := dotEncode(t, msg, pieces, true), dotEncode(t, msg, pieces, false); !bytes.Equal(got, want) {
			t.Fatalf("%q in pieces %v: got %q, want %q", msg, pieces, got, want)
		}
	})
}
