package smtpd_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/postrider/postrider/internal/srs"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// rewriter returns an SRS rewriter with the cluster's key, as the server
// made it (the test fails if the server has not).
func (e *env) rewriter() *srs.Rewriter {
	e.t.Helper()
	key, err := e.st.ClusterSecret(context.Background(), "srs", func() ([]byte, error) {
		return nil, errors.New("the server made no SRS key")
	})
	must(e.t, err)
	rw, err := srs.New(key, 0)
	must(e.t, err)
	return rw
}

// withForwards adds fwd@example.org → ext@remote.example and bob, and
// fwd2@example.org → other@remote2.example.
func withForwards(t *testing.T, e *env) {
	ctx := context.Background()
	must(t, e.st.CreateAlias(ctx, "fwd@example.org", "ext@remote.example"))
	must(t, e.st.CreateAlias(ctx, "fwd@example.org", "bob@example.org"))
	must(t, e.st.CreateAlias(ctx, "fwd2@example.org", "other@remote2.example"))
}

const fwdMsg = "From: s@sender.example\r\nTo: fwd@example.org\r\nSubject: forward me\r\n\r\nPlease forward.\r\n"

// TestForwardSRS: mail to an alias with an external target, on port 25,
// is queued to it with the sender rewritten by SRS (so that SPF passes at
// the receiver), a Delivered-To: and the alias as ORCPT; its local target
// gets its copy as usual. A null sender stays null; a sender that only
// claims one of our domains is rewritten too.
func TestForwardSRS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addDKIMKeys("example.org")
	withForwards(t, e)

	r := sendMail(t, e.inbound, "s@sender.example", []string{"fwd@example.org"}, fwdMsg, 250)
	if !strings.HasPrefix(r.Lines[0], "2.0.0 OK: message queued") {
		t.Errorf("reply %v", r)
	}
	items := e.queued()
	if len(items) != 1 || len(items[0].Recipients) != 1 {
		t.Fatalf("items %+v", items)
	}
	it := items[0]
	rc := it.Recipients[0]
	if rc.Address != "ext@remote.example" || rc.ORCPT != "rfc822;fwd@example.org" || it.SenderAccount != 0 {
		t.Errorf("item %+v recipient %+v", it, rc)
	}
	rw := e.rewriter()
	if !strings.HasPrefix(it.MailFrom, "SRS0=") || !strings.HasSuffix(it.MailFrom, "@example.org") {
		t.Fatalf("forwarded with MAIL FROM %q", it.MailFrom)
	}
	if orig, err := rw.Reverse(strings.TrimSuffix(it.MailFrom, "@example.org")); err != nil || orig != "s@sender.example" {
		t.Errorf("SRS %q reverses to %q, %v", it.MailFrom, orig, err)
	}
	q := e.queuedBody(it.ID)
	if !bytes.HasPrefix(q, []byte("Delivered-To: fwd@example.org\r\nReceived: from client.example")) || !bytes.HasSuffix(q, []byte(fwdMsg)) {
		t.Errorf("forwarded message %q", q)
	}
	if bytes.Contains(q, []byte("Return-Path:")) || bytes.Contains(q, []byte("DKIM-Signature")) {
		t.Errorf("forwarded message has Return-Path: or a signature of ours: %q", q)
	}
	bob := e.inbox(e.bob)
	if len(bob) != 1 || bytes.Contains(bob[0], []byte("Delivered-To:")) {
		t.Fatalf("bob: %q", bob)
	}

	// Null sender: stays null (RFC 5321 §4.5.5).
	sendMail(t, e.inbound, "", []string{"fwd@example.org"}, fwdMsg, 250)
	// A sender claiming our own domain on port 25: rewritten as well.
	sendMail(t, e.inbound, "alice@example.org", []string{"fwd@example.org"}, fwdMsg, 250)
	items = e.queued()
	if len(items) != 3 || items[1].MailFrom != "" || !strings.HasPrefix(items[2].MailFrom, "SRS0=") {
		t.Fatalf("items %+v", items)
	}
	if orig, err := rw.Reverse(strings.TrimSuffix(items[2].MailFrom, "@example.org")); err != nil || orig != "alice@example.org" {
		t.Errorf("reverse %q: %q %v", items[2].MailFrom, orig, err)
	}

	// Two forwarding aliases in one transaction: one queue item each,
	// each with its own Delivered-To: (neither target sees the other).
	sendMail(t, e.inbound, "s@sender.example", []string{"fwd@example.org", "fwd2@example.org"}, fwdMsg, 250)
	items = e.queued()[3:]
	if len(items) != 2 {
		t.Fatalf("%d items for two aliases", len(items))
	}
	for _, it := range items {
		q := e.queuedBody(it.ID)
		want := map[string]string{"ext@remote.example": "fwd@example.org", "other@remote2.example": "fwd2@example.org"}[it.Recipients[0].Address]
		if n := bytes.Count(q, []byte("Delivered-To:")); n != 1 || !bytes.HasPrefix(q, []byte("Delivered-To: "+want+"\r\n")) {
			t.Errorf("item to %s: %q", it.Recipients[0].Address, q[:min(len(q), 80)])
		}
	}
}

