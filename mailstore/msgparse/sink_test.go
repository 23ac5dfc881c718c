package msgparse

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCRLFSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"a\r\n", 3},
		{"a\r\nb", 6},    // CRLF added after the last line
		{"a\nb\n", 6},    // two bare LFs
		{"a\rb\r", 6},    // two bare CRs, the last at the end
		{"a\r\r\n", 5},   // bare CR then CRLF
		{"a\n\r\n\n", 7}, // LF, CRLF, LF
		{"Subject: x\r\n\r\nbody", 20},
	}
	for _, tc := range cases {
		for _, chunk := range []int{1, 2, 3, 1 << 20} {
			p := NewParser()
			for b := []byte(tc.in); len(b) > 0; {
				n := min(chunk, len(b))
				p.Write(b[:n])
				b = b[n:]
			}
			m, _ := p.Finish()
			if m.CRLFSize != tc.want {
				t.Errorf("%q (chunks of %d): CRLFSize %d, want %d", tc.in, chunk, m.CRLFSize, tc.want)
			}
			if ref := int64(len(normalizeCRLF(tc.in))); ref != tc.want {
				t.Errorf("%q: reference gives %d, table says %d", tc.in, ref, tc.want)
			}
		}
	}
}

// normalizeCRLF is the simple reference for CRLFSize.
func normalizeCRLF(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			b.WriteString("\r\n")
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		case '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 && !strings.HasSuffix(b.String(), "\r\n") {
		b.WriteString("\r\n")
	}
	return b.String()
}

func TestTextSinkMatchesText(t *testing.T) {
	msg := "From: a@example.org\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHall=C3=B6 Welt\r\nzwei\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>HTML</b></p>\r\n--b--\r\n"
	plain, err := Parse(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var sunk bytes.Buffer
	p := NewParser()
	p.SetTextSink(func(b []byte) { sunk.Write(b) })
	p.Write([]byte(msg))
	m, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "" {
		t.Errorf("Text kept with a sink: %q", m.Text)
	}
	if sunk.String() != plain.Text || !strings.Contains(plain.Text, "Hallö Welt") || !strings.Contains(plain.Text, "HTML") {
		t.Fatalf("sink got %q, Text is %q", sunk.String(), plain.Text)
	}
}

func TestTextSinkBoundedMemory(t *testing.T) {
	// Text far over MaxSearchText reaches the sink whole; the parser keeps none of it.
	line := strings.Repeat("lorem ipsum ", 8) + "\r\n"
	var total int64
	p := NewParser()
	p.SetTextSink(func(b []byte) { total += int64(len(b)) })
	p.Write([]byte("Content-Type: text/plain\r\n\r\n"))
	want := int64(0)
	for want < 3*MaxSearchText {
		p.Write([]byte(line))
		want += int64(len(line) - 1) // CRs are dropped
	}
	m, _ := p.Finish()
	if total < want-2 || m.Text != "" || cap(p.text) != 0 {
		t.Fatalf("sink got %d of %d octets; Text %d; buffer cap %d", total, want, len(m.Text), cap(p.text))
	}
}

// TestCRLFSizeRandom compares CRLFSize with the reference on random runs
// of CR, LF and text, written in random chunks.
func TestCRLFSizeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	alphabet := []byte("\r\n\r\nab")
	for i := 0; i < 5000; i++ {
		in := make([]byte, rng.IntN(40))
		for j := range in {
			in[j] = alphabet[rng.IntN(len(alphabet))]
		}
		p := NewParser()
		for b := in; len(b) > 0; {
			n := min(1+rng.IntN(5), len(b))
			p.Write(b[:n])
			b = b[n:]
		}
		m, _ := p.Finish()
		if want := int64(len(normalizeCRLF(string(in)))); m.CRLFSize != want {
			t.Fatalf("%q: CRLFSize %d, reference %d", in, m.CRLFSize, want)
		}
	}
}
