package delivery

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
)

// parsedDSN is a DSN as a reader sees it.
type parsedDSN struct {
	Header     message.Header
	Text       string
	PerMessage textproto.MIMEHeader
	Recipients []textproto.MIMEHeader
	OrigType   string
	Original   string
}

// parseDSN reads a DSN with go-message: multipart/report of a text part,
// a delivery-status part and, optionally, the original.
func parseDSN(t *testing.T, b []byte) parsedDSN {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("DSN does not parse: %v\n%s", err, b)
	}
	var p parsedDSN
	p.Header = e.Header
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN content type %q %v (%v)", mt, params, err)
	}
	mr := e.MultipartReader()
	var parts int
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		parts++
		pt, _, _ := part.Header.ContentType()
		body, err := io.ReadAll(part.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch parts {
		case 1:
			if pt != "text/plain" {
				t.Fatalf("first part %q", pt)
			}
			p.Text = string(body)
		case 2:
			if pt != "message/delivery-status" && pt != "message/global-delivery-status" {
				t.Fatalf("second part %q", pt)
			}
			r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			h, err := r.ReadMIMEHeader()
			if err != nil {
				t.Fatalf("per-message fields: %v\n%s", err, body)
			}
			p.PerMessage = h
			for {
				h, err := r.ReadMIMEHeader()
				if len(h) > 0 {
					p.Recipients = append(p.Recipients, h)
				}
				if err != nil {
					break
				}
			}
		case 3:
			p.OrigType, p.Original = pt, string(body)
		}
	}
	if parts < 2 {
		t.Fatalf("DSN has %d parts", parts)
	}
	return p
}

func TestDSNBuildFailed(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := &DSN{
		ReportingMTA: "mx.sender.test", QueueID: 42, EnvelopeID: "env-1", ArrivalDate: now.Add(-time.Hour),
		To: "alice@sender.test", Date: now,
		Recipients: []DSNRecipient{{
			FinalRecipient: "bob@rcpt.test", OriginalRecipient: "rfc822;Bob@rcpt.test", Action: ActionFailed,
			Status: "5.1.1", RemoteMTA: "mx.rcpt.test", Diagnostic: "550 5.1.1 no such\r\nuser: bob", LastAttempt: now,
		}},
	}
	orig := "From: alice@sender.test\r\nSubject: hi\r\n\r\nbody line\r\n--not-a-boundary\r\n"
	b, err := d.Build(strings.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, b)
	if got := p.Header.Get("Subject"); got != "Undelivered Mail Returned to Sender" {
		t.Errorf("subject %q", got)
	}
	if got := p.Header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted %q", got)
	}
	if got := p.Header.Get("To"); got != "<alice@sender.test>" {
		t.Errorf("To %q", got)
	}
	if got := p.PerMessage.Get("Reporting-MTA"); got != "dns; mx.sender.test" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if got := p.PerMessage.Get("Original-Envelope-Id"); got != "env-1" {
		t.Errorf("Original-Envelope-Id %q", got)
	}
	if len(p.Recipients) != 1 {
		t.Fatalf("%d recipient groups", len(p.Recipients))
	}
	r := p.Recipients[0]
	want := map[string]string{
		"Final-Recipient":    "rfc822; bob@rcpt.test",
		"Original-Recipient": "rfc822; Bob@rcpt.test",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; mx.rcpt.test",
		"Diagnostic-Code":    "smtp; 550 5.1.1 no such user: bob",
	}
	for k, v := range want {
		if got := r.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if p.OrigType != "message/rfc822" || !strings.Contains(p.Original, "body line") {
		t.Errorf("original %q: %q", p.OrigType, p.Original)
	}
	if !strings.Contains(p.Text, "bob@rcpt.test") || !strings.Contains(p.Text, "550 5.1.1") {
		t.Errorf("human part lacks the recipient or reply: %q", p.Text)
	}
}

func TestDSNBuildHeadersOnlyAndDelayed(t *testing.T) {
	now := time.Now()
	d := &DSN{ReportingMTA: "h.test", QueueID: 1, To: "a@s.test", Date: now, Headers: true,
		Recipients: []DSNRecipient{{FinalRecipient: "x@r.test", Action: ActionDelayed, Status: "4.4.1",
			Diagnostic: "connect to mx.r.test: refused", WillRetryUntil: now.Add(time.Hour), LastAttempt: now}}}
	orig := "Subject: secret-subject\r\n\r\nsecret body\r\n"
	b, err := d.Build(strings.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, b)
	if p.Header.Get("Subject") != "Delayed Mail (still being retried)" {
		t.Errorf("subject %q", p.Header.Get("Subject"))
	}
	if p.OrigType != "text/rfc822-headers" || strings.Contains(p.Original, "secret body") || !strings.Contains(p.Original, "secret-subject") {
		t.Errorf("headers-only original wrong: %q %q", p.OrigType, p.Original)
	}
	r := p.Recipients[0]
	if r.Get("Action") != "delayed" || r.Get("Will-Retry-Until") == "" || r.Get("Remote-MTA") != "" {
		t.Errorf("delayed recipient fields: %v", r)
	}
	if got := r.Get("Diagnostic-Code"); got != "X-Postrider; connect to mx.r.test: refused" {
		t.Errorf("our own diagnostic: %q", got)
	}
}

func TestDSNBuildUTF8(t *testing.T) {
	d := &DSN{ReportingMTA: "h.test", QueueID: 2, To: "ä@s.test", Date: time.Now(),
		Recipients: []DSNRecipient{{FinalRecipient: "ü@r.test", Action: ActionFailed, Status: "5.6.7", Diagnostic: "needs SMTPUTF8"}}}
	b, err := d.Build(strings.NewReader("Subject: x\r\n\r\ny\r\n"), 16)
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, b)
	if got := p.Recipients[0].Get("Final-Recipient"); got != "utf-8; ü@r.test" {
		t.Errorf("Final-Recipient %q", got)
	}
	if p.OrigType != "message/global" {
		t.Errorf("original type %q", p.OrigType)
	}
}

func TestDSNBuildLargeOriginalHeadersOnly(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat("x", 100) + "\r\n"
	d := &DSN{ReportingMTA: "h.test", To: "a@s.test", Date: time.Now(),
		Recipients: []DSNRecipient{{FinalRecipient: "b@r.test", Action: ActionFailed, Status: "5.0.0"}}}
	b, err := d.Build(strings.NewReader(big), dsnMaxReturned+1)
	if err != nil {
		t.Fatal(err)
	}
	if p := parseDSN(t, b); p.OrigType != "text/rfc822-headers" {
		t.Errorf("a large original is returned as %q", p.OrigType)
	}
}
