package imapd

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

func selectLines(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "re:\\* .*"
	}
	return out
}

// Untagged updates between sessions (RFC 9051 §7, §7.5.1): no EXPUNGE
// during FETCH, STORE or SEARCH; sequence numbers shift only when the
// client is told.
func TestTranscriptUpdates(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 5; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	b := e.dial()
	b.login("alice")
	b.cmd("S", "SELECT INBOX")

	b.run([]step{{`STORE 2 +FLAGS.SILENT (\Flagged)`, []string{"$T OK STORE completed"}}})
	a.run([]step{{"NOOP", []string{`* 2 FETCH (UID 2 FLAGS (\Recent \Flagged))`, "$T OK NOOP completed"}}})

	b.run([]step{
		{`STORE 3 +FLAGS.SILENT (\Deleted)`, []string{"$T OK STORE completed"}},
		{"EXPUNGE", []string{"* 3 EXPUNGE", "$T OK EXPUNGE completed"}},
	})
	waitNotified(t)
	a.run([]step{
		// FETCH may not report the expunge; message 3 is simply missing.
		{"FETCH 1:5 (UID)", []string{
			"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)", "* 5 FETCH (UID 5)",
			"$T OK FETCH completed"}},
		{"SEARCH ALL", []string{"* SEARCH 1 2 4 5", "$T OK SEARCH completed"}},
		{`STORE 5 +FLAGS (\Seen)`, []string{`* 5 FETCH (UID 5 FLAGS (\Recent \Seen))`, "$T OK STORE completed"}},
		// NOOP may: numbers shift.
		{"NOOP", []string{"* 3 EXPUNGE", "* 4 RECENT", "$T OK NOOP completed"}},
		{"FETCH 3:4 (UID)", []string{"* 3 FETCH (UID 4)", "* 4 FETCH (UID 5)", "$T OK FETCH completed"}},
	})

	// A new message is announced during any command, EXISTS included in
	// STORE; an expunge pending during STORE goes out with UID FETCH.
	e.deliver("alice", "INBOX", testMessage("m6", "x\r\n"))
	b.cmd("B1", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.run([]step{{"UID EXPUNGE 1", []string{"* 1 EXPUNGE", "$T OK UID EXPUNGE completed"}}})
	waitNotified(t)
	a.run([]step{
		{`STORE 1 +FLAGS.SILENT (\Answered)`, []string{"* 5 EXISTS", "* 4 RECENT", "$T OK STORE completed"}},
		{"UID FETCH 6 (UID)", []string{"* 5 FETCH (UID 6)", "* 1 EXPUNGE", "* 3 RECENT", "$T OK UID FETCH completed"}},
		{"FETCH * (UID)", []string{"* 4 FETCH (UID 6)", "$T OK FETCH completed"}},
	})
}

// waitNotified gives the store's change notification time to arrive.
func waitNotified(t *testing.T) { time.Sleep(150 * time.Millisecond) }

// IDLE (RFC 2177) reports changes from other sessions at once.
func TestTranscriptIdle(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("m1", "x\r\n"))
	e.deliver("alice", "INBOX", testMessage("m2", "x\r\n"))
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	b := e.dial()
	b.login("alice")
	b.cmd("S", "SELECT INBOX")

	a.send("I IDLE")
	check(t, "idle", []string{a.line()}, []string{"+ idling"})
	e.deliver("alice", "INBOX", testMessage("m3", "x\r\n"))
	// a selected first, so m1 and m2 are \Recent in a; a learns of m3
	// first (b is not idle), so a gets that one too (RFC 3501 §2.3.2).
	check(t, "exists", []string{a.line(), a.line()}, []string{"* 3 EXISTS", "* 3 RECENT"})
	b.cmd("B1", `STORE 1 +FLAGS.SILENT (\Seen)`)
	check(t, "flags", []string{a.line()}, []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Seen))`})
	b.cmd("B2", `UID STORE 2 +FLAGS.SILENT (\Deleted)`)
	check(t, "flags", []string{a.line()}, []string{`* 2 FETCH (UID 2 FLAGS (\Recent \Deleted))`})
	b.cmd("B3", `EXPUNGE`)
	check(t, "expunge", []string{a.line(), a.line()}, []string{"* 2 EXPUNGE", "* 2 RECENT"})
	// Another account's changes are never seen.
	e.deliver("bob", "INBOX", testMessage("for bob", "x\r\n"))
	a.send("DONE")
	check(t, "done", a.until("I"), []string{"I OK IDLE completed"})
	a.send("I2 IDLE")
	check(t, "idle again", []string{a.line()}, []string{"+ idling"})
	a.send("NOT DONE")
	check(t, "bad done", a.until("I2"), []string{"I2 BAD Expected DONE"})
}

// CONDSTORE/QRESYNC resynchronisation (RFC 7162 §3.1.4.1, §3.2.5, §3.2.6).
func TestTranscriptQresync(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 6; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	mb := e.mailbox("alice", "INBOX")
	a := e.dial()
	a.login("alice")
	a.cmd("E", "ENABLE QRESYNC")
	r := a.cmd("S", "SELECT INBOX")
	var hms uint64
	for _, l := range r {
		if m := regexp.MustCompile(`HIGHESTMODSEQ (\d+)`).FindStringSubmatch(l); m != nil {
			hms, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	if hms == 0 {
		t.Fatalf("no HIGHESTMODSEQ in %q", r)
	}
	a.cmd("L", "LOGOUT")

	// Changes while the client is away.
	b := e.dial()
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	b.cmd("1", `STORE 2 +FLAGS.SILENT (\Flagged)`)
	b.cmd("2", `UID STORE 3,5 +FLAGS.SILENT (\Deleted)`)
	b.cmd("3", "EXPUNGE")
	e.deliver("alice", "INBOX", testMessage("m7", "x\r\n"))

	c := e.dial()
	c.login("alice")
	c.run([]step{
		{fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity, hms), []string{"$T BAD QRESYNC is not enabled"}},
		{"ENABLE QRESYNC", []string{"* ENABLED QRESYNC", "$T OK ENABLE completed"}},
		{fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:4))", mb.UIDValidity, hms), append(selectLines(9),
			"* VANISHED (EARLIER) 3",
			`re:\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 FLAGS \(\\Recent\) MODSEQ \(\d+\)\)`,
			"$T OK [READ-WRITE] SELECT completed")},
		{fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)", hms), []string{
			"* VANISHED (EARLIER) 3,5",
			`re:\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 FLAGS \(\\Recent\) MODSEQ \(\d+\)\)`,
			"$T OK UID FETCH completed"}},
		{fmt.Sprintf("FETCH 1:* (UID) (CHANGEDSINCE %d)", hms), []string{
			`re:\* 2 FETCH \(UID 2 MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 MODSEQ \(\d+\)\)`,
			"$T OK FETCH completed"}},
		// A wrong UIDVALIDITY gets a plain SELECT.
		{fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity+1, hms), append([]string{"* OK [CLOSED] Previous mailbox closed"}, append(selectLines(9), "$T OK [READ-WRITE] SELECT completed")...)},
		{"SELECT INBOX (QRESYNC (1))", []string{"$T BAD Missing arguments"}},
		{"FETCH 1 (UID)", []string{"* 1 FETCH (UID 1)", "$T OK FETCH completed"}},
	})
}

// Two nodes (two servers on two store handles, one database): a client in
// IDLE on node A sees a delivery and a flag change made through node B.
func TestCrossNodeIdle(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("m1", "x\r\n"))
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)

	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	a.send("I IDLE")
	check(t, "idle", []string{a.line()}, []string{"+ idling"})

	b := dialAddr(t, addrB)
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	inbox := e.mailbox("alice", "INBOX")
	start := time.Now()
	if _, err := stB.Append(context.Background(), e.accts["alice"].ID, inbox.ID, mailstore.Flags{}, time.Now(), strings.NewReader(testMessage("m2", "x\r\n"))); err != nil {
		t.Fatal(err)
	}
	// a, in IDLE, is the first session told of m2: it claims its \Recent
	// status in the database, so b on the other node does not get it.
	check(t, "exists", []string{a.line(), a.line()}, []string{"* 2 EXISTS", "* 2 RECENT"})
	t.Logf("delivery via node B seen on node A after %v", time.Since(start))
	start = time.Now()
	b.cmd("B", `STORE 1 +FLAGS.SILENT (\Answered)`)
	check(t, "flags", []string{a.line()}, []string{`* 1 FETCH (UID 1 FLAGS (\Recent \Answered))`})
	t.Logf("flag change via node B seen on node A after %v", time.Since(start))
	a.send("DONE")
	check(t, "done", a.until("I"), []string{"I OK IDLE completed"})
	a.run([]step{{"FETCH 2 (FLAGS)", []string{`* 2 FETCH (FLAGS (\Recent))`, "$T OK FETCH completed"}}})
	b.run([]step{{"FETCH 1:2 (FLAGS)", []string{`* 1 FETCH (FLAGS (\Answered))`, `* 2 FETCH (FLAGS ())`, "$T OK FETCH completed"}}})
}

// A mailbox deleted while selected: the deleting session leaves the
// selected state (OK [CLOSED]); another session selecting it is told BYE.
func TestTranscriptDeletedWhileSelected(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateMailbox(context.Background(), e.accts["alice"].ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver("alice", "Work", testMessage("w", "x\r\n"))
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT Work")
	b := e.dial()
	b.login("alice")
	b.run([]step{
		{"SELECT Work", append(selectLines(9), "$T OK [READ-WRITE] SELECT completed")},
		{"RENAME Work Play", []string{"$T OK RENAME completed"}},
		{"STATUS Play (MESSAGES)", []string{"* STATUS Play (MESSAGES 1)", "$T OK STATUS completed"}},
		{"FETCH 1 (UID)", []string{"* 1 FETCH (UID 1)", "$T OK FETCH completed"}},
		{"DELETE Play", []string{"* OK [CLOSED] Mailbox deleted", "$T OK DELETE completed"}},
		{"FETCH 1 (UID)", []string{"$T BAD No mailbox selected"}},
	})
	waitNotified(t)
	a.send("N NOOP")
	check(t, "bye", []string{a.line()}, []string{"* BYE [NONEXISTENT] Selected mailbox was deleted; closing"})
	a.eof()
}

// The same resynchronisation after the tombstones were pruned (the store
// keeps them for a retention period): VANISHED (EARLIER) then reports every
// known UID that no longer exists (RFC 7162 §4.1), and a session whose view
// predates the pruning still learns of the expunges.
func TestTranscriptQresyncPruned(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 6; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	mb := e.mailbox("alice", "INBOX")
	hms := mb.HighestModSeq
	// A session that stays selected across the expunges and the pruning.
	d := e.dial()
	d.login("alice")
	d.cmd("E", "ENABLE QRESYNC")
	d.cmd("S", "SELECT INBOX")

	b := e.dial()
	b.login("alice")
	b.cmd("S", "SELECT INBOX")
	b.cmd("1", `STORE 2 +FLAGS.SILENT (\Flagged)`)
	b.cmd("2", `UID STORE 3,5 +FLAGS.SILENT (\Deleted)`)
	b.cmd("3", "EXPUNGE")
	e.deliver("alice", "INBOX", testMessage("m7", "x\r\n"))
	n, err := e.store.PruneTombstones(context.Background(), time.Now().Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneTombstones = %d, %v; want the 2 tombstones", n, err)
	}

	got := d.cmd("N", "NOOP")
	if !slices.Contains(got, "* VANISHED 3,5") {
		t.Errorf("NOOP of a session older than the pruning: %q, want \"* VANISHED 3,5\" among them", got)
	}

	c := e.dial()
	c.login("alice")
	c.run([]step{
		{"ENABLE QRESYNC", []string{"* ENABLED QRESYNC", "$T OK ENABLE completed"}},
		{fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d 1:4))", mb.UIDValidity, hms), append(selectLines(9),
			"* VANISHED (EARLIER) 3",
			`re:\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 FLAGS \((\\Recent)?\) MODSEQ \(\d+\)\)`,
			"$T OK [READ-WRITE] SELECT completed")},
		{fmt.Sprintf("UID FETCH 1:100 (FLAGS) (CHANGEDSINCE %d VANISHED)", hms), []string{
			"* VANISHED (EARLIER) 3,5",
			`re:\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 FLAGS \((\\Recent)?\) MODSEQ \(\d+\)\)`,
			"$T OK UID FETCH completed"}},
		{fmt.Sprintf("UID FETCH 4:6 (FLAGS) (CHANGEDSINCE %d VANISHED)", hms), []string{
			"* VANISHED (EARLIER) 5",
			"$T OK UID FETCH completed"}},
		{"UNSELECT", []string{"$T OK UNSELECT completed"}},
		{fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", mb.UIDValidity, hms), append(selectLines(9),
			"* VANISHED (EARLIER) 3,5",
			`re:\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`,
			`re:\* 5 FETCH \(UID 7 FLAGS \((\\Recent)?\) MODSEQ \(\d+\)\)`,
			"$T OK [READ-WRITE] SELECT completed")},
	})
}
