package imapd

import (
	"testing"
)

// CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, STATUS (RFC 9051 §6.3,
// RFC 5258, RFC 5819, RFC 6154, RFC 3348, RFC 8438).
func TestTranscriptMailboxes(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("one", "1\r\n"))
	e.deliver("alice", "INBOX", testMessage("two", "22\r\n"), 1 /* \Seen */)
	c := e.dial()
	c.login("alice")
	c.run([]step{
		{`LIST "" ""`, []string{`* LIST (\Noselect) "/" ""`, "$T OK LIST completed"}},
		{"CREATE Projects/2024/Q1", []string{createdOK}},
		{"CREATE Projects/", []string{"$T NO [ALREADYEXISTS] Mailbox already exists"}},
		{"CREATE inbox", []string{"$T NO [ALREADYEXISTS] INBOX always exists"}},
		{"CREATE Lists (USE (\\Flagged))", []string{"$T NO [USEATTR] Unsupported special-use attribute"}},
		{"CREATE Old (USE (\\Archive \\Trash))", []string{"$T NO [USEATTR] Only one special-use attribute per mailbox"}},
		{"CREATE Sent2 (USE (\\Sent))", []string{createdOK}},
		{"CREATE a/../b", []string{"$T NO [CANNOT] Invalid mailbox name"}},
		{"CREATE a%b", []string{"$T BAD Unexpected extra arguments"}},
		{`CREATE "a%b"`, []string{"$T NO [CANNOT] Invalid mailbox name"}},
		{`LIST "" %`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* LIST (\HasNoChildren \Archive) "/" Archive`,
			`* LIST (\HasNoChildren \Drafts) "/" Drafts`,
			`* LIST (\HasNoChildren \Junk) "/" Junk`,
			`* LIST (\HasChildren) "/" Projects`,
			`* LIST (\HasNoChildren \Sent) "/" Sent`,
			`* LIST (\HasNoChildren \Sent) "/" Sent2`,
			`* LIST (\HasNoChildren \Trash) "/" Trash`,
			"$T OK LIST completed"}},
		{`LIST Projects/ *`, []string{
			`* LIST (\HasChildren) "/" Projects/2024`,
			`* LIST (\HasNoChildren) "/" Projects/2024/Q1`,
			"$T OK LIST completed"}},
		{`LIST "" Proj%/%`, []string{`* LIST (\HasChildren) "/" Projects/2024`, "$T OK LIST completed"}},
		{`LIST "" inBOX`, []string{`* LIST (\HasNoChildren) "/" INBOX`, "$T OK LIST completed"}},
		{`LIST (SPECIAL-USE) "" *`, []string{
			`* LIST (\HasNoChildren \Archive) "/" Archive`,
			`* LIST (\HasNoChildren \Drafts) "/" Drafts`,
			`* LIST (\HasNoChildren \Junk) "/" Junk`,
			`* LIST (\HasNoChildren \Sent) "/" Sent`,
			`* LIST (\HasNoChildren \Sent) "/" Sent2`,
			`* LIST (\HasNoChildren \Trash) "/" Trash`,
			"$T OK LIST completed"}},
		{`LIST "" (INBOX Drafts) RETURN (STATUS (MESSAGES UNSEEN SIZE))`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* STATUS INBOX (MESSAGES 2 UNSEEN 1 SIZE 299)`,
			`* LIST (\HasNoChildren \Drafts) "/" Drafts`,
			`* STATUS Drafts (MESSAGES 0 UNSEEN 0 SIZE 0)`,
			"$T OK LIST completed"}},
		{"UNSUBSCRIBE Junk", []string{"$T OK UNSUBSCRIBE completed"}},
		{"SUBSCRIBE Projects/2024/Q1", []string{"$T OK SUBSCRIBE completed"}},
		{"SUBSCRIBE Gone/Away", []string{"$T OK SUBSCRIBE completed"}},
		{`LIST (SUBSCRIBED) "" *`, []string{
			`* LIST (\HasNoChildren \Subscribed) "/" INBOX`,
			`* LIST (\HasNoChildren \Subscribed \Archive) "/" Archive`,
			`* LIST (\HasNoChildren \Subscribed \Drafts) "/" Drafts`,
			`* LIST (\NonExistent \Subscribed) "/" Gone/Away`,
			`* LIST (\HasNoChildren \Subscribed) "/" Projects/2024/Q1`,
			`* LIST (\HasNoChildren \Subscribed \Sent) "/" Sent`,
			`* LIST (\HasNoChildren \Subscribed \Trash) "/" Trash`,
			"$T OK LIST completed"}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" %`, []string{
			`* LIST (\HasNoChildren \Subscribed) "/" INBOX`,
			`* LIST (\HasNoChildren \Subscribed \Archive) "/" Archive`,
			`* LIST (\HasNoChildren \Subscribed \Drafts) "/" Drafts`,
			`* LIST (\NonExistent) "/" Gone ("CHILDINFO" ("SUBSCRIBED"))`,
			`* LIST (\HasChildren) "/" Projects ("CHILDINFO" ("SUBSCRIBED"))`,
			`* LIST (\HasNoChildren \Subscribed \Sent) "/" Sent`,
			`* LIST (\HasNoChildren \Subscribed \Trash) "/" Trash`,
			"$T OK LIST completed"}},
		{`LIST (RECURSIVEMATCH) "" %`, []string{"$T BAD RECURSIVEMATCH needs another selection option"}},
		{`LIST "" * RETURN (SUBSCRIBED) EXTRA`, []string{"$T BAD Unexpected extra arguments"}},
		{`LSUB "" %`, []string{
			`* LSUB () "/" INBOX`,
			`* LSUB () "/" Archive`,
			`* LSUB () "/" Drafts`,
			`* LSUB (\Noselect) "/" Gone`,
			`* LSUB (\Noselect) "/" Projects`,
			`* LSUB () "/" Sent`,
			`* LSUB () "/" Trash`,
			"$T OK LSUB completed"}},
		{"STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT APPENDLIMIT)", []string{
			"* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UNSEEN 1 DELETED 0 SIZE 299 RECENT 2 APPENDLIMIT 52428800)",
			"$T OK STATUS completed"}},
		{"STATUS INBOX (HIGHESTMODSEQ)", []string{"re:\\* STATUS INBOX \\(HIGHESTMODSEQ \\d+\\)", "$T OK STATUS completed"}},
		{"STATUS INBOX (BOGUS)", []string{"$T BAD Unknown STATUS item"}},
		{"STATUS Nope (MESSAGES)", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"DELETE Projects", []string{"$T NO [HASCHILDREN] Mailbox has children; delete them first"}},
		{"DELETE INBOX", []string{"$T NO [CANNOT] This mailbox cannot be deleted"}},
		{"DELETE Nope", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"RENAME Projects Work", []string{"$T OK RENAME completed"}},
		{"RENAME Work Drafts", []string{"$T NO [ALREADYEXISTS] Mailbox already exists"}},
		{"RENAME Nope Other", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`LIST "" Work/*`, []string{
			`* LIST (\HasChildren) "/" Work/2024`,
			`* LIST (\HasNoChildren) "/" Work/2024/Q1`,
			"$T OK LIST completed"}},
		{"DELETE Work/2024/Q1", []string{"$T OK DELETE completed"}},
		{`LIST "" Work*`, []string{
			`* LIST (\HasChildren) "/" Work`,
			`* LIST (\HasNoChildren) "/" Work/2024`,
			"$T OK LIST completed"}},
		{`LIST "" #news.*`, []string{"$T OK LIST completed"}},
	})
}

