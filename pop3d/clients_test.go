package pop3d_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/pop3d"
)

// End-to-end tests with real POP3 clients from Debian: each must download
// exactly what was delivered, octet for octet (after the client's own
// line-ending convention for local files, where it has one).

// clientMessages are delivered as SMTP delivers: CRLF line endings.
func clientMessages() []string {
	long := strings.Repeat(strings.Repeat("0123456789", 99)+"\r\n", 330) // > one store chunk
	return []string{
		testMsg("plain", "Hello, world.\r\n"),
		testMsg("dots", ".\r\n..\r\n.leading dot\r\nFrom the start of a line\r\n.\r\nend\r\n"),
		"From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.net>\r\nTo: alice@example.org\r\nSubject: Grüße – UTF-8\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nÄÖÜ ß 日本語\r\n",
		testMsg("big", long),
		testMsg("empty-body", ""),
	}
}

// clientEnv delivers clientMessages and starts a server without TLS (so
// clients do not try STLS with a certificate they cannot check).
func clientEnv(t *testing.T, mod func(*pop3d.Config)) (*env, *node, []string) {
	e := newEnv(t)
	msgs := clientMessages()
	for _, m := range msgs {
		e.deliver(m)
	}
	n := e.start(nil, func(c *pop3d.Config) {
		c.TLS = nil
		if mod != nil {
			mod(c)
		}
	})
	return e, n, msgs
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install -y %s)", name, name)
	}
	return p
}

func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// readDir returns the files of dir (recursively), sorted by name.
func readDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func lf(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

// sameMessages compares downloaded messages with the delivered ones,
// ignoring order (Maildir file names are not ordered).
func sameMessages(t *testing.T, client string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if len(g) != len(w) {
		t.Fatalf("%s downloaded %d messages, want %d", client, len(g), len(w))
	}
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("%s: message differs:\n got %q\nwant %q", client, clip(g[i]), clip(w[i]))
		}
	}
}

func clip(s string) string {
	if len(s) > 400 {
		return s[:200] + "..." + s[len(s)-200:]
	}
	return s
}

func TestClientPythonPoplib(t *testing.T) {
	py := needTool(t, "python3")
	e, n, msgs := clientEnv(t, nil)
	host, port := hostPort(t, n.addr)
	out := t.TempDir()
	script := `
import poplib, sys, os
host, port, user, pw, out = sys.argv[1:]
p = poplib.POP3(host, int(port), timeout=30)
p.user(user); p.pass_(pw)
count, size = p.stat()
listing = p.list()[1]
uidl = p.uidl()[1]
assert len(listing) == count == len(uidl), (listing, uidl)
total = 0
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    data = b"\r\n".join(lines) + b"\r\n"
    listed = int(p.list(i).split()[2])
    assert octets - 2 * len(lines) == len(data) - 2 * len(lines), (octets, len(data))
    assert len(data) == listed, (i, len(data), listed)
    total += len(data)
    open(os.path.join(out, "%04d" % i), "wb").write(data)
    p.dele(i)
assert total == size, (total, size)
print(p.quit())
`
	runTool(t, nil, py, "-c", script, host, port, testUser, testPass, out)
	sameMessages(t, "poplib", readDir(t, out), msgs)
	if left := len(e.messages()); left != 0 {
		t.Fatalf("%d messages left after DELE+QUIT", left)
	}
}

func TestClientCurl(t *testing.T) {
	curl := needTool(t, "curl")
	e, n, msgs := clientEnv(t, nil)
	url := "pop3://" + n.addr + "/"
	user := testUser + ":" + testPass
	list := runTool(t, nil, curl, "-sS", "--max-time", "60", "-u", user, url)
	if got := strings.Count(list, "\r\n"); got != len(msgs) {
		t.Fatalf("curl LIST: %q", list)
	}
	var got []string
	for i := range msgs {
		got = append(got, runTool(t, nil, curl, "-sS", "--max-time", "60", "-u", user, fmt.Sprint(url, i+1)))
	}
	sameMessages(t, "curl", got, msgs)
	// DELE through curl's custom request, then the message is gone.
	runTool(t, nil, curl, "-sS", "--max-time", "60", "-u", user, "-X", "DELE", "-I", url+"1")
	if left := len(e.messages()); left != len(msgs)-1 {
		t.Fatalf("%d messages after curl DELE, want %d", left, len(msgs)-1)
	}
}

// TestClientCurlTLS: curl over implicit TLS (pop3s) and over STLS
// (--ssl-reqd), with SASL PLAIN.
func TestClientCurlTLS(t *testing.T) {
	curl := needTool(t, "curl")
	e := newEnv(t)
	msg := clientMessages()[1]
	e.deliver(msg)
	n := e.start(nil, nil)
	tc, _ := testTLS()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tc.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	user := testUser + ":" + testPass
	_, port := hostPort(t, n.tlsAddr)
	got := runTool(t, nil, curl, "-sS", "--max-time", "60", "--cacert", ca, "-u", user, "pop3s://localhost:"+port+"/1")
	if got != msg {
		t.Fatalf("pop3s: %q", clip(got))
	}
	_, port = hostPort(t, n.addr)
	got = runTool(t, nil, curl, "-sS", "--max-time", "60", "--ssl-reqd", "--cacert", ca, "--login-options", "AUTH=PLAIN",
		"-u", user, "pop3://localhost:"+port+"/1")
	if got != msg {
		t.Fatalf("pop3 + STLS: %q", clip(got))
	}
}

