package imapd

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// End-to-end tests with real clients from Debian. Each is skipped when its
// program is not installed (apt-get install isync mutt curl python3).

func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

func runCmd(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

const pythonClient = `
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
assert 'IMAP4REV1' in M.capabilities, M.capabilities
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
typ, data = M.list(); assert typ == 'OK' and any(b'"INBOX"' in d or b' INBOX' in d for d in data), data
typ, data = M.select('INBOX'); assert typ == 'OK' and data == [b'2'], data
typ, data = M.search(None, 'SUBJECT', 'python'); assert data == [b'2'], data
typ, data = M.fetch('2', '(RFC822)'); assert typ == 'OK'
body = data[0][1]; assert body == open(sys.argv[3], 'rb').read(), body
typ, data = M.fetch('1:2', '(UID FLAGS RFC822.SIZE)'); assert typ == 'OK' and len(data) == 2, data
typ, data = M.store('1', '+FLAGS', '(\\Flagged)'); assert typ == 'OK' and b'\\Flagged' in data[0], data
msg = b'From: py@example.org\r\nSubject: appended by python\r\n\r\nhi\r\n'
typ, data = M.append('INBOX', '(\\Seen)', None, msg); assert typ == 'OK' and b'APPENDUID' in data[0], data
typ, data = M.uid('COPY', '1', 'Archive'); assert typ == 'OK', data
typ, data = M.uid('SEARCH', None, 'SEEN'); assert data == [b'2 3'], data  # RFC822 set \\Seen on 2
typ, data = M.store('2', '+FLAGS', '(\\Deleted)'); assert typ == 'OK'
typ, data = M.expunge(); assert data == [b'2'], data
typ, data = M.status('Archive', '(MESSAGES)'); assert b'MESSAGES 1' in data[0], data
M.close(); M.logout()
print('PYTHON-OK')
`

// Python's imaplib (IMAP4rev1 client).
func TestClientPythonImaplib(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("first", "one\r\n"))
	second := testMessage("python test", "two\r\n")
	e.deliver("alice", "INBOX", second)
	dir := t.TempDir()
	want := filepath.Join(dir, "msg")
	os.WriteFile(want, []byte(second), 0o600)
	host, port, _ := net.SplitHostPort(e.addr)
	out := runCmd(t, 30*time.Second, py, "-c", pythonClient, host, port, want)
	if !strings.Contains(out, "PYTHON-OK") {
		t.Fatal(out)
	}
}

// curl imap:// (search, fetch, append, custom commands).
func TestClientCurl(t *testing.T) {
	curl := needProgram(t, "curl")
	e := newEnv(t)
	first := testMessage("curl one", "body one\r\n")
	e.deliver("alice", "INBOX", first)
	e.deliver("alice", "INBOX", testMessage("curl two", "body two\r\n"))
	base := "imap://" + e.addr
	user := []string{"-s", "--max-time", "20", "-u", "alice@example.org:pw-alice"}
	out := runCmd(t, 30*time.Second, curl, append(user, base+"/INBOX?SUBJECT%20two")...)
	if strings.TrimSpace(out) != "* SEARCH 2" {
		t.Fatalf("search: %q", out)
	}
	out = runCmd(t, 30*time.Second, curl, append(user, base+"/INBOX;UID=1")...)
	if out != first {
		t.Fatalf("fetch: %q", out)
	}
	dir := t.TempDir()
	up := filepath.Join(dir, "up.eml")
	upMsg := testMessage("uploaded by curl", "hello from curl\r\n")
	os.WriteFile(up, []byte(upMsg), 0o600)
	runCmd(t, 30*time.Second, curl, append(user, "-T", up, base+"/Drafts")...)
	out = runCmd(t, 30*time.Second, curl, append(user, base+"/Drafts;UID=1")...)
	if out != upMsg {
		t.Fatalf("appended: %q", out)
	}
	out = runCmd(t, 30*time.Second, curl, append(user, "-X", "EXAMINE INBOX", base)...)
	if !strings.Contains(out, "* 2 EXISTS") {
		t.Fatalf("examine: %q", out)
	}
	out = runCmd(t, 30*time.Second, curl, append(user, base+"/")...)
	if !strings.Contains(out, `* LIST (\HasNoChildren \Drafts) "/" Drafts`) {
		t.Fatalf("list: %q", out)
	}
}

