package e2e_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/imapd"
	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/internal/testkit"
	"github.com/postrider/postrider/pop3d"
	"github.com/postrider/postrider/smtpd"
)

const (
	user = "alice@example.org"
	pass = "correct horse battery"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func stopAtEnd(t *testing.T, shutdown func(context.Context) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdown(ctx)
	})
}

// TestSMTPToPOP3ToIMAPIdle runs three "nodes" (one store handle each) on
// one database: a message delivered by SMTP is retrieved by POP3 byte for
// byte, deleted with DELE+QUIT, and an IMAP client in IDLE on another node
// sees the EXPUNGE.
func TestSMTPToPOP3ToIMAPIdle(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := context.Background()
	st := pgtest.OpenStore(t, url)
	if err := st.CreateDomain(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	h, err := testkit.CheapArgon.Hash(pass)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.CreateAccount(ctx, user, h)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := st.GetMailbox(ctx, acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	authOpts := auth.Options{Argon2: testkit.CheapArgon, Logger: quiet()}

	smtpStore := pgtest.OpenStore(t, url)
	smtpSrv, err := smtpd.New(smtpd.Config{Config: frontend.Config{Hostname: "mx.example.org", Logger: quiet()}}, smtpStore, auth.New(smtpStore, authOpts))
	if err != nil {
		t.Fatal(err)
	}
	smtpLn := listen(t)
	go func() { _ = smtpSrv.ServeInbound(smtpLn) }()
	stopAtEnd(t, smtpSrv.Shutdown)

	imapStore := pgtest.OpenStore(t, url)
	imapSrv, err := imapd.New(imapd.Config{Config: frontend.Config{Hostname: "imap.example.org", Logger: quiet()}}, imapStore, auth.New(imapStore, authOpts))
	if err != nil {
		t.Fatal(err)
	}
	imapLn := listen(t)
	go func() { _ = imapSrv.Serve(imapLn, false) }()
	stopAtEnd(t, imapSrv.Shutdown)

	popStore := pgtest.OpenStore(t, url)
	popSrv, err := pop3d.New(pop3d.Config{Config: frontend.Config{Hostname: "pop.example.org", Logger: quiet()}}, popStore, auth.New(popStore, authOpts))
	if err != nil {
		t.Fatal(err)
	}
	popLn := listen(t)
	go func() { _ = popSrv.Serve(popLn, false) }()
	stopAtEnd(t, popSrv.Shutdown)

	// The IMAP client selects INBOX and idles.
	ic := testkit.Dial(t, imapLn.Addr().String())
	ic.Expect("* OK")
	ic.Send(`a LOGIN ` + user + ` "` + pass + `"`)
	ic.Until("a OK")
	ic.Send("b SELECT INBOX")
	ic.Until("b OK")
	ic.Send("c IDLE")
	ic.Until("+ ")

	// Delivery over SMTP (a line of one dot in the body is dot-stuffed on
	// the wire and comes back as it was).
	msg := "From: Bob <bob@example.net>\r\nTo: " + user + "\r\nSubject: e2e\r\nMessage-ID: <e2e@example.net>\r\n\r\nThrough three protocols.\r\n.\r\n"
	if err := smtp.SendMail(smtpLn.Addr().String(), nil, "bob@example.net", []string{user}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	ic.Until("* 1 EXISTS")
	ms, err := st.ListMessages(ctx, acct.ID, inbox.ID, nil)
	if err != nil || len(ms) != 1 {
		t.Fatalf("%d messages after SMTP (%v)", len(ms), err)
	}
	rc, err := st.OpenMessage(ctx, acct.ID, inbox.ID, ms[0].UID, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(stored, []byte(msg)) {
		t.Fatalf("stored message does not end with what was sent: %q", stored)
	}

	// POP3: RETR gives exactly the stored octets (byte-stuffed on the
	// wire, RFC 1939 §3); DELE + QUIT expunges.
	pc := testkit.Dial(t, popLn.Addr().String())
	pc.Expect("+OK")
	pc.Send("USER " + user)
	pc.Expect("+OK")
	pc.Send("PASS " + pass)
	pc.Expect("+OK")
	pc.Send("RETR 1")
	pc.Expect("+OK")
	var got strings.Builder
	for {
		l := pc.Line()
		if l == "." {
			break
		}
		got.WriteString(strings.TrimPrefix(l, ".") + "\r\n")
	}
	if got.String() != string(stored) {
		t.Fatalf("RETR: got %q, want %q", got.String(), stored)
	}
	pc.Send("DELE 1")
	pc.Expect("+OK")
	pc.Send("QUIT")
	pc.Expect("+OK")

	// The idling IMAP client on the other node sees it vanish.
	ic.Until("* 1 EXPUNGE")
	ic.Send("DONE")
	ic.Until("c OK")
	ic.Send("d LOGOUT")
	ic.Until("d OK")
	if ms, _ := st.ListMessages(ctx, acct.ID, inbox.ID, nil); len(ms) != 0 {
		t.Fatalf("%d messages left", len(ms))
	}
}
