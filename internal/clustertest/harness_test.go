package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/testdns"
	"github.com/postrider/postrider/internal/testkit"
)

const (
	domain   = "example.org"
	user     = "alice@example.org"
	password = "alice-pass"
)

// The addresses test clients connect from: every 127.0.0.0/8 address is
// local on Linux, so a client on 127.0.0.23 and HAProxy on 127.0.0.1 are
// told apart in the nodes' logs. Only 127.0.0.1 is a trusted proxy.
const (
	balancedClientIP = "127.0.0.23" // connects through HAProxy
	directClientIP   = "127.0.0.24" // connects to a node itself
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/postrider once per test process (without -race: three
// nodes, HAProxy and load share two cores; the race detector runs on the
// in-process tests of every package).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "postrider-cluster-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "postrider")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/postrider/postrider/cmd/postrider").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// cleanEnv is the process environment without POSTRIDER_* plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSTRIDER_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runCLI runs an admin subcommand against dbURL.
func runCLI(t *testing.T, dbURL, stdin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = cleanEnv("POSTRIDER_DATABASE_URL=" + dbURL)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("postrider %v: %v\n%s", args, err, out)
	}
}

// setupAccount adds the test domain and user.
func setupAccount(t *testing.T, dbURL string) {
	t.Helper()
	runCLI(t, dbURL, "", "domain", "add", domain)
	runCLI(t, dbURL, password+"\n", "user", "add", user)
}

// freePort returns a loopback address for a node's listener
// (testkit.FreeAddr).
func freePort(t *testing.T) string { return testkit.FreeAddr(t) }

// protocols are the node listeners, by the environment variable infix
// (POSTRIDER_<name>_ADDR) that is also the upper-cased HAProxy backend name.
var protocols = []string{"SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S", "HTTP"}

// node is one `postrider serve` process; restart keeps its ports (the
// balancer's configuration names them) and its log.
type node struct {
	name  string
	addrs map[string]string
	env   []string
	data  string

	mu   sync.Mutex
	log  bytes.Buffer
	cmd  *exec.Cmd
	done chan error
}

// newNode picks ports and starts the node.
func newNode(t *testing.T, name, dbURL string, extraEnv ...string) *node {
	t.Helper()
	n := &node{name: name, addrs: map[string]string{}, data: t.TempDir()}
	n.env = []string{
		"POSTRIDER_DATABASE_URL=" + dbURL,
		"POSTRIDER_DATA_DIR=" + n.data,
		"POSTRIDER_HOSTNAME=mx.test.example",
		"POSTRIDER_TRUSTED_PROXIES=127.0.0.1/32",
		"POSTRIDER_DB_MAX_CONNS=8",
		"POSTRIDER_DELIVERY_WORKERS=1",
		// DNS from a loopback server with no records: inbound mail
		// authentication finds nothing, and nothing asks the outside.
		"POSTRIDER_DNS_RESOLVER=" + testdns.Start(t).Addr,
	}
	for _, p := range protocols {
		n.addrs[p] = freePort(t)
		n.env = append(n.env, "POSTRIDER_"+p+"_ADDR="+n.addrs[p])
	}
	n.env = append(n.env, extraEnv...)
	t.Cleanup(func() { n.kill() })
	n.start(t)
	return n
}

// start runs the process and waits until /readyz answers 200.
func (n *node) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(binary(t), "serve")
	cmd.Env = cleanEnv(n.env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-logged
		done <- err
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	if err := n.waitReady(60 * time.Second); err != nil {
		t.Fatalf("%s: %v\n%s", n.name, err, n.logs())
	}
}

func (n *node) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if n.ready() {
			return nil
		}
		select {
		case err := <-n.done:
			n.done <- err
			return fmt.Errorf("serve exited early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready within %v", d)
}

// ready reports whether /readyz answers 200.
func (n *node) ready() bool {
	c := http.Client{Timeout: 4 * time.Second}
	resp, err := c.Get("http://" + n.addrs["HTTP"] + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// term sends SIGTERM: the node drains (POSTRIDER_DRAIN_PERIOD), then stops.
func (n *node) term() {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
}

// waitExit waits for the process to exit cleanly.
func (n *node) waitExit(t *testing.T) {
	t.Helper()
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", n.name, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not stop within 60 s of SIGTERM\n%s", n.name, n.logs())
	}
}

// kill sends SIGKILL (if it still runs) and waits.
func (n *node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	err := <-done
	done <- err
}

func (n *node) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// haproxyBinary finds HAProxy, installing Debian's package when missing and
// we are root; it skips the test when neither works.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	haproxyOnce.Do(func() {
		if p, err := exec.LookPath("haproxy"); err == nil {
			haproxyPath = p
			return
		}
		if os.Geteuid() != 0 {
			haproxyErr = fmt.Errorf("haproxy is not installed and we are not root to install it")
			return
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			haproxyErr = fmt.Errorf("haproxy is not installed and there is no apt-get")
			return
		}
		cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "haproxy")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			haproxyErr = fmt.Errorf("apt-get install haproxy: %v\n%s", err, out)
			return
		}
		haproxyPath, haproxyErr = exec.LookPath("haproxy")
	})
	if haproxyErr != nil {
		t.Skipf("cluster test needs HAProxy: %v", haproxyErr)
	}
	return haproxyPath
}

