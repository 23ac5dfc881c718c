package imapd

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// sortMsg builds a message for the SORT and THREAD tests; empty fields
// are left out.
type sortMsg struct {
	from, to, cc, subject, date, id, refs, inReplyTo string
	bodyLen                                          int
}

func (m sortMsg) String() string {
	var b strings.Builder
	for _, f := range [][2]string{{"From", m.from}, {"To", m.to}, {"Cc", m.cc}, {"Subject", m.subject},
		{"Date", m.date}, {"Message-ID", m.id}, {"References", m.refs}, {"In-Reply-To", m.inReplyTo}} {
		if f[1] != "" {
			b.WriteString(f[0] + ": " + f[1] + "\r\n")
		}
	}
	b.WriteString("\r\n")
	b.WriteString(strings.Repeat("x", m.bodyLen))
	b.WriteString("\r\n")
	return b.String()
}

// deliverAt appends a message with the given internal date.
func (e *testEnv) deliverAt(user, mailbox string, at time.Time, msg string) uint32 {
	e.t.Helper()
	res, err := e.store.Append(context.Background(), e.accts[user].ID, e.mailbox(user, mailbox).ID, mailstore.Flags{}, at, strings.NewReader(msg))
	if err != nil {
		e.t.Fatal(err)
	}
	return res.UID
}

// fillerGone appends a message and expunges it, so that the UIDs of the
// messages after it differ from their sequence numbers.
func (e *testEnv) fillerGone(user, mailbox string) {
	e.t.Helper()
	u := e.deliver(user, mailbox, testMessage("filler", "x\r\n"))
	if _, err := e.store.Expunge(context.Background(), e.accts[user].ID, e.mailbox(user, mailbox).ID, mailstore.UIDs(u), false); err != nil {
		e.t.Fatal(err)
	}
}

// The SORT test mailbox: five messages (UIDs 2 to 6) whose keys order
// them differently for each sort key.
func sortMailbox(e *testEnv) {
	e.fillerGone("alice", "INBOX")
	day := func(d int) time.Time { return time.Date(2024, 2, 19+d, 9, 0, 0, 0, time.UTC) }
	msgs := []struct {
		arrival int
		m       sortMsg
	}{
		{5, sortMsg{from: "Zed <zed@x.org>", to: "bob@x.org", cc: "carol@x.org", subject: "Re: [list] Apple",
			date: "Sun, 03 Mar 2024 10:00:00 +0000", bodyLen: 2000}},
		{2, sortMsg{from: "adam@x.org", to: "=?utf-8?q?=C3=89mile?= <emile@x.org>", subject: "banana",
			date: "Fri, 01 Mar 2024 23:00:00 +0000", bodyLen: 100}},
		// No Date: the sent date is the internal date (RFC 5256 §2.2).
		{1, sortMsg{from: "Yves <ADAM@x.org>", to: "Alice <zoe@x.org>", cc: "alice@x.org", subject: "Fwd: apple (fwd)", bodyLen: 4000}},
		// 1 Mar 22:00 UTC: before message 2 although its calendar day is later.
		{4, sortMsg{from: "mike@x.org", to: "ann@x.org", cc: "Bob <bob@x.org>", subject: "=?utf-8?q?Cherry?=",
			date: "Sat, 02 Mar 2024 01:00:00 +0300", bodyLen: 3000}},
		// Same sent date as message 2: the sequence number decides.
		{3, sortMsg{from: "Quinn <quinn@x.org>", subject: "[fwd: APPLE]", date: "Fri, 01 Mar 2024 23:00:00 +0000", bodyLen: 1000}},
	}
	for _, x := range msgs {
		e.deliverAt("alice", "INBOX", day(x.arrival), x.m.String())
	}
}

