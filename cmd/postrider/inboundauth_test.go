package main_test

import (
	"context"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailauth/mailauthtest"
)

// TestServeInboundAuth: serve checks port 25 mail with the DNS server of
// POSTRIDER_DNS_RESOLVER and applies POSTRIDER_DMARC_POLICY; with
// POSTRIDER_INBOUND_AUTH=false it does not check.
func TestServeInboundAuth(t *testing.T) {
	d := mailauthtest.NewDNS(t)
	d.TXT("bank.example", "v=spf1 ip4:192.0.2.1 -all")
	d.TXT("_dmarc.bank.example", "v=DMARC1; p=reject")
	d.TXT("sender.example", "v=spf1 ip4:127.0.0.1 -all")
	d.TXT("_dmarc.sender.example", "v=DMARC1; p=reject")
	forged := "From: <ceo@bank.example>\r\nSubject: pay\r\n\r\nx\r\n"
	legit := "From: <news@sender.example>\r\nSubject: news\r\n\r\nx\r\n"

	cases := []struct {
		name       string
		env        []string
		forgedCode int    // reply to the forgery
		header     string // in the stored legitimate message; "" = no Authentication-Results:
	}{
		{"enforce", nil, 550, "dmarc=pass (p=reject) header.from=sender.example"},
		{"report-only", []string{"POSTRIDER_DMARC_POLICY=report-only"}, 250, "dmarc=pass"},
		{"off", []string{"POSTRIDER_INBOUND_AUTH=false"}, 250, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := pgtest.NewDatabase(t)
			if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "", "domain", "add", "example.org"); r.code != 0 {
				t.Fatal(r.stderr)
			}
			if r := runCLI(t, []string{"POSTRIDER_DATABASE_URL=" + url}, "pw-auth-1\n", "user", "add", "m@example.org"); r.code != 0 {
				t.Fatal(r.stderr)
			}
			n := startNode(t, url, append([]string{"POSTRIDER_DNS_RESOLVER=" + d.Addr}, tc.env...)...)
			if code := send25(t, n.addrs["SMTP"], "x@attacker.example", forged); code != tc.forgedCode {
				t.Errorf("forgery: %d, want %d", code, tc.forgedCode)
			}
			if code := send25(t, n.addrs["SMTP"], "bounce@sender.example", legit); code != 250 {
				t.Fatalf("legitimate message: %d", code)
			}
			st := pgtest.OpenStore(t, url)
			ctx := context.Background()
			acct, err := st.ResolveRecipient(ctx, "m@example.org")
			must(t, err)
			mb, err := st.GetMailbox(ctx, acct[0].ID, "INBOX")
			must(t, err)
			ms, err := st.ListMessages(ctx, acct[0].ID, mb.ID, nil)
			must(t, err)
			last := ms[len(ms)-1]
			rc, err := st.OpenMessage(ctx, acct[0].ID, mb.ID, last.UID, 0, -1)
			must(t, err)
			b, _ := io.ReadAll(rc)
			rc.Close()
			hasAR := strings.Contains(string(b), "Authentication-Results: mx.test.example;")
			if tc.header == "" && hasAR || tc.header != "" && (!hasAR || !strings.Contains(string(b), tc.header)) {
				t.Errorf("stored message:\n%s", b)
			}
		})
	}
}

// send25 sends one message on port 25 and returns the final reply code.
func send25(t *testing.T, addr, from, msg string) int {
	t.Helper()
	c, err := smtp.Dial(addr)
	must(t, err)
	defer c.Close()
	must(t, c.Hello("client.test"))
	must(t, c.Mail(from))
	must(t, c.Rcpt("m@example.org"))
	w, err := c.Data()
	must(t, err)
	fmt.Fprint(w, msg)
	err = w.Close()
	if err == nil {
		return 250
	}
	var te *textproto.Error
	if e, ok := err.(*textproto.Error); ok {
		te = e
		return te.Code
	}
	t.Fatal(err)
	return 0
}
