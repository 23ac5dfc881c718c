package smtpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestInboundEHLOAndDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	ext := c.ehlo("client.example")
	for _, k := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "STARTTLS"} {
		if _, ok := ext[k]; !ok {
			t.Errorf("EHLO lacks %s: %v", k, ext)
		}
	}
	if ext["SIZE"] != "1048576" {
		t.Errorf("SIZE = %q", ext["SIZE"])
	}
	if _, ok := ext["AUTH"]; ok {
		t.Errorf("AUTH offered on inbound: %v", ext)
	}
	c.cmd("AUTH PLAIN "+plain("alice@example.org", alicePass), 502, "5.5.1")
	c.cmd("MAIL FROM:<sender@remote.example> BODY=8BITMIME", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	msg := simpleMsg + "Caf\xc3\xa9 8-bit line\r\n..leading dot\r\n"
	c.send(msg + ".\r\n")
	r := c.expect(250, "2.0.0 OK: message delivered, id=")
	c.cmd("QUIT", 221)

	got := e.inbox(e.alice)
	if len(got) != 1 {
		t.Fatalf("alice has %d messages, want 1", len(got))
	}
	trace, rest := body(t, got[0])
	want := strings.Replace(msg, "..leading", ".leading", 1)
	if string(rest) != want {
		t.Errorf("stored body\n%q\nwant\n%q", rest, want)
	}
	id := r.Lines[0][strings.Index(r.Lines[0], "id=")+3:]
	for _, s := range []string{
		"Return-Path: <sender@remote.example>\r\n",
		"Received: from client.example ([127.0.0.1])\r\n\tby mx.example.org (Postrider) with ESMTP id " + id,
		"\tfor <alice@example.org>;\r\n\t",
	} {
		if !strings.Contains(trace, s) {
			t.Errorf("trace fields lack %q:\n%s", s, trace)
		}
	}
	if n := len(e.inbox(e.bob)); n != 0 {
		t.Errorf("bob has %d messages", n)
	}
}

// TestRelayRules: RCPT is accepted only for what the store resolves;
// nothing that is not ours is ever accepted, whatever the address tricks.
func TestRelayRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		rcpt string
		utf8 bool
		want string // reply code and enhanced code prefix
	}{
		{"<alice@example.org>", false, "250"},
		{"<ALICE@EXAMPLE.ORG>", false, "250"},
		{"<Alice@Example.Org>", false, "250"},
		{"<alice+tag@example.org>", false, "250"},
		{"<alice+a+b@example.org>", false, "250"},
		{"<sales@example.org>", false, "250"},
		{"<anyone@catchall.example>", false, "250"},
		{"<@example.org,@example.org:alice@example.org>", false, "250"},
		{`<"alice"@example.org>`, false, "250"},
		{"<nobody@example.org>", false, "550 5.1.1"},
		{"<user%other.example@example.org>", false, "550 5.1.1"},
		{"<user!other.example@example.org>", false, "550 5.1.1"},
		{`<"user@other.example"@example.org>`, false, "550 5.1.1"},
		{"<user@other.example@example.org>", false, "550 5.1.1"},
		{`<"alice bob"@example.org>`, false, "550 5.1.1"},
		{"<user@other.example>", false, "554 5.7.1"},
		{"<alice@example.org.evil.example>", false, "554 5.7.1"},
		{"<user%example.org@other.example>", false, "554 5.7.1"},
		{"<@example.org:user@other.example>", false, "554 5.7.1"},
		{`<"alice@example.org"@other.example>`, false, "554 5.7.1"},
		{"<alice@example.org@other.example>", false, "554 5.7.1"},
		{"<alice@[127.0.0.1]>", false, "554 5.7.1"},
		{"<alice@[IPv6:::1]>", false, "554 5.7.1"},
		{"<alice@localhost>", false, "554 5.7.1"},
		{"<alice@example.org.>", false, "501 5.1.3"},
		{"<alice@example..org>", false, "501 5.1.3"},
		{"<alice@.example.org>", false, "501 5.1.3"},
		{"<alice@[300.1.1.1]>", false, "501 5.1.3"},
		{"<alice@exa_mple.org>", false, "501 5.1.3"},
		{"<postmaster>", false, "250"}, // RFC 5321 §4.5.1; reaches bob via the catch-all of catchall.example
		{"<>", false, "501 5.5.2"},
		{"<jörg@example.org>", false, "553 5.6.7"},
		{"<jörg@example.org>", true, "550 5.1.1"},
		{"<info@bücher.example>", false, "553 5.6.7"},
		{"<info@bücher.example>", true, "250"},
		{"<info@BÜCHER.example>", true, "250"},
		{"<info@xn--bcher-kva.example>", false, "250"},
		{"<info@bücher.evil.example>", true, "554 5.7.1"},
	}
	for _, tc := range cases {
		t.Run(tc.rcpt, func(t *testing.T) {
			c := dial(t, e.inbound)
			c.ehlo("client.example")
			mail := "MAIL FROM:<sender@remote.example>"
			if tc.utf8 {
				mail += " SMTPUTF8"
			}
			c.cmd(mail, 250)
			c.send("RCPT TO:" + tc.rcpt + "\r\n")
			r, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			got := r.String()
			if !strings.HasPrefix(got, tc.want) {
				t.Errorf("RCPT TO:%s = %q, want %q", tc.rcpt, got, tc.want)
			}
			c.cmd("QUIT", 221)
		})
	}
	// Nothing was delivered by any of that.
	for _, a := range []string{"alice", "bob"} {
		acct := e.alice
		if a == "bob" {
			acct = e.bob
		}
		if n := len(e.inbox(acct)); n != 0 {
			t.Errorf("%s has %d messages", a, n)
		}
	}
}

