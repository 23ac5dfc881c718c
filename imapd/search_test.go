package imapd

import (
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// SEARCH (RFC 9051 §6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC 5182)
// and MODSEQ (RFC 7162 §3.1.5), evaluated by the store.
func TestTranscriptSearch(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("Quarterly Report", "The numbers are fine.\r\n"), mailstore.FlagSeen)
	e.deliver("alice", "INBOX", multipartMsg, mailstore.FlagFlagged)
	e.deliver("alice", "INBOX", "From: Eve <eve@evil.example>\r\nTo: alice@example.org\r\nCc: bob@example.org\r\nSubject: lunch?\r\nDate: Mon, 10 Jun 2024 08:00:00 +0000\r\nX-Priority: 1\r\n\r\nPIZZA at noon\r\n")
	e.deliver("alice", "INBOX", testMessage("empty", ""), mailstore.FlagDeleted|mailstore.FlagSeen)
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{"SEARCH ALL", []string{"* SEARCH 1 2 3 4", "$T OK SEARCH completed"}},
		{"SEARCH SEEN", []string{"* SEARCH 1 4", "$T OK SEARCH completed"}},
		{"SEARCH UNSEEN UNDELETED", []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"SEARCH FLAGGED", []string{"* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH DELETED", []string{"* SEARCH 4", "$T OK SEARCH completed"}},
		{"SEARCH SUBJECT report", []string{"* SEARCH 1 2", "$T OK SEARCH completed"}},
		{"SEARCH SUBJECT \"quarterly REPORT\"", []string{"* SEARCH 1", "$T OK SEARCH completed"}},
		{"SEARCH SUBJECT grüße", []string{"$T BAD Unexpected extra arguments"}},
		{"SEARCH CHARSET UTF-8 SUBJECT {6}\r\ngrüß", []string{"+ Ready for literal data", "* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH CHARSET KOI8-R SUBJECT x", []string{"$T NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset"}},
		{"SEARCH FROM eve", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH TO alice CC bob", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH HEADER X-Priority \"\"", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH HEADER Message-ID multi", []string{"* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH BODY pizza", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH TEXT numbers", []string{"* SEARCH 1", "$T OK SEARCH completed"}},
		{"SEARCH TEXT lunch", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH SENTSINCE 1-Jun-2024", []string{"* SEARCH 3", "$T OK SEARCH completed"}},
		{"SEARCH SENTBEFORE 2-Mar-2024", []string{"* SEARCH 1 4", "$T OK SEARCH completed"}},
		{"SEARCH SENTON 2-Mar-2024", []string{"* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH ON 1-Mar-2024", []string{"* SEARCH 1 2 3 4", "$T OK SEARCH completed"}},
		{"SEARCH SINCE \"2-Mar-2024\"", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH BEFORE 1-Jan-2025 SINCE 1-Jan-2024", []string{"* SEARCH 1 2 3 4", "$T OK SEARCH completed"}},
		{"SEARCH SINCE 1-Jan-2020 SINCE 1-Jan-2030", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH LARGER 500", []string{"* SEARCH 2", "$T OK SEARCH completed"}},
		{"SEARCH SMALLER 155", []string{"* SEARCH 4", "$T OK SEARCH completed"}},
		{"SEARCH NOT SEEN", []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"SEARCH OR FLAGGED DELETED", []string{"* SEARCH 2 4", "$T OK SEARCH completed"}},
		{"SEARCH OR (FROM eve) (OR SEEN FLAGGED) NOT 4", []string{"* SEARCH 1 2 3", "$T OK SEARCH completed"}},
		{"SEARCH 2:3", []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"SEARCH 3:*,9:10", []string{"* SEARCH 3 4", "$T OK SEARCH completed"}},
		{"SEARCH UID 2,4:*", []string{"* SEARCH 2 4", "$T OK SEARCH completed"}},
		{"UID SEARCH UID 3", []string{"* SEARCH 3", "$T OK UID SEARCH completed"}},
		// All four are \Recent in this session (it selected first): NEW is
		// RECENT UNSEEN, OLD is NOT RECENT (RFC 3501 §6.4.4).
		{"SEARCH NEW", []string{"* SEARCH 2 3", "$T OK SEARCH completed"}},
		{"SEARCH RECENT", []string{"* SEARCH 1 2 3 4", "$T OK SEARCH completed"}},
		{"SEARCH OLD", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH OLD RECENT", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH KEYWORD $Junk", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"SEARCH BOGUS", []string{"$T BAD Unknown search key"}},
		{"SEARCH", []string{"$T BAD Missing arguments"}},
		{"SEARCH BEFORE 31-Feb-2024", []string{"$T BAD Invalid date"}},
		{"SEARCH RETURN (MIN MAX COUNT) UNSEEN", []string{`* ESEARCH (TAG "$T") MIN 2 MAX 3 COUNT 2`, "$T OK SEARCH completed"}},
		{"SEARCH RETURN () ALL", []string{`* ESEARCH (TAG "$T") ALL 1:4`, "$T OK SEARCH completed"}},
		{"UID SEARCH RETURN (COUNT ALL) DELETED", []string{`* ESEARCH (TAG "$T") UID ALL 4 COUNT 1`, "$T OK UID SEARCH completed"}},
		{"SEARCH RETURN (MIN) KEYWORD nothing", []string{`* ESEARCH (TAG "$T")`, "$T OK SEARCH completed"}},
		{"SEARCH RETURN (SAVE) OR FLAGGED SEEN", []string{"$T OK SEARCH completed"}},
		{"FETCH $ (UID)", []string{"* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)", "* 4 FETCH (UID 4)", "$T OK FETCH completed"}},
		{"SEARCH $ NOT DELETED", []string{"* SEARCH 1 2", "$T OK SEARCH completed"}},
		{"SEARCH RETURN (SAVE MIN) FROM eve", []string{`* ESEARCH (TAG "$T") MIN 3`, "$T OK SEARCH completed"}},
		{"UID FETCH $ (FLAGS)", []string{`* 3 FETCH (UID 3 FLAGS (\Recent))`, "$T OK UID FETCH completed"}},
		{"SEARCH RETURN (SAVE) BOGUS", []string{"$T BAD Unknown search key"}},
		{"FETCH $ (UID)", []string{"$T OK FETCH completed"}},
		{"SEARCH MODSEQ 1", []string{"re:\\* OK \\[HIGHESTMODSEQ \\d+\\] Highest", "re:\\* SEARCH 1 2 3 4 \\(MODSEQ \\d+\\)", "$T OK SEARCH completed"}},
		{"SEARCH MODSEQ \"/flags/\\\\draft\" all 1 FLAGGED", []string{"re:\\* SEARCH 2 \\(MODSEQ \\d+\\)", "$T OK SEARCH completed"}},
		{"ENABLE IMAP4rev2", []string{"$T BAD Command not allowed in this state"}},
	})
	c2 := e.dial()
	c2.login("alice")
	c2.run([]step{
		{"ENABLE IMAP4rev2", []string{"* ENABLED IMAP4rev2", "$T OK ENABLE completed"}},
		{"EXAMINE INBOX", []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:$T OK .*"}},
		// IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 §6.4.4).
		{"SEARCH UNSEEN", []string{`* ESEARCH (TAG "$T") ALL 2:3`, "$T OK SEARCH completed"}},
		{"UID SEARCH KEYWORD none", []string{`* ESEARCH (TAG "$T") UID`, "$T OK UID SEARCH completed"}},
	})
}
