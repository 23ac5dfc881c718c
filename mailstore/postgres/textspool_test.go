package postgres

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestTextSpoolPieces feeds text with multi-octet characters through a
// textSpool in uneven sink calls, flushing at arbitrary moments as
// storeContent does, and checks the rows it gives COPY: consecutive sequence
// numbers, pieces of about textPieceSize new octets, each piece starting
// with the last 253 to 256 octets of the previous one, valid UTF-8, and the
// pieces without their overlaps adding up to the folded text.
func TestTextSpoolPieces(t *testing.T) {
	words := []string{"Grüße ", "İstanbul ", "ΣΊΣΥΦΟΣ ", "日本語テキスト ", "A\tB\\C\n", "plain ascii words ", "\x00", "ẞ "}
	var text bytes.Buffer
	for i := 0; text.Len() < 3*textPieceSize+textPieceSize/2; i++ {
		text.WriteString(words[(i*7+i/3)%len(words)])
	}
	whole := text.Bytes()

	sp := &textSpool{contentID: 42}
	var rows []string
	flush := func() {
		if !sp.ready() {
			return
		}
		for sp.Next() {
			v, err := sp.Values()
			if err != nil || len(v) != 3 || v[0] != int64(42) || v[1] != int32(len(rows)) {
				t.Fatalf("row %d: %v, %v", len(rows), v[:min(len(v), 2)], err)
			}
			rows = append(rows, string(v[2].([]byte))) // copied: the spool reuses it
		}
	}
	// Sink calls of varying length, cut at character starts as the parser
	// passes them.
	for rest, i := whole, 0; len(rest) > 0; i++ {
		k := min(len(rest), 1+(i*7919)%40000)
		for k < len(rest) && !utf8.RuneStart(rest[k]) {
			k++
		}
		sp.write(rest[:k])
		rest = rest[k:]
		if sp.full() {
			flush()
		}
	}
	flush()
	sp.final = true
	flush()
	if sp.ready() || len(sp.raw) != 0 {
		t.Fatalf("text left in the spool: %d octets", len(sp.raw))
	}

	var joined, prev []byte
	if len(rows) != int(sp.seq) || len(rows) != 4 {
		t.Fatalf("%d rows, %d pieces counted; want 4", len(rows), sp.seq)
	}
	for i, row := range rows {
		piece := []byte(row)
		if !utf8.Valid(piece) {
			t.Fatalf("piece %d is not valid UTF-8", i)
		}
		overlap := 0
		if i > 0 {
			j := max(0, len(prev)-textOverlap)
			for !utf8.RuneStart(prev[j]) {
				j++
			}
			tail := prev[j:]
			if len(tail) < textOverlap-3 || !bytes.HasPrefix(piece, tail) {
				t.Fatalf("piece %d does not start with the %d-octet tail of piece %d", i, len(tail), i-1)
			}
			overlap = len(tail)
		}
		// Folding may shrink the text (İ to i, ẞ to ß) or grow it.
		if n := len(piece) - overlap; n > textPieceSize+textPieceSize/2 || (i < len(rows)-1 && n < textPieceSize*3/4) {
			t.Fatalf("piece %d has %d new octets", i, n)
		}
		joined = append(joined, piece[overlap:]...)
		prev = piece
	}
	if want := searchFold(string(whole)); string(joined) != want {
		t.Fatalf("pieces join to %d octets, differing from the %d-octet folded text", len(joined), len(want))
	}
}

// TestLowerMatchesToLower checks the ASCII fast path of the search folding
// against strings.ToLower on every byte value in every position of a word.
func TestLowerMatchesToLower(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 19; pos++ {
			b := []byte("abcdefgHIJKLMnopqrstuvwxyz@[`{")[:19]
			b[pos] = byte(c)
			s := string(b)
			if got, want := lower(s), strings.ToLower(s); got != want {
				t.Fatalf("lower(%q) = %q, want %q", s, got, want)
			}
		}
	}
	for _, s := range []string{"", "A", "z", "Hello, World! 123", "ÄÖÜ straße", strings.Repeat("MiXeD", 100)} {
		if got, want := lower(s), strings.ToLower(s); got != want {
			t.Errorf("lower(%q) = %q, want %q", s, got, want)
		}
	}
}
