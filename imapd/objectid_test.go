package imapd

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

// firstMatch returns the first submatch of re in lines.
func firstMatch(t *testing.T, lines []string, re string) string {
	t.Helper()
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if m := r.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no %q in %q", re, lines)
	return ""
}

// execSQL runs a statement on the test database (to age rows).
func execSQL(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// OBJECTID (RFC 8474): MAILBOXID on CREATE, SELECT, STATUS and LIST-STATUS,
// kept by RENAME; EMAILID kept by COPY and MOVE and equal on another node;
// THREADID NIL; SEARCH EMAILID/THREADID.
func TestTranscriptObjectID(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("one", "first\r\n"))
	e.deliver("alice", "INBOX", testMessage("two", "second\r\n"))
	inbox := e.mailbox("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	r := c.cmd("C", "CREATE Box")
	box := firstMatch(t, r, `^C OK \[MAILBOXID \((F[0-9]+)\)\] CREATE completed$`)
	if box == fmt.Sprintf("F%d", inbox.ID) {
		t.Fatalf("new mailbox has INBOX's id %s", box)
	}
	c.run([]step{
		{"STATUS Box (MAILBOXID MESSAGES)", []string{"* STATUS Box (MAILBOXID (" + box + ") MESSAGES 0)", "$T OK STATUS completed"}},
		{"RENAME Box Box2", []string{"$T OK RENAME completed"}},
		// RFC 8474 §4.2.1: RENAME keeps the id.
		{"STATUS Box2 (MAILBOXID)", []string{"* STATUS Box2 (MAILBOXID (" + box + "))", "$T OK STATUS completed"}},
		{`LIST "" Box2 RETURN (STATUS (MAILBOXID))`, []string{`* LIST (\HasNoChildren) "/" Box2`,
			"* STATUS Box2 (MAILBOXID (" + box + "))", "$T OK LIST completed"}},
		{"STATUS Nope (MAILBOXID)", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"STATUS INBOX (MAILBOXID", []string{"re:$T BAD .*"}},
	})
	r = c.cmd("S", "SELECT INBOX")
	if got := firstMatch(t, r, `^\* OK \[MAILBOXID \((F[0-9]+)\)\] Ok$`); got != fmt.Sprintf("F%d", inbox.ID) {
		t.Fatalf("SELECT INBOX: MAILBOXID %s, want F%d", got, inbox.ID)
	}
	r = c.cmd("F", "FETCH 1:2 (EMAILID THREADID)")
	id1 := firstMatch(t, r, `^\* 1 FETCH \(EMAILID \((M[0-9]+)\) THREADID NIL\)$`)
	id2 := firstMatch(t, r, `^\* 2 FETCH \(EMAILID \((M[0-9]+)\) THREADID NIL\)$`)
	if id1 == id2 || !validObjectID(id1) {
		t.Fatalf("EMAILIDs %s %s", id1, id2)
	}
	c.run([]step{
		{"UID SEARCH EMAILID " + id2, []string{"* SEARCH 2", "$T OK UID SEARCH completed"}},
		{"SEARCH EMAILID " + id1 + " EMAILID " + id2, []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH OR EMAILID " + id1 + " EMAILID " + id2, []string{"* SEARCH 1 2", "$T OK SEARCH completed"}},
		{"SEARCH EMAILID M999999999", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH EMAILID Xnot-ours_1", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH THREADID T1", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH NOT THREADID T1", []string{"* SEARCH 1 2", "$T OK SEARCH completed"}},
		{"SEARCH EMAILID", []string{"re:$T BAD .*"}},
		{"SEARCH EMAILID M1.2", []string{"$T BAD Invalid object id"}},
		{"SEARCH EMAILID " + strings.Repeat("a", 256), []string{"$T BAD Invalid object id"}},
		{"COPY 1 Box2", []string{"re:$T OK \\[COPYUID \\d+ 1 1\\] COPY completed"}},
		{"MOVE 2 Box2", []string{"re:\\* OK \\[COPYUID \\d+ 2 2\\] Moved", "* 2 EXPUNGE", "* 1 RECENT", "$T OK MOVE completed"}},
		{"SELECT Box2", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "* OK [MAILBOXID (" + box + ")] Ok", "$T OK [READ-WRITE] SELECT completed"}},
		// RFC 8474 §5.1: COPY and MOVE keep the EMAILID.
		{"FETCH 1:2 (UID EMAILID)", []string{"* 1 FETCH (UID 1 EMAILID (" + id1 + "))", "* 2 FETCH (UID 2 EMAILID (" + id2 + "))", "$T OK FETCH completed"}},
		{"UID SEARCH EMAILID " + id1, []string{"* SEARCH 1", "$T OK UID SEARCH completed"}},
	})

	// Another node derives the same ids from the database.
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	b := dialAddr(t, addrB)
	b.login("alice")
	b.run([]step{
		{"STATUS Box2 (MAILBOXID)", []string{"* STATUS Box2 (MAILBOXID (" + box + "))", "$T OK STATUS completed"}},
		{"EXAMINE Box2", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "* OK [MAILBOXID (" + box + ")] Ok", "$T OK [READ-ONLY] EXAMINE completed"}},
		{"FETCH 2 (EMAILID)", []string{"* 2 FETCH (EMAILID (" + id2 + "))", "$T OK FETCH completed"}},
	})

	// A mailbox deleted and created again is a new mailbox (RFC 8474 §4.1).
	c.cmd("S", "SELECT INBOX")
	c.cmd("D", "DELETE Box2")
	r = c.cmd("C", "CREATE Box2")
	if again := firstMatch(t, r, `^C OK \[MAILBOXID \((F[0-9]+)\)\]`); again == box {
		t.Fatalf("recreated mailbox kept id %s", box)
	}
}

// Object ids are private to their account: bob cannot find alice's
// message by its EMAILID, nor his own mailboxes share her ids.
func TestObjectIDIsolation(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("secret", "x\r\n"))
	a := e.dial()
	a.login("alice")
	a.cmd("S", "SELECT INBOX")
	id := firstMatch(t, a.cmd("F", "FETCH 1 EMAILID"), `EMAILID \((M[0-9]+)\)`)
	e.deliver("bob", "INBOX", testMessage("other", "y\r\n"))
	b := e.dial()
	b.login("bob")
	b.cmd("S", "SELECT INBOX")
	b.run([]step{{"SEARCH EMAILID " + id, []string{"* SEARCH", "$T OK SEARCH completed"}}})
}

