package imapd

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// countingStore counts the calls that reach the database.
type countingStore struct {
	mailstore.Store
	mu    sync.Mutex
	calls map[string]int
}

func (s *countingStore) note(name string) {
	s.mu.Lock()
	s.calls[name]++
	s.mu.Unlock()
}

// take returns the calls since the last take.
func (s *countingStore) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = map[string]int{}
	return c
}

func (s *countingStore) Changes(ctx context.Context, a, m int64, since uint64) (mailstore.Changes, error) {
	s.note("Changes")
	return s.Store.Changes(ctx, a, m, since)
}
func (s *countingStore) ListMessages(ctx context.Context, a, m int64, u mailstore.UIDSet) ([]mailstore.MessageMeta, error) {
	s.note("ListMessages")
	return s.Store.ListMessages(ctx, a, m, u)
}
func (s *countingStore) OpenMessage(ctx context.Context, a, m int64, uid uint32, off, n int64) (io.ReadCloser, error) {
	s.note("OpenMessage")
	return s.Store.OpenMessage(ctx, a, m, uid, off, n)
}
func (s *countingStore) MessageContents(ctx context.Context, a, m int64, refs []mailstore.ContentRef) ([]mailstore.MessageContent, error) {
	s.note("MessageContents")
	return s.Store.MessageContents(ctx, a, m, refs)
}
func (s *countingStore) StoreFlags(ctx context.Context, a, m int64, u mailstore.UIDSet, op mailstore.FlagOp, f mailstore.Flags, us uint64) (mailstore.StoreResult, error) {
	s.note("StoreFlags")
	return s.Store.StoreFlags(ctx, a, m, u, op, f, us)
}
func (s *countingStore) Expunge(ctx context.Context, a, m int64, u mailstore.UIDSet, d bool) (mailstore.ExpungeResult, error) {
	s.note("Expunge")
	return s.Store.Expunge(ctx, a, m, u, d)
}
func (s *countingStore) Copy(ctx context.Context, a, src int64, u mailstore.UIDSet, dst int64) (mailstore.CopyResult, error) {
	s.note("Copy")
	return s.Store.Copy(ctx, a, src, u, dst)
}
func (s *countingStore) Append(ctx context.Context, a, m int64, f mailstore.Flags, d time.Time, body io.Reader) (mailstore.AppendResult, error) {
	s.note("Append")
	return s.Store.Append(ctx, a, m, f, d, body)
}
func (s *countingStore) MultiAppend(ctx context.Context, a, m int64, next func() (mailstore.AppendMessage, bool, error)) ([]mailstore.AppendResult, error) {
	s.note("Append")
	return s.Store.MultiAppend(ctx, a, m, next)
}
func (s *countingStore) SelectMailbox(ctx context.Context, a int64, name string, claim bool) (mailstore.Selection, error) {
	s.note("SelectMailbox")
	return s.Store.SelectMailbox(ctx, a, name, claim)
}
func (s *countingStore) ClaimRecent(ctx context.Context, a, m int64) ([]uint32, error) {
	s.note("ClaimRecent")
	return s.Store.ClaimRecent(ctx, a, m)
}
func (s *countingStore) GetMailbox(ctx context.Context, a int64, name string) (mailstore.Mailbox, error) {
	s.note("GetMailbox")
	return s.Store.GetMailbox(ctx, a, name)
}
func (s *countingStore) Quota(ctx context.Context, a int64) (mailstore.Quota, error) {
	s.note("Quota")
	return s.Store.Quota(ctx, a)
}
func (s *countingStore) MailboxStatusByName(ctx context.Context, a int64, name string) (mailstore.MailboxStatus, error) {
	s.note("MailboxStatusByName")
	return s.Store.MailboxStatusByName(ctx, a, name)
}

