package imapd

import (
	"fmt"
	"strings"
	"testing"
)

const multipartMsg = "From: Carol <carol@example.net>\r\n" +
	"To: alice@example.org\r\n" +
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= report\r\n" +
	"Date: Sat, 02 Mar 2024 09:30:00 +0100\r\n" +
	"Message-ID: <multi@example.net>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello =C3=A4 world\r\n" +
	"--XYZ\r\n" +
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
	"\r\n" +
	"AAECAwQFBgcICQ==\r\n" +
	"--XYZ\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: dave@example.com\r\n" +
	"Subject: inner\r\n" +
	"\r\n" +
	"inner body\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Transfer-Encoding: x-uuencode\r\n" +
	"\r\n" +
	"begin 644 x\r\n" +
	"--XYZ--\r\n"

func lit(s string) string { return fmt.Sprintf("{%d}\r\n%s", len(s), s) }

func between(s, from, to string) string {
	i := strings.Index(s, from)
	j := strings.Index(s[i:], to)
	return s[i : i+j]
}

// SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3), CLOSE, UNSELECT.
func TestTranscriptSelect(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("one", "1\r\n"), 1)
	e.deliver("alice", "INBOX", testMessage("two", "2\r\n"))
	mb := e.mailbox("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	c.run([]step{
		{"SELECT Nope", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"EXAMINE inbox", []string{
			"* 2 EXISTS", "* 2 RECENT", "* OK [UNSEEN 2] First unseen",
			fmt.Sprintf("* OK [UIDVALIDITY %d] UIDs valid", mb.UIDValidity),
			"* OK [UIDNEXT 3] Predicted next UID",
			`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`,
			"* OK [PERMANENTFLAGS ()] Read-only mailbox",
			"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest",
			fmt.Sprintf("* OK [MAILBOXID (F%d)] Ok", mb.ID),
			"$T OK [READ-ONLY] EXAMINE completed"}},
		{"STORE 1 +FLAGS (\\Deleted)", []string{"$T NO [CANNOT] Mailbox is read-only"}},
		{"EXPUNGE", []string{"$T NO [CANNOT] Mailbox is read-only"}},
		{"MOVE 1 Trash", []string{"$T NO [CANNOT] Mailbox is read-only"}},
		// BODY[] in a read-only mailbox does not set \Seen.
		{"FETCH 2 (BODY[TEXT] FLAGS)", []string{"* 2 FETCH (BODY[TEXT] {3}\r\n2\r\n FLAGS (\\Recent))", "$T OK FETCH completed"}},
		{"CLOSE", []string{"$T OK CLOSE completed"}},
		// EXAMINE shows \Recent without taking it; SELECT takes it (RFC 3501 §2.3.2).
		{"STATUS INBOX (RECENT)", []string{"* STATUS INBOX (RECENT 2)", "$T OK STATUS completed"}},
		{"FETCH 1 FLAGS", []string{"$T BAD No mailbox selected"}},
		{"SELECT INBOX (CONDSTORE)", []string{"* 2 EXISTS", "* 2 RECENT", "* OK [UNSEEN 2] First unseen", "re:.*UIDVALIDITY.*", "re:.*UIDNEXT.*", "re:\\* FLAGS.*", `* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] Flags permitted`, "re:.*HIGHESTMODSEQ.*", mailboxIDLine, "$T OK [READ-WRITE] SELECT completed"}},
		{"STORE 2 +FLAGS.SILENT (\\Deleted)", []string{"re:\\* 2 FETCH \\(UID 2 MODSEQ \\(\\d+\\)\\)", "$T OK STORE completed"}},
		{"UNSELECT", []string{"$T OK UNSELECT completed"}},
		{"STATUS INBOX (MESSAGES DELETED RECENT)", []string{"* STATUS INBOX (MESSAGES 2 DELETED 1 RECENT 0)", "$T OK STATUS completed"}},
		{"SELECT INBOX", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", mailboxIDLine, "$T OK [READ-WRITE] SELECT completed"}},
		{"CLOSE", []string{"$T OK CLOSE completed"}}, // expunges silently
		{"STATUS INBOX (MESSAGES DELETED)", []string{"* STATUS INBOX (MESSAGES 1 DELETED 0)", "$T OK STATUS completed"}},
		{"ENABLE IMAP4rev2", []string{"* ENABLED IMAP4rev2", "$T OK ENABLE completed"}},
		{"SELECT INBOX", []string{"* 1 EXISTS", "re:.*UIDVALIDITY.*", "* OK [UIDNEXT 3] Predicted next UID", "re:\\* FLAGS.*", "re:.*PERMANENTFLAGS.*", "re:.*HIGHESTMODSEQ.*", mailboxIDLine, `* LIST (\HasNoChildren) "/" INBOX`, "$T OK [READ-WRITE] SELECT completed"}},
		// Selecting again first closes the current mailbox (RFC 9051 §6.3.2).
		{"EXAMINE Sent", []string{"* OK [CLOSED] Previous mailbox closed", "* 0 EXISTS", "re:.*UIDVALIDITY.*", "* OK [UIDNEXT 1] Predicted next UID", "re:\\* FLAGS.*", "re:.*PERMANENTFLAGS.*", "re:.*HIGHESTMODSEQ.*", mailboxIDLine, `* LIST (\HasNoChildren \Sent) "/" Sent`, "$T OK [READ-ONLY] EXAMINE completed"}},
		// A failed SELECT leaves no mailbox selected.
		{"SELECT Nope", []string{"* OK [CLOSED] Previous mailbox closed", "$T NO [NONEXISTENT] No such mailbox"}},
		{"FETCH 1 FLAGS", []string{"$T BAD No mailbox selected"}},
	})
}

