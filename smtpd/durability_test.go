package smtpd_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
)

// TestDurabilitySIGKILL runs the real binary (`postrider serve`), kills it
// with SIGKILL in the middle of a stream of deliveries from several
// clients, restarts it, and checks that every message that got a 250 is in
// the store: no acknowledged message is ever lost (RFC 5321 §6.1).
func TestDurabilitySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "postrider")
	build := exec.Command("go", "build", "-o", bin, "github.com/postrider/postrider/cmd/postrider")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/postrider: %v\n%s", err, out)
	}
	url := pgtest.NewDatabase(t)
	st := pgtest.OpenStore(t, url)
	ctx := context.Background()
	must(t, st.CreateDomain(ctx, "example.org"))
	h, err := testArgon2.Hash(alicePass)
	must(t, err)
	alice, err := st.CreateAccount(ctx, "alice@example.org", h)
	must(t, err)

	addr := freeAddr(t)
	dataDir := t.TempDir()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(),
			"POSTRIDER_DATABASE_URL="+url, "POSTRIDER_DATA_DIR="+dataDir, "POSTRIDER_HOSTNAME=mx.example.org",
			"POSTRIDER_SMTP_ADDR="+addr, "POSTRIDER_SUBMISSION_ADDR=", "POSTRIDER_SUBMISSIONS_ADDR=",
			"POSTRIDER_IMAP_ADDR=", "POSTRIDER_IMAPS_ADDR=", "POSTRIDER_POP3_ADDR=", "POSTRIDER_POP3S_ADDR=",
			"POSTRIDER_HTTP_ADDR=", "POSTRIDER_LOG_LEVEL=warn", "POSTRIDER_MAX_CONNS_PER_IP=0")
		var logs bytes.Buffer
		cmd.Stdout, cmd.Stderr = &logs, &logs
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(60 * time.Second)
		for {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if strings.HasPrefix(line, "220 ") {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("server did not start; logs:\n%s", logs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	cmd := start()
	var mu sync.Mutex
	acked := map[string]bool{}
	var nAcked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("dur-%d-%d@test.example", g, n)
				if err := sendOneRaw(addr, id); err != nil {
					return // the server died
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				nAcked.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for nAcked.Load() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages acknowledged in 60 s", nAcked.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	close(stop)
	wg.Wait()

	cmd = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM) }()
	if err := sendOneRaw(addr, "after-restart@test.example"); err != nil {
		t.Fatalf("delivery after restart: %v", err)
	}

	stored := storedMessageIDs(t, st, alice)
	missing := 0
	for id := range acked {
		if !stored[id] {
			missing++
			if missing < 10 {
				t.Errorf("acknowledged message %s lost", id)
			}
		}
	}
	if !stored["after-restart@test.example"] {
		t.Errorf("message sent after the restart is missing")
	}
	t.Logf("%d messages acknowledged before SIGKILL, %d stored (%d committed but unacknowledged), %d lost",
		len(acked), len(stored)-1, len(stored)-1-len(acked)+missing, missing)
}

var msgIDRe = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>\r$`)

func storedMessageIDs(t *testing.T, st mailstore.Store, a mailstore.Account) map[string]bool {
	ctx := context.Background()
	mb, err := st.GetMailbox(ctx, a.ID, "INBOX")
	must(t, err)
	ms, err := st.ListMessages(ctx, a.ID, mb.ID, nil)
	must(t, err)
	out := map[string]bool{}
	for _, m := range ms {
		rc, err := st.OpenMessage(ctx, a.ID, mb.ID, m.UID, 0, -1)
		must(t, err)
		b, err := io.ReadAll(rc)
		rc.Close()
		must(t, err)
		if m := msgIDRe.FindSubmatch(b); m != nil {
			out[string(m[1])] = true
		}
	}
	return out
}

// sendOneRaw sends one message and returns nil only on a final 250.
func sendOneRaw(addr, id string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	msg := "From: <s@remote.example>\r\nMessage-ID: <" + id + ">\r\nSubject: durability\r\n\r\n" + strings.Repeat("durable line\r\n", 100)
	script := "EHLO client.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\n" +
		fmt.Sprintf("BDAT %d LAST\r\n", len(msg)) + msg + "QUIT\r\n"
	if _, err := io.WriteString(c, script); err != nil {
		return err
	}
	want := []int{220, 250, 250, 250, 250}
	for _, code := range want {
		var last string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			last = l
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		if !strings.HasPrefix(last, fmt.Sprint(code)) {
			return fmt.Errorf("want %d, got %q", code, last)
		}
	}
	return nil
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
