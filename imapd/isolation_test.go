package imapd

import (
	"context"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

// Every route by which alice might reach bob's mail: mailbox names with
// "..", "/", "~", "%", "#" and other namespaces, bob's UIDs, STATUS,
// SEARCH, COPY/MOVE/APPEND targets, authorization identities, IDLE.
func TestIsolation(t *testing.T) {
	e := newEnv(t)
	secret := testMessage("bob secret", "TOPSECRET bob only\r\n")
	for i := 0; i < 3; i++ {
		e.deliver("bob", "INBOX", secret)
	}
	if _, err := e.store.CreateMailbox(context.Background(), e.accts["bob"].ID, "Private", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver("bob", "Private", secret)
	e.deliver("alice", "INBOX", testMessage("alice own", "hello\r\n"))

	c := e.dial()
	// Authorization identity: alice may not act as bob (RFC 4616 §2).
	c.run([]step{
		{"AUTHENTICATE PLAIN " + b64("bob@example.org\x00alice@example.org\x00pw-alice"), []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
		{"LOGIN bob@example.org pw-alice", []string{"$T NO [AUTHENTICATIONFAILED] Invalid credentials"}},
	})
	c = e.dial()
	c.login("alice")
	names := []string{
		`"../bob@example.org/INBOX"`, `"bob@example.org/INBOX"`, `"/INBOX"`, `"INBOX/.."`, `"INBOX/../Private"`,
		`"~bob/INBOX"`, `"~bob@example.org/INBOX"`, `"#users/bob/INBOX"`, `"#shared/INBOX"`, `"#public"`,
		`"Private"`, `"%"`, `"*"`, `"INBOX/%"`, `"./Private"`, `"../Private"`, `"//Private"`, `{9}` + "\r\nPri\x00vate",
	}
	for _, n := range names {
		for _, cmd := range []string{"SELECT ", "EXAMINE ", "STATUS %s (MESSAGES)", "DELETE "} {
			var line string
			if cmd[len(cmd)-1] == ' ' {
				line = cmd + n
			} else {
				line = cmd[:7] + n + cmd[9:]
			}
			r := c.cmd("I", line)
			last := r[len(r)-1]
			if len(r) > 2 || (!hasPrefix(last, "I NO") && !hasPrefix(last, "I BAD")) {
				t.Errorf("%s: %q", line, r)
			}
		}
	}
	// LIST never shows bob's mailboxes, whatever the reference.
	for _, args := range []string{`"" *`, `"" %/%`, `~bob *`, `"~bob@example.org/" *`, `#users/ *`, `"../" *`, `"/" *`, `"" ../*`, `(SUBSCRIBED) "" *`, `"" (* ~bob/*)`} {
		r := c.cmd("L", "LIST "+args)
		for _, l := range r {
			if contains(l, "Private") || contains(l, "bob") {
				t.Errorf("LIST %s: %q", args, r)
			}
		}
	}
	c.run([]step{
		{"CREATE ~bob/INBOX", []string{"$T NO [CANNOT] Mailbox names may not start with # or ~"}},
		{"CREATE #users/bob", []string{"$T NO [CANNOT] Mailbox names may not start with # or ~"}},
		{"RENAME INBOX ../bob", []string{"$T NO [CANNOT] Invalid mailbox name"}},
		{"RENAME ~bob/INBOX Mine", []string{"$T NO [NONEXISTENT] No such mailbox"}},
		{"APPEND ~bob/INBOX {5+}\r\nhello", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"APPEND Private {5+}\r\nhello", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"SELECT INBOX", append(selectLines(9), "$T OK [READ-WRITE] SELECT completed")},
		// bob's UIDs 2 and 3 exist in bob's INBOX only.
		{"UID FETCH 1:* (UID BODY.PEEK[])", []string{"* 1 FETCH (UID 1 BODY[] " + lit(testMessage("alice own", "hello\r\n")) + ")", "$T OK UID FETCH completed"}},
		{"UID FETCH 2:3 (UID)", []string{"$T OK UID FETCH completed"}},
		{"UID FETCH 2:* (UID)", []string{"* 1 FETCH (UID 1)", "$T OK UID FETCH completed"}},
		{"UID FETCH 2,3 (UID)", []string{"$T OK UID FETCH completed"}},
		{"UID STORE 2:3 +FLAGS (\\Deleted)", []string{"$T OK UID STORE completed"}},
		{"UID EXPUNGE 2:3", []string{"$T OK UID EXPUNGE completed"}},
		{"UID COPY 2:3 INBOX", []string{"$T OK UID COPY completed"}},
		{"UID MOVE 2:3 Trash", []string{"$T OK UID MOVE completed"}},
		{"SEARCH TEXT TOPSECRET", []string{"* SEARCH", "$T OK SEARCH completed"}},
		{"UID SEARCH UID 1:*", []string{"* SEARCH 1", "$T OK UID SEARCH completed"}},
		{"COPY 1 Private", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"MOVE 1 ../bob@example.org/INBOX", []string{"$T NO [TRYCREATE] No such mailbox"}},
		{"STATUS INBOX (MESSAGES)", []string{"* STATUS INBOX (MESSAGES 1)", "$T OK STATUS completed"}},
	})
	// bob's mail is untouched.
	ctx := context.Background()
	bobInbox := e.mailbox("bob", "INBOX")
	metas, err := e.store.ListMessages(ctx, e.accts["bob"].ID, bobInbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 3 {
		t.Fatalf("bob has %d messages", len(metas))
	}
	for _, m := range metas {
		if m.Flags.System&mailstore.FlagDeleted != 0 {
			t.Fatalf("bob's message %d got \\Deleted", m.UID)
		}
	}
	// alice's store view by bob's mailbox ID is refused by the store.
	if _, err := e.store.ListMessages(ctx, e.accts["alice"].ID, bobInbox.ID, nil); err == nil {
		t.Fatal("store let alice list bob's mailbox")
	}
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