// TestForwardSubmission: a user's message to a forwarding alias keeps her
// own address as sender (our domain: SPF passes) and is DKIM-signed.
func TestForwardSubmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	lookup := e.addDKIMKeys("example.org")
	withForwards(t, e)
	msg := "From: alice@example.org\r\nTo: fwd@example.org\r\nSubject: to the alias\r\n\r\nHi.\r\n"
	submit(t, e, "alice@example.org", alicePass, "alice@example.org", []string{"fwd@example.org", "carol@example.org"}, msg, 250)
	items := e.queued()
	if len(items) != 1 || items[0].MailFrom != "alice@example.org" || items[0].SenderAccount != e.alice.ID {
		t.Fatalf("items %+v", items)
	}
	q := e.queuedBody(items[0].ID)
	if !bytes.HasPrefix(q, []byte("Delivered-To: fwd@example.org\r\n")) {
		t.Errorf("queued %q", q[:min(len(q), 80)])
	}
	if ok, n := dkimResults(t, q, lookup); len(ok) != 2 || n != 2 {
		t.Errorf("DKIM %v of %d", ok, n)
	}
	// The local copies (bob through the alias, carol) are signed too:
	// they share the message with the queued one.
	for _, a := range []mailstore.Account{e.bob, e.carol} {
		got := e.inbox(a)
		if len(got) != 1 {
			t.Fatalf("%s has %d messages", a.Address, len(got))
		}
		if ok, _ := dkimResults(t, got[0], lookup); len(ok) != 2 {
			t.Errorf("%s's copy: DKIM %v", a.Address, ok)
		}
	}
}

// TestSRSBounce: a bounce to an SRS address of ours goes back to the
// original sender (queued, null sender kept), whatever the case of the
// address; a forged or expired one is refused with 550, and a bounce for
// one of our own senders is delivered here.
func TestSRSBounce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withForwards(t, e)
	sendMail(t, e.inbound, "someone.with.a.rather.long.name@a-long-sender-domain.example", []string{"fwd@example.org"}, fwdMsg, 250)
	sendMail(t, e.inbound, "alice@example.org", []string{"fwd@example.org"}, fwdMsg, 250)
	items := e.queued()
	if len(items) != 2 {
		t.Fatalf("%d items", len(items))
	}
	srsAddr, srsAlice := items[0].MailFrom, items[1].MailFrom
	if at := strings.LastIndexByte(srsAddr, '@'); at <= 64 {
		t.Fatalf("want an SRS local part over 64 octets, got %q", srsAddr)
	}
	bounce := "From: MAILER-DAEMON@remote.example\r\nSubject: Undelivered Mail\r\n\r\nSorry.\r\n"
	for _, to := range []string{srsAddr, strings.ToLower(srsAddr), strings.ToUpper(srsAddr[:strings.LastIndexByte(srsAddr, '@')]) + "@example.org"} {
		sendMail(t, e.inbound, "", []string{to}, bounce, 250)
	}
	items = e.queued()[2:]
	if len(items) != 3 {
		t.Fatalf("%d bounce items", len(items))
	}
	for _, it := range items {
		// A local part comes back in the case the bounce used.
		if it.MailFrom != "" || len(it.Recipients) != 1 || !strings.EqualFold(it.Recipients[0].Address, "someone.with.a.rather.long.name@a-long-sender-domain.example") {
			t.Errorf("bounce item %+v", it)
		}
		if q := e.queuedBody(it.ID); bytes.Contains(q, []byte("Delivered-To:")) {
			t.Errorf("bounce with Delivered-To: %q", q)
		}
	}
	// Back to one of our own senders: delivered here.
	sendMail(t, e.inbound, "", []string{srsAlice}, bounce, 250)
	if n := len(e.inbox(e.alice)); n != 1 {
		t.Errorf("alice has %d bounces", n)
	}

	rw := e.rewriter()
	rw.SetClock(func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) })
	expired, err := rw.Forward("s@sender.example", "example.org")
	must(t, err)
	parts := strings.SplitN(srsAddr, "=", 3)
	forged := parts[0] + "=AAAAAAAA=" + parts[2]
	c := dial(t, e.inbound)
	c.ehlo("remote.example")
	c.cmd("MAIL FROM:<>", 250)
	for _, bad := range []string{forged, expired, "SRS0=x@example.org", "SRS1=AAAAAAAA=remote.example==x@example.org"} {
		c.cmd("RCPT TO:<"+bad+">", 550, "5.1.1")
	}
	c.cmd("QUIT", 221)
	if n := len(e.queued()); n != 5 {
		t.Errorf("%d items after refused bounces", n)
	}
}

