package postgres

import (
	"unicode"
	"unicode/utf8"
)

// The search text of a large (streamed) message goes to content_text in
// pieces, in bounded memory: the parser hands its decoded text to a
// textSpool (msgparse.Parser.SetTextSink) while the chunks are copied in, and
// storeContent pauses the chunk COPY whenever textFlushAt octets have
// gathered to send the complete pieces with a COPY of their own (binary
// format: no escaping). The Go heap holds at most about textFlushAt plus
// the text of one chunk, plus one piece being sent.
//
// Each piece holds textPieceSize octets of new text (before lower-casing;
// the last piece less). To find a string
// that spans two pieces, every piece but the first starts with the last
// textOverlap octets or fewer (cut at a character boundary, so at least
// textOverlap-3) of the previous piece's search text. A search string of up
// to textOverlap-2 = 254 octets (lower-cased UTF-8) is therefore always
// found; a longer one that happens to span a piece boundary is not. The
// overlap never creates a false match: each piece is a contiguous part of
// the message's text.
const (
	// textPieceSize is the most octets of new text in one content_text row.
	textPieceSize = 256 << 10
	// textOverlap is the most octets of the previous piece a piece repeats.
	textOverlap = 256
	// textFlushAt is the unsent text at which the chunk COPY pauses.
	textFlushAt = 512 << 10
)

// textSpool collects a large message's search text and is the
// pgx.CopyFromSource of its content_text rows. The parser's sink appends to
// it from the goroutine in which pgx runs the chunk COPY's source, and the
// text COPY reads it from another such goroutine; the COPYs run one after
// the other and pgx waits for its goroutine before returning, so the spool
// is never used by two goroutines at once.
type textSpool struct {
	contentID int64
	raw       []byte // text not yet sent, unfolded (valid UTF-8 in whole characters)
	pos       int    // octets of raw already rendered
	final     bool   // the parser is done: the last, short piece may go too
	seq       int32  // pieces rendered so far
	tail      []byte // the last octets of the previous piece's search text
	fold      []byte // the current row's text: tail + folded new text
}

// write is the parser's text sink. The parser passes whole UTF-8
// characters, so raw can be cut at any character start.
func (t *textSpool) write(b []byte) { t.raw = append(t.raw, b...) }

// full says whether the chunk COPY should pause for the text.
func (t *textSpool) full() bool { return len(t.raw) >= textFlushAt }

// ready says whether a piece can be sent: a whole one, or after final
// whatever is left.
func (t *textSpool) ready() bool {
	n := len(t.raw) - t.pos
	return n >= textPieceSize || t.final && n > 0
}

// Next renders the next ready piece (pgx.CopyFromSource). pgx encodes a
// row before asking for the next, so fold is reused.
func (t *textSpool) Next() bool {
	if !t.ready() {
		// Keep only the unsent rest, at the front of the buffer.
		t.raw = append(t.raw[:0], t.raw[t.pos:]...)
		t.pos = 0
		return false
	}
	t.render()
	return true
}

// Values returns the current row: content_id, seq, text.
func (t *textSpool) Values() ([]any, error) { return []any{t.contentID, t.seq - 1, t.fold}, nil }

func (t *textSpool) Err() error { return nil }

// render makes the next piece's row.
func (t *textSpool) render() {
	rest := t.raw[t.pos:]
	k := len(rest)
	if k > textPieceSize {
		k = textPieceSize
		for k > textPieceSize-utf8.UTFMax && !utf8.RuneStart(rest[k]) {
			k--
		}
	}
	t.fold = appendFold(append(t.fold[:0], t.tail...), rest[:k])
	t.pos += k
	t.seq++
	j := max(0, len(t.fold)-textOverlap)
	for j < len(t.fold) && !utf8.RuneStart(t.fold[j]) {
		j++
	}
	t.tail = append(t.tail[:0], t.fold[j:]...)
}

// appendFold appends src in its search form (searchFold: lower case, NUL
// as a space; each invalid octet, which the parser never passes, as
// U+FFFD) without intermediate strings.
// strings.ToLower maps unicode.ToLower over the characters, so folding
// piecewise at character boundaries equals folding whole.
func appendFold(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			switch {
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			case c == 0:
				c = ' '
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(src[i:])
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += n
	}
	return dst
}
