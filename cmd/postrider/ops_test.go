package main_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/selfsigned"
)

// writeCert writes a self-signed certificate for cn to dir/cert.pem and
// dir/key.pem and returns its serial number.
func writeCert(t *testing.T, dir, cn string) *big.Int {
	t.Helper()
	c, err := selfsigned.New(cn, []string{cn}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Written next to the target and renamed, as renewal tools do.
	for name, data := range map[string][]byte{"key.pem": c.KeyPEM, "cert.pem": c.CertPEM} {
		if err := os.WriteFile(filepath.Join(dir, name+".new"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, name+".new"), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return c.TLS.Leaf.SerialNumber
}

// servedSerial returns the serial number of the certificate the IMAPS
// listener presents.
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// SIGHUP reloads the certificate and never stops the server; a broken new
// certificate is logged and the one in use kept.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	first := writeCert(t, dir, "first.test")
	n := startNode(t, pgtest.NewDatabase(t), "POSTRIDER_TLS_CERT_FILE="+filepath.Join(dir, "cert.pem"),
		"POSTRIDER_TLS_KEY_FILE="+filepath.Join(dir, "key.pem"))
	if got := servedSerial(t, n.addrs["IMAPS"]); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}
	second := writeCert(t, dir, "second.test")
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for servedSerial(t, n.addrs["IMAPS"]).Cmp(second) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("new certificate not served after SIGHUP\n%s", n.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-n.done:
		t.Fatalf("serve exited on SIGHUP: %v", err)
	default:
	}
	// A broken certificate file: logged, the second one stays in use.
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = n.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, n, "TLS certificate not reloaded")
	if got := servedSerial(t, n.addrs["IMAPS"]); got.Cmp(second) != 0 {
		t.Fatalf("after a broken reload the served serial is %v, want %v", got, second)
	}
	// STARTTLS on submission uses the same certificate.
	c, err := smtp.Dial(n.addrs["SUBMISSION"])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	st, _ := c.TLSConnectionState()
	if st.PeerCertificates[0].SerialNumber.Cmp(second) != 0 {
		t.Errorf("submission STARTTLS serves serial %v, want %v", st.PeerCertificates[0].SerialNumber, second)
	}
	c.Close()
	n.stop(t)
}

func waitLog(t *testing.T, n *node, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", s, n.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every JSON log line has each key once (the message id no longer shadows
// the event's "msg"), durations carry units, an unknown POSTRIDER_*
// variable is warned about with the likely intended name, and
// LOG_LEVEL=trace shows the protocol lines of all three frontends with
// credentials and message contents masked.
func TestLogLines(t *testing.T) {
	url := pgtest.NewDatabase(t)
	r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "", "domain", "add", "example.org")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	const secret = "Sekr1t-Passw0rd"
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, secret+"\n", "user", "add", "alice@example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	n := startNode(t, url, "POSTRIDER_LOG_LEVEL=trace", "POSTRIDER_IMAP_ADR=:1143")
	waitLog(t, n, "POSTRIDER_IMAP_ADR (did you mean POSTRIDER_IMAP_ADDR?)")

	const bodyText = "confidential-body-text"
	// SMTP: a delivery, with AUTH PLAIN on submission.
	c, err := smtp.Dial(n.addrs["SUBMISSION"])
	if err != nil {
		t.Fatal(err)
	}
	must(t, c.Auth(smtp.PlainAuth("", "alice@example.org", secret, "127.0.0.1")))
	must(t, c.Mail("alice@example.org"))
	must(t, c.Rcpt("alice@example.org"))
	w, err := c.Data()
	must(t, err)
	fmt.Fprintf(w, "From: alice@example.org\r\nTo: alice@example.org\r\nSubject: hi\r\n\r\n%s\r\n", bodyText)
	must(t, w.Close())
	must(t, c.Quit())
	// IMAP and POP3 logins.
	dialog(t, n.addrs["IMAP"], []string{"a LOGIN alice@example.org " + secret, "b SELECT INBOX", "c FETCH 1 BODY[]", "d LOGOUT"}, "d OK")
	dialog(t, n.addrs["POP3"], []string{"USER alice@example.org", "PASS " + secret, "RETR 1", "QUIT"}, "+OK")
	waitLog(t, n, `"msg":"delivered"`)

	logs := n.logs()
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		if dup := duplicateKey(l); dup != "" {
			t.Errorf("log line repeats the key %q: %s", dup, l)
		}
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, b64(secret)) {
		t.Errorf("the password appears in the log")
	}
	if strings.Contains(logs, bodyText) {
		t.Errorf("the message body appears in the log")
	}
	for _, want := range []string{`"level":"TRACE"`, `"latency":"`, `"msgid":"`, "MAIL FROM", "SELECT INBOX", "b OK [READ-WRITE] SELECT completed", "RETR 1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func b64(s string) string {
	// AUTH PLAIN carries "\x00user\x00password" in base64; the password
	// alone would not show, so check the whole initial response.
	return base64.StdEncoding.EncodeToString([]byte("\x00alice@example.org\x00" + s))
}

