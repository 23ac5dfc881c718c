package msgparse

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// writeMultipart writes a realistic multipart/mixed message of about size
// octets to w without holding it: a text and an HTML alternative, then
// base64 attachments (every fourth one a forwarded message/rfc822) until
// the size is reached. It returns the octets written.
func writeMultipart(w io.Writer, size int) int64 {
	var n int64
	put := func(s string) {
		k, _ := io.WriteString(w, s)
		n += int64(k)
	}
	put("From: \"Sender Name\" <sender@example.com>\r\nTo: a@example.org, Group: b@example.org;\r\n" +
		"Subject: =?utf-8?q?Big_report_=E2=80=94_Q3?=\r\nDate: Tue, 1 Jul 2003 10:52:37 +0200\r\n" +
		"Message-ID: <big@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_mixed_0001\"\r\n\r\nThis is a MIME message.\r\n" +
		"--=_mixed_0001\r\nContent-Type: multipart/alternative; boundary=\"=_alt_0002\"\r\n\r\n" +
		"--=_alt_0002\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	textLines := min(200, size/200)
	for i := 0; i < textLines; i++ {
		put("Line of the report with caf=C3=A9 and a soft break =\r\nhere.\r\n")
	}
	put("--=_alt_0002\r\nContent-Type: text/html; charset=utf-8\r\n\r\n")
	for i := 0; i < textLines; i++ {
		put("<p>Line of the <b>report</b> with caf&eacute;.</p>\r\n")
	}
	put("--=_alt_0002--\r\n")
	raw := make([]byte, 57)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	line := base64.StdEncoding.EncodeToString(raw) + "\r\n"
	for i := 0; int(n) < size; i++ {
		if i%4 == 3 {
			put(fmt.Sprintf("--=_mixed_0001\r\nContent-Type: message/rfc822\r\n\r\nFrom: fwd%d@example.com\r\n"+
				"Subject: forwarded %d\r\nContent-Type: multipart/mixed; boundary=\"=_fwd_%d\"\r\n\r\n"+
				"--=_fwd_%d\r\nContent-Type: text/plain\r\n\r\nForwarded text.\r\n"+
				"--=_fwd_%d\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i, i, i, i))
		} else {
			put(fmt.Sprintf("--=_mixed_0001\r\nContent-Type: application/pdf; name=\"file%d.pdf\"\r\n"+
				"Content-Disposition: attachment; filename=\"file%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i))
		}
		for j := 0; j < 8000 && int(n) < size; j++ {
			put(line)
		}
		if i%4 == 3 {
			put(fmt.Sprintf("--=_fwd_%d--\r\n", i))
		}
	}
	put("--=_mixed_0001--\r\n")
	return n
}

func genMultipart(size int) string {
	var b strings.Builder
	writeMultipart(&b, size)
	return b.String()
}

// TestMemoryBounded parses a generated 50 MB message and checks that the
// parser neither holds it (live heap growth < 4 MB) nor allocates in
// proportion to it (total allocation < 16 MB for 50 MB of input).
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB parse")
	}
	var before, mid, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := NewParser()
	w := bufio.NewWriterSize(p, 32<<10)
	n := writeMultipart(w, 50<<20)
	w.Flush()
	runtime.GC()
	runtime.ReadMemStats(&mid)
	m, err := p.Finish()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	live := int64(mid.HeapAlloc) - int64(before.HeapAlloc)
	total := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d octets, %d parts: live heap growth %d KB, total allocated %d KB", n, countParts(m.Structure), live>>10, total>>10)
	if live > 4<<20 {
		t.Errorf("live heap grew by %d octets", live)
	}
	if total > 16<<20 {
		t.Errorf("allocated %d octets for a %d octet message", total, n)
	}
	if m.Size != n || countParts(m.Structure) < 50 {
		t.Errorf("size %d (want %d), %d parts", m.Size, n, countParts(m.Structure))
	}
	checkInvariants(t, m)
	runtime.KeepAlive(p)
}

// TestAllocsPerLine shows the per-line cost is allocation-free: parsing
// 10x more attachment octets costs no more allocations.
func TestAllocsPerLine(t *testing.T) {
	small, big := genMultipart(100<<10), genMultipart(1<<20)
	count := func(msg string) float64 {
		return testing.AllocsPerRun(3, func() {
			p := NewParser()
			p.Write([]byte(msg))
			p.Finish()
		})
	}
	a, b := count(small), count(big)
	t.Logf("allocations: %.0f for %d octets, %.0f for %d octets", a, len(small), b, len(big))
	if b > a*3 {
		t.Errorf("allocations grow with size: %.0f -> %.0f", a, b)
	}
}

func BenchmarkParse10KB(b *testing.B) {
	msg := []byte(genMultipart(10 << 10))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewParser()
		p.SizeHint(len(msg))
		p.Write(msg)
		p.Finish()
	}
}

// BenchmarkParsePlain10KB: a plain-text message like most mail (and like
// the store's delivery benchmarks).
func BenchmarkParsePlain10KB(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("Received: from client.example.net by mx.example.org; Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
		"From: Sender <sender@example.net>\r\nTo: rcpt@example.org\r\nSubject: benchmark message\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <1.bench@example.net>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for sb.Len() < 10<<10 {
		sb.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incid\r\n")
	}
	msg := []byte(sb.String())
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		p := NewParser()
		p.SizeHint(len(msg))
		p.Write(msg)
		p.Finish()
	}
}
