package imapd

import (
	"github.com/postrider/postrider/mailstore"

	"fmt"
	"strings"
	"testing"
)

// COPY, MOVE (RFC 6851), EXPUNGE, UID EXPUNGE (RFC 4315), COPYUID.
func TestTranscriptCopyMoveExpunge(t *testing.T) {
	e := newEnv(t)
	for i := 1; i <= 6; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	trash := e.mailbox("alice", "Trash")
	arch := e.mailbox("alice", "Archive")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{"COPY 1:2 Archive", []string{fmt.Sprintf("$T OK [COPYUID %d 1:2 1:2] COPY completed", arch.UIDValidity)}},
		{"UID COPY 6 Archive", []string{fmt.Sprintf("$T OK [COPYUID %d 6 3] UID COPY completed", arch.UIDValidity)}},
		{"COPY 1 Nope", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"MOVE 2 Nope", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"MOVE 2 Trash", []string{fmt.Sprintf("* OK [COPYUID %d 2 1] Moved", trash.UIDValidity), "* 2 EXPUNGE", "* 5 RECENT", "$T OK MOVE completed"}},
		// Sequence numbers shifted: 2 is now UID 3.
		{"FETCH 2 (UID)", []string{"* 2 FETCH (UID 3)", "$T OK FETCH completed"}},
		{"UID MOVE 4:5 Trash", []string{fmt.Sprintf("* OK [COPYUID %d 4:5 2:3] Moved", trash.UIDValidity), "* 4 EXPUNGE", "* 3 EXPUNGE", "* 3 RECENT", "$T OK UID MOVE completed"}},
		{"STORE 1:* +FLAGS.SILENT (\\Deleted)", []string{"$T OK STORE completed"}},
		{"STORE 1 -FLAGS.SILENT (\\Deleted)", []string{"$T OK STORE completed"}},
		{"FETCH 1:* (UID)", []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 6)", "$T OK FETCH completed"}},
		{"UID EXPUNGE 6", []string{"* 3 EXPUNGE", "* 2 RECENT", "$T OK UID EXPUNGE completed"}},
		{"EXPUNGE", []string{"* 2 EXPUNGE", "* 1 RECENT", "$T OK EXPUNGE completed"}},
		{"FETCH 1:* (UID)", []string{"* 1 FETCH (UID 1)", "$T OK FETCH completed"}},
		{"COPY 5 Trash", []string{"$T BAD Invalid message sequence number"}},
		{"ENABLE QRESYNC", []string{"$T BAD Command not allowed in this state"}},
	})
	// With QRESYNC, expunges are reported as VANISHED (RFC 7162 §3.2.10).
	c2 := e.dial()
	c2.login("alice")
	c2.cmd("E", "ENABLE QRESYNC")
	c2.cmd("S", "SELECT Archive")
	c2.run([]step{
		{"MOVE 1 Trash", []string{fmt.Sprintf("* OK [COPYUID %d 1 4] Moved", trash.UIDValidity), "* VANISHED 1", "* 2 RECENT", "$T OK MOVE completed"}},
		{"STORE 1 +FLAGS.SILENT (\\Deleted)", []string{"re:\\* 1 FETCH \\(UID 2 MODSEQ \\(\\d+\\)\\)", "$T OK STORE completed"}},
		{"EXPUNGE", []string{"* VANISHED 2", "* 1 RECENT", "$T OK EXPUNGE completed"}},
	})
}

// APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315), APPENDLIMIT
// (RFC 7889), LITERAL+ (RFC 7888), literal8 (RFC 3516) and UTF8 (RFC 6855).
func TestTranscriptAppend(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 1000 })
	inbox := e.mailbox("alice", "INBOX")
	msg := testMessage("appended", "hello\r\n")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.send(fmt.Sprintf(`A1 APPEND INBOX (\Seen $Important) "05-Jan-2024 10:00:00 +0100" {%d}`, len(msg)))
	check(t, "cont", []string{c.line()}, []string{"+ Ready for literal data"})
	c.sendRaw(msg + "\r\n")
	check(t, "append", c.until("A1"), []string{"* 1 EXISTS", "* 1 RECENT",
		`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important)`,
		`* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Important \*)] Flags permitted`,
		fmt.Sprintf("A1 OK [APPENDUID %d 1] APPEND completed", inbox.UIDValidity)})
	c.run([]step{
		{"FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])", []string{fmt.Sprintf(`* 1 FETCH (FLAGS (\Recent \Seen $Important) INTERNALDATE "05-Jan-2024 09:00:00 +0000" RFC822.SIZE %d BODY[] %s)`, len(msg), lit(msg)), "$T OK FETCH completed"}},
		// LITERAL+: no continuation.
		{fmt.Sprintf("APPEND Drafts {%d+}\r\n%s", len(msg), msg), []string{"re:$T OK \\[APPENDUID \\d+ 1\\] APPEND completed"}},
		// literal8 (BINARY).
		{"APPEND Drafts ~{5+}\r\nab\x00cd", []string{"re:$T OK \\[APPENDUID \\d+ 2\\] APPEND completed"}},
		// Refused before the literal is sent: no continuation request.
		{"APPEND Nope {10}", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"APPEND INBOX {1001}", []string{"$T NO [TOOBIG] Message exceeds APPENDLIMIT"}},
		{"APPEND INBOX (\\Bogus) {10}", []string{"$T BAD Invalid system flag"}},
		{"APPEND INBOX \"31-Feb-2024 00:00:00 +0000\" {10}", []string{"$T BAD Invalid date-time"}},
		// A non-synchronizing literal for a refused APPEND is skipped.
		{"APPEND Nope {5+}\r\nhello", []string{"$T NO [TRYCREATE] No such mailbox"}},
		// Garbage after the literal: BAD, and nothing is stored.
		{"APPEND INBOX {5+}\r\nhello EXTRA", []string{"$T BAD Expected a message literal"}},
		{"STATUS INBOX (MESSAGES)", []string{"* STATUS INBOX (MESSAGES 1)", "$T OK STATUS completed"}},
		{"APPEND INBOX UTF8 (~{5+}\r\nhello)", []string{"$T BAD UTF8 APPEND needs ENABLE UTF8=ACCEPT"}},
		{"APPEND INBOX", []string{"$T BAD Missing arguments"}},
		{"EXAMINE Drafts", append(selectLines(9), "re:$T OK .*")},
		// NUL never goes into a literal; BINARY gives the exact octets.
		{"UID FETCH 2 (BODY.PEEK[] BINARY.PEEK[])", []string{"* 2 FETCH (UID 2 BODY[] {5}\r\nab\x80cd BINARY[] ~{5}\r\nab\x00cd)", "$T OK UID FETCH completed"}},
	})
	c2 := e.dial()
	c2.login("alice")
	c2.cmd("E", "ENABLE UTF8=ACCEPT")
	u := "From: a@example.org\r\nSubject: Grüße\r\n\r\nÄ\r\n"
	c2.run([]step{
		{fmt.Sprintf("APPEND INBOX UTF8 (~{%d+}\r\n%s)", len(u), u), []string{"re:$T OK \\[APPENDUID \\d+ 2\\] APPEND completed"}},
		{"SELECT INBOX", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", mailboxIDLine, "re:$T OK .*"}},
		{"FETCH 2 BODY.PEEK[]", []string{"* 2 FETCH (BODY[] " + lit(u) + ")", "$T OK FETCH completed"}},
	})
	// Quota: refused before the literal.
	if err := e.store.SetQuota(t.Context(), e.accts["alice"].ID, 400); err != nil {
		t.Fatal(err)
	}
	c2.run([]step{{"APPEND INBOX {300}", []string{"$T NO [OVERQUOTA] Quota exceeded"}}})
	// A non-synchronizing literal is read and refused by the store (one
	// statement, no quota query first): the same reply, and the
	// connection goes on.
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 300) + "\r\n"
	c2.run([]step{
		{fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(big), big), []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{"STATUS INBOX (MESSAGES)", []string{"* STATUS INBOX (MESSAGES 2)", "$T OK STATUS completed"}},
	})
}

// An IMAP4rev1 session told of expunges that took \Recent messages away is
// sent the new RECENT count (RFC 3501 §7.3.2): its last count would
// otherwise still include messages that no longer exist.
func TestTranscriptRecentAfterExpunge(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprintf("m%d", i), "x\r\n"))
	}
	c := e.dial()
	c.login("alice")
	c.run([]step{{"SELECT INBOX", append(selectLines(9), "re:$T OK .*")}})
	other := e.dial()
	other.login("alice")
	other.cmd("E", "EXAMINE INBOX")
	if _, err := e.store.Expunge(t.Context(), e.accts["alice"].ID, e.mailbox("alice", "INBOX").ID, mailstore.UIDs(2), false); err != nil {
		t.Fatal(err)
	}
	c.run([]step{{"NOOP", []string{"* 2 EXPUNGE", "* 2 RECENT", "$T OK NOOP completed"}}})
	// The EXAMINE session took no \Recent: its count is unchanged, unsent.
	other.run([]step{{"NOOP", []string{"* 2 EXPUNGE", "$T OK NOOP completed"}}})
}
