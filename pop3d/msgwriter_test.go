package pop3d

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

// refLines splits a stored message into lines the way RFC 5322 readers
// would: CRLF, LF and CR each end a line; a last line without an ending is
// still a line.
func refLines(msg []byte) []string {
	var lines []string
	var cur []byte
	for i := 0; i < len(msg); i++ {
		switch msg[i] {
		case '\r':
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
			lines = append(lines, string(cur))
			cur = cur[:0]
		case '\n':
			lines = append(lines, string(cur))
			cur = cur[:0]
		default:
			cur = append(cur, msg[i])
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

// reference renders RETR (top < 0) or TOP output and the unstuffed size,
// line by line, independently of msgWriter's streaming state machine.
func reference(msg []byte, top int64) (wire string, size int64) {
	lines := refLines(msg)
	if top >= 0 {
		h := -1
		for i, l := range lines {
			if l == "" {
				h = i
				break
			}
		}
		if h >= 0 {
			end := int64(h+1) + top
			if end < int64(len(lines)) {
				lines = lines[:end]
			}
		}
	}
	var b strings.Builder
	for _, l := range lines {
		size += int64(len(l)) + 2
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.String(), size
}

// render runs msgWriter over msg cut into chunks of the given sizes.
func render(t testing.TB, msg []byte, top int64, chunks []int) (string, int64) {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	mw := newMsgWriter(bw, top)
	rest := msg
	ci := 0
	for len(rest) > 0 {
		n := len(rest)
		if len(chunks) > 0 {
			n = max(1, min(chunks[ci%len(chunks)], len(rest)))
			ci++
		}
		_, err := mw.Write(rest[:n])
		if errors.Is(err, errTopDone) {
			break
		}
		if err != nil {
			t.Fatalf("Write: %v", err)
		}
		rest = rest[n:]
	}
	if err := mw.finish(); err != nil {
		t.Fatalf("finish: %v", err)
	}
	bw.Flush()
	return out.String(), mw.n
}

func TestMsgWriter(t *testing.T) {
	cases := []struct {
		name, in, want string
		top            int64
	}{
		{"empty", "", ".\r\n", -1},
		{"crlf", "A: b\r\n\r\nbody\r\n", "A: b\r\n\r\nbody\r\n.\r\n", -1},
		{"no final eol", "A: b\r\n\r\nbody", "A: b\r\n\r\nbody\r\n.\r\n", -1},
		{"bare lf", "A: b\n\nbody\n", "A: b\r\n\r\nbody\r\n.\r\n", -1},
		{"bare cr", "A: b\r\rbody\r", "A: b\r\n\r\nbody\r\n.\r\n", -1},
		{"stuffing", ".\r\n..x\r\n.\n", "..\r\n...x\r\n..\r\n.\r\n", -1},
		{"lone dot no eol", ".", "..\r\n.\r\n", -1},
		{"smuggling shapes", "a\n.\nb\r.\r\n\r\n.\r\nc", "a\r\n..\r\nb\r\n..\r\n\r\n..\r\nc\r\n.\r\n", -1},
		{"top 0", "A: b\r\nC: d\r\n\r\nl1\r\nl2\r\n", "A: b\r\nC: d\r\n\r\n.\r\n", 0},
		{"top 1", "A: b\r\n\r\nl1\r\n.l2\r\n", "A: b\r\n\r\nl1\r\n.\r\n", 1},
		{"top 2 stuffed", "A: b\r\n\r\nl1\r\n.l2\r\nl3", "A: b\r\n\r\nl1\r\n..l2\r\n.\r\n", 2},
		{"top more than body", "A: b\r\n\r\nl1", "A: b\r\n\r\nl1\r\n.\r\n", 10},
		{"top no body", "A: b\r\nC: d", "A: b\r\nC: d\r\n.\r\n", 5},
		{"top bare lf header", "A: b\n\nl1\nl2\n", "A: b\r\n\r\nl1\r\n.\r\n", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunks := range [][]int{nil, {1}, {2}, {3, 1}} {
				got, n := render(t, []byte(c.in), c.top, chunks)
				if got != c.want {
					t.Fatalf("chunks %v: got %q, want %q", chunks, got, c.want)
				}
				ref, size := reference([]byte(c.in), c.top)
				if ref != c.want {
					t.Fatalf("reference disagrees with the table: %q", ref)
				}
				if c.top < 0 && n != size {
					t.Fatalf("chunks %v: size %d, want %d", chunks, n, size)
				}
			}
		})
	}
}

// FuzzMsgWriter checks the streaming normaliser against the line-based
// reference for any content, chunking and TOP limit.
func FuzzMsgWriter(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: hi\r\n\r\nHello\r\n.\r\nbye\r\n"), uint8(3), int8(-1))
	f.Add([]byte("a\n.\nb\r.\r\n\r\n.\r\nc"), uint8(1), int8(1))
	f.Add([]byte("\r\r\n\n.\r"), uint8(2), int8(0))
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint8, top int8) {
		want, size := reference(msg, int64(top))
		got, n := render(t, msg, int64(top), []int{int(chunk%17) + 1, int(chunk%5) + 1})
		if got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		if top < 0 && n != size {
			t.Fatalf("size %d, want %d", n, size)
		}
		// The output never contains a bare CR or LF, and its only
		// terminating line is the last one.
		body := got[:len(got)-3]
		if strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\r") ||
			strings.Contains(strings.ReplaceAll(body, "\r\n", ""), "\n") {
			t.Fatalf("bare CR/LF in output %q", got)
		}
		if strings.Contains("\r\n"+body, "\r\n.\r\n") {
			t.Fatalf("early terminator in %q", got)
		}
	})
}

// renderWhole runs writeWhole over msg.
func renderWhole(t testing.TB, msg []byte) (string, int64) {
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16)
	var stuff []int
	n, err := writeWhole(bw, msg, &stuff)
	if err != nil {
		t.Fatalf("writeWhole: %v", err)
	}
	bw.Flush()
	return out.String(), n
}

func TestWriteWhole(t *testing.T) {
	for _, in := range []string{
		"", "A: b\r\n\r\nbody\r\n", ".\r\n", "..x\r\n.\r\n", "A: b\r\n\r\n.\r\n.\r\n..\r\nx.y\r\n.z\r\n",
		".leading dot\r\nand. dots. inside.\r\n", "A: b\r\n\r\nno final eol", "bare\nlf\n", "bare\rcr\r",
		"A: b\r\n\r\n.\n.\r\n", "\n\r\r\n", "x\r\n\r", ".", "\r\n", ".\r\n.a\n\r\r\n", "a\r\n.b\n\r.\r\n",
		"x\r\n.\r\n.\rb\r\n\n", "\r\r\n\n\r\n",
	} {
		want, size := reference([]byte(in), -1)
		got, n := renderWhole(t, []byte(in))
		if got != want || n != size {
			t.Errorf("writeWhole(%q) = %q, %d; want %q, %d", in, got, n, want, size)
		}
	}
}

// FuzzWriteWhole checks the whole-message writer against the line-based
// reference for any content.
func FuzzWriteWhole(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: hi\r\n\r\nHello\r\n.\r\nbye\r\n"))
	f.Add([]byte("a\n.\nb\r.\r\n\r\n.\r\nc"))
	f.Add([]byte(".\r\n.\r\n"))
	f.Add([]byte(".\r\n.a\n\r\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		want, size := reference(msg, -1)
		got, n := renderWhole(t, msg)
		if got != want || n != size {
			t.Fatalf("got %q (%d), want %q (%d)", got, n, want, size)
		}
	})
}
