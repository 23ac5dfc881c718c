package postgres_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// An APPEND through a node leaves its content in that node's cache, exactly
// as a read from the database would give it (parse result and octets; the
// header only for a message over 64 KB): the first FETCH is a hit, and
// another node, whose cache is cold, reads the same.
func TestAppendWarmsContentCache(t *testing.T) {
	st, url, a := fixture(t)
	ctx := ctxT(t)
	in := inbox(t, st, a.ID)
	other := pgtest.OpenStore(t, url)
	multipart := "From: =?utf-8?q?Ren=C3=A9?= <rene@example.net>\r\nTo: a@example.org, b@example.org\r\n" +
		"Subject: parts\r\nDate: Tue, 3 Feb 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=xx\r\n\r\n--xx\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n" +
		"--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--xx--\r\n"
	for _, tc := range []struct{ name, body string }{
		{"small", msg("warm", "body text")},
		{"multipart", multipart},
		{"over 64 KB", msg("big", strings.Repeat("0123456789abcdef\r\n", 5000))},
	} {
		res, err := st.Append(ctx, a.ID, in.ID, mailstore.Flags{}, time.Now(), strings.NewReader(tc.body))
		must(t, err)
		hits0, misses0, _, _ := st.ContentCacheStats()
		ref := []mailstore.ContentRef{{UID: res.UID, ContentID: res.ContentID}}
		warm, err := st.MessageContents(ctx, a.ID, in.ID, ref)
		must(t, err)
		if hits, misses, _, _ := st.ContentCacheStats(); hits != hits0+1 || misses != misses0 {
			t.Errorf("%s: the first read after APPEND: %d hits, %d misses; want one hit", tc.name, hits-hits0, misses-misses0)
		}
		cold, err := other.MessageContents(ctx, a.ID, in.ID, ref)
		must(t, err)
		w, c := warm[0], cold[0]
		if w.ContentID != c.ContentID || w.Size != c.Size || !bytes.Equal(w.Data, c.Data) {
			t.Errorf("%s: warm content id %d size %d data %d octets; from the database %d, %d, %d",
				tc.name, w.ContentID, w.Size, len(w.Data), c.ContentID, c.Size, len(c.Data))
		}
		wj, err1 := json.Marshal(w.Parsed)
		cj, err2 := json.Marshal(c.Parsed)
		if w.Parsed == nil || c.Parsed == nil || err1 != nil || err2 != nil || !bytes.Equal(wj, cj) ||
			!w.Parsed.Date.Equal(c.Parsed.Date) {
			t.Errorf("%s: parse result differs:\nwarm %s\ndb   %s", tc.name, wj, cj)
		}
	}
}