// SORT (RFC 5256 §3) with every key, REVERSE, several criteria, the
// sequence-number tie-break, UID SORT, charsets, SORT=DISPLAY (RFC 5957)
// and CONDSTORE's MODSEQ.
func TestTranscriptSort(t *testing.T) {
	e := newEnv(t)
	sortMailbox(e)
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	sorted := func(s string) []string { return []string{"* SORT " + s, "$T OK SORT completed"} }
	c.run([]step{
		{"SORT (ARRIVAL) UTF-8 ALL", sorted("3 2 5 4 1")},
		{"SORT (REVERSE ARRIVAL) US-ASCII ALL", sorted("1 4 5 2 3")},
		{"SORT (DATE) UTF-8 ALL", sorted("3 4 2 5 1")},
		// The tie between 2 and 5 stays in sequence order under REVERSE.
		{"SORT (REVERSE DATE) UTF-8 ALL", sorted("1 2 5 4 3")},
		{"SORT (SIZE) UTF-8 ALL", sorted("2 5 1 4 3")},
		{"SORT (REVERSE SIZE) UTF-8 ALL", sorted("3 4 1 5 2")},
		// adam and ADAM are equal under i;ascii-casemap.
		{"SORT (FROM) UTF-8 ALL", sorted("2 3 4 5 1")},
		{"SORT (REVERSE FROM) UTF-8 ALL", sorted("1 5 4 2 3")},
		// No To sorts first (empty string).
		{"SORT (TO) UTF-8 ALL", sorted("5 4 1 2 3")},
		{"SORT (CC) UTF-8 ALL", sorted("2 5 3 4 1")},
		// Base subjects: APPLE APPLE APPLE BANANA CHERRY (RFC 5256 §2.1).
		{"SORT (SUBJECT) UTF-8 ALL", sorted("1 3 5 2 4")},
		{"SORT (REVERSE SUBJECT) UTF-8 ALL", sorted("4 2 1 3 5")},
		{"SORT (SUBJECT REVERSE DATE) UTF-8 ALL", sorted("1 5 3 2 4")},
		{"SORT (SUBJECT REVERSE ARRIVAL) UTF-8 ALL", sorted("1 5 3 2 4")},
		{"SORT (DISPLAYFROM) UTF-8 ALL", sorted("2 4 5 3 1")},
		// Émile, decoded from RFC 2047, sorts after every ASCII name.
		{"SORT (DISPLAYTO) UTF-8 ALL", sorted("5 3 4 1 2")},
		{"SORT (REVERSE DISPLAYTO) UTF-8 ALL", sorted("2 1 4 3 5")},
		{"SORT (subject) utf-8 FROM adam", sorted("3 2")},
		{"SORT (DATE) UTF-8 TO {6}\r\némile", []string{"+ Ready for literal data", "* SORT 2", "$T OK SORT completed"}},
		{"UID SORT (ARRIVAL) UTF-8 ALL", []string{"* SORT 4 3 6 5 2", "$T OK UID SORT completed"}},
		{"UID SORT (SUBJECT) UTF-8 UID 4:*", []string{"* SORT 4 6 5", "$T OK UID SORT completed"}},
		{"SORT (DATE) KOI8-R ALL", []string{"$T NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"}},
		{"SORT (BOGUS) UTF-8 ALL", []string{"$T BAD Unknown sort key"}},
		{"SORT () UTF-8 ALL", []string{"$T BAD Empty sort criteria"}},
		{"SORT (REVERSE) UTF-8 ALL", []string{"re:$T BAD .*"}},
		{"SORT DATE UTF-8 ALL", []string{"$T BAD Expected sort criteria"}},
		{"SORT (DATE) UTF-8", []string{"$T BAD Missing arguments"}},
		{"SORT (DATE)", []string{"$T BAD Missing arguments"}},
		{"SORT (ARRIVAL) UTF-8 MODSEQ 1", []string{"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest", "re:\\* SORT 3 2 5 4 1 \\(MODSEQ \\d+\\)", "$T OK SORT completed"}},
	})
	// An empty result is "* SORT" alone.
	c.run([]step{{"SORT (DATE) UTF-8 SUBJECT nothing-matches", []string{"* SORT", "$T OK SORT completed"}}})

	// IMAP4rev2 keeps the SORT response for SORT without RETURN.
	c2 := e.dial()
	c2.login("alice")
	c2.cmd("E", "ENABLE IMAP4rev2")
	c2.cmd("S", "EXAMINE INBOX")
	c2.run([]step{{"SORT (SIZE) UTF-8 ALL", sorted("2 5 1 4 3")}})
}

