package imapd

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// PARTIAL (RFC 9394) on SEARCH, UID SEARCH, SORT and UID FETCH, with
// MIN/MAX/COUNT/SAVE, and the errors of bad ranges. The sort mailbox has
// five messages, UIDs 2 to 6.
func TestTranscriptPartial(t *testing.T) {
	e := newEnv(t)
	sortMailbox(e)
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	esearch := func(data string) []string {
		return []string{`* ESEARCH (TAG "$T")` + data, "$T OK SEARCH completed"}
	}
	c.run([]step{
		{"SEARCH RETURN (PARTIAL 1:2) ALL", esearch(" PARTIAL (1:2 1:2)")},
		// A range 4:2 is 2:4 (RFC 9394 §4); the response names the range.
		{"SEARCH RETURN (PARTIAL 4:2) ALL", esearch(" PARTIAL (2:4 2:4)")},
		{"SEARCH RETURN (PARTIAL 3:100) ALL", esearch(" PARTIAL (3:100 3:5)")},
		{"SEARCH RETURN (PARTIAL 6:9) ALL", esearch(" PARTIAL (6:9 NIL)")},
		// From the end: -1 is the last result.
		{"SEARCH RETURN (PARTIAL -1:-2) ALL", esearch(" PARTIAL (-1:-2 4:5)")},
		{"SEARCH RETURN (PARTIAL -2:-1) ALL", esearch(" PARTIAL (-1:-2 4:5)")},
		{"SEARCH RETURN (PARTIAL -3:-3) ALL", esearch(" PARTIAL (-3:-3 3)")},
		{"SEARCH RETURN (PARTIAL -4:-100) ALL", esearch(" PARTIAL (-4:-100 1:2)")},
		{"SEARCH RETURN (PARTIAL -6:-7) ALL", esearch(" PARTIAL (-6:-7 NIL)")},
		{"SEARCH RETURN (partial 1:1) SUBJECT nothing-matches", esearch(" PARTIAL (1:1 NIL)")},
		{"UID SEARCH RETURN (PARTIAL -1:-3) ALL", []string{`* ESEARCH (TAG "$T") UID PARTIAL (-1:-3 4:6)`, "$T OK UID SEARCH completed"}},
		{"UID SEARCH RETURN (PARTIAL 2:3) NOT UID 3", []string{`* ESEARCH (TAG "$T") UID PARTIAL (2:3 4:5)`, "$T OK UID SEARCH completed"}},
		// MIN, MAX and COUNT are of the whole result (RFC 9394 §3.2).
		{"SEARCH RETURN (MIN MAX COUNT PARTIAL 2:3) ALL", esearch(" MIN 1 MAX 5 PARTIAL (2:3 2:3) COUNT 5")},
		// SAVE with PARTIAL keeps what PARTIAL returns, with MIN/MAX
		// those too, with COUNT every result (RFC 9394 §3.2).
		{"SEARCH RETURN (SAVE PARTIAL 2:3) ALL", esearch(" PARTIAL (2:3 2:3)")},
		{"SEARCH $", []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"SEARCH RETURN (SAVE MAX PARTIAL 1:2) ALL", esearch(" MAX 5 PARTIAL (1:2 1:2)")},
		{"SEARCH $", []string{"* SEARCH 1 2 5", "$T OK SEARCH completed"}},
		{"SEARCH RETURN (SAVE COUNT PARTIAL 1:1) ALL", esearch(" PARTIAL (1:1 1) COUNT 5")},
		{"SEARCH $", []string{"* SEARCH 1 2 3 4 5", "$T OK SEARCH completed"}},
		// SORT: positions in sort order (arrival: 3 2 5 4 1).
		{"SORT RETURN (PARTIAL 1:2) (ARRIVAL) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") PARTIAL (1:2 3,2)`, "$T OK SORT completed"}},
		{"SORT RETURN (PARTIAL -1:-2) (ARRIVAL) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") PARTIAL (-1:-2 4,1)`, "$T OK SORT completed"}},
		{"UID SORT RETURN (COUNT PARTIAL 2:4) (REVERSE SIZE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") UID PARTIAL (2:4 5,2,6) COUNT 5`, "$T OK UID SORT completed"}},
		{"SORT RETURN (PARTIAL 9:10) (ARRIVAL) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") PARTIAL (9:10 NIL)`, "$T OK SORT completed"}},
		// Bad ranges and combinations (RFC 9394 §3.1, §4).
		{"SEARCH RETURN (PARTIAL 1) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 0:5) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 1:*) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL *:1) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL -1:5) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 1:-5) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL --1:-5) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 1:2:3) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 1:4294967296) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 01:5) ALL", []string{"re:$T BAD .*"}},
		{`SEARCH RETURN (PARTIAL "1:5") ALL`, []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL) ALL", []string{"re:$T BAD .*"}},
		{"SEARCH RETURN (PARTIAL 1:5 ALL) ALL", []string{"$T BAD Only one of ALL or PARTIAL is allowed"}},
		{"SEARCH RETURN (ALL PARTIAL 1:5) ALL", []string{"$T BAD Only one of ALL or PARTIAL is allowed"}},
		{"SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL", []string{"$T BAD Only one of ALL or PARTIAL is allowed"}},
		{"SORT RETURN (PARTIAL 1:*) (ARRIVAL) UTF-8 ALL", []string{"re:$T BAD .*"}},
		// The largest range is fine.
		{"SEARCH RETURN (PARTIAL 4294967295:1) ALL", esearch(" PARTIAL (1:4294967295 1:5)")},
		{"SEARCH RETURN (PARTIAL -4294967295:-4294967295) ALL", esearch(" PARTIAL (-4294967295:-4294967295 NIL)")},
		// UID FETCH (PARTIAL) (RFC 9394 §3.3): positions among the
		// messages the command would return.
		{"UID FETCH 1:* (UID) (PARTIAL -1:-2)", []string{"* 4 FETCH (UID 5)", "* 5 FETCH (UID 6)", "$T OK UID FETCH completed"}},
		{"UID FETCH 3:5 (UID) (PARTIAL 2:10)", []string{"* 3 FETCH (UID 4)", "* 4 FETCH (UID 5)", "$T OK UID FETCH completed"}},
		{"UID FETCH 1:* (UID) (PARTIAL 6:7)", []string{"$T OK UID FETCH completed"}},
		{"FETCH 1:* (UID) (PARTIAL 1:2)", []string{"$T BAD PARTIAL needs UID FETCH"}},
		{"UID FETCH 1:* (UID) (PARTIAL 1:2 PARTIAL 1:2)", []string{"$T BAD PARTIAL given twice"}},
		{"UID FETCH 1:* (UID) (PARTIAL 1:*)", []string{"re:$T BAD .*"}},
	})
	// With CHANGEDSINCE the range counts the changed messages.
	r := c.cmd("M", "UID FETCH 6 (MODSEQ)")
	var seq, uid, before uint64
	if _, err := fmt.Sscanf(r[len(r)-2], "* %d FETCH (UID %d MODSEQ (%d))", &seq, &uid, &before); err != nil {
		t.Fatalf("MODSEQ: %q: %v", r, err)
	}
	r = c.cmd("F", `UID STORE 2,4 +FLAGS.SILENT (\Flagged)`)
	// CONDSTORE is on: the silent STORE still reports the mod-sequences.
	check(t, "store", r, []string{"re:\\* 1 FETCH \\(UID 2 MODSEQ \\(\\d+\\)\\)", "re:\\* 3 FETCH \\(UID 4 MODSEQ \\(\\d+\\)\\)", "F OK UID STORE completed"})
	r = c.cmd("G", fmt.Sprintf("UID FETCH 1:* (UID) (CHANGEDSINCE %d PARTIAL -1:-1)", before))
	if len(r) != 2 || !strings.HasPrefix(r[0], "* 3 FETCH (UID 4 MODSEQ (") || r[1] != "G OK UID FETCH completed" {
		t.Fatalf("CHANGEDSINCE with PARTIAL: %q", r)
	}
}

// CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): ADDTO and REMOVEFROM as
// flags change, messages arrive (own APPEND, another session's delivery)
// and messages are expunged; CANCELUPDATE; the errors.
func TestTranscriptContextUpdate(t *testing.T) {
	e := newEnv(t)
	sortMailbox(e) // UIDs 2..6; sizes by seq: 2000 100 4000 3000 1000
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	check(t, "U1", c.cmd("U1", "SEARCH RETURN (UPDATE COUNT) FLAGGED"),
		[]string{`* ESEARCH (TAG "U1") COUNT 0`, "U1 OK SEARCH completed"})
	check(t, "U2", c.cmd("U2", "UID SORT RETURN (UPDATE ALL) (REVERSE SIZE) UTF-8 FLAGGED"),
		[]string{`* ESEARCH (TAG "U2") UID`, "U2 OK UID SORT completed"})
	// UPDATE alone returns nothing but the correlator (RFC 5267 §4.3).
	check(t, "U3", c.cmd("U3", "SEARCH RETURN (UPDATE) DELETED"),
		[]string{`* ESEARCH (TAG "U3")`, "U3 OK SEARCH completed"})
	c.run([]step{
		// SEARCH contexts use position 0 and mailbox order; SORT ones the
		// position in sort order.
		{`STORE 1,3 +FLAGS.SILENT (\Flagged)`, []string{`* ESEARCH (TAG "U1") ADDTO (0 1,3)`,
			`* ESEARCH (TAG "U2") UID ADDTO (1 4,2)`, "$T OK STORE completed"}},
		{`STORE 4 +FLAGS.SILENT (\Flagged)`, []string{`* ESEARCH (TAG "U1") ADDTO (0 4)`,
			`* ESEARCH (TAG "U2") UID ADDTO (2 5)`, "$T OK STORE completed"}},
		// No change of membership, no response.
		{`STORE 4 +FLAGS.SILENT (\Seen)`, []string{"$T OK STORE completed"}},
		{`STORE 1 -FLAGS.SILENT (\Flagged)`, []string{`* ESEARCH (TAG "U1") REMOVEFROM (0 1)`,
			`* ESEARCH (TAG "U2") UID REMOVEFROM (3 2)`, "$T OK STORE completed"}},
		{`STORE 3 +FLAGS.SILENT (\Deleted)`, []string{`* ESEARCH (TAG "U3") ADDTO (0 3)`, "$T OK STORE completed"}},
		// An expunge: REMOVEFROM before EXPUNGE (RFC 5267 §4.3.4).
		{"EXPUNGE", []string{`* ESEARCH (TAG "U1") REMOVEFROM (0 3)`, `* ESEARCH (TAG "U2") UID REMOVEFROM (1 4)`,
			`* ESEARCH (TAG "U3") REMOVEFROM (0 3)`, "* 3 EXPUNGE", "re:\\* \\d+ RECENT", "$T OK EXPUNGE completed"}},
		// The session's own APPEND: ADDTO after EXISTS (RFC 5267 §4.3.3);
		// the small message sorts last.
		{"APPEND INBOX (\\Flagged) {23+}\r\nSubject: new\r\n\r\nhello\r\n", []string{"* 5 EXISTS", "re:\\* \\d+ RECENT",
			`* ESEARCH (TAG "U1") ADDTO (0 5)`, `* ESEARCH (TAG "U2") UID ADDTO (2 7)`, "re:$T OK \\[APPENDUID \\d+ 7\\] APPEND completed"}},
		// Tag reuse by an updating command is BAD (RFC 5267 §4.3).
		{"NOOP", []string{"$T OK NOOP completed"}},
	})
	check(t, "reuse", c.cmd("U2", "SEARCH RETURN (UPDATE) ALL"), []string{"U2 BAD Tag in use by an update context"})
	// A delivery by someone else, seen at the next command.
	e.deliver("alice", "INBOX", testMessage("big", strings.Repeat("y", 5000)+"\r\n"), mailstore.FlagFlagged)
	check(t, "delivery", c.cmd("N", "NOOP"), []string{"* 6 EXISTS", "re:\\* \\d+ RECENT",
		`* ESEARCH (TAG "U1") ADDTO (0 6)`, `* ESEARCH (TAG "U2") UID ADDTO (1 8)`, "N OK NOOP completed"})
	// Another session's flag change.
	o := e.dial()
	o.login("alice")
	o.cmd("S", "SELECT INBOX")
	check(t, "other", o.cmd("O", `UID STORE 8 -FLAGS.SILENT (\Flagged)`), []string{"O OK UID STORE completed"})
	check(t, "other seen", c.cmd("N", "NOOP"), []string{`* 6 FETCH (UID 8 FLAGS (\Recent))`,
		`* ESEARCH (TAG "U1") REMOVEFROM (0 6)`, `* ESEARCH (TAG "U2") UID REMOVEFROM (1 8)`, "N OK NOOP completed"})
	// CANCELUPDATE stops the updates of the contexts named.
	check(t, "cancel", c.cmd("C1", `CANCELUPDATE "U1" "U3"`), []string{"C1 OK CANCELUPDATE completed"})
	check(t, "after cancel", c.cmd("N", `STORE 2 +FLAGS.SILENT (\Flagged \Deleted)`),
		[]string{`* ESEARCH (TAG "U2") UID ADDTO (2 3)`, "N OK STORE completed"})
	c.run([]step{
		{`CANCELUPDATE "U1"`, []string{`$T NO No update context with tag "U1"`}},
		// An unknown tag cancels none of the others.
		{`CANCELUPDATE "U2" "nope"`, []string{`$T NO No update context with tag "nope"`}},
		{`CANCELUPDATE U2`, []string{"re:$T BAD .*"}},
		{`CANCELUPDATE`, []string{"re:$T BAD .*"}},
		{`CANCELUPDATE "U2" `, []string{"re:$T BAD .*"}},
		{`UID CANCELUPDATE "U2"`, []string{"$T BAD Unknown command"}},
		{`STORE 2 -FLAGS.SILENT (\Flagged)`, []string{`* ESEARCH (TAG "U2") UID REMOVEFROM (2 3)`, "$T OK STORE completed"}},
	})
	// RECENT is not updated: the command answers, without updates.
	check(t, "recent", c.cmd("R", "SEARCH RETURN (UPDATE COUNT) RECENT"),
		[]string{`re:\* ESEARCH \(TAG "R"\) COUNT \d+`, `* NO [NOUPDATE "R"] No updates for RECENT, NEW or OLD`, "R OK SEARCH completed"})
	// The bound on contexts: the command answers, without updates.
	for i := 1; i < maxUpdateContexts; i++ { // U2 is one
		tag := fmt.Sprint("X", i)
		check(t, tag, c.cmd(tag, "SEARCH RETURN (UPDATE COUNT) SEEN"), []string{`* ESEARCH (TAG "` + tag + `") COUNT 1`, tag + " OK SEARCH completed"})
	}
	check(t, "too many", c.cmd("Y", "UID SORT RETURN (UPDATE COUNT) (DATE) UTF-8 SEEN"),
		[]string{`* ESEARCH (TAG "Y") UID COUNT 1`, `* NO [NOUPDATE "Y"] Too many update contexts`, "Y OK UID SORT completed"})
	// Contexts end with the selection (RFC 5267 §4.3).
	c.cmd("S2", "SELECT INBOX")
	check(t, "reselected", c.cmd("N", `STORE 1 -FLAGS.SILENT (\Seen)`), []string{"N OK STORE completed"})
	check(t, "not selected", c.cmd("N", `CANCELUPDATE "U2"`), []string{`N NO No update context with tag "U2"`})
}

