package postgres_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// genMessage generates a MIME message of about size octets (a short text
// part and a base64 attachment) without holding it in memory.
type genMessage struct {
	size  int64
	pos   int64
	state uint64
	line  []byte
	head  []byte
	tail  []byte
}

func newGenMessage(size int64) *genMessage {
	g := &genMessage{size: size, state: 0x9e3779b97f4a7c15}
	g.head = []byte("From: Big <big@example.net>\r\nTo: a@example.org\r\nSubject: big attachment\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n" +
		"--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n" +
		"--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"big.bin\"\r\n\r\n")
	g.tail = []byte("--BOUNDARY--\r\n")
	return g
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func (g *genMessage) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(g.head) > 0 {
			k := copy(p[n:], g.head)
			g.head = g.head[k:]
			n += k
			g.pos += int64(k)
			continue
		}
		if len(g.line) == 0 {
			if g.pos+78+int64(len(g.tail)) > g.size {
				if len(g.tail) == 0 {
					break
				}
				k := copy(p[n:], g.tail)
				g.tail = g.tail[k:]
				n += k
				g.pos += int64(k)
				continue
			}
			l := make([]byte, 78)
			for i := 0; i < 76; i++ {
				g.state ^= g.state << 13
				g.state ^= g.state >> 7
				g.state ^= g.state << 17
				l[i] = b64[g.state&63]
			}
			l[76], l[77] = '\r', '\n'
			g.line = l
		}
		k := copy(p[n:], g.line)
		g.line = g.line[k:]
		n += k
		g.pos += int64(k)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// heapPeak samples HeapInuse until stopped and reports the largest growth
// over the baseline taken (after a GC) at start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

func TestBigMessageMemoryAndDedupe(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MB message")
	}
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	const size = 50 << 20

	// Warm up the pool's connections and prepared statements so that the
	// measurement sees the message, not one-time setup.
	deliver(t, st, msg("warm", "x"), mailstore.Recipient{AccountID: a.ID})
	_ = readAll(t, st, a.ID, in.ID, 1, 0, -1)

	want := sha256.New()
	stop := heapPeak()
	res, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}},
		Body: io.TeeReader(newGenMessage(size), want)})
	if err != nil {
		stop()
		t.Fatal(err)
	}
	uid := res.Delivered[0].UID
	rc, err := st.OpenMessage(ctx, a.ID, in.ID, uid, 0, -1)
	must(t, err)
	got := sha256.New()
	n, err := io.Copy(got, rc)
	must(t, err)
	rc.Close()
	growth := stop()
	t.Logf("size %d, heap growth while delivering and reading back: %.2f MiB", res.Size, float64(growth)/(1<<20))
	if n != res.Size || fmt.Sprintf("%x", got.Sum(nil)) != fmt.Sprintf("%x", want.Sum(nil)) {
		t.Fatalf("read back %d octets, hash mismatch=%v", n, string(got.Sum(nil)) != string(want.Sum(nil)))
	}
	if growth > 8<<20 {
		t.Errorf("heap grew by %d octets (limit 8 MiB)", growth)
	}

	// Ranges across chunk boundaries.
	buf := make([]byte, 3*postgres.ChunkSize)
	for _, off := range []int64{postgres.ChunkSize - 10, 7 * postgres.ChunkSize, res.Size - 100} {
		full := newGenMessage(size)
		if _, err := io.CopyN(io.Discard, full, off); err != nil {
			t.Fatal(err)
		}
		k := min(int64(len(buf)), res.Size-off)
		exp := make([]byte, k)
		if _, err := io.ReadFull(full, exp); err != nil {
			t.Fatal(err)
		}
		rc, err := st.OpenMessage(ctx, a.ID, in.ID, uid, off, int64(len(buf)))
		must(t, err)
		b, err := io.ReadAll(rc)
		must(t, err)
		if string(b) != string(exp) {
			t.Fatalf("range at %d: %d octets differ", off, len(b))
		}
	}

	// Parse results are stored.
	ds, err := st.FetchDetails(ctx, a.ID, in.ID, mailstore.UIDs(uid))
	must(t, err)
	if p := ds[0].Parsed; p.Envelope.Subject != "big attachment" || len(p.Structure.Parts) != 2 {
		t.Fatalf("parsed %+v", p.Structure)
	}

	// The same content again is stored once.
	_, err = st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID, Mailbox: "Archive"}},
		Body: newGenMessage(size)})
	must(t, err)
	var contents, chunks int
	must(t, st.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM contents WHERE size > 1000000),
		(SELECT count(*) FROM chunks c JOIN contents ct ON ct.id = c.content_id WHERE ct.size > 1000000)`).Scan(&contents, &chunks))
	if wantChunks := int((res.Size + postgres.ChunkSize - 1) / postgres.ChunkSize); contents != 1 || chunks != wantChunks {
		t.Fatalf("%d big contents with %d chunks, want 1 with %d", contents, chunks, wantChunks)
	}
	// Too large.
	small, err := postgres.Open(ctx, st.Pool().Config().ConnString(), postgres.Options{MaxMessageSize: 1 << 20})
	must(t, err)
	defer small.Close()
	if _, err := small.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}},
		Body: newGenMessage(2 << 20)}); err == nil || !errorsIs(err, mailstore.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	checkInvariants(t, st)
}

// TestChunkBoundaries stores messages around the chunk size (single-chunk
// fast path versus streamed path) and reads them back whole and in ranges.
func TestChunkBoundaries(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	const cs = postgres.ChunkSize
	for _, size := range []int64{cs - 1, cs, cs + 1, 2 * cs, 2*cs + 1} {
		full, err := io.ReadAll(newGenMessage(size + 200))
		must(t, err)
		body := full[:size]
		res, err := st.Deliver(ctx, &mailstore.Delivery{Recipients: []mailstore.Recipient{{AccountID: a.ID}}, Body: bytes.NewReader(body)})
		must(t, err)
		uid := res.Delivered[0].UID
		if got := readAll(t, st, a.ID, in.ID, uid, 0, -1); got != string(body) || res.Size != size {
			t.Fatalf("size %d: read back %d octets (result size %d)", size, len(got), res.Size)
		}
		for _, r := range [][2]int64{{cs - 3, 6}, {cs, 1}, {size - 1, 10}, {1, size}} {
			want := body[min(r[0], size):min(r[0]+r[1], size)]
			if got := readAll(t, st, a.ID, in.ID, uid, r[0], r[1]); got != string(want) {
				t.Fatalf("size %d range %v: %d octets differ", size, r, len(got))
			}
		}
	}
	checkInvariants(t, st)
}

// TestLargeTextSearch delivers text messages whose search text goes to
// content_text pieces and searches words far past msgparse.MaxSearchText
// (which used to bound the searchable text) and strings that span a piece
// boundary.
func TestLargeTextSearch(t *testing.T) {
	st, _, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	const piece = postgres.TextPieceSize
	// The decoded text of a CRLF text/plain body is the body with its CRs
	// dropped, so text offsets are those of text below.
	filler := "lorem ipsum dolor sit amet consectetur\n"
	var text []byte
	put := func(at int, s string) {
		for len(text) < at {
			text = append(text, filler[len(text)%len(filler)])
		}
		text = append(text, s...)
	}
	put(piece-6, "Zebra Crossing")               // spans the first piece boundary
	long := "Q" + strings.Repeat("w", 252) + "Z" // 254 octets, the longest always found
	put(2*piece-253, long)                       // ends 1 octet into the third piece
	put(17*piece+1000, "Xylophone")              // past MaxSearchText (4 MiB)
	put(20*piece, "\n")
	body := "From: Big <big@example.net>\r\nSubject: long text\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		strings.ReplaceAll(string(text), "\n", "\r\n")
	res := deliver(t, st, body, mailstore.Recipient{AccountID: a.ID})
	// A small message with none of the words, and another big one without
	// them (its text pieces must not match).
	deliver(t, st, msg("small", "nothing to see"), mailstore.Recipient{AccountID: a.ID})
	deliver(t, st, "Subject: other\r\n\r\n"+strings.Repeat("another big text\r\n", 30000), mailstore.Recipient{AccountID: a.ID})

	var pieces int
	var searchText string
	must(t, st.Pool().QueryRow(ctx, `SELECT text_pieces, search_text FROM contents c JOIN messages m ON m.content_id = c.id
		WHERE m.mailbox_id = $1 AND m.uid = $2`, in.ID, res.Delivered[0].UID).Scan(&pieces, &searchText))
	if pieces != 21 || searchText != "" {
		t.Fatalf("big text stored in %d pieces (want 21) and %d octets of search_text (want 0)", pieces, len(searchText))
	}
	uid := res.Delivered[0].UID
	for _, tc := range []struct {
		name string
		c    mailstore.SearchCriteria
		want []uint32
	}{
		{"word past 4 MiB", mailstore.SearchCriteria{Body: []string{"xylophone"}}, []uint32{uid}},
		{"TEXT past 4 MiB", mailstore.SearchCriteria{Text: []string{"XYLOPHONE"}}, []uint32{uid}},
		{"phrase across a piece boundary", mailstore.SearchCriteria{Body: []string{"zebra crossing"}}, []uint32{uid}},
		{"254 octets across a piece boundary", mailstore.SearchCriteria{Body: []string{strings.ToLower(long)}}, []uint32{uid}},
		{"first piece", mailstore.SearchCriteria{Body: []string{"lorem ipsum"}}, []uint32{uid}},
		{"other big message", mailstore.SearchCriteria{Body: []string{"another big"}}, []uint32{uid + 2}},
		{"small message", mailstore.SearchCriteria{Body: []string{"nothing to see"}}, []uint32{uid + 1}},
		{"TEXT in the header", mailstore.SearchCriteria{Text: []string{"long text"}}, []uint32{uid}},
		{"absent phrase", mailstore.SearchCriteria{Body: []string{"zebra  crossing"}}, nil},
		{"NOT", mailstore.SearchCriteria{Not: []mailstore.SearchCriteria{{Body: []string{"xylophone"}}}}, []uint32{uid + 1, uid + 2}},
	} {
		got, err := st.Search(ctx, a.ID, in.ID, &tc.c)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Search %s = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}

	// The same content again is deduplicated with its pieces; expunging
	// every copy removes them.
	again := deliver(t, st, body, mailstore.Recipient{AccountID: a.ID, Mailbox: "Archive"})
	checkInvariants(t, st)
	arch, err := st.GetMailbox(ctx, a.ID, "Archive")
	must(t, err)
	if got, err := st.Search(ctx, a.ID, arch.ID, &mailstore.SearchCriteria{Body: []string{"xylophone"}}); err != nil ||
		!slices.Equal(got, []uint32{again.Delivered[0].UID}) {
		t.Errorf("Search in Archive = %v, %v", got, err)
	}
	_, err = st.Expunge(ctx, a.ID, in.ID, nil, false)
	must(t, err)
	_, err = st.Expunge(ctx, a.ID, arch.ID, nil, false)
	must(t, err)
	must(t, st.DrainReleases(ctx)) // released after the expunges (releases.go)
	var left int
	must(t, st.Pool().QueryRow(ctx, `SELECT count(*) FROM content_text`).Scan(&left))
	if left != 0 {
		t.Errorf("%d text pieces left after expunging every message", left)
	}
	checkInvariants(t, st)
}
