package imapd

import (
	"net"
	"strings"
	"testing"
	"time"
)

const pythonQuota = `
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
assert 'QUOTA' in M.capabilities and 'QUOTA=RES-STORAGE' in M.capabilities, M.capabilities
typ, data = M.getquotaroot('INBOX'); assert typ == 'OK', (typ, data)
roots, quotas = data
assert roots == [b'INBOX ""'], roots
assert quotas == [b'"" (STORAGE 2 2048 MESSAGE 1 100)'], quotas
typ, data = M.getquota('""'); assert typ == 'OK' and data == [b'"" (STORAGE 2 2048 MESSAGE 1 100)'], data
typ, data = M.getquotaroot('NoSuchMailbox'); assert typ == 'NO' and b'No such mailbox' in data[0][0], (typ, data)
typ, data = M.setquota('""', '(STORAGE 1)'); assert typ == 'NO', (typ, data)
M.logout()
print('PYTHON-QUOTA-OK')
`

// Python's imaplib: getquotaroot, getquota and setquota (RFC 9208).
func TestClientPythonQuota(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("quota", strings.Repeat("z", 1500)+"\r\n"))
	id := e.accts["alice"].ID
	if err := e.store.SetQuota(t.Context(), id, 2<<20); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetMessageQuota(t.Context(), id, 100); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	if out := runCmd(t, 30*time.Second, py, "-c", pythonQuota, host, port); !strings.Contains(out, "PYTHON-QUOTA-OK") {
		t.Fatal(out)
	}
}