// SAVEDATE (RFC 8514): FETCH SAVEDATE, the SAVED* search keys, and a new
// save date on COPY and MOVE.
func TestTranscriptSaveDate(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("old", "x\r\n"))
	e.deliver("alice", "INBOX", testMessage("new", "y\r\n"))
	execSQL(t, e.url, `UPDATE messages SET save_date = '2020-05-17 10:00:00+00' WHERE mailbox_id = $1 AND uid = 1`,
		e.mailbox("alice", "INBOX").ID)
	today := time.Now().Format("2-Jan-2006")
	tomorrow := time.Now().AddDate(0, 0, 1).Format("2-Jan-2006")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{"FETCH 1 (SAVEDATE)", []string{`re:\* 1 FETCH \(SAVEDATE "17-May-2020 \d\d:00:00 [+-]\d{4}"\)`, "$T OK FETCH completed"}},
		{"FETCH 2 (UID SAVEDATE)", []string{`re:\* 2 FETCH \(UID 2 SAVEDATE "[ 0-9]\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"\)`, "$T OK FETCH completed"}},
		{"SEARCH SAVEDBEFORE 1-Jan-2021", []string{"* SEARCH 1", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDON 17-May-2020", []string{"* SEARCH 1", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDSINCE " + today, []string{"* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDSINCE " + tomorrow, []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDON " + today + " SAVEDBEFORE 1-Jan-2021", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDATESUPPORTED", []string{"* SEARCH 1 2", "$T OK SEARCH completed"}},
		{"SEARCH NOT SAVEDATESUPPORTED", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH SAVEDBEFORE yesterday", []string{"re:$T BAD .*"}},
		{"SEARCH SAVEDON", []string{"re:$T BAD .*"}},
		// RFC 8514 §4: a copy is saved now; so is a moved message.
		{"COPY 1 INBOX", []string{"* 3 EXISTS", "* 3 RECENT", "re:$T OK \\[COPYUID \\d+ 1 3\\] COPY completed"}},
		{"SEARCH SAVEDSINCE " + today, []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"MOVE 1 Trash", []string{"re:.*COPYUID.*", "* 1 EXPUNGE", "* 2 RECENT", "$T OK MOVE completed"}},
		{"SELECT Trash", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:$T OK .*"}},
		{"SEARCH SAVEDSINCE " + today, []string{"* SEARCH 1", "$T OK SEARCH completed"}},
	})
}

const htmlMsg = "From: a@example.org\r\nSubject: html\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
	"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
	"<html><body><p>Hello&nbsp;<b>there</b>,</p>\r\n\r\n<p>caf\xc3\xa9   time</p></body></html>\r\n" +
	"--b--\r\n"

// PREVIEW (RFC 8970): stored at delivery, PREVIEW (LAZY), the on-demand
// computation for contents stored before previews, errors.
func TestTranscriptPreview(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("one", "Hi Bob,\r\n\r\n  see   you\tsoon.\r\n"))
	e.deliver("alice", "INBOX", htmlMsg)
	e.deliver("alice", "INBOX", "Subject: empty\r\nContent-Type: image/png\r\n\r\nAAAA\r\n")
	e.deliver("alice", "INBOX", testMessage("long", strings.Repeat("0123456789 ", 40)))
	c := e.dial()
	c.login("alice")
	c.cmd("E", "ENABLE UTF8=ACCEPT")
	c.cmd("S", "SELECT INBOX")
	long := strings.Repeat("0123456789 ", 24)[:256]
	c.run([]step{
		{"FETCH 1:4 (PREVIEW)", []string{`* 1 FETCH (PREVIEW "Hi Bob, see you soon.")`, "* 2 FETCH (PREVIEW \"Hello there, caf\u00e9 time\")",
			`* 3 FETCH (PREVIEW "")`, `* 4 FETCH (PREVIEW "` + long + `")`, "$T OK FETCH completed"}},
		{"FETCH 1 (PREVIEW (LAZY) UID)", []string{`* 1 FETCH (PREVIEW "Hi Bob, see you soon." UID 1)`, "$T OK FETCH completed"}},
		{"FETCH 1 (PREVIEW (lazy) PREVIEW)", []string{`* 1 FETCH (PREVIEW "Hi Bob, see you soon.")`, "$T OK FETCH completed"}},
		{"FETCH 1 PREVIEW (CHANGEDSINCE 1)", []string{`re:\* OK \[HIGHESTMODSEQ \d+\] Highest`, `re:\* 1 FETCH \(PREVIEW "Hi Bob, see you soon." MODSEQ \(\d+\)\)`, "$T OK FETCH completed"}},
		{"FETCH 1 (PREVIEW (FOO))", []string{"re:$T BAD .*"}},
		{"FETCH 1 (PREVIEW (LAZY)", []string{"re:$T BAD .*"}},
		{"FETCH 1 (PREVIEW ())", []string{"re:$T BAD .*"}},
		{"FETCH 1 (FLAGS)", []string{`* 1 FETCH (FLAGS (\Recent))`, "$T OK FETCH completed"}}, // PREVIEW sets no \Seen
	})

	// Contents stored before previews: LAZY answers NIL, PREVIEW computes
	// it from the body, on a node whose cache never held the content.
	execSQL(t, e.url, `UPDATE contents SET parsed = (parsed::jsonb - 'preview')::json`)
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	b := dialAddr(t, addrB)
	b.login("alice")
	b.cmd("S", "EXAMINE INBOX")
	b.run([]step{
		{"FETCH 1:2 (PREVIEW (LAZY))", []string{`* 1 FETCH (PREVIEW NIL)`, `* 2 FETCH (PREVIEW NIL)`, "$T OK FETCH completed"}},
		// IMAP4rev1 without UTF8=ACCEPT: 8-bit text goes in a literal.
		{"FETCH 1:2 (PREVIEW)", []string{`* 1 FETCH (PREVIEW "Hi Bob, see you soon.")`,
			"* 2 FETCH (PREVIEW {23}\r\nHello there, caf\u00e9 time)", "$T OK FETCH completed"}},
	})
}

