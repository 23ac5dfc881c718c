package smtpd

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the wire readers and parsers: command lines, MAIL/RCPT
// arguments, DATA content (against a line-by-line reference) and BDAT
// chunks with the bare-LF normalization.

// chunkConn is a net.Conn whose reads return its input in pieces of the
// sizes given (then EOF); writes are dropped.
type chunkConn struct {
	net.Conn // nil: only the methods below are used
	in       []byte
	sizes    []byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := len(c.in)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[0])+1)
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}
func (c *chunkConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// wireConn is a conn on input, for the readers alone.
func wireConn(in, sizes []byte) *conn {
	cfg := &Config{DataTimeout: time.Minute, MessageTimeout: time.Hour}
	return &conn{
		cfg: cfg, buf: make([]byte, readBufferSize), nc: &chunkConn{in: in, sizes: sizes},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), msgStart: time.Now(),
	}
}

func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"EHLO client.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n", "NOOP\rRSET\r\n", "EHLO x\n", "NOOP\rX",
		"AUTH PLAIN " + strings.Repeat("QUFB", 1000) + "\r\n", "NOOP " + strings.Repeat("a", 3000) + "\r\n", "\r\n",
		"RCPT TO:<postmaster>\r\nDATA\r\n",
	} {
		f.Add([]byte(s), []byte{3, 200})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		c := wireConn(in, sizes)
		var got []byte
		for {
			line, err := c.readLine(maxCommandLine, true)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, errLineTooLong) && !errors.Is(err, errBareNewline) {
					t.Fatalf("error %v", err)
				}
				break
			}
			if bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("line %q with CR or LF", line)
			}
			limit := maxCommandLine
			if hasPrefixFold(line, "AUTH ") {
				limit = maxAuthLine
			}
			if len(line)+2 > limit {
				t.Fatalf("line of %d octets", len(line))
			}
			got = append(append(got, line...), "\r\n"...)
		}
		if !bytes.HasPrefix(in, got) {
			t.Fatalf("lines %q are not the input %q", got, in)
		}
	})
}

func FuzzMailRcptArgs(f *testing.F) {
	for _, s := range []string{
		"FROM:<alice@example.org>", "FROM:<> SIZE=100 BODY=8BITMIME", "FROM: <a@b> SMTPUTF8 RET=HDRS ENVID=QQ+2B1",
		"FROM:<@x,@y:a@b> AUTH=<>", "FROM:<\"a b\"@c> SIZE=999999999999999999999", "TO:<postmaster>",
		"TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice+2B@example.org", "TO:<a@[127.0.0.1]>",
		"TO:<j\u00f6rg@b\u00fccher.example> ORCPT=utf-8;j\\x{F6}rg@x", "FROM:<a\\\"b@c>", "TO:<\"\\",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		from, mp, r := parseMailArg(arg, 1000)
		if r == nil {
			if from != "" && (!strings.Contains(from, "@") || strings.ContainsAny(from, "\r\n")) {
				t.Fatalf("path %q from %q", from, arg)
			}
			if mp.size < 0 || mp.size > 1000 || len(mp.envID) > maxEnvID || !printableASCII(mp.envID) {
				t.Fatalf("params %+v from %q", mp, arg)
			}
		} else if r.code != 501 && r.code != 552 && r.code != 555 {
			t.Fatalf("reply %v to %q", r, arg)
		}
		to, rp, r := parseRcptArg(arg)
		if r == nil {
			if !strings.Contains(to, "@") || strings.ContainsAny(to, "\r\n") {
				t.Fatalf("path %q from %q", to, arg)
			}
			if _, ok := parseNotify(strings.Join(rp.notify, ",")); len(rp.notify) > 0 && !ok {
				t.Fatalf("notify %v from %q", rp.notify, arg)
			}
		}
	})
}