// FETCH data items (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162 MODSEQ).
func TestTranscriptFetch(t *testing.T) {
	e := newEnv(t)
	simple := testMessage("one", "line 1\r\nline 2\r\n")
	e.deliver("alice", "INBOX", simple)
	e.deliver("alice", "INBOX", multipartMsg)
	e.claimRecent("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	hdr := simple[:strings.Index(simple, "\r\n\r\n")+4]
	part1 := "Hello =C3=A4 world"
	inner := between(multipartMsg, "From: dave", "\r\n--XYZ\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode")
	c.run([]step{
		{"FETCH 1 (UID RFC822.SIZE INTERNALDATE FLAGS)", []string{fmt.Sprintf(`* 1 FETCH (UID 1 RFC822.SIZE %d INTERNALDATE "01-Mar-2024 12:00:00 +0000" FLAGS ())`, len(simple)), "$T OK FETCH completed"}},
		{"FETCH 1 FAST", []string{fmt.Sprintf(`* 1 FETCH (FLAGS () INTERNALDATE "01-Mar-2024 12:00:00 +0000" RFC822.SIZE %d)`, len(simple)), "$T OK FETCH completed"}},
		{"FETCH 1 ENVELOPE", []string{`* 1 FETCH (ENVELOPE ("Fri, 01 Mar 2024 12:00:00 +0000" "one" (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Bob" NIL "bob" "example.org")) NIL NIL NIL "<one@example.org>"))`, "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[HEADER]", []string{"* 1 FETCH (BODY[HEADER] " + lit(hdr) + ")", "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject \"X-None\" to)]", []string{"* 1 FETCH (BODY[HEADER.FIELDS (Subject X-None to)] " + lit("To: Bob <bob@example.org>\r\nSubject: one\r\n\r\n") + ")", "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (From To Subject Date)]", []string{"* 1 FETCH (BODY[HEADER.FIELDS.NOT (From To Subject Date)] " + lit("Message-ID: <one@example.org>\r\n\r\n") + ")", "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[TEXT]<5.100>", []string{"* 1 FETCH (BODY[TEXT]<5> " + lit("1\r\nline 2\r\n") + ")", "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[]<0.4>", []string{"* 1 FETCH (BODY[]<0> " + lit("From") + ")", "$T OK FETCH completed"}},
		{"FETCH 1 BODY.PEEK[]<9999.4>", []string{`* 1 FETCH (BODY[]<9999> "")`, "$T OK FETCH completed"}},
		{"FETCH 1 RFC822.HEADER", []string{"* 1 FETCH (RFC822.HEADER " + lit(hdr) + ")", "$T OK FETCH completed"}},
		{"FETCH 1 FLAGS", []string{"* 1 FETCH (FLAGS ())", "$T OK FETCH completed"}},
		// Without .PEEK, \Seen is set and reported (RFC 9051 §6.4.5).
		{"FETCH 1 RFC822.TEXT", []string{"* 1 FETCH (RFC822.TEXT " + lit("line 1\r\nline 2\r\n") + ` FLAGS (\Seen))`, "$T OK FETCH completed"}},
		{"FETCH 1 RFC822", []string{"* 1 FETCH (RFC822 " + lit(simple) + ")", "$T OK FETCH completed"}},
		{"FETCH 2 BODYSTRUCTURE", []string{`re:\* 2 FETCH \(BODYSTRUCTURE \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "quoted-printable" 18 1 .*\) "mixed" \("boundary" "XYZ"\).*\)\)`, "$T OK FETCH completed"}},
		{"FETCH 2 BODY", []string{`re:\* 2 FETCH \(BODY \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "quoted-printable" 18 1\).* "mixed"\)\)`, "$T OK FETCH completed"}},
		{"FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME])", []string{"* 2 FETCH (BODY[1] " + lit(part1) + " BODY[1.MIME] " + lit("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n") + ")", "$T OK FETCH completed"}},
		{"FETCH 2 (BODY.PEEK[3] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT])", []string{"* 2 FETCH (BODY[3] " + lit(inner) + " BODY[3.HEADER] " + lit("From: dave@example.com\r\nSubject: inner\r\n\r\n") + " BODY[3.TEXT] " + lit("inner body") + ")", "$T OK FETCH completed"}},
		{"FETCH 2 BODY.PEEK[9]", []string{`* 2 FETCH (BODY[9] "")`, "$T OK FETCH completed"}},
		{"FETCH 2 (BINARY.SIZE[1] BINARY.SIZE[2] BINARY.PEEK[1] BINARY.PEEK[2])", []string{"* 2 FETCH (BINARY.SIZE[1] 14 BINARY.SIZE[2] 10 BINARY[1] ~" + lit("Hello ä world") + " BINARY[2] ~" + lit("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09") + ")", "$T OK FETCH completed"}},
		{"FETCH 2 BINARY.PEEK[2]<8.10>", []string{"* 2 FETCH (BINARY[2]<8> ~" + lit("\x08\x09") + ")", "$T OK FETCH completed"}},
		{"FETCH 2 BINARY.PEEK[4]", []string{"$T NO [UNKNOWN-CTE] Cannot decode this part's content transfer encoding"}},
		{"FETCH 2 FLAGS", []string{"* 2 FETCH (FLAGS ())", "$T OK FETCH completed"}},
		{"FETCH 2 BINARY[1]", []string{"* 2 FETCH (BINARY[1] ~" + lit("Hello ä world") + ` FLAGS (\Seen))`, "$T OK FETCH completed"}},
		{"UID FETCH 2 FLAGS", []string{`* 2 FETCH (UID 2 FLAGS (\Seen))`, "$T OK UID FETCH completed"}},
		{"UID FETCH 1:* (UID)", []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "$T OK UID FETCH completed"}},
		{"UID FETCH 3:* (UID)", []string{"* 2 FETCH (UID 2)", "$T OK UID FETCH completed"}},
		{"UID FETCH 7 (UID)", []string{"$T OK UID FETCH completed"}},
		{"FETCH 3 FLAGS", []string{"$T BAD Invalid message sequence number"}},
		{"FETCH * FLAGS", []string{`* 2 FETCH (FLAGS (\Seen))`, "$T OK FETCH completed"}},
		{"FETCH 1 (MODSEQ)", []string{"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest", "re:\\* 1 FETCH \\(MODSEQ \\(\\d+\\)\\)", "$T OK FETCH completed"}},
		{`FETCH 1 BODY.PEEK[HEADER.FIELDS ("X(y" "a\"b")]`, []string{`* 1 FETCH (BODY[HEADER.FIELDS ("X(y" "a\"b")] {2}` + "\r\n\r\n)", "$T OK FETCH completed"}},
		{"FETCH 1 BODY[HEADER.FIELDS ()]", []string{"$T BAD Empty header field list"}},
		{"FETCH 1 BODY[1.]", []string{"$T BAD Invalid section"}},
		{"FETCH 1 BODY[MIME]", []string{"$T BAD MIME needs a part number"}},
		{"FETCH 1 (FLAGS", []string{"$T BAD Expected ')' or a space in list"}},
		{"FETCH 1 BOGUS", []string{"$T BAD Unknown FETCH item"}},
		{"FETCH 1 BODY[]<0.0>", []string{"$T BAD Invalid partial range"}},
		{"FETCH 0 FLAGS", []string{"$T BAD Invalid sequence set"}},
		{"FETCH 1 FLAGS (VANISHED)", []string{"$T BAD VANISHED needs UID FETCH, QRESYNC and CHANGEDSINCE"}},
	})
}

// STORE (RFC 9051 §6.4.6) with UNCHANGEDSINCE (RFC 7162 §3.1.3).
func TestTranscriptStore(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 4; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("m", i), "x\r\n"))
	}
	e.claimRecent("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{`STORE 1 +FLAGS (\Seen \Flagged)`, []string{`* 1 FETCH (UID 1 FLAGS (\Flagged \Seen))`, "$T OK STORE completed"}},
		{`STORE 1:2 -FLAGS \Flagged`, []string{`* 1 FETCH (UID 1 FLAGS (\Seen))`, `* 2 FETCH (UID 2 FLAGS ())`, "$T OK STORE completed"}},
		{`STORE 2 FLAGS ($Forwarded Work)`, []string{`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft $Forwarded Work)`, `* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft $Forwarded Work \*)] Flags permitted`, `* 2 FETCH (UID 2 FLAGS ($Forwarded Work))`, "$T OK STORE completed"}},
		{`STORE 3 +FLAGS.SILENT (\Answered)`, []string{"$T OK STORE completed"}},
		{`UID STORE 3 FLAGS (\Draft)`, []string{`* 3 FETCH (UID 3 FLAGS (\Draft))`, "$T OK UID STORE completed"}},
		{`STORE 1 +FLAGS (\Bogus)`, []string{"$T BAD Invalid system flag"}},
		{`STORE 1 +FLAGS (a"b)`, []string{"$T BAD Expected ')' or a space in list"}},
		{`STORE 1 +FLAGS (a%b)`, []string{"$T BAD Expected ')' or a space in list"}},
		{`STORE 1 +FLAGZ (\Seen)`, []string{"$T BAD Expected FLAGS or FLAGS.SILENT"}},
		{`STORE 1 (UNCHANGEDSINCE 0) +FLAGS (\Seen)`, []string{"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest", "$T OK [MODIFIED 1] Conditional STORE failed for some messages"}},
		{`FETCH 1:4 (MODSEQ)`, []string{"re:\\* 1 FETCH \\(MODSEQ \\(\\d+\\)\\)", "re:\\* 2 FETCH \\(MODSEQ \\(\\d+\\)\\)", "re:\\* 3 FETCH \\(MODSEQ \\(\\d+\\)\\)", "re:\\* 4 FETCH \\(MODSEQ \\(\\d+\\)\\)", "$T OK FETCH completed"}},
	})
	// UNCHANGEDSINCE with the current modseq of message 4 succeeds; with an
	// older one (message 1 changed since) fails.
	r := c.cmd("M", "FETCH 4 (MODSEQ)")
	var ms uint64
	fmt.Sscanf(r[0], "* 4 FETCH (MODSEQ (%d))", &ms)
	c.run([]step{
		{fmt.Sprintf(`STORE 1,4 (UNCHANGEDSINCE %d) +FLAGS (\Flagged)`, ms), []string{`re:\* 4 FETCH \(UID 4 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)`, "$T OK [MODIFIED 1] Conditional STORE failed for some messages"}},
		{fmt.Sprintf(`UID STORE 1,4 (UNCHANGEDSINCE %d) FLAGS.SILENT ()`, ms), []string{"$T OK [MODIFIED 1,4] Conditional STORE failed for some messages"}},
	})
}