// What a selected session asks the database for: nothing for what its
// view holds, one batched read for contents it has not read before (none
// once the node holds them), one call for an own write and none to catch
// up after it.
func TestViewAnswersFromMemory(t *testing.T) {
	e := newEnv(t)
	// Delivered (as by SMTP), not appended: an APPEND through this node
	// would leave its content in the cache already.
	smtp := func(body string) {
		t.Helper()
		if _, err := e.store.Deliver(context.Background(), &mailstore.Delivery{
			Recipients: []mailstore.Recipient{{AccountID: e.accts["alice"].ID}}, Body: strings.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 4; i++ {
		smtp(testMessage(fmt.Sprint("m", i), "small\r\n"))
	}
	large := testMessage("large", strings.Repeat("0123456789abcdef\r\n", 5000)) // 90 KB: streamed
	smtp(large)
	cs := &countingStore{Store: e.store, calls: map[string]int{}}
	_, addr := e.startServer(cs)
	pg := e.store.(*postgres.Store)
	a := dialAddr(t, addr)
	a.login("alice")
	want := func(what string, calls map[string]int) {
		t.Helper()
		if got := cs.take(); !maps.Equal(got, calls) {
			t.Errorf("%s: store calls %v, want %v", what, got, calls)
		}
	}
	cs.take()
	a.cmd("S", "SELECT INBOX")
	want("SELECT", map[string]int{"SelectMailbox": 1})
	if r := a.cmd("F", "FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)"); len(r) != 6 {
		t.Fatalf("FETCH: %q", r)
	}
	want("FETCH of metadata", map[string]int{})

	hits0, misses0, _, _ := pg.ContentCacheStats()
	items := "FETCH 1:* (ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)] RFC822.HEADER)"
	first := a.cmd("F", items)
	want("FETCH of contents, first", map[string]int{"MessageContents": 1})
	hits1, misses1, _, _ := pg.ContentCacheStats()
	if misses1-misses0 != 5 || hits1 != hits0 {
		t.Errorf("first FETCH: %d misses %d hits, want 5 and 0", misses1-misses0, hits1-hits0)
	}
	again := a.cmd("F", items)
	want("FETCH of contents, again", map[string]int{"MessageContents": 1})
	hits2, misses2, _, _ := pg.ContentCacheStats()
	if misses2 != misses1 || hits2-hits1 != 5 {
		t.Errorf("second FETCH: %d misses %d hits, want 0 and 5", misses2-misses1, hits2-hits1)
	}
	if strings.Join(first, "\n") != strings.Join(again, "\n") || !strings.Contains(first[4], `"large"`) {
		t.Errorf("the cached answer differs:\n%q\n%q", first, again)
	}
	a.cmd("F", "FETCH 1:4 (BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1] BINARY.PEEK[1])")
	want("bodies of small messages", map[string]int{"MessageContents": 1})
	r := a.cmd("F", "FETCH 5 (BODY.PEEK[TEXT]<0.100> BODY.PEEK[HEADER])")
	want("a large message's body", map[string]int{"MessageContents": 1, "OpenMessage": 1})
	if !strings.Contains(r[0], "0123456789abcdef") {
		t.Errorf("large body: %q", r[0])
	}

	a.run([]step{{`STORE 1 +FLAGS (\Seen)`, []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Seen))`, "$T OK STORE completed"}}})
	want("STORE", map[string]int{"StoreFlags": 1})
	a.run([]step{{"FETCH 1 (BODY[TEXT])", []string{"* 1 FETCH (BODY[TEXT] {7}\r\nsmall\r\n)", "$T OK FETCH completed"}}})
	want("FETCH BODY[TEXT] of a seen message", map[string]int{"MessageContents": 1})
	a.run([]step{{"FETCH 2 (BODY[TEXT])", []string{"* 2 FETCH (BODY[TEXT] {7}\r\nsmall\r\n FLAGS (\\Recent \\Seen))", "$T OK FETCH completed"}}})
	want("FETCH BODY[TEXT] that sets \\Seen", map[string]int{"MessageContents": 1, "StoreFlags": 1})
	a.run([]step{
		{`STORE 2 +FLAGS.SILENT (\Deleted)`, []string{"$T OK STORE completed"}},
		{"EXPUNGE", []string{"* 2 EXPUNGE", "* 4 RECENT", "$T OK EXPUNGE completed"}},
	})
	want("STORE and EXPUNGE", map[string]int{"StoreFlags": 1, "Expunge": 1})
	msg := testMessage("appended", "z\r\n")
	a.send(fmt.Sprintf("A APPEND INBOX (\\Flagged $Work) {%d+}\r\n%s", len(msg), msg))
	check(t, "APPEND", a.until("A"), []string{"* 5 EXISTS", "* 5 RECENT", `re:\* FLAGS \(.* \$Work\)`, `re:\* OK \[PERMANENTFLAGS .*`,
		`re:A OK \[APPENDUID \d+ 6\] APPEND completed`})
	want("APPEND", map[string]int{"GetMailbox": 1, "Append": 1, "ClaimRecent": 1})
	// With a synchronizing literal, the quota is checked before the
	// message is asked for.
	a.send(fmt.Sprintf("A APPEND Trash {%d}", len(msg)))
	check(t, "APPEND continuation", []string{a.line()}, []string{"+ Ready for literal data"})
	a.send(msg)
	check(t, "APPEND to another mailbox", a.until("A"), []string{`re:A OK \[APPENDUID \d+ \d+\] APPEND completed`})
	want("APPEND to another mailbox", map[string]int{"GetMailbox": 1, "Quota": 1, "Append": 1})
	a.run([]step{{"COPY 1 INBOX", []string{"* 6 EXISTS", "* 6 RECENT", `re:$T OK \[COPYUID \d+ 1 7\] COPY completed`}}})
	want("COPY into the selected mailbox", map[string]int{"GetMailbox": 1, "Copy": 1, "ClaimRecent": 1})
	a.run([]step{{"FETCH 5:6 (UID FLAGS RFC822.SIZE)", []string{
		fmt.Sprintf(`* 5 FETCH (UID 6 FLAGS (\Recent \Flagged $Work) RFC822.SIZE %d)`, len(msg)),
		fmt.Sprintf(`* 6 FETCH (UID 7 FLAGS (\Recent \Seen) RFC822.SIZE %d)`, len(testMessage("m1", "small\r\n"))),
		"$T OK FETCH completed"}}})
	want("FETCH of own additions", map[string]int{})
	a.run([]step{{"NOOP", []string{"$T OK NOOP completed"}}})
	want("NOOP", map[string]int{"Changes": 1})

	// Another session's change (same node: known at once) is read once.
	b := e.dial()
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	b.cmd("B", `STORE 3 +FLAGS.SILENT (\Answered)`)
	cs.take()
	a.run([]step{
		{"FETCH 3 (FLAGS)", []string{`* 3 FETCH (UID 4 FLAGS (\Recent \Answered))`, `* 3 FETCH (FLAGS (\Recent \Answered))`, "$T OK FETCH completed"}},
		{"FETCH 3 (FLAGS)", []string{`* 3 FETCH (FLAGS (\Recent \Answered))`, "$T OK FETCH completed"}},
	})
	want("another session's change", map[string]int{"Changes": 1})
	// Another mailbox's change wakes the session but costs nothing.
	e.deliver("alice", "Trash", testMessage("t", "t\r\n"))
	a.run([]step{{"FETCH 3 (UID)", []string{"* 3 FETCH (UID 4)", "$T OK FETCH completed"}}})
	want("another mailbox's change", map[string]int{})
	// MODSEQ too (CONDSTORE, enabled by asking for it).
	r = a.cmd("F", "FETCH 1:* (MODSEQ)")
	if len(r) != 8 || !strings.HasPrefix(r[0], "* OK [HIGHESTMODSEQ ") || !strings.HasPrefix(r[1], "* 1 FETCH (MODSEQ (") {
		t.Errorf("FETCH MODSEQ: %q", r)
	}
	want("FETCH MODSEQ", map[string]int{})
}
