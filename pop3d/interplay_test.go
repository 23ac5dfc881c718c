package pop3d_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

// TestIMAPSeesPOP3Deletion: a message delivered as SMTP delivers it is
// downloaded by POP3 byte for byte, deleted with DELE+QUIT, and an IMAP
// node (another store handle) is woken and finds the UID vanished through
// the same mod-sequences and notifications IMAP uses.
func TestIMAPSeesPOP3Deletion(t *testing.T) {
	e := newEnv(t)
	imapNode := pgtest.OpenStore(t, e.url)
	ctx := context.Background()
	msg := testMsg("interplay", "Hello IMAP\r\n.\r\nbye\r\n")
	uid := e.deliver(msg)
	st, err := imapNode.MailboxStatus(ctx, e.acc.ID, e.inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := imapNode.Subscribe(e.acc.ID)
	defer cancel()

	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.ok("RETR 1")
	if got := string(c.body()); got != msg {
		t.Fatalf("RETR: %q", got)
	}
	c.ok("DELE 1")
	c.ok("QUIT")

	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after the POP3 deletion")
	}
	chg, err := imapNode.Changes(ctx, e.acc.ID, e.inbox.ID, st.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(chg.Vanished, uid) || chg.HighestModSeq <= st.HighestModSeq {
		t.Fatalf("Changes after POP3 QUIT: %+v, want UID %d vanished", chg, uid)
	}
}

// TestExpungedDuringSession: IMAP expunges messages while a POP3 session
// has them in its maildrop.
func TestExpungedDuringSession(t *testing.T) {
	e := newEnv(t)
	u1 := e.deliver(testMsg("one", "1\r\n"))
	u2 := e.deliver(testMsg("two", "2\r\n"))
	e.deliver(testMsg("three", "3\r\n"))
	u4 := e.appendRaw("Subject: four\n\nbare LF\n")
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	// Expunged before the first command (UID 4) and after one (UID 2).
	imap := pgtest.OpenStore(t, e.url)
	if _, err := imap.Expunge(context.Background(), e.acc.ID, e.inbox.ID, mailstore.UIDs(u4), false); err != nil {
		t.Fatal(err)
	}
	c.ok("STAT")
	if _, err := imap.Expunge(context.Background(), e.acc.ID, e.inbox.ID, mailstore.UIDs(u2), false); err != nil {
		t.Fatal(err)
	}
	c.run(`
		C: RETR 2
		S: -ERR Message 2 was removed by another client (e.g. IMAP) during this session
		C: TOP 4 0
		S: -ERR Message 4 was removed by another client (e.g. IMAP) during this session
		C: RETR 1
		S: +OK *
	`)
	c.body()
	c.run(`
		C: LIST
		S: +OK 4 messages *
		S: 1 *
		S: 2 *
		S: 3 *
		S: 4 *
		S: .
		C: DELE 2
		S: +OK Message 2 deleted
		C: DELE 1
		S: +OK Message 1 deleted
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (2 messages deleted)
	`)
	ms := e.messages()
	if len(ms) != 1 || ms[0].UID == u1 {
		t.Fatalf("INBOX after QUIT: %+v", ms)
	}
}

// openCounter is a store that counts the messages opened through it.
type openCounter struct {
	mailstore.Store
	opened atomic.Int64
}

func (o *openCounter) OpenMessage(ctx context.Context, accountID, mailboxID int64, uid uint32, offset, length int64) (io.ReadCloser, error) {
	o.opened.Add(1)
	return o.Store.OpenMessage(ctx, accountID, mailboxID, uid, offset, length)
}

// TestWireSizes: LIST and STAT sizes are the octets RETR sends for
// messages with bare LF, bare CR and no final line ending (small and
// streamed), taken from the store's CRLFSize without reading any message;
// also for a message that was hidden from POP3 at an earlier login.
func TestWireSizes(t *testing.T) {
	e := newEnv(t)
	raw := []string{
		"Subject: lf\n\na\n.\nb\n",
		"Subject: cr\r\rx\ry",
		"Subject: mixed\r\n\nq\r\n.",
		"",
		"Subject: large\n\n" + strings.Repeat(".a line of a large message with a bare LF\n", 10000) + "no final newline",
	}
	for _, m := range raw {
		e.appendRaw(m)
	}
	e.deliver(testMsg("smtp", "ok\r\n"))
	hidden := e.appendRaw("Subject: hidden\n\nh\n")
	ctx := context.Background()
	if _, err := e.st.StoreFlags(ctx, e.acc.ID, e.inbox.ID, mailstore.UIDs(hidden), mailstore.FlagsAdd,
		mailstore.Flags{Keywords: []string{pop3d.HiddenKeyword}}, 0); err != nil {
		t.Fatal(err)
	}
	st := &openCounter{Store: e.st}
	n := e.start(st, nil)
	check := func(want int) {
		t.Helper()
		c := dial(t, n.addr)
		c.login()
		before := st.opened.Load()
		list := c.multi("LIST")
		if len(list) != want {
			t.Fatalf("LIST has %d messages, want %d: %q", len(list), want, list)
		}
		stat := c.ok("STAT")
		if d := st.opened.Load() - before; d != 0 {
			t.Errorf("LIST and STAT opened %d messages, want none", d)
		}
		metas := slices.DeleteFunc(e.messages(), func(m mailstore.MessageMeta) bool {
			return slices.Contains(m.Flags.Keywords, pop3d.HiddenKeyword)
		})
		total := 0
		for i, l := range list {
			var num, size int
			if _, err := fmt.Sscanf(l, "%d %d", &num, &size); err != nil || num != i+1 {
				t.Fatalf("LIST line %q", l)
			}
			c.ok(fmt.Sprint("RETR ", num))
			if got := len(c.body()); got != size {
				t.Errorf("message %d: LIST says %d, RETR sent %d", num, size, got)
			}
			if i < len(metas) && metas[i].CRLFSize != int64(size) {
				t.Errorf("message %d: LIST says %d, the store's CRLFSize is %d", num, size, metas[i].CRLFSize)
			}
			total += size
		}
		if stat != fmt.Sprintf("+OK %d %d", len(list), total) {
			t.Errorf("STAT %q, want %d %d", stat, len(list), total)
		}
		c.ok("QUIT")
	}
	check(len(raw) + 1)
	// New mail and a message no longer hidden.
	e.appendRaw("Subject: new\n\nnew\n")
	if _, err := e.st.StoreFlags(ctx, e.acc.ID, e.inbox.ID, mailstore.UIDs(hidden), mailstore.FlagsRemove,
		mailstore.Flags{Keywords: []string{pop3d.HiddenKeyword}}, 0); err != nil {
		t.Fatal(err)
	}
	check(len(raw) + 3)
}