// Updates arrive during IDLE, when another session changes the mailbox.
func TestContextUpdateIdle(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	c := e.dial()
	c.login("alice")
	c.cmd("E", "ENABLE IMAP4rev2")
	c.cmd("S", "SELECT INBOX")
	check(t, "U", c.cmd("U", "UID SEARCH RETURN (UPDATE MIN) UNSEEN"), []string{`* ESEARCH (TAG "U") UID MIN 1`, "U OK UID SEARCH completed"})
	c.send("I IDLE")
	if l := c.line(); l != "+ idling" {
		t.Fatalf("IDLE: %q", l)
	}
	o := e.dial()
	o.login("alice")
	o.cmd("S", "SELECT INBOX")
	o.cmd("O", `STORE 2 +FLAGS.SILENT (\Seen)`)
	check(t, "idle update", []string{c.line(), c.line()}, []string{`* 2 FETCH (UID 2 FLAGS (\Seen))`, `* ESEARCH (TAG "U") UID REMOVEFROM (0 2)`})
	e.deliver("alice", "INBOX", testMessage("m4", "x\r\n"))
	check(t, "idle delivery", []string{c.line(), c.line()}, []string{"* 4 EXISTS", `* ESEARCH (TAG "U") UID ADDTO (0 4)`})
	o.cmd("O", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	check(t, "idle flags", []string{c.line()}, []string{`* 1 FETCH (UID 1 FLAGS (\Deleted))`})
	o.cmd("O", "EXPUNGE")
	check(t, "idle expunge", []string{c.line(), c.line()}, []string{`* ESEARCH (TAG "U") UID REMOVEFROM (0 1)`, "* 1 EXPUNGE"})
	c.send("DONE")
	check(t, "done", []string{c.line()}, []string{"I OK IDLE completed"})
}

// A context on node A follows changes made through node B: a flag change,
// a delivery and an expunge, once A has been notified.
func TestCrossNodeContextUpdates(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), strings.Repeat("x", 100*i)+"\r\n"))
	}
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	inbox := e.mailbox("alice", "INBOX")
	a := e.dial()
	a.login("alice")
	a.cmd("E", "ENABLE IMAP4rev2")
	a.cmd("S", "SELECT INBOX")
	check(t, "S1", a.cmd("S1", "SEARCH RETURN (UPDATE ALL) FLAGGED"), []string{`* ESEARCH (TAG "S1")`, "S1 OK SEARCH completed"})
	check(t, "S2", a.cmd("S2", "SORT RETURN (UPDATE ALL) (REVERSE SIZE) UTF-8 FLAGGED"), []string{`* ESEARCH (TAG "S2")`, "S2 OK SORT completed"})
	b := dialAddr(t, addrB)
	b.login("alice")
	b.cmd("S", "SELECT INBOX")

	w := watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.cmd("B", `STORE 1,3 +FLAGS.SILENT (\Flagged)`)
	w.wait("flag change on node B")
	check(t, "flags", a.cmd("N", "NOOP"), []string{`* 1 FETCH (UID 1 FLAGS (\Flagged))`, `* 3 FETCH (UID 3 FLAGS (\Flagged))`,
		`* ESEARCH (TAG "S1") ADDTO (0 1,3)`, `* ESEARCH (TAG "S2") ADDTO (1 3,1)`, "N OK NOOP completed"})

	w = watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.cmd("B", "APPEND INBOX (\\Flagged) {23+}\r\nSubject: new\r\n\r\nhello\r\n") // smallest: sorts last
	w.wait("append on node B")
	check(t, "append", a.cmd("N", "NOOP"), []string{"* 4 EXISTS",
		`* ESEARCH (TAG "S1") ADDTO (0 4)`, `* ESEARCH (TAG "S2") ADDTO (3 4)`, "N OK NOOP completed"})

	w = watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.cmd("B", `STORE 3 +FLAGS.SILENT (\Deleted)`)
	w.wait("deleted on node B")
	check(t, "deleted", a.cmd("N", "NOOP"), []string{`* 3 FETCH (UID 3 FLAGS (\Flagged \Deleted))`, "N OK NOOP completed"})
	w = watchMailbox(t, e.store, e.accts["alice"].ID, inbox.ID)
	b.cmd("B", "EXPUNGE")
	w.wait("expunge on node B")
	check(t, "expunge", a.cmd("N", "NOOP"), []string{`* ESEARCH (TAG "S1") REMOVEFROM (0 3)`, `* ESEARCH (TAG "S2") REMOVEFROM (1 3)`, "* 3 EXPUNGE", "N OK NOOP completed"})
	check(t, "after", a.cmd("N", "SORT RETURN (ALL) (REVERSE SIZE) UTF-8 FLAGGED"), []string{`* ESEARCH (TAG "N") ALL 1,3`, "N OK SORT completed"})
}

