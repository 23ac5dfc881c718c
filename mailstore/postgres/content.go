package postgres

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// readChunk fills buf from r and reports whether the message ended. A
// message ends only where r returns io.EOF itself, as the io.Reader contract
// says it must; any other error, io.ErrUnexpectedEOF included (which a
// frontend returns when its client closed the connection before the octets
// it announced, and which io.ReadFull would have taken for a short final
// read), fails the whole delivery with mailstore.ErrTruncated: a message cut
// short is never stored (DESIGN.md, "Rules of the house").
func readChunk(r io.Reader, buf []byte) (n int, eof bool, err error) {
	empty := 0
	for n < len(buf) {
		k, rerr := r.Read(buf[n:])
		n += k
		switch {
		case rerr == io.EOF:
			return n, true, nil
		case rerr != nil:
			return n, false, fmt.Errorf("%w: read message: %w", mailstore.ErrTruncated, rerr)
		case k == 0:
			if empty++; empty >= 100 {
				return n, false, fmt.Errorf("%w: read message: %w", mailstore.ErrTruncated, io.ErrNoProgress)
			}
		default:
			empty = 0
		}
	}
	return n, false, nil
}

// chunkPool recycles the ChunkSize buffers messages are read into.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// content is what pr_deliver stores about a message content besides its
// octets. A queue-only content (see queueOnly) has a nil sha and parsed.
type content struct {
	sha           []byte
	size          int64
	headerSize    int64
	sentDay       any // nil or time.Time (date of the Date: header in its own zone)
	parsed        []byte
	searchHeaders string
	searchText    string            // small messages; large ones spool theirs (textSpool)
	crlfSize      int64             // msgparse.Message.CRLFSize
	msg           *msgparse.Message // the parse result as stored (parsed), for the content cache
}

// ingest feeds message octets to the hash and the parser while counting
// them against the size limit. A queue-only ingest (newIngest(limit,
// false)) only counts: see queueOnly.
type ingest struct {
	h     hash.Hash
	p     *msgparse.Parser
	size  int64
	limit int64
}

func newIngest(limit int64, parse bool) *ingest {
	if !parse {
		return &ingest{limit: limit}
	}
	return &ingest{h: sha256.New(), p: msgparse.NewParser(), limit: limit}
}

func (in *ingest) write(b []byte) error {
	in.size += int64(len(b))
	if in.size > in.limit {
		return fmt.Errorf("%w: message larger than %d octets", mailstore.ErrTooLarge, in.limit)
	}
	if in.p == nil {
		return nil
	}
	in.h.Write(b)
	if _, err := in.p.Write(b); err != nil {
		return fmt.Errorf("parse message: %w", err)
	}
	return nil
}

// finish completes parsing and prepares the stored forms: the parse result
// as JSON (without SearchHeaders/Text) and the lower-cased search texts.
// For a large message the parser hands its body text to a textSpool (see
// storeContent), so Message.Text is empty and searchText stays "". A
// queue-only content has its size and nothing else: no SHA-256 (so that
// no delivery to a mailbox ever shares it), no parse result, no search
// text.
func (in *ingest) finish() (*content, error) {
	if in.p == nil {
		return &content{size: in.size}, nil
	}
	msg, err := in.p.Finish()
	in.p = nil // let the parser's buffers go
	if err != nil {
		// The parser is lenient; an error here means it could not even
		// produce a best-effort result. Store the message unparsed rather
		// than refuse mail.
		if msg == nil {
			msg = &msgparse.Message{CRLFSize: in.size}
		}
	}
	msg.Size = in.size
	parsed, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode parsed message: %w", err)
	}
	c := &content{
		sha:           in.h.Sum(nil),
		size:          in.size,
		headerSize:    msg.HeaderSize,
		parsed:        parsed,
		searchHeaders: searchHeaders(msg.SearchHeaders) + addressSearchLines(msg),
		searchText:    searchFold(msg.Text),
		crlfSize:      msg.CRLFSize,
	}
	msg.Text, msg.SearchHeaders = "", nil
	c.msg = msg
	if !msg.Date.IsZero() {
		y, m, d := msg.Date.Date()
		c.sentDay = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	}
	return c, nil
}

// searchFold prepares text for case-insensitive substring search: lower
// case (Unicode, done here so that the database's locale does not matter),
// valid UTF-8 and no NUL (which PostgreSQL text cannot hold).
func searchFold(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", " ")
	}
	return lower(s)
}

