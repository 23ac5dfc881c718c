package imapd

import (
	"net"
	"strings"
	"testing"
	"time"
)

// pythonMultiappend speaks MULTIAPPEND and CATENATE over a raw socket
// (imaplib has neither), with synchronizing literals answered one by one,
// then checks the result with imaplib.
const pythonMultiappend = `
import imaplib, re, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=20)
f = s.makefile('rb')
def line():
    l = f.readline()
    assert l.endswith(b'\r\n'), l
    return l[:-2]
def until(tag):
    while True:
        l = line()
        if l.startswith(tag + b' '):
            return l
def lit(b):
    return b'{%d}' % len(b)
assert line().startswith(b'* OK')
s.sendall(b'a LOGIN alice@example.org pw-alice\r\n'); assert until(b'a').startswith(b'a OK')
s.sendall(b'c CAPABILITY\r\n'); caps = line(); assert until(b'c').startswith(b'c OK')
assert b' MULTIAPPEND' in caps and b' CATENATE' in caps, caps
m1 = b'Subject: py one\r\n\r\nfirst from python\r\n'
m2 = b'Subject: py two\r\n\r\nsecond from python\r\n'
s.sendall(b'b APPEND INBOX (\\Seen) ' + lit(m1) + b'\r\n'); assert line().startswith(b'+')
s.sendall(m1 + b' ' + lit(m2) + b'\r\n'); assert line().startswith(b'+')
s.sendall(m2 + b'\r\n')
r = until(b'b'); m = re.match(rb'b OK \[APPENDUID (\d+) 1:2\]', r); assert m, r
v = m.group(1)
text = b'\r\npython tail\r\n'
s.sendall(b'd APPEND INBOX CATENATE (URL "/INBOX;UIDVALIDITY=' + v + b'/;UID=2/;SECTION=HEADER" TEXT ' + lit(text) + b'\r\n')
assert line().startswith(b'+')
s.sendall(text + b') ' + lit(m1) + b'\r\n'); assert line().startswith(b'+')
s.sendall(m1 + b'\r\n')
r = until(b'd'); assert re.match(rb'd OK \[APPENDUID \d+ 3:4\]', r), r
s.sendall(b'e APPEND INBOX CATENATE (URL "/INBOX/;UID=77")\r\n')
r = until(b'e'); assert r.startswith(b'e NO [BADURL /INBOX/;UID=77]'), r
s.sendall(b'z LOGOUT\r\n'); until(b'z'); s.close()

M = imaplib.IMAP4(host, port)
M.login('alice@example.org', 'pw-alice')
typ, data = M.select('INBOX'); assert data == [b'4'], data
typ, data = M.fetch('1:4', '(BODY.PEEK[])')
bodies = [d[1] for d in data if isinstance(d, tuple)]
assert bodies == [m1, m2, b'Subject: py two\r\n\r\n' + text, m1], bodies
typ, data = M.fetch('1', '(FLAGS)'); assert b'\\Seen' in data[0], data
M.logout()
print('PYTHON-OK')
`

func TestClientPythonMultiappend(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	host, port, _ := net.SplitHostPort(e.addr)
	out := runCmd(t, 30*time.Second, py, "-c", pythonMultiappend, host, port)
	if !strings.Contains(out, "PYTHON-OK") {
		t.Fatal(out)
	}
}
