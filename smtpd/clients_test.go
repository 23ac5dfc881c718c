package smtpd_test

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// End-to-end tests with real clients from Debian (swaks, curl) and
// Python's smtplib. Each sends to a user and finds the message in the
// store.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install %s)", name, name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	must(t, err)
	return h, p
}

// expectSubjects checks that the account got exactly messages with these
// subjects, in order.
func (e *env) expectSubjects(t *testing.T, who string, msgs [][]byte, subjects ...string) {
	t.Helper()
	if len(msgs) != len(subjects) {
		t.Fatalf("%s has %d messages, want %d", who, len(msgs), len(subjects))
	}
	for i, s := range subjects {
		if !bytes.Contains(msgs[i], []byte("Subject: "+s+"\r\n")) {
			t.Errorf("%s message %d lacks Subject %q:\n%s", who, i, s, msgs[i])
		}
	}
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	swaks := needTool(t, "swaks")
	e := newEnv(t)
	h, p := hostPort(t, e.inbound)
	run(t, swaks, "--server", h, "--port", p, "--helo", "swaks.example", "--from", "s@remote.example",
		"--to", "alice@example.org", "--header", "Subject: swaks inbound", "--body", "hello from swaks", "--pipeline")
	h, p = hostPort(t, e.submission)
	out := run(t, swaks, "--server", h, "--port", p, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.org",
		"--auth-password", alicePass, "--from", "alice@example.org", "--to", "bob@example.org",
		"--header", "From: alice@example.org", "--header", "Subject: swaks submission")
	if !strings.Contains(out, "ESMTPSA") && !strings.Contains(out, "235 ") {
		t.Errorf("swaks transcript lacks the AUTH success:\n%s", out)
	}
	h, p = hostPort(t, e.submissions)
	run(t, swaks, "--server", h, "--port", p, "--tlsc", "--auth", "LOGIN", "--auth-user", "bob@example.org",
		"--auth-password", bobPass, "--from", "bob@example.org", "--to", "alice@example.org",
		"--header", "From: bob@example.org", "--header", "Subject: swaks implicit tls")
	// A wrong password fails, and swaks says so.
	cmd := exec.Command(swaks, "--server", h, "--port", p, "--tlsc", "--auth", "PLAIN", "--auth-user", "bob@example.org",
		"--auth-password", "wrong", "--from", "bob@example.org", "--to", "alice@example.org")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "535 5.7.8") {
		t.Errorf("bad password accepted? err=%v\n%s", err, out)
	}
	e.expectSubjects(t, "alice", e.inbox(e.alice), "swaks inbound", "swaks implicit tls")
	e.expectSubjects(t, "bob", e.inbox(e.bob), "swaks submission")
}