// lower is strings.ToLower with a faster path for ASCII text (most mail):
// one scan, eight octets at a time, finds whether there is anything to do,
// and the result shares the one copy it makes.
func lower(s string) string {
	const hi, a, z = 0x8080808080808080, 0x4141414141414141, 0x5a5a5a5a5a5a5a5a
	i := 0
	upper := false
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&hi != 0 {
			return strings.ToLower(s)
		}
		// A byte in 'A'..'Z': (b + 0x80 - 'A') has its top bit set and
		// (b + 0x80 - 'Z' - 1) does not (no byte here exceeds 0x7f).
		if ((w+hi-a)&^(w+hi-z-0x0101010101010101))&hi != 0 {
			upper = true
		}
	}
	for ; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(s)
		}
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if !upper {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// searchHeaders renders header fields as "name: value\n" lines, folded for
// search; values hold no line breaks, so a regular expression can anchor a
// criterion to one field.
func searchHeaders(fs []msgparse.HeaderField) string {
	var b strings.Builder
	for _, f := range fs {
		v := strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, f.Value)
		b.WriteString(searchFold(f.Name))
		b.WriteString(": ")
		b.WriteString(searchFold(v))
		b.WriteByte('\n')
	}
	return b.String()
}

// addressSearchLines renders the From, To, Cc and Bcc addresses of the
// envelope as extra "name: Display Name <mailbox@host>, ..." lines, folded
// for search, so that FROM/TO/CC/BCC (and HEADER with those names) also
// match the normalised address: RFC 5322 allows comments and folding
// whitespace inside an address ("<user (c)@ (c) example.org>"), which a
// substring of the raw field would miss. A line equal to the field's own
// is left out.
func addressSearchLines(msg *msgparse.Message) string {
	var b strings.Builder
	fields := []struct {
		name  string
		addrs []msgparse.Address
	}{{"from", msg.Envelope.From}, {"to", msg.Envelope.To}, {"cc", msg.Envelope.Cc}, {"bcc", msg.Envelope.Bcc}}
	var line strings.Builder
	for _, f := range fields {
		line.Reset()
		for _, a := range f.addrs {
			if a.Group || a.Mailbox == "" {
				continue // group markers: the group's name is in the field itself
			}
			if line.Len() > 0 {
				line.WriteString(", ")
			}
			if a.Name != "" {
				line.WriteString(msgparse.DecodeHeader(a.Name))
				line.WriteString(" <")
			}
			line.WriteString(a.Mailbox)
			if a.Host != "" {
				line.WriteByte('@')
				line.WriteString(a.Host)
			}
			if a.Name != "" {
				line.WriteByte('>')
			}
		}
		if line.Len() == 0 {
			continue
		}
		v := searchFold(strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, line.String()))
		if own := firstField(msg.SearchHeaders, f.name); own != nil && searchFold(own.Value) == v {
			continue
		}
		b.WriteString(f.name)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	return b.String()
}

// firstField returns the first header field named name (lower case).
func firstField(fs []msgparse.HeaderField, name string) *msgparse.HeaderField {
	for i := range fs {
		if fs[i].Name == name {
			return &fs[i]
		}
	}
	return nil
}

// chunkSource streams the rest of a large message into COPY chunks rows,
// ChunkSize octets each, feeding the ingest as it goes. It reuses one
// buffer: pgx encodes each row before asking for the next.
//
// Parsing the chunks fills the text spool; when it holds textFlushAt
// octets the source ends the COPY early (paused), the caller sends the
// text pieces with a COPY of their own and then resumes with the same
// source: one connection cannot run two COPYs at once, and the text must
// not pile up in memory.
type chunkSource struct {
	contentID int64
	in        *ingest
	r         io.Reader
	buf       []byte
	first     []byte // the already-read first chunk
	seq       int32
	cur       []byte
	err       error
	done      bool
	text      *textSpool
	paused    bool // stopped for the text spool; not done
}

func (cs *chunkSource) Next() bool {
	if cs.done || cs.err != nil {
		return false
	}
	if cs.text != nil && cs.text.full() {
		cs.paused = true
		return false
	}
	if cs.first != nil {
		cs.cur, cs.first = cs.first, nil
		return true
	}
	n, eof, err := readChunk(cs.r, cs.buf)
	if err != nil {
		cs.err = err
		return false
	}
	if n > 0 {
		if werr := cs.in.write(cs.buf[:n]); werr != nil {
			cs.err = werr
			return false
		}
	}
	if eof {
		cs.done = true
		if n == 0 {
			return false
		}
	}
	cs.seq++
	cs.cur = cs.buf[:n]
	return true
}

func (cs *chunkSource) Values() ([]any, error) {
	return []any{cs.contentID, cs.seq, cs.cur}, nil
}

func (cs *chunkSource) Err() error { return cs.err }

// stageRow returns the COPY text-format row (content_id, search_headers,
// text_pieces) for content_stage.
func stageRow(contentID int64, c *content, pieces int32) io.Reader {
	return io.MultiReader(strings.NewReader(strconv.FormatInt(contentID, 10)+"\t"),
		strings.NewReader(copyEscape(c.searchHeaders)),
		strings.NewReader("\t"+strconv.FormatInt(int64(pieces), 10)+"\n"))
}

// copyEscape escapes s for a COPY text-format field.
func copyEscape(s string) string {
	if !strings.ContainsAny(s, "\\\n\r\t") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
