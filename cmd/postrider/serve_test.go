package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testdns"
)

// node is a running `postrider serve`.
type node struct {
	cmd   *exec.Cmd
	addrs map[string]string
	data  string
	mu    sync.Mutex
	log   bytes.Buffer
	done  chan error
}

func (n *node) logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.log.String()
}

// startNode runs `postrider serve` on free loopback ports for every listener
// and waits until it is ready.
func startNode(t *testing.T, dbURL string, extraEnv ...string) *node {
	t.Helper()
	// The ports are picked free and closed again before serve binds them,
	// so another test process can take one in between: then try again
	// with new ones.
	for attempt := 1; ; attempt++ {
		n, err := startNodeOnce(t, dbURL, extraEnv...)
		if err == nil {
			return n
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("attempt %d: a port was taken meanwhile; retrying with others", attempt)
	}
}

func startNodeOnce(t *testing.T, dbURL string, extraEnv ...string) (*node, error) {
	t.Helper()
	n := &node{addrs: map[string]string{}, done: make(chan error, 1), data: t.TempDir()}
	env := []string{"POSTRIDER_DATABASE_URL=" + dbURL, "POSTRIDER_DATA_DIR=" + n.data, "POSTRIDER_HOSTNAME=mx.test.example", "POSTRIDER_LOG_LEVEL=debug"}
	for _, name := range []string{"SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S", "HTTP"} {
		a := freePort(t)
		n.addrs[name] = a
		env = append(env, "POSTRIDER_"+name+"_ADDR="+a)
	}
	// DNS from a loopback server with no records (inbound mail
	// authentication finds nothing): tests never query the outside.
	env = append(env, "POSTRIDER_DNS_RESOLVER="+testdns.Start(t).Addr)
	// No drain unless a test asks for one (extraEnv comes later and wins):
	// every SIGTERM of a test would otherwise wait 10 s.
	env = append(env, "POSTRIDER_DRAIN_PERIOD=0")
	env = append(env, extraEnv...)
	n.cmd = exec.Command(binary(t), "serve")
	n.cmd.Env = cleanEnv(env)
	pr, pw := io.Pipe()
	n.cmd.Stderr = pw
	n.cmd.Stdout = pw
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			n.mu.Lock()
			n.log.WriteString(sc.Text() + "\n")
			n.mu.Unlock()
		}
	}()
	go func() { n.done <- n.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if n.cmd.ProcessState == nil {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + n.addrs["HTTP"] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return n, nil
			}
		}
		select {
		case err := <-n.done:
			time.Sleep(50 * time.Millisecond) // let the log reader finish
			return nil, fmt.Errorf("serve exited early: %v\n%s", err, n.logs())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("serve not ready in time:\n%s", n.logs())
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop(t *testing.T) {
	t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, n.logs())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("serve did not stop after SIGTERM\n%s", n.logs())
	}
}

func TestServeHTTPAndSignals(t *testing.T) {
	n := startNode(t, pgtest.NewDatabase(t))
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + n.addrs["HTTP"] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics: %d", code)
	}
	// Every protocol listener accepts connections.
	for _, name := range []string{"SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S"} {
		c, err := net.DialTimeout("tcp", n.addrs[name], 5*time.Second)
		if err != nil {
			t.Errorf("%s listener: %v", name, err)
			continue
		}
		c.Close()
	}
	n.stop(t)
	if !strings.Contains(n.logs(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop in logs:\n%s", n.logs())
	}
	if strings.Contains(n.logs(), `"level":"ERROR"`) {
		t.Fatalf("errors logged:\n%s", n.logs())
	}
}

func TestServeRefusesTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "serve")
	cmd.Env = cleanEnv([]string{"POSTRIDER_DATABASE_URL=" + url, "POSTRIDER_DATA_DIR=" + t.TempDir(),
		"POSTRIDER_SMTP_ADDR=" + l.Addr().String(), "POSTRIDER_SUBMISSION_ADDR=", "POSTRIDER_SUBMISSIONS_ADDR=",
		"POSTRIDER_IMAP_ADDR=", "POSTRIDER_IMAPS_ADDR=", "POSTRIDER_POP3_ADDR=", "POSTRIDER_POP3S_ADDR=", "POSTRIDER_HTTP_ADDR="})
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("serve started on a taken port")
	}
	if !strings.Contains(string(out), "POSTRIDER_SMTP_ADDR") {
		t.Fatalf("error does not name the variable: %s", out)
	}
}
