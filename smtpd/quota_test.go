package smtpd_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pythonOverQuota drives the inbound port with smtplib: a recipient over
// its storage quota (the SIZE parameter tells at RCPT) or at its message
// limit is refused with a permanent 552 5.2.2, and only that recipient.
const pythonOverQuota = `
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
big = "Subject: big\r\n\r\n" + ("x" * 76 + "\r\n") * 200   # about 15.6 KB
with smtplib.SMTP(host, port, local_hostname="py.example") as s:
    s.ehlo()
    assert s.has_extn("size")
    assert s.sendmail("s@remote.example", ["carol@example.org"], big) == {}
    # carol (20000 octets) cannot take a second one: refused at RCPT.
    try:
        s.sendmail("s@remote.example", ["carol@example.org"], big)
        print("ACCEPTED over storage quota"); sys.exit(1)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["carol@example.org"]
        assert code == 552 and text.startswith(b"5.2.2"), (code, text)
    # With another recipient, only carol is refused.
    refused = s.sendmail("s@remote.example", ["alice@example.org", "carol@example.org"], big)
    assert list(refused) == ["carol@example.org"] and refused["carol@example.org"][0] == 552, refused
    # bob may hold one message.
    assert s.sendmail("s@remote.example", ["bob@example.org"], "Subject: one\r\n\r\n1\r\n") == {}
    try:
        s.sendmail("s@remote.example", ["bob@example.org"], "Subject: two\r\n\r\n2\r\n")
        print("ACCEPTED over message limit"); sys.exit(1)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients["bob@example.org"]
        assert code == 552 and text.startswith(b"5.2.2"), (code, text)
print("OK")
`

// TestPythonSmtplibOverQuota: RFC 5321 §4.5.3.1.10, RFC 3463 §3.3 (X.2.2
// mailbox full) with a real client, for both quota resources.
func TestPythonSmtplibOverQuota(t *testing.T) {
	t.Parallel()
	py := needTool(t, "python3")
	e := newEnv(t)
	must(t, e.st.SetMessageQuota(context.Background(), e.bob.ID, 1))
	script := filepath.Join(t.TempDir(), "quota.py")
	must(t, os.WriteFile(script, []byte(pythonOverQuota), 0o600))
	h, p := hostPort(t, e.inbound)
	if out := run(t, py, script, h, p); !strings.Contains(out, "OK") {
		t.Fatalf("client: %s", out)
	}
	if n := len(e.inbox(e.carol)); n != 1 {
		t.Errorf("carol has %d messages, want 1", n)
	}
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob has %d messages, want 1 (message limit 1)", n)
	}
}
