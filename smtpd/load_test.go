package smtpd_test

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postrider/postrider/mailstore"

	"github.com/postrider/postrider/internal/loadgen/smtpload"
)

// TestLoad measures inbound throughput in-process over 127.0.0.1 against
// PostgreSQL: 10 sessions sending 10 KB messages to one user. It runs only
// with SMTPD_LOAD=<messages> (the machine is shared, so figures vary; the
// same load against the binary is `postrider bench smtp`, which uses
// internal/loadgen/smtpload too).
func TestLoad(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SMTPD_LOAD"))
	if n <= 0 {
		t.Skip("set SMTPD_LOAD=<messages> to run")
	}
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := smtpload.Run(ctx, smtpload.Options{
		Addr: e.inbound, Sessions: 10, Messages: n, Size: 10 << 10,
		From: "load@remote.example", To: "alice@example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Failed != 0 {
		t.Errorf("%d messages refused", res.Failed)
	}
	mb, err := e.st.GetMailbox(ctx, e.alice.ID, "INBOX")
	must(t, err)
	stt, err := e.st.MailboxStatus(ctx, e.alice.ID, mb.ID)
	must(t, err)
	if int(stt.Messages) != res.Sent {
		t.Errorf("INBOX has %d messages, %d acknowledged", stt.Messages, res.Sent)
	}
}

// TestLoadStoreOnly measures the same load straight into the store (10
// goroutines calling Deliver), the ceiling TestLoad is compared with.
func TestLoadStoreOnly(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SMTPD_LOAD"))
	if n <= 0 {
		t.Skip("set SMTPD_LOAD=<messages> to run")
	}
	e := newEnv(t)
	msg := []byte(simpleMsg + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 10<<10/78))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				_, err := e.st.Deliver(context.Background(), &mailstore.Delivery{
					MailFrom: "load@remote.example", Recipients: []mailstore.Recipient{{AccountID: e.alice.ID}},
					Body: bytes.NewReader(msg),
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	t.Logf("store only: %d deliveries of %d bytes in %v: %.0f/s", n, len(msg), d.Round(time.Millisecond), float64(n)/d.Seconds())
}