// mutt reading over IMAP, driven in a tmux pane.
func TestClientMutt(t *testing.T) {
	mutt := needProgram(t, "mutt")
	tmux := needProgram(t, "tmux")
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("hello mutt", "The mutt body line.\r\n"))
	e.deliver("alice", "INBOX", testMessage("second for mutt", "Another one.\r\n"))
	dir := t.TempDir()
	rc := filepath.Join(dir, "muttrc")
	saved := filepath.Join(dir, "saved.mbox")
	os.WriteFile(rc, []byte(fmt.Sprintf(`set folder="imap://alice%%40example.org@%s/"
set spoolfile="+INBOX"
set imap_pass="pw-alice"
set ssl_starttls=no
set ssl_force_tls=no
set imap_passive=no
set mbox_type=mbox
set confirmcreate=no
set confirmappend=no
set header_cache=""
set message_cachedir=""
set sort=date
set mail_check=1
set timeout=1
`, e.addr)), 0o600)
	session := fmt.Sprintf("imapd-mutt-%d", time.Now().UnixNano())
	runCmd(t, 10*time.Second, tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", mutt+" -n -F "+rc)
	defer exec.Command(tmux, "kill-session", "-t", session).Run()
	capture := func() string {
		out, _ := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	waitPane := func(what string) string {
		t.Helper()
		var s string
		for i := 0; i < 100; i++ {
			if s = capture(); strings.Contains(s, what) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("mutt never showed %q:\n%s", what, s)
		return ""
	}
	pane := waitPane("second for mutt")
	if !strings.Contains(pane, "hello mutt") {
		t.Fatalf("index:\n%s", pane)
	}
	// Open the first message, then save it to a local mbox.
	exec.Command(tmux, "send-keys", "-t", session, "Enter").Run()
	waitPane("The mutt body line.")
	exec.Command(tmux, "send-keys", "-t", session, "q").Run()
	time.Sleep(300 * time.Millisecond)
	exec.Command(tmux, "send-keys", "-t", session, "C", "C-u", saved, "Enter").Run()
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile(saved); strings.Contains(string(b), "The mutt body line.") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(saved)
	if !strings.Contains(string(b), "Subject: hello mutt") || !strings.Contains(string(b), "The mutt body line.") {
		t.Fatalf("saved mbox %q\npane:\n%s", b, capture())
	}
	// Quitting syncs the \Seen flag mutt set when the message was read.
	exec.Command(tmux, "send-keys", "-t", session, "q").Run()
	inbox := e.mailbox("alice", "INBOX")
	var ms []mailstore.MessageMeta
	for i := 0; i < 100; i++ {
		var err error
		ms, err = e.store.ListMessages(context.Background(), e.accts["alice"].ID, inbox.ID, mailstore.UIDs(1))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 1 && ms[0].Flags.System&mailstore.FlagSeen != 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("flags after reading: %+v\npane:\n%s", ms, capture())
}

// mbsync (isync) syncing to a local maildir and back, with flags.
func TestClientMbsync(t *testing.T) {
	mbsync := needProgram(t, "mbsync")
	e := newEnv(t)
	ctx := context.Background()
	alice := e.accts["alice"].ID
	for i := 1; i <= 3; i++ {
		e.deliver("alice", "INBOX", testMessage(fmt.Sprint("sync ", i), fmt.Sprintf("message %d\r\n", i)))
	}
	e.deliver("alice", "Archive", testMessage("archived", "old\r\n"), mailstore.FlagSeen)
	dir := t.TempDir()
	maildir := filepath.Join(dir, "Mail")
	os.MkdirAll(maildir, 0o700)
	host, port, _ := net.SplitHostPort(e.addr)
	rc := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`IMAPAccount test
Host %s
Port %s
User alice@example.org
Pass pw-alice
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account test

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`, host, port, maildir, maildir)), 0o600)
	sync := func() string { return runCmd(t, 60*time.Second, mbsync, "-c", rc, "-a") }
	sync()
	files := func(box string) []string {
		var out []string
		for _, sub := range []string{"cur", "new"} {
			es, _ := os.ReadDir(filepath.Join(maildir, box, sub))
			for _, de := range es {
				out = append(out, filepath.Join(maildir, box, sub, de.Name()))
			}
		}
		return out
	}
	if n := len(files("INBOX")); n != 3 {
		t.Fatalf("INBOX has %d local messages", n)
	}
	if n := len(files("Archive")); n != 1 || !strings.HasSuffix(files("Archive")[0], "S") {
		t.Fatalf("Archive: %v", files("Archive"))
	}
	// Local changes: flag one, delete one, add one.
	local := files("INBOX")
	var flagged, deleted string
	for _, f := range local {
		b, _ := os.ReadFile(f)
		switch {
		case strings.Contains(string(b), "message 1"):
			flagged = f
		case strings.Contains(string(b), "message 2"):
			deleted = f
		}
	}
	renameFlags := func(f, flags string) {
		base := filepath.Base(f)
		if i := strings.Index(base, ":2,"); i >= 0 {
			base = base[:i]
		}
		os.Rename(f, filepath.Join(maildir, "INBOX", "cur", base+":2,"+flags))
	}
	renameFlags(flagged, "FS")
	renameFlags(deleted, "T")
	os.WriteFile(filepath.Join(maildir, "INBOX", "new", "1700000000.local.host"), []byte(testMessage("from maildir", "local\r\n")), 0o600)
	sync()
	inbox := e.mailbox("alice", "INBOX")
	ms, err := e.store.ListMessages(ctx, alice, inbox.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]mailstore.SystemFlag{}
	for _, m := range ms {
		got[m.UID] = m.Flags.System
	}
	if len(ms) != 3 || got[1] != mailstore.FlagFlagged|mailstore.FlagSeen || got[3] != 0 {
		t.Fatalf("server after local changes: %+v", got)
	}
	if _, ok := got[2]; ok {
		t.Fatal("message 2 not expunged on the server")
	}
	// Server-side changes reach the maildir.
	if _, err := e.store.StoreFlags(ctx, alice, inbox.ID, mailstore.UIDs(3), mailstore.FlagsAdd, mailstore.Flags{System: mailstore.FlagAnswered}, 0); err != nil {
		t.Fatal(err)
	}
	e.deliver("alice", "INBOX", testMessage("late", "late\r\n"))
	sync()
	fs := files("INBOX")
	if len(fs) != 4 {
		t.Fatalf("INBOX local after server changes: %v", fs)
	}
	answered := 0
	for _, f := range fs {
		if i := strings.Index(f, ":2,"); i >= 0 && strings.Contains(f[i:], "R") {
			answered++
		}
	}
	if answered != 1 {
		t.Fatalf("\\Answered not synced: %v", fs)
	}
}