// fetchmail hands messages to its MDA with LF line endings.
func TestClientFetchmail(t *testing.T) {
	fm := needTool(t, "fetchmail")
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			e, n, msgs := clientEnv(t, nil)
			home := t.TempDir()
			out := filepath.Join(home, "out")
			if err := os.Mkdir(out, 0o700); err != nil {
				t.Fatal(err)
			}
			mda := filepath.Join(home, "mda.sh")
			if err := os.WriteFile(mda, []byte("#!/bin/sh\nn=$(ls "+out+" | wc -l)\ncat > "+out+"/$(printf %04d $n)\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			host, port := hostPort(t, n.addr)
			keepOpt := "nokeep"
			if keep {
				keepOpt = "keep"
			}
			rc := filepath.Join(home, "fetchmailrc")
			if err := os.WriteFile(rc, []byte(fmt.Sprintf(`set no syslog
set no bouncemail
poll %s service %s protocol pop3 uidl auth password
  user "%s" there with password "%s" is "root" here
  options %s no rewrite sslproto '' mda "%s"
`, host, port, testUser, testPass, keepOpt, mda)), 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{"HOME=" + home, "FETCHMAILHOME=" + home}
			runTool(t, env, fm, "--nodetach", "--invisible", "-f", rc, "-v")
			sameMessages(t, "fetchmail", readDir(t, out), mapLF(msgs))
			left := len(e.messages())
			if keep && left != len(msgs) || !keep && left != 0 {
				t.Fatalf("keep=%v: %d messages left on the server", keep, left)
			}
			if keep {
				// Second run: the UIDLs say everything is old.
				e.deliver(testMsg("later", "new one\r\n"))
				runTool(t, env, fm, "--nodetach", "--invisible", "-f", rc, "-v", "--keep", "--uidl")
				if got := readDir(t, out); len(got) != len(msgs)+1 || got[len(msgs)] != lf(testMsg("later", "new one\r\n")) {
					t.Fatalf("second fetchmail run got %d files", len(got))
				}
			}
		})
	}
}

func mapLF(msgs []string) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = lf(m)
	}
	return out
}

// getmail6 stores in a Maildir with LF line endings.
func TestClientGetmail(t *testing.T) {
	gm := needTool(t, "getmail")
	e, n, msgs := clientEnv(t, nil)
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// getmail refuses to write a Maildir as root; tests often run as root,
	// so let it deliver as nobody.
	deliverAs := ""
	if os.Geteuid() == 0 {
		deliverAs = "user = nobody"
		for _, p := range []string{dir, md, filepath.Join(md, "cur"), filepath.Join(md, "new"), filepath.Join(md, "tmp")} {
			if err := os.Chmod(p, 0o777); err != nil {
				t.Fatal(err)
			}
		}
		for p := filepath.Dir(dir); p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	host, port := hostPort(t, n.addr)
	rc := filepath.Join(dir, "getmailrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`[retriever]
type = SimplePOP3Retriever
server = %s
port = %s
username = %s
password = %s

[destination]
type = Maildir
path = %s/
%s

[options]
verbose = 2
read_all = true
delete = true
delivered_to = false
received = false
`, host, port, testUser, testPass, md, deliverAs)), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, []string{"HOME=" + dir}, gm, "--rcfile="+rc, "--getmaildir="+dir)
	// getmail's Maildir destination puts the envelope sender on top, which a
	// simple POP3 retriever does not know: strip that one line it adds.
	got := readDir(t, filepath.Join(md, "new"))
	for i, m := range got {
		var ok bool
		if got[i], ok = strings.CutPrefix(m, "Return-Path: <unknown>\n"); !ok {
			t.Fatalf("getmail message without its Return-Path line: %q", clip(m))
		}
	}
	sameMessages(t, "getmail", got, mapLF(msgs))
	if left := len(e.messages()); left != 0 {
		t.Fatalf("%d messages left after getmail delete=true", left)
	}
}

// mutt fetches with <fetch-mail> into a Maildir spool (LF line endings).
// It needs a terminal: script(1) gives it a pseudo-terminal.
func TestClientMutt(t *testing.T) {
	mutt := needTool(t, "mutt")
	script := needTool(t, "script")
	e, n, msgs := clientEnv(t, nil)
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	rc := filepath.Join(dir, "muttrc")
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(`set pop_host="pop://%s@%s"
set pop_pass="%s"
set pop_delete=yes
set pop_last=no
set mbox_type=Maildir
set folder="%s"
set spoolfile="%s"
set ssl_starttls=no
set ssl_force_tls=no
set move=no
set mark_old=no
set header_cache=""
set message_cachedir=""
`, strings.ReplaceAll(testUser, "@", "%40"), n.addr, testPass, dir, md)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := mutt + " -n -F " + rc + " -e 'push <fetch-mail><quit>'"
	runTool(t, []string{"HOME=" + dir, "TERM=xterm"}, script, "-qec", cmd, "/dev/null")
	got := readDir(t, filepath.Join(md, "new"))
	if len(got) == 0 {
		got = readDir(t, filepath.Join(md, "cur"))
	}
	sameMessages(t, "mutt", got, mapLF(msgs))
	if left := len(e.messages()); left != 0 {
		t.Fatalf("%d messages left after mutt fetch-mail with pop_delete", left)
	}
}