// dialog sends lines one at a time, reading what comes back, and checks
// that the last reply starts with want.
func dialog(t *testing.T, addr string, lines []string, want string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	must(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(nc)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var last string
	for _, l := range lines {
		fmt.Fprintf(nc, "%s\r\n", l)
		tag, _, _ := strings.Cut(l, " ")
		for {
			s, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			last = s
			if strings.HasPrefix(s, "+OK") || strings.HasPrefix(s, "-ERR") {
				if strings.HasPrefix(l, "RETR") && strings.HasPrefix(s, "+OK") {
					for {
						d, err := br.ReadString('\n')
						if err != nil || d == ".\r\n" {
							break
						}
					}
				}
				break
			}
			if strings.HasPrefix(s, tag+" ") {
				break
			}
		}
	}
	if !strings.HasPrefix(last, want) {
		t.Fatalf("%s: last reply %q, want %s", addr, last, want)
	}
}

// duplicateKey returns a top-level key that occurs twice in a JSON object.
func duplicateKey(line string) string {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := tok.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return ""
		}
	}
	return ""
}

// The admin commands refuse what would never work (a blank password, an
// alias that an account shadows) and take internationalised domains,
// storing them as A-labels.
func TestAdminRefusalsAndIDN(t *testing.T) {
	url := pgtest.NewDatabase(t)
	env := []string{"POSTRIDER_DATABASE_URL=" + url}
	run := func(stdin string, args ...string) result {
		t.Helper()
		return runCLI(t, env, stdin, args...)
	}
	if r := run("", "domain", "add", "bücher.example"); r.code != 0 || !strings.Contains(r.stdout, "xn--bcher-kva.example") {
		t.Fatalf("domain add bücher.example: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run("", "domain", "list"); strings.TrimSpace(r.stdout) != "xn--bcher-kva.example" {
		t.Fatalf("domain list: %q", r.stdout)
	}
	if r := run("a good passphrase\n", "user", "add", "info@BÜCHER.example"); r.code != 0 {
		t.Fatalf("user add with a U-label domain: %d %s", r.code, r.stderr)
	}
	if r := run("", "user", "list"); !strings.Contains(r.stdout, "info@xn--bcher-kva.example") {
		t.Fatalf("user list: %q", r.stdout)
	}
	if r := run("", "domain", "add", "bad_ü.example"); r.code == 0 {
		t.Fatalf("an invalid IDN was accepted: %q", r.stdout)
	}
	for _, pw := range []string{"\n", "   \n", "\t \n"} {
		if r := run(pw, "user", "add", "blank@xn--bcher-kva.example"); r.code == 0 || !strings.Contains(r.stderr, "empty password") {
			t.Errorf("user add with password %q: %d %q", pw, r.code, r.stderr)
		}
		if r := run(pw, "user", "passwd", "info@bücher.example"); r.code == 0 {
			t.Errorf("user passwd with password %q accepted", pw)
		}
	}
	if r := run("another passphrase\n", "user", "add", "sales@bücher.example"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := run("", "alias", "add", "sales@bücher.example", "info@bücher.example"); r.code == 0 || !strings.Contains(r.stderr, "is an account") {
		t.Fatalf("alias over an account accepted: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run("", "alias", "add", "hello@bücher.example", "info@bücher.example"); r.code != 0 {
		t.Fatalf("alias add: %s", r.stderr)
	}
	if r := run("", "alias", "list"); !strings.Contains(r.stdout, "hello@xn--bcher-kva.example\tinfo@xn--bcher-kva.example") {
		t.Fatalf("alias list: %q", r.stdout)
	}
	// An external target (forwarding) keeps its local part's case; its
	// domain is stored in A-labels.
	if r := run("", "alias", "add", "fwd@bücher.example", "Friend@Straße.example"); r.code != 0 || !strings.Contains(r.stdout, "Friend@xn--strae-oqa.example") {
		t.Fatalf("alias add to an external address: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := run("", "alias", "list"); !strings.Contains(r.stdout, "fwd@xn--bcher-kva.example\tFriend@xn--strae-oqa.example") {
		t.Fatalf("alias list with an external target: %q", r.stdout)
	}
	if r := run("", "alias", "remove", "fwd@bücher.example", "Friend@straße.example"); r.code != 0 {
		t.Fatalf("alias remove of an external target: %d %q", r.code, r.stderr)
	}
}

// `postrider config` shows the values in effect, with secrets masked, and
// names unknown variables.
func TestConfigShowsEffectiveValues(t *testing.T) {
	r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=postgres://mail:hunter2secret@db.internal:5432/mail",
		"POSTRIDER_MAX_MESSAGE_SIZE=10M", "POSTRIDER_SMTP_ADDR=", "POSTRIDER_LOG_LEVL=debug"}, "", "config")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	if strings.Contains(r.stdout, "hunter2secret") {
		t.Errorf("the database password is shown:\n%s", r.stdout)
	}
	for _, want := range []string{"postgres://mail:********@db.internal:5432/mail (set)", "10485760 (set)", "POSTRIDER_LOG_LEVL (did you mean POSTRIDER_LOG_LEVEL?)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config output lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, "POSTRIDER_SMTP_ADDR ") && !strings.Contains(l, "(empty) (set)") {
			t.Errorf("disabled SMTP listener shown as %q", l)
		}
	}
}

// /metrics of a running server has SMTP, IMAP and POP3 series, and they
// count what the protocols did.
func TestMetricsCoverEveryFrontend(t *testing.T) {
	url := pgtest.NewDatabase(t)
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "", "domain", "add", "example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "pw-metrics-1\n", "user", "add", "m@example.org"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	n := startNode(t, url)
	c, err := smtp.Dial(n.addrs["SMTP"])
	must(t, err)
	must(t, c.Hello("client.test"))
	must(t, c.Mail("x@remote.test"))
	must(t, c.Rcpt("m@example.org"))
	w, err := c.Data()
	must(t, err)
	fmt.Fprint(w, "Subject: m\r\n\r\nm\r\n")
	must(t, w.Close())
	must(t, c.Quit())
	dialog(t, n.addrs["IMAP"], []string{"a LOGIN m@example.org pw-metrics-1", "b SELECT INBOX",
		"f FETCH 1 (ENVELOPE)", "g FETCH 1 (ENVELOPE)", "c LOGOUT"}, "c OK")
	dialog(t, n.addrs["POP3"], []string{"USER m@example.org", "PASS pw-metrics-1", "STAT", "QUIT"}, "+OK")

	resp, err := http.Get("http://" + n.addrs["HTTP"] + "/metrics")
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`postrider_smtp_messages_accepted_total{role="inbound"} 1`,
		`postrider_commands_total{command="SELECT",proto="imap",result="ok"} 1`,
		`postrider_auth_total{proto="imap",result="ok"} 1`,
		`postrider_auth_total{proto="pop3",result="ok"} 1`,
		`postrider_commands_total{command="STAT",proto="pop3",result="ok"} 1`,
		// The first FETCH read the content, the second found it cached.
		"postrider_content_cache_misses_total 1",
		"postrider_content_cache_hits_total 1",
		"postrider_content_cache_entries 1",
		"postrider_content_cache_bytes ",
		"postrider_change_checks_skipped_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