// createdOK is the tagged OK of a CREATE (RFC 8474 §4.1: with MAILBOXID).
const createdOK = `re:$T OK \[MAILBOXID \(F\d+\)\] CREATE completed`

// mailboxIDLine is the MAILBOXID response of SELECT/EXAMINE (RFC 8474 §4.2).
const mailboxIDLine = `re:\* OK \[MAILBOXID \(F\d+\)\] Ok`

const pythonObjects = `
import imaplib, re, sys
host, port = sys.argv[1], int(sys.argv[2])
imaplib.Commands['SETMETADATA'] = imaplib.Commands['GETMETADATA'] = ('AUTH', 'SELECTED')
M = imaplib.IMAP4(host, port)
for cap in ('OBJECTID', 'SAVEDATE', 'PREVIEW'):
    assert cap in M.capabilities, M.capabilities
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
for cap in ('METADATA', 'METADATA-SERVER'):
    assert cap in M.capabilities, M.capabilities
typ, data = M.select('INBOX'); assert typ == 'OK'
mbid = M.untagged_responses.get('MAILBOXID'); assert mbid and re.match(rb'^\(F\d+\)$', mbid[0]), mbid
typ, data = M.fetch('1', '(EMAILID THREADID SAVEDATE PREVIEW)'); assert typ == 'OK', data
m = re.search(rb'EMAILID \((M\d+)\) THREADID NIL SAVEDATE "[^"]+" PREVIEW "Hello from python, preview."', data[0]); assert m, data
typ, data = M.uid('SEARCH', None, 'EMAILID', m.group(1).decode()); assert data == [b'1'], data
typ, data = M.search(None, 'SAVEDATESUPPORTED'); assert data == [b'1'], data
typ, data = M._simple_command('SETMETADATA', 'INBOX', '(/private/comment "from python")'); assert typ == 'OK', data
typ, data = M._simple_command('GETMETADATA', 'INBOX', '/private/comment'); assert typ == 'OK', data
typ, data = M._untagged_response(typ, data, 'METADATA'); assert data == [b'INBOX (/private/comment "from python")'], data
typ, data = M._simple_command('SETMETADATA', 'INBOX', '(/private/x "%s")' % ('y' * 20000)); assert typ == 'NO', (typ, data)
M.logout()
print('PYTHON-OK')
`

