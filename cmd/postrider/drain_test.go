package main_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
)

func httpStatus(t *testing.T, n *node, path string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.addrs["HTTP"] + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSIGTERMDrainsBeforeShutdown runs the built binary with a drain
// period, SIGTERMs it, and checks the two stages from the outside: first
// /readyz answers 503 while /healthz stays 200, sessions opened before go
// on (an IMAP NOOP, an SMTP delivery that the IMAP session then sees), and
// a new connection is still served; only after the drain period do the
// clients hear the goodbye (IMAP * BYE, SMTP 421 4.3.2, POP3 -ERR) and the
// process exits 0.
func TestSIGTERMDrainsBeforeShutdown(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := []string{"POSTRIDER_DATABASE_URL=" + url}
	for _, args := range [][]string{{"domain", "add", "example.org"}, {"user", "add", "alice@example.org"}} {
		if r := runCLI(t, env, "alice-pass\n", args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	const drainPeriod = 6 * time.Second
	n := startNode(t, url, "POSTRIDER_DRAIN_PERIOD="+drainPeriod.String(), "POSTRIDER_SHUTDOWN_TIMEOUT=10s")

	imap := dialLines(t, n.addrs["IMAP"])
	imap.until("* OK", 10*time.Second)
	imap.send("a1 LOGIN alice@example.org alice-pass")
	imap.until("a1 OK", 30*time.Second)
	imap.send("a2 SELECT INBOX")
	imap.until("a2 OK", 10*time.Second)
	smtpc := dialLines(t, n.addrs["SMTP"])
	smtpc.until("220 ", 10*time.Second)
	smtpc.send("EHLO client.test")
	smtpc.until("250 ", 10*time.Second)
	pop := dialLines(t, n.addrs["POP3"])
	pop.until("+OK", 10*time.Second)

	if code := httpStatus(t, n, "/readyz"); code != 200 {
		t.Fatalf("/readyz before SIGTERM: %d", code)
	}
	// `postrider healthcheck` (the container health check) agrees.
	hcEnv := []string{"POSTRIDER_HTTP_ADDR=" + n.addrs["HTTP"]}
	if r := runCLI(t, hcEnv, "", "healthcheck"); r.code != 0 || strings.TrimSpace(r.stdout) != "ready" {
		t.Fatalf("healthcheck of a ready node: %d %q %q", r.code, r.stdout, r.stderr)
	}
	sent := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Stage one: out of rotation, still serving.
	for httpStatus(t, n, "/readyz") != http.StatusServiceUnavailable {
		if time.Since(sent) > drainPeriod/2 {
			t.Fatal("/readyz did not fail soon after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := httpStatus(t, n, "/healthz"); code != 200 {
		t.Fatalf("/healthz while draining: %d (a liveness probe would kill the draining node)", code)
	}
	if r := runCLI(t, hcEnv, "", "healthcheck"); r.code != 1 || !strings.Contains(r.stderr, "503") {
		t.Fatalf("healthcheck of a draining node: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, hcEnv, "", "healthcheck", "--live"); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Fatalf("healthcheck --live of a draining node: %d %q %q", r.code, r.stdout, r.stderr)
	}
	imap.send("a3 NOOP")
	imap.until("a3 OK", 5*time.Second)
	smtpc.send("MAIL FROM:<>")
	smtpc.until("250 ", 5*time.Second)
	smtpc.send("RCPT TO:<alice@example.org>")
	smtpc.until("250 ", 5*time.Second)
	smtpc.send("DATA")
	smtpc.until("354 ", 5*time.Second)
	smtpc.send("From: bob@elsewhere.test\r\nSubject: while draining\r\n\r\nstill served\r\n.")
	smtpc.until("250 ", 10*time.Second)
	imap.send("a4 NOOP")
	if l := imap.until("a4 OK", 5*time.Second); !strings.Contains(strings.Join(l, ""), "* 1 EXISTS") {
		t.Fatalf("the delivery made while draining is not seen: %q", l)
	}
	late := dialLines(t, n.addrs["IMAP"]) // the balancer may still send one
	late.until("* OK", 5*time.Second)
	late.send("b1 CAPABILITY")
	late.until("b1 OK", 5*time.Second)
	if time.Since(sent) >= drainPeriod {
		t.Fatalf("the checks above took %v, longer than the drain period: the test proves nothing", time.Since(sent))
	}

	// Stage two: goodbyes, after the drain period and not before.
	bye := imap.until("* BYE", drainPeriod+10*time.Second)
	if waited := time.Since(sent); waited < drainPeriod {
		t.Fatalf("BYE %v after SIGTERM, before the drain period (%v) ended: %q", waited, drainPeriod, bye)
	}
	if l := smtpc.until("421", 10*time.Second); !strings.HasPrefix(l[len(l)-1], "421 4.3.2") {
		t.Fatalf("SMTP goodbye: %q", l)
	}
	pop.until("-ERR", 10*time.Second)
	select {
	case err := <-n.done:
		if err != nil {
			t.Fatalf("exit after drain: %v\n%s", err, n.logs())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit after the drain\n%s", n.logs())
	}
	logs := n.logs()
	if !strings.Contains(logs, `"msg":"draining: /readyz fails, connections are still served"`) || strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("logs:\n%s", logs)
	}
}

// TestSecondSignalEndsDrain: an operator's second SIGTERM (or a SIGINT
// from a terminal) does not wait out a long drain period.
func TestSecondSignalEndsDrain(t *testing.T) {
	url := pgtest.NewDatabase(t)
	for _, sigs := range [][]syscall.Signal{{syscall.SIGTERM, syscall.SIGTERM}, {syscall.SIGINT}} {
		n := startNode(t, url, "POSTRIDER_DRAIN_PERIOD=10m")
		start := time.Now()
		for i, s := range sigs {
			if i > 0 {
				for httpStatus(t, n, "/readyz") != http.StatusServiceUnavailable {
					time.Sleep(20 * time.Millisecond)
				}
			}
			if err := n.cmd.Process.Signal(s); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-n.done:
			if err != nil {
				t.Fatalf("%v: exit %v\n%s", sigs, err, n.logs())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%v: still running after 30 s with a 10 min drain period\n%s", sigs, n.logs())
		}
		t.Logf("%v: stopped in %v", sigs, time.Since(start).Round(time.Millisecond))
	}
}

// TestHealthcheckWithoutNode: nothing listening is a failure that names
// the address asked, and a wildcard listen address is asked on loopback.
func TestHealthcheckWithoutNode(t *testing.T) {
	port := freePort(t)
	_, p, _ := strings.Cut(port, ":")
	r := runCLI(t, []string{"POSTRIDER_HTTP_ADDR=:" + p}, "", "healthcheck")
	if r.code != 1 || !strings.Contains(r.stderr, "http://127.0.0.1:"+p+"/readyz") {
		t.Fatalf("healthcheck with no node: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, []string{"POSTRIDER_HTTP_ADDR="}, "", "healthcheck"); r.code != 2 {
		t.Fatalf("healthcheck with no HTTP listener configured: %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "", "healthcheck", "/metrics"); r.code != 2 {
		t.Fatalf("healthcheck with a stray argument: %d %q", r.code, r.stderr)
	}
}

// TestSelfsignedSharedByNodes: `postrider selfsigned` writes the pair once
// (a second run keeps it), and two nodes given those files serve the same
// certificate, as the compose stack's nodes do behind one balancer.
func TestSelfsignedSharedByNodes(t *testing.T) {
	dir := t.TempDir()
	env := []string{"POSTRIDER_DATA_DIR=" + dir, "POSTRIDER_HOSTNAME=mail.example.org"}
	r := runCLI(t, env, "", "selfsigned")
	if r.code != 0 || !strings.Contains(r.stdout, "POSTRIDER_TLS_CERT_FILE="+filepath.Join(dir, "selfsigned-cert.pem")) {
		t.Fatalf("selfsigned: %d %q %q", r.code, r.stdout, r.stderr)
	}
	first, err := os.ReadFile(filepath.Join(dir, "selfsigned-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(first)
	if block == nil {
		t.Fatal("no PEM certificate written")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.VerifyHostname("mail.example.org") != nil {
		t.Fatalf("certificate not for POSTRIDER_HOSTNAME: %v %v", err, cert.DNSNames)
	}
	if r := runCLI(t, env, "", "selfsigned"); r.code != 0 {
		t.Fatalf("second run: %q", r.stderr)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "selfsigned-cert.pem")); !bytes.Equal(again, first) {
		t.Fatal("a second run replaced a valid certificate")
	}

	url := pgtest.NewDatabase(t)
	files := []string{"POSTRIDER_TLS_CERT_FILE=" + filepath.Join(dir, "selfsigned-cert.pem"),
		"POSTRIDER_TLS_KEY_FILE=" + filepath.Join(dir, "selfsigned-key.pem")}
	a := startNode(t, url, files...)
	b := startNode(t, url, files...)
	sa, sb := servedSerial(t, a.addrs["IMAPS"]), servedSerial(t, b.addrs["IMAPS"])
	if sa.Cmp(cert.SerialNumber) != 0 || sb.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("served serials %v and %v, want both %v", sa, sb, cert.SerialNumber)
	}
}
