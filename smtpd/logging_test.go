package smtpd_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/postrider/postrider/smtpd"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTraceLogMasksSecrets: the protocol trace has commands and replies
// with a connection id, but neither credentials nor message content.
func TestTraceLogMasksSecrets(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	e := newEnv(t, withConfig(func(c *smtpdConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: smtpd.LevelTrace}))
	}))
	c := dial(t, e.submission)
	c.ehlo("client.example")
	c.login("alice@example.org", alicePass)
	c.cmd("RSET", 250)
	// A second login of another session, with LOGIN.
	c2 := dial(t, e.submission)
	c2.ehlo("client.example")
	c2.cmd("AUTH LOGIN", 334)
	c2.cmd(b64("bob@example.org"), 334)
	c2.cmd(b64(bobPass), 235)
	c2.cmd("MAIL FROM:<bob@example.org>", 250)
	c2.cmd("RCPT TO:<alice@example.org>", 250)
	c2.cmd("DATA", 354)
	c2.send("From: bob@example.org\r\nSubject: secret-subject\r\n\r\nsecret-body-text\r\n.\r\n")
	c2.expect(250)
	c2.cmd("QUIT", 221)
	c.cmd("QUIT", 221)
	c2.expectClosed()
	logs := buf.String()
	for _, secret := range []string{alicePass, bobPass, plain("alice@example.org", alicePass), b64(bobPass), b64("bob@example.org"), "secret-body-text", "secret-subject"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	for _, want := range []string{"C: AUTH PLAIN <initial response>", "C: <SASL response>", "C: MAIL FROM:<bob@example.org>", "S: 250 2.0.0 OK: message delivered", "conn=", "user=bob@example.org",
		"S: 220 mx.example.org ESMTP", "S: 250-mx.example.org Hello client.example", "S: 250-LIMITS RCPTMAX=10", "S: 250 AUTH PLAIN LOGIN", "S: 334 ", "S: 354 ",
		"S: 235 2.7.0", "C: QUIT", "S: 221 2.0.0"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestHeloInReceived: an EHLO argument that is not a domain cannot break
// or forge the Received: field.
func TestHeloInReceived(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := dial(t, e.inbound)
	c.cmd("EHLO evil) by trusted.example (x;", 250)
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	c.cmd("HELO [127.0.0.1]", 250)
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<alice@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(simpleMsg + ".\r\n")
	c.expect(250)
	got := e.inbox(e.alice)
	if len(got) != 2 {
		t.Fatalf("%d messages", len(got))
	}
	tr, _ := body(t, got[0])
	if !strings.Contains(tr, "Received: from [127.0.0.1] (helo=evil?)\r\n\tby mx.example.org") {
		t.Errorf("trace:\n%s", tr)
	}
	tr, _ = body(t, got[1])
	if !strings.Contains(tr, "Received: from [127.0.0.1] ([127.0.0.1])\r\n\tby mx.example.org (Postrider) with SMTP id") {
		t.Errorf("trace:\n%s", tr)
	}
}

// counter returns the value of a counter of the default registry.
func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return metricValue(m)
		}
	}
	return 0
}

func metricValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetGauge().GetValue()
}

func TestMetrics(t *testing.T) {
	// Not parallel: it reads global counters.
	e := newEnv(t)
	acc := counter(t, "postrider_smtp_messages_accepted_total", map[string]string{"role": "inbound"})
	rej := counter(t, "postrider_smtp_messages_rejected_total", map[string]string{"role": "inbound", "reason": "bare_cr"})
	relay := counter(t, "postrider_smtp_recipients_rejected_total", map[string]string{"reason": "relay_denied"})
	lat := counter(t, "postrider_smtp_delivery_duration_seconds", nil)
	sendMail(t, e.inbound, "s@remote.example", []string{"alice@example.org"}, simpleMsg, 250)
	sendMail(t, e.inbound, "s@remote.example", []string{"alice@example.org"}, "Subject: x\r\n\r\nbare\rcr\r\n", 554)
	c := dial(t, e.inbound)
	c.ehlo("x.example")
	c.cmd("MAIL FROM:<s@remote.example>", 250)
	c.cmd("RCPT TO:<x@elsewhere.example>", 554)
	for name, d := range map[string]float64{
		"accepted": counter(t, "postrider_smtp_messages_accepted_total", map[string]string{"role": "inbound"}) - acc,
		"rejected": counter(t, "postrider_smtp_messages_rejected_total", map[string]string{"role": "inbound", "reason": "bare_cr"}) - rej,
		"relay":    counter(t, "postrider_smtp_recipients_rejected_total", map[string]string{"reason": "relay_denied"}) - relay,
		"latency":  counter(t, "postrider_smtp_delivery_duration_seconds", nil) - lat,
	} {
		if d != 1 {
			t.Errorf("%s counter moved by %v, want 1", name, d)
		}
	}
}