// TestLoops: more than 100 Received: fields (RFC 5321 §6.3), or a
// Delivered-To: naming the alias being forwarded, refuse the message with
// 554 5.4.6 and store nothing.
func TestLoops(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withForwards(t, e)
	hops := func(n int) string {
		return strings.Repeat("Received: from a.example by b.example; Mon, 7 Dec 2026 12:00:00 +0000\r\n", n)
	}
	sendMail(t, e.inbound, "s@sender.example", []string{"bob@example.org"}, hops(100)+fwdMsg, 250)
	sendMail(t, e.inbound, "s@sender.example", []string{"bob@example.org"}, hops(101)+fwdMsg, 554)
	sendMail(t, e.inbound, "s@sender.example", []string{"fwd@example.org"}, hops(101)+fwdMsg, 554)
	for _, dt := range []string{"Delivered-To: fwd@example.org\r\n", "delivered-to:   <FWD@Example.ORG>\r\n"} {
		r := sendMail(t, e.inbound, "s@sender.example", []string{"fwd@example.org"}, dt+fwdMsg, 554)
		if !strings.HasPrefix(r.Lines[0], "5.4.6") {
			t.Errorf("loop reply %v", r)
		}
		sendMail(t, e.inbound, "s@sender.example", []string{"fwd2@example.org", "bob@example.org"}, dt+fwdMsg, 250)
	}
	// Over submission too.
	submit(t, e, "alice@example.org", alicePass, "alice@example.org", []string{"fwd@example.org"},
		"Delivered-To: fwd@example.org\r\nFrom: alice@example.org\r\n\r\nx\r\n", 554)
	if n := len(e.inbox(e.bob)); n != 3 {
		t.Errorf("bob has %d messages, want 3", n)
	}
	if n := len(e.queued()); n != 2 {
		t.Errorf("%d queue items, want 2 (fwd2)", n)
	}
}

// TestForwardInboundAuth: with the inbound checks on, a forwarded copy
// carries our Authentication-Results: (after the trace fields), a forged
// one is removed, the sender's signature still covers the message as
// sent; a quarantined message goes to the local target's Junk and is
// still forwarded (the receiver judges it itself).
func TestForwardInboundAuth(t *testing.T) {
	t.Parallel()
	d, key := authDNS(t)
	e := newEnv(t, withAuth(d, mailauth.Enforce))
	withForwards(t, e)
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\r\n"
	signed := key.Sign(t, authMsg("news@sender.example", "fwd-pass"), "sender.example", "k")
	sendMail(t, e.inbound, "bounce@sender.example", []string{"fwd@example.org"}, forged+signed, 250)
	items := e.queued()
	if len(items) != 1 {
		t.Fatalf("%d items", len(items))
	}
	q := string(e.queuedBody(items[0].ID))
	if !strings.HasPrefix(q, "Delivered-To: fwd@example.org\r\nReceived: ") || strings.Contains(q, "bank.example") || !strings.HasSuffix(q, signed) {
		t.Fatalf("forwarded copy:\n%s", q)
	}
	if i := strings.Index(q, "Authentication-Results: mx.example.org;\r\n"); i < 0 || !strings.Contains(q[i:], "\tdkim=pass header.d=sender.example") {
		t.Errorf("forwarded copy lacks our Authentication-Results:\n%s", q)
	}

	sendMail(t, e.inbound, "x@attacker.example", []string{"fwd@example.org"}, authMsg("billing@quar.example", "fwd-quar"), 250)
	if n := len(e.mailbox(e.bob, "Junk")); n != 1 {
		t.Errorf("bob's Junk has %d messages", n)
	}
	if n := len(e.queued()); n != 2 {
		t.Errorf("%d items: the quarantined message was not forwarded", n)
	}
}