// ESORT (RFC 5267 §3): RETURN options on SORT and the ESEARCH response,
// with SEARCHRES SAVE (RFC 5182).
func TestTranscriptESort(t *testing.T) {
	e := newEnv(t)
	sortMailbox(e)
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		// MIN and MAX are the first and last in sort order.
		{"SORT RETURN (MIN MAX COUNT) (SIZE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") MIN 2 MAX 3 COUNT 5`, "$T OK SORT completed"}},
		{"SORT RETURN (MIN) (REVERSE SIZE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") MIN 3`, "$T OK SORT completed"}},
		// ALL keeps the sort order: only ascending runs are joined.
		{"SORT RETURN (ALL) (ARRIVAL) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") ALL 3,2,5,4,1`, "$T OK SORT completed"}},
		{"SORT RETURN (ALL) (CC) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") ALL 2,5,3:4,1`, "$T OK SORT completed"}},
		{"SORT RETURN () (SUBJECT) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") ALL 1,3,5,2,4`, "$T OK SORT completed"}},
		{"UID SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") UID MIN 4 COUNT 5`, "$T OK UID SORT completed"}},
		{"UID SORT RETURN (ALL) (DATE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") UID ALL 4:5,3,6,2`, "$T OK UID SORT completed"}},
		{"SORT RETURN (COUNT MIN) (DATE) UTF-8 SUBJECT nothing", []string{`* ESEARCH (TAG "$T") COUNT 0`, "$T OK SORT completed"}},
		{"SORT RETURN (BOGUS) (DATE) UTF-8 ALL", []string{"$T BAD Unknown SEARCH return option"}},
		{"SORT RETURN (SAVE) (REVERSE SIZE) UTF-8 LARGER 2500", []string{"$T OK SORT completed"}},
		{"FETCH $ (UID)", []string{"* 3 FETCH (UID 4)", "* 4 FETCH (UID 5)", "$T OK FETCH completed"}},
		{"SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 ALL", []string{`* ESEARCH (TAG "$T") MIN 3`, "$T OK SORT completed"}},
		{"SEARCH $", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SORT RETURN (MAX) (ARRIVAL) UTF-8 MODSEQ 1", []string{"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest", `re:\* ESEARCH \(TAG "$T"\) MAX 1 MODSEQ \d+`, "$T OK SORT completed"}},
		{"SORT RETURN (ALL) (DATE) KOI8-R ALL", []string{"$T NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"}},
	})
}

// threadMailbox holds a crafted reply tree (UIDs 2 to 14): replies, a
// missing parent shared by two messages, a duplicate Message-ID, a
// References loop between two messages, a message referencing itself, a
// message without Message-ID, and replies linked only by subject.
func threadMailbox(e *testEnv) {
	e.fillerGone("bob", "INBOX")
	at := func(h, m int) string {
		return time.Date(2024, 3, 1, h, m, 0, 0, time.UTC).Format(time.RFC1123Z)
	}
	msgs := []sortMsg{
		{subject: "Plan", id: "<root@x>", date: at(10, 0)},                                            // 1
		{subject: "Re: Plan", id: "<r1@x>", refs: "<root@x>", date: at(11, 0)},                        // 2
		{subject: "Re: Plan", id: "<r2@x>", refs: "<root@x>\r\n <r1@x>", date: at(12, 0)},             // 3 (folded References)
		{subject: "Lost", id: "<orphan1@x>", refs: "<missing@x>", date: at(9, 0)},                     // 4
		{subject: "Re: Lost", id: "<orphan2@x>", inReplyTo: "<missing@x> (comment)", date: at(9, 30)}, // 5
		{subject: "Re: Plan", id: "<r1@x>", refs: "<root@x>", date: at(13, 0)},                        // 6: duplicate ID
		{subject: "Loop", id: "<loopA@x>", refs: "<loopB@x>", date: at(14, 0)},                        // 7
		{subject: "Re: Loop", id: "<loopB@x>", refs: "<loopA@x>", date: at(15, 0)},                    // 8: a loop
		{subject: "Self", id: "<self@x>", refs: "<loopA@x> <self@x> <loopA@x>", date: at(8, 0)},       // 9: loops to itself
		{subject: "Re: Plan", id: "<late@x>", date: at(16, 0)},                                        // 10: by subject only
		{subject: "Lost", id: "<lost2@x>", date: at(17, 0)},                                           // 11
		{subject: "Other", date: at(7, 0)},                                                            // 12: no Message-ID
		{subject: "Plan", id: "<plan2@x>", refs: "bogus no-at <>", date: at(18, 0)},                   // 13: no valid reference
	}
	for _, m := range msgs {
		e.deliver("bob", "INBOX", m.String())
	}
}

// THREAD (RFC 5256 §3) with both algorithms (§4) on a crafted reply tree.
func TestTranscriptThread(t *testing.T) {
	e := newEnv(t)
	threadMailbox(e)
	c := e.dial()
	c.login("bob")
	c.cmd("S", "SELECT INBOX")
	thread := func(s string) []string { return []string{"* THREAD " + s, "$T OK THREAD completed"} }
	c.run([]step{
		// 4 and 5 share the missing parent <missing@x>, a dummy kept at
		// the top with its children, which 11 joins by subject; 6 (a
		// duplicate of 2's ID) is a child of 1; 10 joins 1 by subject;
		// 13 has the subject of 1 and is no reply, so a dummy takes both;
		// 8 and 7 reference each other and 9 references itself: no loop.
		{"THREAD REFERENCES UTF-8 ALL", thread("(12)((4)(5)(11))((1 (2 3)(6)(10))(13))(8 7 9)")},
		{"UID THREAD REFERENCES UTF-8 ALL", []string{"* THREAD (13)((5)(6)(12))((2 (3 4)(7)(11))(14))(9 8 10)", "$T OK UID THREAD completed"}},
		// Without 1, its replies hang from a dummy that gathers the
		// other messages about "Plan".
		{"THREAD REFERENCES UTF-8 NOT 1", thread("(12)((4)(5)(11))((2 3)(6)(10)(13))(8 7 9)")},
		{"THREAD REFERENCES US-ASCII SUBJECT lost", thread("((4)(5)(11))")},
		{"THREAD references utf-8 1", thread("(1)")},
		{"THREAD ORDEREDSUBJECT UTF-8 ALL", thread("(12)(9)(4 (5)(11))(1 (2)(3)(6)(10)(13))(7 8)")},
		{"UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT loop", []string{"* THREAD (8 9)", "$T OK UID THREAD completed"}},
		{"THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing", []string{"* THREAD", "$T OK THREAD completed"}},
		{"THREAD REFERENCES KOI8-R ALL", []string{"$T NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"}},
		{"THREAD BOGUS UTF-8 ALL", []string{"$T BAD Unsupported threading algorithm"}},
		{"THREAD REFERENCES UTF-8", []string{"$T BAD Missing arguments"}},
		{"THREAD", []string{"$T BAD Missing arguments"}},
	})
}

// Expunged messages disappear from THREAD: the thread is recomputed from
// what is left (imaptest's thread5 does the same).
func TestTranscriptThreadAfterExpunge(t *testing.T) {
	e := newEnv(t)
	for _, m := range []sortMsg{
		{subject: "a", id: "<a@x>", date: "Fri, 01 Mar 2024 10:00:00 +0000"},
		{subject: "Re: a", id: "<b@x>", refs: "<a@x>", date: "Fri, 01 Mar 2024 11:00:00 +0000"},
		{subject: "Re: a", id: "<c@x>", refs: "<a@x> <b@x>", date: "Fri, 01 Mar 2024 12:00:00 +0000"},
	} {
		e.deliver("alice", "INBOX", m.String())
	}
	e.claimRecent("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{"THREAD REFERENCES UTF-8 ALL", []string{"* THREAD (1 2 3)", "$T OK THREAD completed"}},
		{"STORE 1 +FLAGS.SILENT (\\Deleted)", []string{"$T OK STORE completed"}},
		{"EXPUNGE", []string{"* 1 EXPUNGE", "$T OK EXPUNGE completed"}},
		// 1 is gone: the dummy left for <a@x> has one child and gives way
		// to it (RFC 5256 §4 step 3).
		{"THREAD REFERENCES UTF-8 ALL", []string{"* THREAD (1 2)", "$T OK THREAD completed"}},
	})
}

const pythonSortThread = `
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
for cap in ('SORT', 'SORT=DISPLAY', 'ESORT', 'THREAD=REFERENCES', 'THREAD=ORDEREDSUBJECT'):
    assert cap in M.capabilities, (cap, M.capabilities)
