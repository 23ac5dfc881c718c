package storetest

import (
	"fmt"
	"io"
)

// genReader produces a deterministic message of an exact size without
// holding it in memory: a short header, then lines of 76 pseudo-random
// base64 characters and CRLF. The byte at any position depends only on the
// seed and the position, so a range can be regenerated independently.
type genReader struct {
	header []byte
	size   int64
	pos    int64
	seed   uint64
	line   [genLineLen]byte
	lineNo int64
}

const genLineLen = 78

const genAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func newGenReader(size int64, seed uint64) *genReader {
	h := fmt.Sprintf("From: Generator <gen@remote.example>\r\nTo: rcpt@example.org\r\n"+
		"Subject: generated message of %d octets\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n"+
		"Message-ID: <gen-%d-%d@remote.example>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n\r\n", size, size, seed)
	if int64(len(h)) > size {
		panic("storetest: generated message smaller than its header")
	}
	return &genReader{header: []byte(h), size: size, seed: seed, lineNo: -1}
}

// splitmix64 is a fast, well-mixed 64-bit hash step.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (g *genReader) fillLine(n int64) {
	x := splitmix64(g.seed ^ uint64(n)*0x2545f4914f6cdd1d)
	for i := 0; i < genLineLen-2; i++ {
		if i%10 == 0 {
			x = splitmix64(x)
		}
		g.line[i] = genAlphabet[x&63]
		x >>= 6
	}
	g.line[genLineLen-2], g.line[genLineLen-1] = '\r', '\n'
	g.lineNo = n
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.pos >= g.size {
		return 0, io.EOF
	}
	n := 0
	hl := int64(len(g.header))
	for n < len(p) && g.pos < g.size {
		var src []byte
		if g.pos < hl {
			src = g.header[g.pos:]
		} else {
			bp := g.pos - hl
			if ln := bp / genLineLen; ln != g.lineNo {
				g.fillLine(ln)
			}
			src = g.line[bp%genLineLen:]
		}
		if rest := g.size - g.pos; int64(len(src)) > rest {
			src = src[:rest]
		}
		c := copy(p[n:], src)
		n += c
		g.pos += int64(c)
	}
	return n, nil
}

// genMessage returns a generated message of exactly size octets.
func genMessage(size int64, seed uint64) []byte {
	b, err := io.ReadAll(newGenReader(size, seed))
	if err != nil {
		panic(err)
	}
	return b
}