// A SORT context by a string key places a new message by its stored
// parse result; sequence numbers in a program are those of the time of
// the command (RFC 5267 §4.3), so a new message is not in "1:2".
func TestContextSortBySubject(t *testing.T) {
	e := newEnv(t)
	sortMailbox(e) // base subjects by seq: APPLE BANANA APPLE CHERRY APPLE; BLUEBERRY sorts after BANANA
	c := e.dial()
	c.login("alice")
	c.cmd("E", "ENABLE IMAP4rev2")
	c.cmd("S", "SELECT INBOX")
	check(t, "A", c.cmd("A", "SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 ALL"), []string{`* ESEARCH (TAG "A") ALL 1,3,5,2,4`, "A OK SORT completed"})
	check(t, "B", c.cmd("B", "SEARCH RETURN (UPDATE ALL) 1:2 UNSEEN"), []string{`* ESEARCH (TAG "B") ALL 1:2`, "B OK SEARCH completed"})
	e.deliver("alice", "INBOX", sortMsg{subject: "Re: Blueberry", from: "x@x.org"}.String())
	check(t, "delivery", c.cmd("N", "NOOP"), []string{"* 6 EXISTS", `* ESEARCH (TAG "A") ADDTO (5 6)`, "N OK NOOP completed"})
	e.deliver("alice", "INBOX", sortMsg{subject: "Aardvark"}.String())
	e.deliver("alice", "INBOX", sortMsg{subject: "Zebra"}.String())
	check(t, "two", c.cmd("N", "NOOP"), []string{"* 8 EXISTS", `* ESEARCH (TAG "A") ADDTO (1 7 8 8)`, "N OK NOOP completed"})
	check(t, "seen", c.cmd("N", `STORE 2 +FLAGS.SILENT (\Seen)`), []string{`* ESEARCH (TAG "B") REMOVEFROM (0 2)`, "N OK STORE completed"})
	check(t, "expunge", c.cmd("N", `STORE 1,8 +FLAGS.SILENT (\Deleted)`), []string{"N OK STORE completed"})
	check(t, "expunge", c.cmd("N", `EXPUNGE`), []string{`* ESEARCH (TAG "A") REMOVEFROM (2 1 7 8)`,
		`* ESEARCH (TAG "B") REMOVEFROM (0 1)`, "* 8 EXPUNGE", "* 1 EXPUNGE", "N OK EXPUNGE completed"})
}

