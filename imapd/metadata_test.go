package imapd

import (
	"fmt"
	"strings"
	"testing"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// METADATA and METADATA-SERVER (RFC 5464): SETMETADATA and GETMETADATA
// on the server and on mailboxes, MAXSIZE and DEPTH, NIL removal,
// literals and literal8, and every error path.
func TestTranscriptMetadata(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.login("alice")
	big := strings.Repeat("x", 2000)
	c.run([]step{
		{`GETMETADATA "" /shared/comment`, []string{`* METADATA "" (/shared/comment NIL)`, "$T OK GETMETADATA completed"}},
		{`SETMETADATA "" (/shared/comment "Server note" /private/vendor/postrider/x "1")`, []string{"$T OK SETMETADATA completed"}},
		{`GETMETADATA "" (/shared/comment /private/vendor/postrider/x)`, []string{`* METADATA "" (/private/vendor/postrider/x "1" /shared/comment "Server note")`, "$T OK GETMETADATA completed"}},
		// Entry names are case-insensitive (§3.2).
		{`GETMETADATA "" /SHARED/Comment`, []string{`* METADATA "" (/shared/comment "Server note")`, "$T OK GETMETADATA completed"}},
		{"SETMETADATA INBOX (/private/comment " + lit("My own\r\ncomment") + " /shared/comment {4+}\r\nours)", []string{"+ Ready for literal data", "$T OK SETMETADATA completed"}},
		{"GETMETADATA INBOX (/private/comment /shared/comment)", []string{"* METADATA INBOX (/private/comment {15}\r\nMy own\r\ncomment /shared/comment \"ours\")", "$T OK GETMETADATA completed"}},
		{`SETMETADATA INBOX (/private/comment NIL)`, []string{"$T OK SETMETADATA completed"}},
		{`GETMETADATA INBOX /private/comment`, []string{`* METADATA INBOX (/private/comment NIL)`, "$T OK GETMETADATA completed"}},
		// MAXSIZE (§4.2.1).
		{"SETMETADATA INBOX (/private/big " + lit(big) + ")", []string{"+ Ready for literal data", "$T OK SETMETADATA completed"}},
		{"GETMETADATA (MAXSIZE 1024) INBOX (/shared/comment /private/big)", []string{`* METADATA INBOX (/shared/comment "ours")`, "$T OK [METADATA LONGENTRIES 2000] GETMETADATA completed"}},
		{"GETMETADATA (MAXSIZE 2000) INBOX /private/big", []string{"* METADATA INBOX (/private/big " + lit(big) + ")", "$T OK GETMETADATA completed"}},
		// DEPTH (§4.2.2).
		{`SETMETADATA INBOX (/private/filters/values/small "SMALLER 5000" /private/filters/values/boss "FROM \"boss@example.com\"" /private/filters/values/boss/deep "x")`, []string{"$T OK SETMETADATA completed"}},
		{"GETMETADATA (DEPTH 1) INBOX (/private/filters/values)", []string{`* METADATA INBOX (/private/filters/values NIL /private/filters/values/boss "FROM \"boss@example.com\"" /private/filters/values/small "SMALLER 5000")`, "$T OK GETMETADATA completed"}},
		{"GETMETADATA (DEPTH infinity MAXSIZE 100) INBOX /private", []string{`* METADATA INBOX (/private/filters/values/boss "FROM \"boss@example.com\"" /private/filters/values/boss/deep "x" /private/filters/values/small "SMALLER 5000")`, "$T OK [METADATA LONGENTRIES 2000] GETMETADATA completed"}},
		{"GETMETADATA (DEPTH 0) INBOX /private/filters", []string{`* METADATA INBOX (/private/filters NIL)`, "$T OK GETMETADATA completed"}},
		// literal8 for a value with NUL, both ways.
		{"SETMETADATA INBOX (/private/bin ~{3+}\r\na\x00b)", []string{"$T OK SETMETADATA completed"}},
		{"GETMETADATA INBOX /private/bin", []string{"* METADATA INBOX (/private/bin ~{3}\r\na\x00b)", "$T OK GETMETADATA completed"}},
		// Errors.
		{`GETMETADATA Nope /private/comment`, []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`SETMETADATA Nope (/private/comment "x")`, []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`SETMETADATA INBOX (/comment "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX (/private/a* "x")`, []string{"re:$T BAD .*"}},
		{`SETMETADATA INBOX ("/private/a*" "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX (/private/a/ "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX (/private//a "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX (/private/vendor/x "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX (/private/` + strings.Repeat("a", 250) + ` "x")`, []string{"$T BAD Invalid entry name"}},
		{`SETMETADATA INBOX ()`, []string{"re:$T BAD .*"}},
		{`SETMETADATA INBOX (/private/x)`, []string{"re:$T BAD .*"}},
		{`SETMETADATA INBOX /private/x "y"`, []string{"$T BAD Expected a list of entries and values"}},
		{`SETMETADATA INBOX (/private/x "y"`, []string{"re:$T BAD .*"}},
		{`SETMETADATA "" (/shared/admin "mailto:x@example.org")`, []string{"$T NO /shared/admin is read-only"}},
		{fmt.Sprintf("SETMETADATA INBOX (/private/huge {%d}", mailstore.MaxMetadataValue+1), []string{fmt.Sprintf("$T NO [METADATA MAXSIZE %d] Value too large", mailstore.MaxMetadataValue)}},
		{`GETMETADATA INBOX`, []string{"re:$T BAD .*"}},
		{`GETMETADATA INBOX ()`, []string{"$T BAD Empty entry list"}},
		{`GETMETADATA (DEPTH 2) INBOX /private/x`, []string{"$T BAD DEPTH must be 0, 1 or infinity"}},
		{`GETMETADATA (MAXSIZE -1) INBOX /private/x`, []string{"re:$T BAD .*"}},
		{`GETMETADATA (FOO 1) INBOX /private/x`, []string{"$T BAD Unknown GETMETADATA option"}},
		{`GETMETADATA (DEPTH 1 DEPTH 0) INBOX /private/x`, []string{"$T BAD GETMETADATA option given twice"}},
		{`GETMETADATA INBOX /other`, []string{"$T BAD Invalid entry name"}},
		{`GETMETADATA INBOX "/private/%"`, []string{"$T BAD Invalid entry name"}},
	})
	// A non-synchronizing literal over the limit is skipped, and the
	// connection goes on.
	c.sendRaw(fmt.Sprintf("L1 SETMETADATA INBOX (/private/huge {%d+}\r\n%s)\r\n", mailstore.MaxMetadataValue+1, strings.Repeat("y", mailstore.MaxMetadataValue+1)))
	check(t, "huge non-sync literal", c.until("L1"), []string{fmt.Sprintf("L1 NO [METADATA MAXSIZE %d] Value too large", mailstore.MaxMetadataValue)})
	c.run([]step{{"GETMETADATA INBOX /private/huge", []string{"* METADATA INBOX (/private/huge NIL)", "$T OK GETMETADATA completed"}}})

	// TOOMANY (§4.3): nothing of the refused command is set.
	var sb strings.Builder
	for i := 0; i < mailstore.MaxMetadataObject; i++ {
		fmt.Fprintf(&sb, " /shared/e%d \"v\"", i)
	}
	c.run([]step{
		{"SETMETADATA Sent (" + sb.String()[1:] + ")", []string{"$T OK SETMETADATA completed"}},
		{`SETMETADATA Sent (/shared/e0 "changed" /shared/one-more "v")`, []string{"$T NO [METADATA TOOMANY] Too many entries"}},
		{"GETMETADATA Sent (/shared/e0 /shared/one-more)", []string{`* METADATA Sent (/shared/e0 "v" /shared/one-more NIL)`, "$T OK GETMETADATA completed"}},
		{"SETMETADATA Sent (" + sb.String()[1:] + ` /shared/e100 "v")`, []string{"$T NO [METADATA TOOMANY] Too many entries"}},
		// A mailbox's entries go with it (§4.1).
		{"DELETE Sent", []string{"$T OK DELETE completed"}},
		{"CREATE Sent", []string{createdOK}},
		{"GETMETADATA (DEPTH infinity) Sent /shared", []string{`* METADATA Sent ()`, "$T OK GETMETADATA completed"}},
	})
}

// Another account never sees or changes alice's entries, server ones
// included; a second node sees them at once.
func TestMetadataIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.dial()
	a.login("alice")
	a.run([]step{
		{`SETMETADATA "" (/shared/comment "alice's server" /private/comment "alice private")`, []string{"$T OK SETMETADATA completed"}},
		{`SETMETADATA INBOX (/private/comment "alice inbox")`, []string{"$T OK SETMETADATA completed"}},
		{`CREATE Secret`, []string{createdOK}},
	})
	b := e.dial()
	b.login("bob")
	b.run([]step{
		{`GETMETADATA (DEPTH infinity) "" (/shared /private)`, []string{`* METADATA "" ()`, "$T OK GETMETADATA completed"}},
		{`GETMETADATA "" /shared/comment`, []string{`* METADATA "" (/shared/comment NIL)`, "$T OK GETMETADATA completed"}},
		{`GETMETADATA INBOX /private/comment`, []string{`* METADATA INBOX (/private/comment NIL)`, "$T OK GETMETADATA completed"}},
		{`GETMETADATA Secret /private/comment`, []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`SETMETADATA Secret (/private/comment "bob")`, []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`SETMETADATA "" (/shared/comment "bob's server")`, []string{"$T OK SETMETADATA completed"}},
	})
	stB := pgtest.OpenStore(t, e.url)
	_, addrB := e.startServer(stB)
	a2 := dialAddr(t, addrB)
	a2.login("alice")
	a2.run([]step{
		{`GETMETADATA "" (/shared/comment /private/comment)`, []string{`* METADATA "" (/private/comment "alice private" /shared/comment "alice's server")`, "$T OK GETMETADATA completed"}},
		{`GETMETADATA INBOX /private/comment`, []string{`* METADATA INBOX (/private/comment "alice inbox")`, "$T OK GETMETADATA completed"}},
	})
}

