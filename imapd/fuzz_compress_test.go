package imapd

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// deflated compresses s as a client would: raw DEFLATE, a sync flush.
func deflated(tb testing.TB, s string) []byte {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.DefaultCompression)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write([]byte(s))
	w.Flush()
	return b.Bytes()
}

var compressSeeds = []string{
	"a NOOP\r\n", "a COMPRESS DEFLATE\r\n", "a SELECT INBOX\r\nb IDLE\r\nDONE\r\n",
	"a APPEND INBOX {5+}\r\nhello\r\n", "a LOGIN {99999999999+}\r\n", "a GETQUOTAROOT INBOX\r\n",
	"a FETCH 1:* (FLAGS)\r\n" + strings.Repeat("x", 70000) + "\r\n",
}

// FuzzCompressed runs COMPRESS DEFLATE and then arbitrary input through the
// real command loop: as raw octets (mostly corrupt DEFLATE: a BYE, never a
// panic or hang), or deflated by the harness (commands under compression,
// against the parser's limits).
func FuzzCompressed(f *testing.F) {
	for _, s := range compressSeeds {
		f.Add(true, []byte(s))
		f.Add(false, deflated(f, s))
	}
	f.Add(false, []byte{0x07, 0xff, 0xff})
	f.Add(false, []byte{0x00, 0x05, 0x00, 0xfa, 0xff, 'a', ' ', 'N', 'O', 'O'})
	f.Fuzz(func(t *testing.T, deflate bool, input []byte) {
		if deflate {
			input = deflated(t, string(input))
		}
		input = append([]byte("z COMPRESS DEFLATE\r\n"), input...)
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCommands(t, input, stateAuth, io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			panic(fmt.Sprintf("hang on input %q", input))
		}
	})
}

// TestCompressedSeedsRun: the harness's output after COMPRESS is deflated
// and holds the answers to the deflated commands.
func TestCompressedSeedsRun(t *testing.T) {
	var out bytes.Buffer
	in := append([]byte("z COMPRESS DEFLATE\r\n"), deflated(t, "a NOOP\r\nb GETQUOTA \"\"\r\nc COMPRESS DEFLATE\r\n")...)
	runCommands(t, in, stateAuth, &out)
	head, rest, ok := bytes.Cut(out.Bytes(), []byte("\r\n"))
	if !ok || string(head) != "z OK DEFLATE active" {
		t.Fatalf("COMPRESS: %q", out.Bytes())
	}
	plain, err := io.ReadAll(flate.NewReader(bytes.NewReader(rest)))
	if err != io.ErrUnexpectedEOF { // the stream is flushed, never ended
		t.Fatalf("inflating the output: %v", err)
	}
	want := "a OK NOOP completed\r\n" + `* QUOTA "" (STORAGE 5 1024 MESSAGE 3 10)` + "\r\nb OK GETQUOTA completed\r\n" +
		"c NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n"
	if string(plain) != want {
		t.Fatalf("got %q\nwant %q", plain, want)
	}
}