// refData is the line-by-line reading of DATA content: the content before
// the end marker, dot-unstuffed after CRLF lines, and whether it ended.
func refData(in []byte) ([]byte, bool) {
	var out []byte
	afterCRLF := true
	for len(in) > 0 {
		i := bytes.IndexByte(in, '\n')
		if i < 0 {
			if afterCRLF && in[0] == '.' {
				in = in[1:]
			}
			return append(out, in...), false
		}
		line := in[:i+1]
		in = in[i+1:]
		if afterCRLF && string(line) == ".\r\n" {
			return out, true
		}
		if afterCRLF && line[0] == '.' && len(line) > 2 {
			line = line[1:] // ".\n" stays
		}
		out = append(out, line...)
		afterCRLF = bytes.HasSuffix(line, []byte("\r\n")) && !bytes.HasSuffix(line, []byte("\r\r\n"))
	}
	return out, false
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody\r\n.\r\n", "a\n.\nb\r\n.\r\n", "a\r\n.\nb\r\n.\r\n", "a\n.\r\nb\r\n.\r\n",
		"a\r\r\n.\r\nb\r\n.\r\n", "..x\r\n.\r\n", ".\r\r\n.\r\n", "x\r\n\x00.\r\n.\r\n", ".\r\n", ".", "a\r\n.\r", "\n..\n.\r\n",
	} {
		f.Add([]byte(s), []byte{0, 2, 5})
	}
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		want, ended := refData(in)
		c := wireConn(in, sizes)
		d := &dataReader{c: c, afterCRLF: true}
		var got []byte
		buf := make([]byte, 7) // small reads find the seams
		var err error
		for {
			var n int
			n, err = d.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		if ended != (err == io.EOF) {
			t.Fatalf("%q: ended %v, reader %v", in, ended, err)
		}
		if ended && !bytes.Equal(got, want) {
			t.Fatalf("%q: read %q, want %q", in, got, want)
		}
		if !ended && !bytes.HasPrefix(want, got) {
			t.Fatalf("%q: read %q, want a prefix of %q", in, got, want)
		}
	})
}

func FuzzBdat(f *testing.F) {
	for _, s := range []string{"5 LAST", "0 LAST", "3", "x", "99999999999999999999 LAST", "5 last", "1 2", ""} {
		f.Add(s, []byte("ab\ncd\r\nef\r"), []byte{1, 3})
	}
	f.Fuzz(func(t *testing.T, arg string, data, sizes []byte) {
		size, _, r := parseBdat(arg)
		if r != nil {
			if size != 0 && size != -1 {
				t.Fatalf("%q: size %d with %v", arg, size, r)
			}
			return
		}
		if size < 0 || size > maxMessageSizeCap {
			t.Fatalf("%q: size %d", arg, size)
		}
		c := wireConn(data, sizes)
		w := &msgWriter{sc: newDataScanner(1<<20, false), sp: &spool{memMax: 1 << 20}, max: 1 << 20}
		err := c.readChunk(size, w)
		if int64(len(data)) < size {
			if err == nil {
				t.Fatalf("chunk of %d cut at %d: no error", size, len(data))
			}
			return
		}
		left := c.w - c.r + len(c.nc.(*chunkConn).in)
		if err != nil || left != len(data)-int(size) {
			t.Fatalf("chunk %d of %d octets: %v, %d left", size, len(data), err, left)
		}
		chunk := data[:size]
		if w.err == nil {
			// Stored: the chunk with every bare LF as CRLF, nothing else.
			want := bytes.ReplaceAll(bytes.ReplaceAll(chunk, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
			if got := w.sp.mem; !bytes.Equal(got, want) && !bytes.Contains(chunk, []byte("\r\r")) {
				t.Fatalf("chunk %q stored as %q", chunk, got)
			}
			if _, err := refScan(w.sp.mem, 1<<30); err != nil && w.finish() == nil {
				t.Fatalf("stored %q: %v", w.sp.mem, err)
			}
		}
	})
}