const pythonPartialContext = `
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
for cap in ('PARTIAL', 'CONTEXT=SEARCH', 'CONTEXT=SORT'):
    assert cap in M.capabilities, (cap, M.capabilities)
typ, data = M.select('INBOX'); assert typ == 'OK', data
typ, data = M.uid('SEARCH', 'RETURN', '(PARTIAL', '-1:-2)', 'ALL'); assert typ == 'OK', data
typ, data = M.response('ESEARCH'); assert data[-1].endswith(b' UID PARTIAL (-1:-2 5:6)'), data
typ, data = M._simple_command('SORT', 'RETURN', '(PARTIAL', '2:3)', '(ARRIVAL)', 'UTF-8', 'ALL'); assert typ == 'OK', data
typ, data = M.response('ESEARCH'); assert data[-1].endswith(b' PARTIAL (2:3 2,5)'), data
try:
    M._simple_command('SEARCH', 'RETURN', '(PARTIAL', '1:*)', 'ALL'); assert False, 'no BAD'
except imaplib.IMAP4.error as e:
    assert 'BAD' in str(e), e
tag = M._new_tag().decode()
M.send(('%s SEARCH RETURN (UPDATE COUNT) FLAGGED\r\n' % tag).encode())
while True:
    line = M.readline()
    if line.startswith(tag.encode()):
        break
assert b' OK ' in line, line
typ, data = M.store('1,3', '+FLAGS.SILENT', '(\\Flagged)'); assert typ == 'OK', data
typ, data = M.response('ESEARCH'); assert data[-1] == ('(TAG "%s") ADDTO (0 1,3)' % tag).encode(), data
imaplib.Commands['CANCELUPDATE'] = ('SELECTED',)
typ, data = M._simple_command('CANCELUPDATE', '"%s"' % tag); assert typ == 'OK', data
typ, data = M._simple_command('CANCELUPDATE', '"%s"' % tag); assert typ == 'NO', data
M.logout()
print('PYTHON-PARTIAL-CONTEXT-OK')
`

// Python's imaplib with PARTIAL, an update context and CANCELUPDATE.
func TestClientPythonPartialContext(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	sortMailbox(e)
	host, port, _ := net.SplitHostPort(e.addr)
	out := runCmd(t, 30*time.Second, py, "-c", pythonPartialContext, host, port)
	if !strings.Contains(out, "PYTHON-PARTIAL-CONTEXT-OK") {
		t.Fatal(out)
	}
}