func TestInboundSenders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	// The null reverse-path of bounces (RFC 5321 §4.5.5) is accepted.
	c.cmd("MAIL FROM:<>", 250)
	c.cmd("MAIL FROM:<other@remote.example>", 503, "5.5.1")
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("From: MAILER-DAEMON@remote.example\r\nSubject: bounce\r\n\r\nbounced\r\n.\r\n")
	c.expect(250)
	c.cmd("MAIL FROM:<bad address@remote.example>", 501)
	c.cmd("MAIL FROM:<jörg@remote.example>", 553, "5.6.7")
	c.cmd("MAIL FROM:<jörg@remote.example> SMTPUTF8", 250)
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<\"quoted sender\"@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	got := e.inbox(e.alice)
	if len(got) != 2 {
		t.Fatalf("alice has %d messages", len(got))
	}
	if !bytes.HasPrefix(got[0], []byte("Return-Path: <>\r\n")) {
		t.Errorf("bounce stored as %q", got[0][:40])
	}
	if !bytes.HasPrefix(got[1], []byte("Return-Path: <\"quoted sender\"@remote.example>\r\n")) {
		t.Errorf("quoted sender stored as %q", got[1][:60])
	}
}

// TestMultipleRecipients: one store delivery for all local recipients;
// rejected recipients do not affect the others; one copy per account.
func TestMultipleRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("RCPT TO:<nobody@example.org>", 550)
	c.cmd("RCPT TO:<list@example.org>", 250)  // alice + bob
	c.cmd("RCPT TO:<ALICE@example.org>", 250) // alice again
	c.cmd("RCPT TO:<x@elsewhere.example>", 554)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	a, b := e.inbox(e.alice), e.inbox(e.bob)
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("alice %d, bob %d messages; want 1 each", len(a), len(b))
	}
	if !bytes.Equal(a[0], b[0]) {
		t.Errorf("copies differ")
	}
	if bytes.Contains(a[0], []byte("\tfor <")) {
		t.Errorf("Received: names a recipient of a multi-recipient message")
	}
	// DATA with no accepted recipient.
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	c.cmd("RCPT TO:<nobody@example.org>", 550)
	c.cmd("DATA", 554, "5.5.1 No valid recipients") // RFC 5321 §4.1.1.4
	c.cmd("QUIT", 221)
}

func TestTooManyRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *smtpdConfig) { c.MaxRecipients = 3; c.MaxErrors = 3 }))
	c := dial(t, e.inbound)
	ext := c.ehlo("client.example")
	if ext["LIMITS"] != "RCPTMAX=3" {
		t.Errorf("LIMITS = %q", ext["LIMITS"])
	}
	c.cmd("MAIL FROM:<sender@remote.example>", 250)
	for i := 0; i < 3; i++ {
		c.cmd("RCPT TO:<alice@example.org>", 250)
	}
	// 452 (RFC 5321 §4.5.3.1.10) and not counted as client errors.
	for i := 0; i < 5; i++ {
		c.cmd("RCPT TO:<bob@example.org>", 452, "4.5.3")
	}
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	if n := len(e.inbox(e.bob)); n != 0 {
		t.Errorf("bob got %d messages", n)
	}
}

func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := simpleMsg + strings.Repeat("0123456789012345678901234567890123456789012345678901234567890123456789\r\n", 150) // ~10.9 KB
	sendMail(t, e.inbound, "s@remote.example", []string{"carol@example.org"}, big, 250)
	// Declared size that would pass the quota: refused at RCPT.
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example> SIZE=10000", 250)
	c.cmd("RCPT TO:<carol@example.org>", 552, "5.2.2")
	c.cmd("RSET", 250)
	// Undeclared: accepted at RCPT, refused by the store at delivery.
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<carol@example.org>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(big + ".\r\n")
	c.expect(552, "5.2.2")
	if n := len(e.inbox(e.carol)); n != 1 {
		t.Errorf("carol has %d messages, want 1", n)
	}
	if n := len(e.inbox(e.alice)); n != 0 {
		t.Errorf("alice has %d messages: a refused delivery stored something", n)
	}
	// Fill the quota: refused at RCPT.
	must(t, e.st.SetQuota(context.Background(), e.carol.ID, 1000))
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<carol@example.org>", 552, "5.2.2")
	c.cmd("QUIT", 221)
}

// TestDSNParams: RFC 3461 parameters are accepted and stored with the
// delivery.
func TestDSNParams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<sender@remote.example> RET=HDRS ENVID=QQ314159", 250)
	c.cmd("RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Alice+2B@example.org", 250)
	c.cmd("RCPT TO:<bob@example.org> NOTIFY=NEVER", 250)
	c.cmd("RCPT TO:<alice@example.org> NOTIFY=BOGUS", 501)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dbURL)
	must(t, err)
	defer conn.Close(ctx)
	var from string
	var raw []byte
	must(t, conn.QueryRow(ctx, "SELECT mail_from, params FROM deliveries").Scan(&from, &raw))
	var p map[string]string
	must(t, json.Unmarshal(raw, &p))
	want := map[string]string{
		"RET":   "HDRS",
		"ENVID": "QQ314159",
		"RCPTS": "<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;Alice+@example.org\n<bob@example.org> NOTIFY=NEVER",
	}
	if from != "sender@remote.example" {
		t.Errorf("mail_from = %q", from)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("params[%s] = %q, want %q", k, p[k], v)
		}
	}
}

// TestNewAliasSeenAtOnce: recipient lookups are cached only when they
// succeed, so a new alias works immediately.
func TestNewAliasSeenAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.ehlo("client.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<new@example.org>", 550, "5.1.1")
	must(t, e.st.CreateAlias(context.Background(), "new@example.org", "bob@example.org"))
	c.cmd("RCPT TO:<new@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	if n := len(e.inbox(e.bob)); n != 1 {
		t.Errorf("bob has %d messages", n)
	}
}