func TestCurl(t *testing.T) {
	t.Parallel()
	curl := needTool(t, "curl")
	e := newEnv(t)
	msgFile := filepath.Join(t.TempDir(), "msg.eml")
	write := func(subject, from string) {
		must(t, os.WriteFile(msgFile, []byte("From: <"+from+">\r\nTo: <bob@example.org>\r\nSubject: "+subject+
			"\r\n\r\nHello from curl.\r\n.starts with a dot\r\n"), 0o600))
	}
	write("curl inbound", "s@remote.example")
	run(t, curl, "-sS", "smtp://"+e.inbound+"/client.example", "--mail-from", "s@remote.example",
		"--mail-rcpt", "bob@example.org", "--upload-file", msgFile)
	write("curl submission", "alice@example.org")
	run(t, curl, "-sS", "--ssl-reqd", "-k", "smtp://"+e.submission+"/client.example", "--user", "alice@example.org:"+alicePass,
		"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "--upload-file", msgFile)
	write("curl smtps", "alice@example.org")
	run(t, curl, "-sS", "-k", "smtps://"+e.submissions+"/client.example", "--user", "alice@example.org:"+alicePass,
		"--mail-from", "alice@example.org", "--mail-rcpt", "bob@example.org", "--upload-file", msgFile)
	// Relay attempt: refused.
	if out, err := exec.Command(curl, "-sS", "smtp://"+e.inbound, "--mail-from", "s@remote.example",
		"--mail-rcpt", "victim@elsewhere.example", "--upload-file", msgFile).CombinedOutput(); err == nil {
		t.Errorf("relay accepted:\n%s", out)
	}
	// A Unix text file, lines ending in LF, sent as it is: stored with
	// CRLF (bare LF normalized as Postfix's smtpd_forbid_bare_newline =
	// normalize does), its "." lines intact (curl stuffs only after CRLF).
	unix := "From: <s@remote.example>\nTo: <bob@example.org>\nSubject: curl unix\n\nHello from a Unix file.\n.starts with a dot\n.\nlast line\n"
	must(t, os.WriteFile(msgFile, []byte(unix), 0o600))
	run(t, curl, "-sS", "smtp://"+e.inbound+"/client.example", "--mail-from", "s@remote.example",
		"--mail-rcpt", "bob@example.org", "--upload-file", msgFile)
	msgs := e.inbox(e.bob)
	e.expectSubjects(t, "bob", msgs, "curl inbound", "curl submission", "curl smtps", "curl unix")
	for _, m := range msgs[:3] {
		if _, rest := body(t, m); !bytes.HasSuffix(rest, []byte("\r\n.starts with a dot\r\n")) {
			t.Errorf("dot-stuffing not undone: %q", rest)
		}
	}
	// curl ends data that does not end in CRLF with "\r\n.\r\n": one more,
	// empty, line.
	if _, rest := body(t, msgs[3]); string(rest) != strings.ReplaceAll(unix, "\n", "\r\n")+"\r\n" {
		t.Errorf("Unix file stored as %q", rest)
	}
}

const pythonClient = `
import smtplib, ssl, sys
from email.message import EmailMessage
mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def msg(frm, to, subject):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, subject
    m.set_content("Grüße from smtplib\n")
    return m
if mode == "inbound":
    with smtplib.SMTP(host, port, local_hostname="py.example") as s:
        s.send_message(msg("s@remote.example", "alice@example.org", "python inbound"))
        # SMTPUTF8 (RFC 6531): an internationalised domain.
        s.send_message(msg("jörg@remote.example", "info@bücher.example", "python utf8"))
        try:
            s.sendmail("s@remote.example", ["victim@elsewhere.example"], "Subject: relay\r\n\r\nx\r\n")
            print("RELAYED"); sys.exit(1)
        except smtplib.SMTPRecipientsRefused as e:
            code = e.recipients["victim@elsewhere.example"][0]
            assert code == 554, code
elif mode == "submission":
    with smtplib.SMTP(host, port, local_hostname="py.example") as s:
        s.starttls(context=ctx)
        s.login("alice@example.org", sys.argv[4])
        s.send_message(msg("alice@example.org", "bob@example.org", "python submission"))
        try:
            s.send_message(msg("bob@example.org", "bob@example.org", "forged"))
            print("FORGED"); sys.exit(1)
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 553, e.smtp_code
elif mode == "smtps":
    with smtplib.SMTP_SSL(host, port, context=ctx, local_hostname="py.example") as s:
        s.login("alice@example.org", sys.argv[4])
        s.send_message(msg("alice@example.org", "bob@example.org", "python smtps"))
print("OK")
`

func TestPythonSmtplib(t *testing.T) {
	t.Parallel()
	py := needTool(t, "python3")
	e := newEnv(t)
	script := filepath.Join(t.TempDir(), "client.py")
	must(t, os.WriteFile(script, []byte(pythonClient), 0o600))
	h, p := hostPort(t, e.inbound)
	run(t, py, script, "inbound", h, p)
	h, p = hostPort(t, e.submission)
	run(t, py, script, "submission", h, p, alicePass)
	h, p = hostPort(t, e.submissions)
	run(t, py, script, "smtps", h, p, alicePass)
	e.expectSubjects(t, "alice", e.inbox(e.alice), "python inbound")
	e.expectSubjects(t, "info", e.inbox(e.info), "python utf8")
	e.expectSubjects(t, "bob", e.inbox(e.bob), "python submission", "python smtps")
	if m := e.inbox(e.info)[0]; !bytes.Contains(m, []byte("with UTF8SMTP id")) || !bytes.Contains(m, []byte("Return-Path: <jörg@remote.example>")) {
		t.Errorf("SMTPUTF8 message:\n%s", m)
	}
}
