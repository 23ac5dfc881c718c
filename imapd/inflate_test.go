package imapd

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// chunkReader hands out its data a few octets per Read, as a network does.
type chunkReader struct {
	data []byte
	size int
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), r.size, len(r.data))
	copy(b, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// deflateFlushed compresses data at level with a sync flush every step
// octets, as a client would per command.
func deflateFlushed(tb testing.TB, data []byte, level, step int) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		tb.Fatal(err)
	}
	for len(data) > 0 {
		n := min(step, len(data))
		w.Write(data[:n])
		w.Flush()
		data = data[n:]
	}
	return b.Bytes()
}

// inflateAll decodes comp through an inflater fed chunk octets at a time.
func inflateAll(comp []byte, chunk, readSize int) ([]byte, error) {
	return inflateMax(comp, chunk, readSize, 64<<20)
}

func inflateMax(comp []byte, chunk, readSize, max int) ([]byte, error) {
	z := newInflater(bufio.NewReaderSize(&chunkReader{data: comp, size: chunk}, 64))
	var out []byte
	buf := make([]byte, readSize)
	for {
		n, err := z.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
		if len(out) > max {
			return out, errors.New("runaway output")
		}
	}
}

// TestInflate checks the inflater against compress/flate's output at every
// level, with flushes, over text, random and repetitive data (stored,
// fixed and dynamic blocks, long back-references).
func TestInflate(t *testing.T) {
	rnd := make([]byte, 70000)
	for i := range rnd {
		rnd[i] = byte(i*7919 + i>>3*31)
	}
	inputs := map[string][]byte{
		"empty":  nil,
		"text":   []byte(strings.Repeat("a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])\r\n", 3000)),
		"random": rnd,
		"runs":   bytes.Repeat([]byte{'x'}, 300000),
	}
	for name, in := range inputs {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			for _, step := range []int{1 << 30, 977} {
				comp := deflateFlushed(t, in, level, step)
				got, err := inflateAll(comp, 13, 700)
				if !errors.Is(err, io.ErrUnexpectedEOF) { // flushed, never ended
					t.Errorf("%s level %d: error %v", name, level, err)
				}
				if !bytes.Equal(got, in) {
					t.Errorf("%s level %d step %d: %d octets out, want %d", name, level, step, len(got), len(in))
				}
			}
		}
	}
	// A stream with a final block ends with io.EOF.
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, 6)
	w.Write([]byte("the end"))
	w.Close()
	if got, err := inflateAll(b.Bytes(), 3, 2); err != io.EOF || string(got) != "the end" {
		t.Errorf("final block: %q, %v", got, err)
	}
	// Corrupt input is errInflate, not a panic.
	for _, bad := range [][]byte{{0x07}, {0x00, 0x05, 0x00, 0x00, 0x00}, {0x05, 0xff, 0xff, 0xff, 0xff}, {0x02, 0xff, 0xff}} {
		if _, err := inflateAll(bad, 1, 10); !errors.Is(err, errInflate) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%x: %v", bad, err)
		}
	}
}

// TestInflatePartialFlush: zlib's Z_PARTIAL_FLUSH (mbsync's), with blocks
// large enough to get dynamic codes: every command must come out of the
// inflater as soon as its flushed octets are in, before the next is sent.
func TestInflatePartialFlush(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	script := `
import zlib, sys
c = zlib.compressobj(6, zlib.DEFLATED, -15)
for i in range(60):
    cmd = b"a%d UID STORE %s +FLAGS.SILENT (\\Seen)\r\n" % (i, b",".join(b"%d" % (j * 7 + i) for j in range(i * 5)))
    d = c.compress(cmd) + c.flush(zlib.Z_PARTIAL_FLUSH)
    sys.stdout.buffer.write(len(d).to_bytes(2, 'big') + d)
`
	out, err := exec.Command(py, "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	z := bufio.NewReader(newInflater(bufio.NewReader(pr)))
	lines := make(chan string, 1)
	go func() {
		defer close(lines)
		for {
			l, err := z.ReadString('\n')
			if err != nil {
				return
			}
			lines <- l
		}
	}()
	for i := 0; len(out) > 0; i++ {
		n := int(out[0])<<8 | int(out[1])
		if _, err := pw.Write(out[2 : 2+n]); err != nil {
			t.Fatal(err)
		}
		out = out[2+n:]
		select {
		case l := <-lines:
			if !strings.HasPrefix(l, "a") || !strings.HasSuffix(l, "\r\n") {
				t.Fatalf("command %d: %q", i, l)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("command %d (%d octets compressed) not decoded after its partial flush", i, n)
		}
	}
	pw.Close()
}

// FuzzInflate: arbitrary input never panics or runs away; flushed output of
// compress/flate always decodes to what went in.
func FuzzInflate(f *testing.F) {
	f.Add([]byte("a NOOP\r\n"), byte(6), byte(7))
	f.Add([]byte{0x07, 0xff}, byte(0), byte(1))
	f.Add(bytes.Repeat([]byte("abc"), 500), byte(1), byte(200))
	f.Fuzz(func(t *testing.T, data []byte, level, chunk byte) {
		chunk = max(chunk, 1)
		_, _ = inflateMax(data, int(chunk), 100, 1<<20) // raw: anything but a panic
		lv := int(level)%11 - 2
		comp := deflateFlushed(t, data, lv, int(chunk)*3+1)
		got, err := inflateAll(comp, int(chunk), 333)
		if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Equal(got, data) {
			t.Fatalf("level %d: got %d octets (%v), want %d", lv, len(got), err, len(data))
		}
	})
}

// BenchmarkInflate: the inflater's speed on text (an APPEND upload).
func BenchmarkInflate(b *testing.B) {
	text := []byte(strings.Repeat("Subject: a line of a message body, as mail goes; 0123456789\r\n", 20000))
	comp := deflateFlushed(b, text, flate.DefaultCompression, 1<<30)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		z := newInflater(bufio.NewReader(bytes.NewReader(comp)))
		if n, _ := io.Copy(io.Discard, z); n != int64(len(text)) {
			b.Fatal(n)
		}
	}
}