// mutt with threads and imap_check_subscribed: a reply tree shown threaded
// (mutt threads on the client, from the References and In-Reply-To fields
// it fetches with BODY.PEEK[HEADER.FIELDS]; it never sends SORT or
// THREAD, which TestClientPythonSortThread covers) and new mail noticed in
// a subscribed mailbox other than the one open.
func TestClientMuttThreadsSubscribed(t *testing.T) {
	mutt := needProgram(t, "mutt")
	tmux := needProgram(t, "tmux")
	e := newEnv(t)
	ctx := context.Background()
	reply := func(subject, id, parent string) string {
		return "From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: " + subject +
			"\r\nDate: Fri, 01 Mar 2024 13:00:00 +0000\r\nMessage-ID: <" + id + "@example.org>\r\n" +
			"In-Reply-To: <" + parent + "@example.org>\r\nReferences: <root@example.org> <" + parent + "@example.org>\r\n\r\nreply\r\n"
	}
	e.deliver("alice", "INBOX", "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: thread root\r\n"+
		"Date: Fri, 01 Mar 2024 12:00:00 +0000\r\nMessage-ID: <root@example.org>\r\n\r\nroot\r\n")
	e.deliver("alice", "INBOX", testMessage("unrelated note", "x\r\n"))
	e.deliver("alice", "INBOX", reply("Re: thread root", "r1", "root"))
	e.deliver("alice", "INBOX", reply("Re: thread root", "r2", "r1"))
	if _, err := e.store.CreateMailbox(ctx, e.accts["alice"].ID, "Lists", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetSubscribed(ctx, e.accts["alice"].ID, "Lists", true); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rc := filepath.Join(dir, "muttrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`set folder="imap://alice%%40example.org@%s/"
set spoolfile="+INBOX"
set imap_pass="pw-alice"
set ssl_starttls=no
set ssl_force_tls=no
set imap_check_subscribed=yes
set header_cache=""
set message_cachedir=""
set sort=threads
set sort_aux=date
set mail_check=1
set timeout=1
set index_format="%%4C %%s"
`, e.addr)), 0o600)
	session := fmt.Sprintf("imapd-mutt-threads-%d", time.Now().UnixNano())
	runCmd(t, 10*time.Second, tmux, "new-session", "-d", "-s", session, "-x", "200", "-y", "50", mutt+" -n -F "+rc)
	defer exec.Command(tmux, "kill-session", "-t", session).Run()
	capture := func() string {
		out, _ := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	waitPane := func(ok func(string) bool, what string) string {
		t.Helper()
		var s string
		for i := 0; i < 150; i++ {
			if s = capture(); ok(s) {
				return s
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("mutt never showed %s:\n%s", what, s)
		return ""
	}
	// The two replies are drawn as the root's subtree (tree characters
	// before their subjects), the unrelated message is not.
	arrows := func(s string) int { return strings.Count(s, "─>") + strings.Count(s, "->") }
	pane := waitPane(func(s string) bool { return strings.Contains(s, "unrelated note") && arrows(s) >= 2 }, "the thread tree")
	lines := strings.Split(pane, "\n")
	var root, r1, r2, other = -1, -1, -1, -1
	for i, l := range lines {
		switch {
		case strings.Contains(l, "thread root") && arrows(l) == 0:
			root = i
		case arrows(l) > 0 && r1 < 0:
			r1 = i
		case arrows(l) > 0:
			r2 = i
		case strings.Contains(l, "unrelated note"):
			other = i
		}
	}
	if root < 0 || r1 != root+1 || r2 != root+2 || other < 0 {
		t.Fatalf("index not threaded (root %d, replies %d %d, other %d):\n%s", root, r1, r2, other, pane)
	}
	// New mail in the subscribed mailbox: mutt checks it (STATUS) and says so.
	e.deliver("alice", "Lists", testMessage("list post", "l\r\n"))
	waitPane(func(s string) bool { return strings.Contains(s, "New mail in") && strings.Contains(s, "Lists") }, "new mail in Lists")
}