typ, data = M.select('INBOX'); assert typ == 'OK', data
typ, data = M.sort('(SUBJECT)', 'UTF-8', 'ALL'); assert typ == 'OK' and data == [b'1 3 5 2 4'], data
typ, data = M.sort('(REVERSE DATE)', 'US-ASCII', 'ALL'); assert data == [b'1 2 5 4 3'], data
typ, data = M.sort('(DISPLAYFROM)', 'UTF-8', 'ALL'); assert data == [b'2 4 5 3 1'], data
typ, data = M.uid('SORT', '(ARRIVAL)', 'UTF-8', 'ALL'); assert data == [b'4 3 6 5 2'], data
typ, data = M.sort('(SIZE)', 'UTF-8', 'FROM', 'adam'); assert data == [b'2 3'], data
typ, data = M.sort('(DATE)', 'KOI8-R', 'ALL'); assert typ == 'NO' and b'[BADCHARSET (UTF-8 US-ASCII)]' in data[0], (typ, data)
M.logout()
B = imaplib.IMAP4(host, port)
typ, _ = B.login('bob@example.org', 'pw-bob'); assert typ == 'OK'
typ, data = B.select('INBOX'); assert typ == 'OK', data
typ, data = B.thread('REFERENCES', 'UTF-8', 'ALL')
assert typ == 'OK' and data == [b'(12)((4)(5)(11))((1 (2 3)(6)(10))(13))(8 7 9)'], data
typ, data = B.thread('ORDEREDSUBJECT', 'UTF-8', 'ALL')
assert data == [b'(12)(9)(4 (5)(11))(1 (2)(3)(6)(10)(13))(7 8)'], data
typ, data = B.uid('THREAD', 'REFERENCES', 'UTF-8', 'SUBJECT', 'lost'); assert data == [b'((5)(6)(12))'], data
B.logout()
print('PYTHON-SORT-THREAD-OK')
`

// Python's imaplib sort() and thread() against the SORT and THREAD
// mailboxes of the transcript tests.
func TestClientPythonSortThread(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	sortMailbox(e)
	threadMailbox(e)
	host, port, _ := net.SplitHostPort(e.addr)
	out := runCmd(t, 30*time.Second, py, "-c", pythonSortThread, host, port)
	if !strings.Contains(out, "PYTHON-SORT-THREAD-OK") {
		t.Fatal(out)
	}
}

// What SORT and THREAD read: nothing but the view for ARRIVAL and SIZE;
// the stored parse results, FetchBatch at a time, for the other keys and
// THREAD, never a body; a header read from the store only when the
// content cache does not hold it (here a header of over 64 KB).
func TestSortThreadStoreCalls(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 4; i++ {
		e.deliver("alice", "INBOX", sortMsg{subject: fmt.Sprint("m", i), id: fmt.Sprintf("<m%d@x>", i), refs: "<m1@x>", bodyLen: 100}.String())
	}
	// A 90 KB body: never read.
	e.deliver("alice", "INBOX", sortMsg{subject: "Re: m1", id: "<big@x>", refs: "<m2@x>", bodyLen: 90000}.String())
	// A 70 KB header: read to find its References.
	pad := "X-Pad: " + strings.Repeat(strings.Repeat("p", 70)+"\r\n ", 1000) + "end\r\n"
	e.deliver("alice", "INBOX", pad+sortMsg{subject: "m6", id: "<m6@x>", refs: "<big@x>", bodyLen: 10}.String())
	cs := &countingStore{Store: e.store, calls: map[string]int{}}
	_, addr := e.startServer(cs, func(c *Config) { c.Limits.FetchBatch = 4 })
	a := dialAddr(t, addr)
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	want := func(what string, calls map[string]int) {
		t.Helper()
		if got := cs.take(); !maps.Equal(got, calls) {
			t.Errorf("%s: store calls %v, want %v", what, got, calls)
		}
	}
	cs.take()
	a.run([]step{{"SORT (REVERSE SIZE ARRIVAL) UTF-8 ALL", []string{"* SORT 5 6 1 2 3 4", "$T OK SORT completed"}}})
	want("SORT by size and arrival", map[string]int{})
	a.run([]step{{"SORT (REVERSE SUBJECT) UTF-8 ALL", []string{"* SORT 6 4 3 2 1 5", "$T OK SORT completed"}}})
	want("SORT by subject", map[string]int{"MessageContents": 2})
	a.run([]step{{"THREAD REFERENCES UTF-8 ALL", []string{"* THREAD (1 (2 5 6)(3)(4))", "$T OK THREAD completed"}}})
	want("THREAD", map[string]int{"MessageContents": 2, "OpenMessage": 1})
}