// Python's imaplib with OBJECTID, SAVEDATE, PREVIEW and METADATA.
func TestClientPythonObjects(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("py", "Hello from  python,\r\n\r\npreview.\r\n"))
	host, port, _ := net.SplitHostPort(e.addr)
	if out := runCmd(t, 30*time.Second, py, "-c", pythonObjects, host, port); !strings.Contains(out, "PYTHON-OK") {
		t.Fatal(out)
	}
}

// contentIDStore answers MessageContents with content 1000+UID, except
// UID 19, expunged meanwhile.
type contentIDStore struct{ fuzzStore }

func (contentIDStore) MessageContents(_ context.Context, _, _ int64, refs []mailstore.ContentRef) ([]mailstore.MessageContent, error) {
	out := make([]mailstore.MessageContent, len(refs))
	for i, r := range refs {
		if r.UID != 19 {
			out[i] = mailstore.MessageContent{ContentID: 1000 + int64(r.UID), Parsed: &msgparse.Message{}}
		}
	}
	return out, nil
}

// FETCH EMAILID asks the store only for the content ids the view lacks,
// and leaves out a message expunged meanwhile whose id it cannot learn.
func TestFetchEmailIDUnknownContent(t *testing.T) {
	var out strings.Builder
	runCommandsOn(t, contentIDStore{}, []byte("a FETCH 4:10 (UID EMAILID)\r\nb FETCH 5 EMAILID\r\n"), stateSelected, &out)
	want := "* 4 FETCH (UID 7 EMAILID (M7))\r\n* 5 FETCH (UID 9 EMAILID (M1009))\r\n* 6 FETCH (UID 11 EMAILID (M11))\r\n" +
		"* 7 FETCH (UID 13 EMAILID (M13))\r\n* 8 FETCH (UID 15 EMAILID (M15))\r\n* 9 FETCH (UID 17 EMAILID (M17))\r\n" +
		"a OK FETCH completed\r\n* 5 FETCH (EMAILID (M1009))\r\nb OK FETCH completed\r\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
