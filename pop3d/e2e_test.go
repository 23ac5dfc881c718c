package pop3d_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/imapd"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/smtpd"
)

// TestSMTPToPOP3ToIMAPIdle is the interplay acceptance test, over
// three "nodes" (one store handle each) on one database: a message
// delivered by SMTP is retrieved by POP3 byte for byte, deleted with
// DELE+QUIT, and an IMAP client in IDLE on another node sees the EXPUNGE.
func TestSMTPToPOP3ToIMAPIdle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	shutdown := func(f func(context.Context) error) {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = f(ctx)
		})
	}

	// SMTP node.
	smtpStore := pgtest.OpenStore(t, e.url)
	smtpSrv, err := smtpd.New(smtpd.Config{Hostname: "mx.example.org", Logger: testLogger(t)},
		smtpStore, auth.New(smtpStore, e.authOpts))
	if err != nil {
		t.Fatal(err)
	}
	smtpLn := listen()
	go func() { _ = smtpSrv.ServeInbound(smtpLn) }()
	shutdown(smtpSrv.Shutdown)

	// IMAP node.
	imapStore := pgtest.OpenStore(t, e.url)
	imapSrv, err := imapd.New(imapd.Config{Hostname: "imap.example.org", Logger: testLogger(t)},
		imapStore, auth.New(imapStore, e.authOpts))
	if err != nil {
		t.Fatal(err)
	}
	imapLn := listen()
	go func() { _ = imapSrv.Serve(imapLn, false) }()
	shutdown(imapSrv.Shutdown)

	// POP3 node.
	pop := e.start(pgtest.OpenStore(t, e.url), nil)

	// The IMAP client selects INBOX and idles.
	ic, err := net.Dial("tcp", imapLn.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	ir := bufio.NewReader(ic)
	iread := func(want string) string {
		t.Helper()
		for {
			_ = ic.SetReadDeadline(time.Now().Add(15 * time.Second))
			l, err := ir.ReadString('\n')
			if err != nil {
				t.Fatalf("IMAP: waiting for %q: %v", want, err)
			}
			if strings.HasPrefix(l, want) {
				return l
			}
		}
	}
	iwrite := func(s string) {
		t.Helper()
		if _, err := io.WriteString(ic, s+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	iread("* OK")
	iwrite(`a LOGIN ` + testUser + ` "` + testPass + `"`)
	iread("a OK")
	iwrite("b SELECT INBOX")
	iread("b OK")
	iwrite("c IDLE")
	iread("+ ")

	// Delivery over SMTP.
	msg := testMsg("e2e", "Through three protocols.\r\n.\r\n")
	if err := smtp.SendMail(smtpLn.Addr().String(), nil, "bob@example.net", []string{testUser}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	iread("* 1 EXISTS")
	ms := e.messages()
	if len(ms) != 1 {
		t.Fatalf("%d messages after SMTP", len(ms))
	}
	rc, err := e.st.OpenMessage(ctx, e.acc.ID, e.inbox.ID, ms[0].UID, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(stored), msg) {
		t.Fatalf("stored message does not end with what was sent: %q", stored)
	}

	// POP3: RETR gives exactly the stored octets; DELE + QUIT expunges.
	c := dial(t, pop.addr)
	c.login()
	c.ok("RETR 1")
	if got := c.body(); string(got) != string(stored) {
		t.Fatalf("RETR: got %q, want %q", got, stored)
	}
	c.ok("DELE 1")
	c.ok("QUIT")

	// The idling IMAP client on the other node sees it vanish.
	iread("* 1 EXPUNGE")
	iwrite("DONE")
	iread("c OK")
	iwrite("d LOGOUT")
	iread("d OK")
	if n := len(e.messages()); n != 0 {
		t.Fatalf("%d messages left", n)
	}
}
