package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/postgres"
)

// watch follows one mailbox on one node the way a session does: it knows
// the mailbox as of now, and wait returns once that node has been told the
// mailbox changed since (a notification from another node arrives when it
// arrives; the tests wait for it instead of sleeping).
type watch struct {
	t      *testing.T
	st     mailstore.Store
	acct   int64
	mbox   int64
	mark   mailstore.ChangeMark
	modseq uint64
	ch     <-chan struct{}
}

func watchMailbox(t *testing.T, st mailstore.Store, acct, mbox int64) *watch {
	t.Helper()
	ch, cancel := st.Subscribe(acct)
	t.Cleanup(cancel)
	w := &watch{t: t, st: st, acct: acct, mbox: mbox, ch: ch}
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mark = st.ChangeMark()
		ms, err := st.MailboxStatus(context.Background(), acct, mbox)
		if err != nil {
			t.Fatal(err)
		}
		w.modseq = ms.HighestModSeq
		if !st.MayHaveChanged(acct, mbox, w.modseq, w.mark) {
			return w // the node's listener is connected
		}
		if time.Now().After(deadline) {
			t.Fatal("the node's listener did not connect")
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *watch) wait(what string) {
	w.t.Helper()
	deadline := time.After(10 * time.Second)
	for !w.st.MayHaveChanged(w.acct, w.mbox, w.modseq, w.mark) {
		select {
		case <-w.ch:
		case <-deadline:
			w.t.Fatalf("%s: the node was not told within 10 s", what)
		}
	}
}

// storeFlagsUnnotified changes flags the way another node does, through
// the store's own SQL function, but without the notification that node
// would send after its commit (as if it crashed in between, or the
// notification were still on its way): only the mod-sequences tell.
func (e *testEnv) storeFlagsUnnotified(user, mailbox string, uid uint32, flags mailstore.SystemFlag) {
	e.t.Helper()
	mb := e.mailbox(user, mailbox)
	_, err := e.store.(*postgres.Store).Pool().Exec(context.Background(), `SELECT * FROM pr_store_flags(p_account => $1,
		p_mailbox => $2, p_starts => ARRAY[$3::bigint], p_stops => ARRAY[$3::bigint], p_op => 1, p_flags => $4::smallint,
		p_keywords => '{}', p_unchanged => 0)`, e.accts[user].ID, mb.ID, int64(uid), int16(flags))
	if err != nil {
		e.t.Fatal(err)
	}
}

// A flag change and an expunge made through node B reach a session on
// node A at its next command once node A has been notified: FETCH (served
// from the view) after catching up, NOOP with the expunge.
func TestCrossNodeChangesSeen(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	inbox := e.mailbox("alice", "INBOX")
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	b := dialAddr(t, addrB)
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	a.run([]step{{"FETCH 1:3 (FLAGS)", []string{`* 1 FETCH (FLAGS (\Recent))`, `* 2 FETCH (FLAGS (\Recent))`,
		`* 3 FETCH (FLAGS (\Recent))`, "$T OK FETCH completed"}}})

	w := watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.run([]step{{`STORE 2 +FLAGS.SILENT (\Flagged)`, []string{"$T OK STORE completed"}}})
	w.wait("flag change on node B")
	a.run([]step{{"FETCH 2 (FLAGS)", []string{`* 2 FETCH (UID 2 FLAGS (\Recent \Flagged))`,
		`* 2 FETCH (FLAGS (\Recent \Flagged))`, "$T OK FETCH completed"}}})

	w = watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.run([]step{
		{`STORE 3 +FLAGS.SILENT (\Deleted)`, []string{"$T OK STORE completed"}},
		{"EXPUNGE", []string{"* 3 EXPUNGE", "$T OK EXPUNGE completed"}},
	})
	w.wait("expunge on node B")
	a.run([]step{
		// No EXPUNGE during FETCH (RFC 9051 §7.5.1); the message is left out.
		{"FETCH 1:3 (UID FLAGS)", []string{`* 1 FETCH (UID 1 FLAGS (\Recent))`, `* 2 FETCH (UID 2 FLAGS (\Recent \Flagged))`,
			"$T OK FETCH completed"}},
		{"NOOP", []string{"* 3 EXPUNGE", "* 2 RECENT", "$T OK NOOP completed"}},
		{"FETCH 1:* (UID)", []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "$T OK FETCH completed"}},
	})

	// And the other way: a change made on node A reaches node B.
	wb := watchMailbox(t, stB, e.accts["alice"].ID, inbox.ID)
	a.run([]step{{`STORE 1 +FLAGS.SILENT (\Answered)`, []string{"$T OK STORE completed"}}})
	wb.wait("flag change on node A")
	b.run([]step{{"FETCH 1 (FLAGS)", []string{`* 1 FETCH (UID 1 FLAGS (\Answered))`, `* 1 FETCH (FLAGS (\Answered))`,
		"$T OK FETCH completed"}}})
}