// LIST-METADATA (RFC 9590): each listed mailbox's requested entries
// after its LIST response, NIL for those without a value; with STATUS.
func TestTranscriptListMetadata(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.login("alice")
	c.run([]step{
		{`SETMETADATA INBOX (/private/comment "in" /shared/vendor/x/color "red")`, []string{"$T OK SETMETADATA completed"}},
		{`SETMETADATA Sent (/shared/vendor/x/color "blue")`, []string{"$T OK SETMETADATA completed"}},
		{`LIST "" (INBOX Sent) RETURN (METADATA (/shared/vendor/x/color /private/comment))`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`, `* METADATA INBOX (/private/comment "in" /shared/vendor/x/color "red")`,
			`* LIST (\HasNoChildren \Sent) "/" Sent`, `* METADATA Sent (/private/comment NIL /shared/vendor/x/color "blue")`,
			"$T OK LIST completed"}},
		{`LIST "" Sent RETURN (STATUS (MESSAGES) METADATA (/SHARED/vendor/x/color))`, []string{
			`* LIST (\HasNoChildren \Sent) "/" Sent`, `* STATUS Sent (MESSAGES 0)`, `* METADATA Sent (/shared/vendor/x/color "blue")`,
			"$T OK LIST completed"}},
		{`LIST "" Sent RETURN (METADATA ())`, []string{"$T BAD Empty entry list"}},
		{`LIST "" Sent RETURN (METADATA (/other))`, []string{"$T BAD Invalid entry name"}},
		{`LIST "" Sent RETURN (METADATA /private/comment)`, []string{"re:$T BAD .*"}},
	})
	// Another account lists its own INBOX's entries, not alice's.
	b := e.dial()
	b.login("bob")
	b.run([]step{{`LIST "" INBOX RETURN (METADATA (/private/comment))`, []string{`* LIST (\HasNoChildren) "/" INBOX`,
		`* METADATA INBOX (/private/comment NIL)`, "$T OK LIST completed"}}})
}