// Mailbox names: modified UTF-7 for IMAP4rev1 clients (RFC 3501
// §5.1.3), UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855) or IMAP4rev2.
func TestTranscriptMailboxNames(t *testing.T) {
	e := newEnv(t)
	c := e.dial()
	c.login("alice")
	c.run([]step{
		{`CREATE "&AMQ-rger"`, []string{createdOK}},
		{`CREATE "Tom &- Jerry"`, []string{createdOK}},
		{`CREATE "Tom & Jerry"`, []string{"$T NO [CANNOT] Invalid modified UTF-7 in mailbox name"}},
		{`CREATE "&Jjo-!"`, []string{createdOK}},
		{`CREATE "&AGE-"`, []string{"$T NO [CANNOT] Invalid modified UTF-7 in mailbox name"}},
		{`LIST "" "&AMQ-*"`, []string{`* LIST (\HasNoChildren) "/" &AMQ-rger`, "$T OK LIST completed"}},
		{`LIST "" "Tom*"`, []string{`* LIST (\HasNoChildren) "/" "Tom &- Jerry"`, "$T OK LIST completed"}},
		{`STATUS "&Jjo-!" (MESSAGES)`, []string{`* STATUS &Jjo-! (MESSAGES 0)`, "$T OK STATUS completed"}},
		{"ENABLE UTF8=ACCEPT", []string{"* ENABLED UTF8=ACCEPT", "$T OK ENABLE completed"}},
		{`LIST "" "Ä*"`, []string{`* LIST (\HasNoChildren) "/" "Ärger"`, "$T OK LIST completed"}},
		{`LIST "" "Tom*"`, []string{`* LIST (\HasNoChildren) "/" "Tom & Jerry"`, "$T OK LIST completed"}},
		{`CREATE "日本"`, []string{createdOK}},
		{`SELECT "☺!"`, []string{"re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", "re:.*", mailboxIDLine, "$T OK [READ-WRITE] SELECT completed"}},
	})
}