// Own writes interleaved with another writer's change that no
// notification announced (the gap): the own write's mod-sequence shows
// it, and the session catches up instead of taking its view as current.
func TestOwnWriteGap(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 4; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	e.claimRecent("alice", "INBOX")
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")

	e.storeFlagsUnnotified("alice", "INBOX", 2, mailstore.FlagFlagged)
	a.run([]step{
		// Not told, so not known yet: the view answers as it was.
		{"FETCH 2 (FLAGS)", []string{`* 2 FETCH (FLAGS ())`, "$T OK FETCH completed"}},
		// STORE's mod-sequence is two above the view's: catch up first.
		{`STORE 1 +FLAGS (\Seen)`, []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`, `* 1 FETCH (UID 1 FLAGS (\Seen))`,
			"$T OK STORE completed"}},
		{"FETCH 1:2 (FLAGS)", []string{`* 1 FETCH (FLAGS (\Seen))`, `* 2 FETCH (FLAGS (\Flagged))`, "$T OK FETCH completed"}},
	})

	// APPEND after an unannounced change.
	e.storeFlagsUnnotified("alice", "INBOX", 3, mailstore.FlagAnswered)
	msg := testMessage("appended", "y\r\n")
	a.send(fmt.Sprintf("A APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	check(t, "append after a gap", a.until("A"), []string{"* 5 EXISTS", "* 1 RECENT", `* 3 FETCH (UID 3 FLAGS (\Answered))`,
		"re:A OK \\[APPENDUID \\d+ 5\\] APPEND completed"})

	// EXPUNGE after an unannounced change.
	a.run([]step{{`STORE 1 +FLAGS.SILENT (\Deleted)`, []string{"$T OK STORE completed"}}})
	e.storeFlagsUnnotified("alice", "INBOX", 4, mailstore.FlagDraft)
	a.run([]step{
		{"EXPUNGE", []string{"* 1 EXPUNGE", `* 3 FETCH (UID 4 FLAGS (\Draft))`, "$T OK EXPUNGE completed"}},
		{"FETCH 1:* (UID FLAGS)", []string{`* 1 FETCH (UID 2 FLAGS (\Flagged))`, `* 2 FETCH (UID 3 FLAGS (\Answered))`,
			`* 3 FETCH (UID 4 FLAGS (\Draft))`, `* 4 FETCH (UID 5 FLAGS (\Recent))`, "$T OK FETCH completed"}},
	})

	// Without a gap, nothing but the own write's responses.
	a.run([]step{
		{`STORE 2 -FLAGS (\Answered)`, []string{`* 2 FETCH (UID 3 FLAGS ())`, "$T OK STORE completed"}},
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
}

// A notification lost while the node's listener was down: once it is
// back, every session counts its mailbox as possibly changed and catches
// up.
func TestListenerLostForcesCatchUp(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("m1", "x\r\n"))
	e.claimRecent("alice", "INBOX")
	inbox := e.mailbox("alice", "INBOX")
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	w := watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID) // the listener is up
	select {
	case <-w.ch: // its connect's wake-up, if still pending
	default:
	}
	e.storeFlagsUnnotified("alice", "INBOX", 1, mailstore.FlagFlagged)
	a.run([]step{{"FETCH 1 (FLAGS)", []string{`* 1 FETCH (FLAGS ())`, "$T OK FETCH completed"}}})

	st := e.store.(*postgres.Store)
	var killed int
	if err := st.Pool().QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminated %d listeners: %v", killed, err)
	}
	select {
	case <-w.ch: // the reconnect wakes every subscriber
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not reconnect")
	}
	a.run([]step{{"FETCH 1 (FLAGS)", []string{`* 1 FETCH (UID 1 FLAGS (\Flagged))`, `* 1 FETCH (FLAGS (\Flagged))`,
		"$T OK FETCH completed"}}})
}

// The content cache and a mailbox deleted and created again under its
// name on the other node: new UIDVALIDITY, the same UIDs, other contents.
// Node A, which holds the old contents, serves the new ones.
func TestCrossNodeRecreatedMailbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice := e.accts["alice"].ID
	if _, err := e.store.CreateMailbox(ctx, alice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver("alice", "Box", testMessage("old one", "old body\r\n"))
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT Box")
	old := testMessage("old one", "old body\r\n")
	a.run([]step{{"FETCH 1 (BODY.PEEK[] ENVELOPE)", []string{fmt.Sprintf(`re:\* 1 FETCH \(BODY\[\] \{%d\}\r\n%s ENVELOPE \(.*"old one".*\)\)`,
		len(old), regexpQuote(old)), "$T OK FETCH completed"}}})
	a.cmd("U", "UNSELECT")

	b := dialAddr(t, addrB)
	b.login("alice")
	nu := testMessage("new one", "a different body\r\n")
	b.run([]step{
		{"DELETE Box", []string{"$T OK DELETE completed"}},
		{"CREATE Box", []string{createdOK}},
	})
	b.send(fmt.Sprintf("A APPEND Box {%d+}\r\n%s", len(nu), nu))
	check(t, "append", b.until("A"), []string{`re:A OK \[APPENDUID \d+ 1\] APPEND completed`})

	a.cmd("S", "SELECT Box")
	a.run([]step{
		{"FETCH 1 (BODY.PEEK[] ENVELOPE)", []string{fmt.Sprintf(`re:\* 1 FETCH \(BODY\[\] \{%d\}\r\n%s ENVELOPE \(.*"new one".*\)\)`,
			len(nu), regexpQuote(nu)), "$T OK FETCH completed"}},
		{"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", []string{fmt.Sprintf("* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)",
			len("Subject: new one\r\n\r\n"), "Subject: new one\r\n\r\n"), "$T OK FETCH completed"}},
	})
}

// Two accounts, the same UIDs, different contents, one node: each session
// gets its own account's contents, however the cache was filled.
func TestContentIsolation(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("alice ", i), "alice's\r\n"))
		e.deliver("bob", "INBOX", testMessage(fmt.Sprint("bob ", i), "bob's\r\n"))
	}
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	b := e.dial()
	b.login("bob")
	b.cmd("S", "SELECT INBOX")
	for round := 0; round < 2; round++ {
		for _, c := range []struct {
			cl   *tclient
			user string
		}{{a, "alice"}, {b, "bob"}, {a, "alice"}} {
			got := c.cl.cmd("F", "FETCH 1:* (ENVELOPE BODY.PEEK[TEXT])")
			if len(got) != 4 {
				t.Fatalf("%s: %q", c.user, got)
			}
			for i, l := range got[:3] {
				if !strings.Contains(l, fmt.Sprintf(`"%s %d"`, c.user, i+1)) || !strings.Contains(l, c.user+"'s") {
					t.Errorf("%s, round %d, message %d: %q", c.user, round, i+1, l)
				}
			}
		}
	}
	// UIDs beyond the session's view never reach the store.
	b.run([]step{{"UID FETCH 4:100 (BODY.PEEK[])", []string{"$T OK UID FETCH completed"}}})
}

func regexpQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `.`, `\.`, `+`, `\+`, `*`, `\*`, `?`, `\?`, `(`, `\(`, `)`, `\)`,
		`[`, `\[`, `]`, `\]`, `{`, `\{`, `}`, `\}`, `^`, `\^`, `$`, `\$`, `|`, `\|`)
	return r.Replace(s)
}
