package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// TestTranscriptQuota: GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208 §4.1)
// with both resources, and [OVERQUOTA] on APPEND and COPY at either limit
// (RFC 9208 §4.3); MOVE stays within the account's one quota root and is
// not refused.
func TestTranscriptQuota(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	alice := e.accts["alice"].ID
	msg := testMessage("quota", strings.Repeat("q", 1500)+"\r\n")
	e.deliver("alice", "INBOX", msg)

	c := e.dial()
	c.run([]step{
		{"GETQUOTAROOT INBOX", []string{"$T BAD Log in first"}},
		{"GETQUOTA \"\"", []string{"$T BAD Log in first"}},
	})
	c.login("alice")
	caps := c.cmd("C", "CAPABILITY")[0]
	for _, want := range []string{" QUOTA ", " QUOTA=RES-STORAGE ", " QUOTA=RES-MESSAGE"} {
		if !strings.Contains(caps+" ", want) {
			t.Errorf("CAPABILITY lacks %q: %s", want, caps)
		}
	}
	if strings.Contains(caps, "QUOTASET") {
		t.Errorf("QUOTASET advertised, but SETQUOTA is refused: %s", caps)
	}

	// No limit: no quota root.
	c.run([]step{
		{"GETQUOTAROOT INBOX", []string{"* QUOTAROOT INBOX", "$T OK GETQUOTAROOT completed"}},
		{`GETQUOTA ""`, []string{"$T NO [NONEXISTENT] No such quota root"}},
	})

	// Both limits: 10 KiB and 3 messages.
	if err := e.store.SetQuota(ctx, alice, 10*1024); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetMessageQuota(ctx, alice, 3); err != nil {
		t.Fatal(err)
	}
	quota := func(msgs int, octets int64) string {
		return fmt.Sprintf(`* QUOTA "" (STORAGE %d 10 MESSAGE %d 3)`, kib(octets), msgs)
	}
	c.run([]step{
		{"GETQUOTAROOT INBOX", []string{`* QUOTAROOT INBOX ""`, quota(1, int64(len(msg))), "$T OK GETQUOTAROOT completed"}},
		{"GETQUOTAROOT Archive", []string{`* QUOTAROOT Archive ""`, quota(1, int64(len(msg))), "$T OK GETQUOTAROOT completed"}},
		{`GETQUOTA ""`, []string{quota(1, int64(len(msg))), "$T OK GETQUOTA completed"}},
		{`GETQUOTA "User quota"`, []string{"$T NO [NONEXISTENT] No such quota root"}},
		{"GETQUOTAROOT Missing", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"GETQUOTAROOT", []string{"$T BAD Missing arguments"}},
		{"GETQUOTAROOT INBOX extra", []string{"re:$T BAD .*"}},
		{`SETQUOTA "" (STORAGE 512)`, []string{"$T NO [NOPERM] Quota limits are set by the administrator"}},
		{`SETQUOTA "" ()`, []string{"$T NO [NOPERM] Quota limits are set by the administrator"}},
		{`SETQUOTA "" (STORAGE x)`, []string{"re:$T BAD .*"}},
		{`SETQUOTA "" STORAGE 5`, []string{"re:$T BAD .*"}},
		{`SETQUOTA "" (STORAGE 99999999999999999999)`, []string{"$T BAD Number out of range"}},
		{`SETQUOTA "" (` + strings.Repeat("STORAGE 1 ", 17) + `MESSAGE 1)`, []string{"$T BAD Too many quota resources"}},
	})
	if q, _ := e.store.Quota(ctx, alice); q.StorageLimit != 10*1024 || q.MessagesLimit != 3 {
		t.Errorf("SETQUOTA changed the limits: %+v", q)
	}

	// Fill the message limit: two more messages fit, the fourth does not,
	// whether its literal is synchronizing (refused before it is sent) or
	// not (refused by the store).
	small := testMessage("small", "s\r\n")
	c.run([]step{
		{fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(small), small), []string{"re:$T OK \\[APPENDUID \\d+ 2\\] APPEND completed"}},
		{fmt.Sprintf("APPEND Archive {%d+}\r\n%s", len(small), small), []string{"re:$T OK \\[APPENDUID \\d+ 1\\] APPEND completed"}},
		{fmt.Sprintf("APPEND INBOX {%d}", len(small)), []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(small), small), []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{`GETQUOTA ""`, []string{quota(3, int64(len(msg)+2*len(small))), "$T OK GETQUOTA completed"}},
	})
	c.cmd("S", "SELECT INBOX")
	c.run([]step{
		{"COPY 1 Archive", []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{"UID COPY 1:* Archive", []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{"MOVE 2 Trash", []string{"re:\\* OK \\[COPYUID \\d+ 2 1\\] .*", "* 2 EXPUNGE", "* 1 RECENT", "$T OK MOVE completed"}},
		{`GETQUOTA ""`, []string{quota(3, int64(len(msg)+2*len(small))), "$T OK GETQUOTA completed"}},
	})

	// Room for messages again, but not for octets: the storage limit refuses.
	if err := e.store.SetMessageQuota(ctx, alice, 0); err != nil {
		t.Fatal(err)
	}
	q, err := e.store.Quota(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetQuota(ctx, alice, q.StorageUsed+int64(len(small))); err != nil {
		t.Fatal(err)
	}
	c.run([]step{
		{"COPY 1 Archive", []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{fmt.Sprintf("APPEND INBOX {%d}", len(msg)), []string{"$T NO [OVERQUOTA] Quota exceeded"}},
		{"MOVE 1 Archive", []string{"re:\\* OK \\[COPYUID \\d+ 1 2\\] .*", "* 1 EXPUNGE", "* 0 RECENT", "$T OK MOVE completed"}},
		{"GETQUOTAROOT INBOX", []string{`* QUOTAROOT INBOX ""`,
			fmt.Sprintf(`* QUOTA "" (STORAGE %d %d)`, kib(q.StorageUsed), kib(q.StorageUsed+int64(len(small)))),
			"$T OK GETQUOTAROOT completed"}},
	})
}

// TestTranscriptStatusDeletedStorage: STATUS DELETED and DELETED-STORAGE
// (RFC 9208 §4.1.4, required with QUOTA=RES-MESSAGE and QUOTA=RES-STORAGE,
// §5), in STATUS and LIST-STATUS; DELETED-STORAGE in KiB like STORAGE.
func TestTranscriptStatusDeletedStorage(t *testing.T) {
	e := newEnv(t)
	big := testMessage("big", strings.Repeat("b", 3000)+"\r\n")
	e.deliver("alice", "INBOX", big)
	e.deliver("alice", "INBOX", testMessage("small", "s\r\n"))
	e.deliver("alice", "INBOX", big)
	c := e.dial()
	c.login("alice")
	c.cmd("S", "SELECT INBOX")
	c.cmd("D", `STORE 1,3 +FLAGS.SILENT (\Deleted)`)
	want := fmt.Sprintf("* STATUS INBOX (DELETED 2 DELETED-STORAGE %d MESSAGES 3)", kib(int64(2*len(big))))
	c.run([]step{
		{"STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)", []string{want, "$T OK STATUS completed"}},
		{"STATUS Drafts (DELETED-STORAGE)", []string{"* STATUS Drafts (DELETED-STORAGE 0)", "$T OK STATUS completed"}},
		{"STATUS Missing (DELETED-STORAGE)", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{`LIST "" INBOX RETURN (STATUS (DELETED DELETED-STORAGE MESSAGES))`, []string{
			`re:\* LIST \(.*\) "/" INBOX`, want, "$T OK LIST completed"}},
		{"EXPUNGE", []string{"* 3 EXPUNGE", "* 1 EXPUNGE", "re:\\* \\d+ RECENT", "$T OK EXPUNGE completed"}},
		{"STATUS INBOX (DELETED DELETED-STORAGE)", []string{"* STATUS INBOX (DELETED 0 DELETED-STORAGE 0)", "$T OK STATUS completed"}},
	})
}

// TestTranscriptMultiappendMessageQuota: MULTIAPPEND (RFC 3502) counts
// each message against the message limit before its synchronizing literal
// is asked for, and stores none when one does not fit.
func TestTranscriptMultiappendMessageQuota(t *testing.T) {
	e := newEnv(t)
	if err := e.store.SetMessageQuota(t.Context(), e.accts["alice"].ID, 1); err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	c.login("alice")
	msg := testMessage("multi", "m\r\n")
	c.send(fmt.Sprintf("A APPEND INBOX {%d}", len(msg)))
	check(t, "first literal", []string{c.line()}, []string{"+ Ready for literal data"})
	c.send(fmt.Sprintf("%s {%d}", msg, len(msg)))
	check(t, "second literal", c.until("A"), []string{"A NO [OVERQUOTA] Quota exceeded"})
	c.run([]step{{"STATUS INBOX (MESSAGES)", []string{"* STATUS INBOX (MESSAGES 0)", "$T OK STATUS completed"}}})
}