var (
	haproxyOnce sync.Once
	haproxyPath string
	haproxyErr  error
)

// balancer is a running HAProxy.
type balancer struct {
	front map[string]string // frontend name (smtp, imap, ...) -> address
	cmd   *exec.Cmd
	mu    sync.Mutex
	log   bytes.Buffer
}

func (b *balancer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.Write(p)
}

func (b *balancer) logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// waitLog waits until HAProxy's output holds s at least n times.
func (b *balancer) waitLog(t *testing.T, s string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for strings.Count(b.logs(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy did not log %q within %v:\n%s", s, d, b.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var (
	bindRe   = regexp.MustCompile(`^(\s*bind\s+)\S*:(\d+)(.*)$`)
	serverRe = regexp.MustCompile(`^(\s*server\s+)node\d+\s+\S+:\d+(.*)$`)
	portRe   = regexp.MustCompile(`\bport\s+\d+\b`)
	sectRe   = regexp.MustCompile(`^(frontend|backend)\s+(\S+)`)
)

// balancerConfig rewrites the repository's deploy/haproxy.cfg for nodes:
// every frontend binds a free port on 127.0.0.1 instead of its public
// port, and each backend's server lines become one line per node with the
// node's address for that protocol and its HTTP port for the health
// check; everything else (checks, PROXY protocol, timeouts, logging) is
// the file as shipped.
func balancerConfig(t *testing.T, nodes []*node) (string, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	front := map[string]string{}
	var out []string
	section := ""
	emitted := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if m := sectRe.FindStringSubmatch(line); m != nil {
			section = m[1] + " " + m[2]
		}
		if m := bindRe.FindStringSubmatch(line); m != nil && strings.HasPrefix(section, "frontend ") {
			a := freePort(t)
			front[strings.TrimPrefix(section, "frontend ")] = a
			out = append(out, m[1]+a+m[3])
			continue
		}
		if m := serverRe.FindStringSubmatch(line); m != nil && strings.HasPrefix(section, "backend ") {
			if emitted[section] {
				continue
			}
			emitted[section] = true
			proto := strings.ToUpper(strings.TrimPrefix(section, "backend "))
			for i, n := range nodes {
				addr, ok := n.addrs[proto]
				if !ok {
					t.Fatalf("haproxy.cfg: backend %s names no node protocol", section)
				}
				_, httpPort, _ := net.SplitHostPort(n.addrs["HTTP"])
				rest := portRe.ReplaceAllString(m[2], "port "+httpPort)
				out = append(out, fmt.Sprintf("%snode%d %s%s", m[1], i+1, addr, rest))
			}
			continue
		}
		out = append(out, line)
	}
	for _, p := range []string{"smtp", "imap", "pop3"} {
		if front[p] == "" || !emitted["backend "+p] {
			t.Fatalf("haproxy.cfg has no frontend/backend %q", p)
		}
	}
	return strings.Join(out, "\n"), front
}

// startBalancer runs HAProxy in the foreground on the rewritten
// configuration and waits until every node is in rotation.
func startBalancer(t *testing.T, nodes []*node) *balancer {
	t.Helper()
	bin := haproxyBinary(t)
	cfg, front := balancerConfig(t, nodes)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c on the rewritten configuration: %v\n%s\n%s", err, out, cfg)
	}
	b := &balancer{front: front}
	// -n: the shipped maxconn needs more file descriptors than a test
	// process may have; the limit is a run option, not configuration.
	b.cmd = exec.Command(bin, "-db", "-n", strconv.Itoa(testMaxConn()), "-f", path)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
	})
	// Every node must greet through the balancer; with leastconn and no
	// other connections, holding one connection open moves the next one
	// to another node, so len(nodes) concurrent greetings reach all.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b.greets(len(nodes)) {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy does not pass connections to the nodes\n%s", b.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// greets reports whether n SMTP connections held at once through the
// balancer all get a 220 greeting.
func (b *balancer) greets(n int) bool {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := dialFrom(balancedClientIP, b.front["smtp"])
		if err != nil {
			return false
		}
		conns = append(conns, c)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(l, "220") {
			return false
		}
	}
	return true
}

// testMaxConn is a connection limit for HAProxy within this process's
// file descriptor limit (two descriptors a connection, and some spare).
func testMaxConn() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Max > 8200 {
		return 4000
	}
	return max(100, int(r.Max)/2-100)
}

// dialFrom connects to addr from the local address ip.
func dialFrom(ip, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.Dial("tcp", addr)
}
