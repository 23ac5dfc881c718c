package imapd

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// pythonDeflate is an imaplib client that speaks COMPRESS=DEFLATE through
// zlib on its socket (raw deflate, wbits -15, a sync flush per command).
const pythonDeflate = `
import imaplib, zlib
imaplib.Commands['COMPRESS'] = ('AUTH', 'SELECTED')

class DeflateIMAP(imaplib.IMAP4):
    zc = None
    def compress(self):
        typ, data = self._simple_command('COMPRESS', 'DEFLATE')
        assert typ == 'OK', (typ, data)
        self.zc = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.zd = zlib.decompressobj(-15)
        self.zbuf = b''
        self.wire_in = self.wire_out = self.plain_in = self.plain_out = 0
    def send(self, data):
        if self.zc is None:
            return super().send(data)
        self.plain_out += len(data)
        data = self.zc.compress(data) + self.zc.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(data)
        self.sock.sendall(data)
    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort('EOF')
        self.wire_in += len(chunk)
        out = self.zd.decompress(chunk)
        self.plain_in += len(out)
        self.zbuf += out
    def read(self, size):
        if self.zc is None:
            return super().read(size)
        while len(self.zbuf) < size:
            self._fill()
        out, self.zbuf = self.zbuf[:size], self.zbuf[size:]
        return out
    def readline(self):
        if self.zc is None:
            return super().readline()
        while b'\n' not in self.zbuf:
            self._fill()
        i = self.zbuf.index(b'\n') + 1
        out, self.zbuf = self.zbuf[:i], self.zbuf[i:]
        return out
`

const pythonCompress = pythonDeflate + `
import sys
host, port = sys.argv[1], int(sys.argv[2])
M = DeflateIMAP(host, port)
assert 'COMPRESS=DEFLATE' in M.capabilities, M.capabilities
typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
M.compress()
typ, data = M.select('INBOX'); assert typ == 'OK' and data == [b'2'], data
typ, data = M.fetch('2', '(BODY.PEEK[])'); assert typ == 'OK'
assert data[0][1] == open(sys.argv[3], 'rb').read(), data
typ, data = M.getquotaroot('INBOX'); assert typ == 'OK' and data[0] == [b'INBOX'], data
msg = b'From: py@example.org\r\nSubject: appended through zlib\r\n\r\n' + b'hello ' * 2000 + b'\r\n'
typ, data = M.append('INBOX', None, None, msg); assert typ == 'OK' and b'APPENDUID' in data[0], data
typ, data = M.search(None, 'SUBJECT', 'zlib'); assert data == [b'3'], data
typ, data = M.fetch('3', '(RFC822.SIZE)'); assert b'RFC822.SIZE %d' % len(msg) in data[0], data
typ, data = M._simple_command('COMPRESS', 'DEFLATE'); assert typ == 'NO' and b'[COMPRESSIONACTIVE]' in data[0], (typ, data)
M.logout()
print('PYTHON-DEFLATE-OK in %d/%d out %d/%d' % (M.wire_in, M.plain_in, M.wire_out, M.plain_out))
`

// Python's imaplib over zlib: COMPRESS=DEFLATE with a real independent
// implementation of both directions.
func TestClientPythonCompress(t *testing.T) {
	py := needProgram(t, "python3")
	e := newEnv(t)
	e.deliver("alice", "INBOX", testMessage("first", "one\r\n"))
	second := testMessage("compressed", strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 500))
	e.deliver("alice", "INBOX", second)
	want := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(want, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	out := runCmd(t, 30*time.Second, py, "-c", pythonCompress, host, port, want)
	if !strings.Contains(out, "PYTHON-DEFLATE-OK") {
		t.Fatal(out)
	}
	t.Log(strings.TrimSpace(out))
}

// pythonHold opens n sessions (compressed or not), logs them in, runs a
// FETCH in each, reports READY and holds them until stdin closes.
const pythonHold = pythonDeflate + `
import sys
host, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conns = []
for i in range(n):
    M = DeflateIMAP(host, port)
    typ, _ = M.login('alice@example.org', 'pw-alice'); assert typ == 'OK'
    if mode == 'deflate':
        M.compress()
    typ, data = M.select('INBOX'); assert typ == 'OK'
    typ, data = M.fetch('1', '(BODY.PEEK[])'); assert typ == 'OK'
    conns.append(M)
print('READY', flush=True)
sys.stdin.read()
`

// TestCompressMemory measures what an idle session costs the server with
// and without COMPRESS=DEFLATE: 200 sessions from a Python process, the
// server's heap and stacks read before and after. The output deflater is
// pooled (compress.go), so a compressed idle session holds only its
// inflater; one holding a deflater would cost over 800 KB.
func TestCompressMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 400 sessions")
	}
	py := needProgram(t, "python3")
	e := newEnv(t, func(c *Config) { c.MaxConnsPerAccount = 1000 })
	e.deliver("alice", "INBOX", testMessage("mem", strings.Repeat("memory test line\r\n", 200)))
	host, port, _ := net.SplitHostPort(e.addr)
	const n = 200
	per := map[string]float64{}
	settle := func() {
		// Twice: sync.Pool keeps its objects (pooled output buffers and
		// deflaters) through one collection.
		runtime.GC()
		runtime.GC()
	}
	for _, mode := range []string{"plain", "deflate"} {
		settle()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		cmd := exec.Command(py, "-c", pythonHold, host, port, fmt.Sprint(n), mode)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "READY\n" {
			stdin.Close()
			cmd.Wait()
			t.Fatalf("%s: %q %v", mode, l, err)
		}
		time.Sleep(200 * time.Millisecond)
		settle()
		runtime.ReadMemStats(&m1)
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		d := float64(int64(m1.HeapAlloc+m1.StackInuse)-int64(m0.HeapAlloc+m0.StackInuse)) / n
		per[mode] = d
		t.Logf("%s: %.1f KB per idle session (heap %+d KB, stacks %+d KB for %d sessions)", mode, d/1024,
			(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))>>10, (int64(m1.StackInuse)-int64(m0.StackInuse))>>10, n)
		waitSessions(t, e)
	}
	if extra := per["deflate"] - per["plain"]; extra > 100<<10 {
		t.Errorf("a compressed idle session costs %.0f KB more than a plain one; want under 100 KB", extra/1024)
	} else {
		t.Logf("COMPRESS=DEFLATE adds %.1f KB per idle session", extra/1024)
	}
}

// waitSessions waits until the server has no session left.
func waitSessions(t *testing.T, e *testEnv) {
	t.Helper()
	for i := 0; i < 100 && e.srv.fe.OpenConns() > 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}
