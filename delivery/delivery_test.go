package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postrider/postrider/mailstore"
)

var bg = context.Background()

// dsns returns the DSNs stored for the sender (account 7).
func (w *world) dsns() [][]byte {
	return w.mem.inboxOf(7)
}

func TestMXPreferenceThenFallbackToA(t *testing.T) {
	w := newWorld(t)
	down, up, other := w.net.addr(), w.net.addr(), w.net.addr()
	rcv := startReceiver(t, w.net, up, nil, false)
	rcvA := startReceiver(t, w.net, other, nil, false)
	// pref.test: the best MX is down, the second takes the mail.
	w.zone.add(t,
		"pref.test. MX 10 mx1.pref.test.", "pref.test. MX 20 mx2.pref.test.",
		"mx1.pref.test. A "+down, "mx2.pref.test. A "+up,
		// noMX.test: no MX record, only an A record (the implicit MX).
		"nomx.test. A "+other,
	)
	id1 := w.enqueue("alice@sender.test", nil, "bob@pref.test")
	id2 := w.enqueue("alice@sender.test", nil, "carol@nomx.test")
	it1, _ := w.item(id1)
	it2, _ := w.item(id2)
	e := w.engine(w.config())
	e.RunOnce(bg)

	if _, ok := w.item(id1); ok {
		t.Error("item for pref.test still queued")
	}
	if _, ok := w.item(id2); ok {
		t.Error("item for nomx.test still queued")
	}
	m := rcv.messages()
	if len(m) != 1 || m[0].Rcpts[0] != "bob@pref.test" || m[0].From != "alice@sender.test" {
		t.Fatalf("second MX got %+v", m)
	}
	if m[0].Helo != "out.sender.test" {
		t.Errorf("EHLO name %q, want POSTRIDER_HOSTNAME", m[0].Helo)
	}
	if !strings.Contains(m[0].Data, "\r\n.leading dot\r\n") {
		t.Errorf("body not transparent: %q", m[0].Data)
	}
	if m := rcvA.messages(); len(m) != 1 || m[0].Rcpts[0] != "carol@nomx.test" {
		t.Fatalf("A fallback got %+v", m)
	}
	if n := len(w.dsns()); n != 0 {
		t.Errorf("%d DSNs for delivered mail", n)
	}
	if got := testutil.ToFloat64(e.metrics.results.WithLabelValues("delivered")); got != 2 {
		t.Errorf("delivered counter %v", got)
	}
	if got := testutil.ToFloat64(e.metrics.connections.WithLabelValues("plain")); got != 2 {
		t.Errorf("plain connections %v", got)
	}
	if got, want := testutil.ToFloat64(e.metrics.bytes), float64(it1.Size+it2.Size); got != want || want == 0 {
		t.Errorf("delivered bytes %v, want %v", got, want)
	}
}

func TestNullMXFailsAtOnce(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "nullmx.test. MX 0 .")
	id := w.enqueue("alice@sender.test", map[string]string{"ENVID": "e-77"}, "bob@nullmx.test")
	w.engine(w.config()).RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("null MX item still queued")
	}
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs, want 1", len(ds))
	}
	p := parseDSN(t, ds[0])
	if len(p.Recipients) != 1 || p.Recipients[0].Get("Status") != "5.1.10" || p.Recipients[0].Get("Action") != "failed" {
		t.Fatalf("DSN recipients %v", p.Recipients)
	}
	if p.PerMessage.Get("Original-Envelope-Id") != "e-77" {
		t.Errorf("ENVID not honoured: %v", p.PerMessage)
	}
}

func TestReceiverDownRetriesThenOneBounce(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "down.test. A "+w.net.addr())
	cfg := w.config()
	cfg.QueueLifetime = 10 * time.Minute
	e := w.engine(cfg)
	id := w.enqueue("alice@sender.test", nil, "bob@down.test")
	var waits []time.Duration
	for attempt := 1; attempt <= 10; attempt++ {
		e.RunOnce(bg)
		it, ok := w.item(id)
		if !ok {
			break
		}
		r := it.Recipients[0]
		if r.State != mailstore.RcptPending || r.Attempts != attempt || !strings.Contains(r.LastReply, "connect to") {
			t.Fatalf("attempt %d: %+v", attempt, r)
		}
		waits = append(waits, it.NextAttempt.Sub(w.clock.Now()))
		w.clock.advance(it.NextAttempt.Sub(w.clock.Now()))
		if n := len(w.dsns()); n != 0 {
			t.Fatalf("DSN before expiry")
		}
	}
	if _, ok := w.item(id); ok {
		t.Fatal("still queued after its lifetime")
	}
	// 1, 2, 4 min back-off, then the wait is cut to the expiry (10 min
	// after queueing: 1+2+4 = 7, so 3 more).
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 3 * time.Minute}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	e.RunOnce(bg)
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs, want exactly 1", len(ds))
	}
	p := parseDSN(t, ds[0])
	if st := p.Recipients[0].Get("Status"); st != "4.4.7" {
		t.Errorf("expiry status %q", st)
	}
}

func TestTemporaryThenDelivered(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.rcptHook = func(to string, n int) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "greylisted, come back later"}
		}
		return nil
	}
	w.zone.add(t, "grey.test. MX 10 mx.grey.test.", "mx.grey.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "bob@grey.test")
	e := w.engine(w.config())
	e.RunOnce(bg)
	it, ok := w.item(id)
	if !ok || it.Recipients[0].State != mailstore.RcptPending || it.Recipients[0].LastReply != "451 4.2.0 greylisted, come back later" ||
		it.Recipients[0].RemoteMTA != "mx.grey.test" {
		t.Fatalf("after 451: %+v", it)
	}
	e.RunOnce(bg) // not due yet: nothing happens
	if len(rcv.messages()) != 0 {
		t.Fatal("retried before its time")
	}
	w.clock.advance(time.Minute)
	e.RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("still queued after 250")
	}
	if m := rcv.messages(); len(m) != 1 {
		t.Fatalf("%d messages", len(m))
	}
	if len(w.dsns()) != 0 {
		t.Error("DSN for a delivered message")
	}
}

func TestOneOfThreeRejected(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.rcptHook = func(to string, _ int) error {
		if to == "bob@three.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	w.zone.add(t, "three.test. MX 5 mx.three.test.", "mx.three.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "amy@three.test", "bob@three.test", "cid@three.test")
	w.engine(w.config()).RunOnce(bg)
	if _, ok := w.item(id); ok {
		t.Fatal("item still queued")
	}
	m := rcv.messages()
	if len(m) != 1 || strings.Join(m[0].Rcpts, ",") != "amy@three.test,cid@three.test" {
		t.Fatalf("one transaction for the domain expected, got %+v", m)
	}
	if n := rcv.accepts.Load(); n != 1 {
		t.Errorf("%d connections", n)
	}
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs", len(ds))
	}
	p := parseDSN(t, ds[0])
	if len(p.Recipients) != 1 {
		t.Fatalf("DSN names %d recipients", len(p.Recipients))
	}
	r := p.Recipients[0]
	if r.Get("Final-Recipient") != "rfc822; bob@three.test" || r.Get("Diagnostic-Code") != "smtp; 550 5.1.1 no such user" ||
		r.Get("Remote-MTA") != "dns; mx.three.test" || r.Get("Status") != "5.1.1" {
		t.Errorf("DSN recipient %v", r)
	}
	if strings.Contains(p.Text, "amy@") || strings.Contains(p.Text, "cid@") {
		t.Error("DSN names delivered recipients")
	}
}

func TestSMTPUTF8NeededButNotOffered(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	w.zone.add(t, "ascii.test. MX 5 mx.ascii.test.", "mx.ascii.test. A "+ip)
	id1 := w.enqueue("alice@sender.test", map[string]string{"SMTPUTF8": "1"}, "bob@ascii.test")
	id2 := w.enqueue("alice@sender.test", nil, "jürgen@ascii.test")
	w.engine(w.config()).RunOnce(bg)
	for _, id := range []int64{id1, id2} {
		if _, ok := w.item(id); ok {
			t.Errorf("item %d still queued", id)
		}
	}
	if m := rcv.messages(); len(m) != 0 {
		t.Fatalf("sent anyway: %+v", m)
	}
	ds := w.dsns()
	if len(ds) != 2 {
		t.Fatalf("%d DSNs", len(ds))
	}
	for _, d := range ds {
		p := parseDSN(t, d)
		r := p.Recipients[0]
		if r.Get("Status") != "5.6.7" || !strings.Contains(r.Get("Diagnostic-Code"), "SMTPUTF8") {
			t.Errorf("reason not clear: %v", r)
		}
	}
}

func TestDNSFailureDefers(t *testing.T) {
	w := newWorld(t)
	w.zone.Fail("broken.test", true)
	id := w.enqueue("alice@sender.test", nil, "bob@broken.test")
	w.engine(w.config()).RunOnce(bg)
	it, ok := w.item(id)
	if !ok || it.Recipients[0].State != mailstore.RcptPending || it.Recipients[0].LastCode != "4.4.3" {
		t.Fatalf("DNS failure: %+v", it)
	}
	if len(w.dsns()) != 0 {
		t.Error("DSN for a DNS failure")
	}
}

func TestNotifyNeverAndNullSender(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "nullmx2.test. MX 0 .")
	_, err := w.store.Deliver(bg, &mailstore.Delivery{MailFrom: "alice@sender.test", Body: strings.NewReader("Subject: x\r\n\r\nx\r\n"),
		Remote: []mailstore.RemoteRecipient{{Address: "a@nullmx2.test", Notify: "NEVER"}}, SenderAccount: 7})
	if err != nil {
		t.Fatal(err)
	}
	w.enqueue("", nil, "b@nullmx2.test") // a bounce of a bounce: never
	w.engine(w.config()).RunOnce(bg)
	if n := len(w.dsns()); n != 0 {
		t.Errorf("%d DSNs", n)
	}
	if its, _ := w.store.ListQueue(bg, 0); len(its) != 0 {
		t.Errorf("queue not empty: %+v", its)
	}
}

func TestDelayWarningOnce(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "slow.test. A "+w.net.addr())
	cfg := w.config()
	cfg.DelayWarning = 3 * time.Minute
	e := w.engine(cfg)
	id := w.enqueue("alice@sender.test", nil, "bob@slow.test")
	for range 5 {
		e.RunOnce(bg)
		it, ok := w.item(id)
		if !ok {
			t.Fatal("gone")
		}
		w.clock.advance(it.NextAttempt.Sub(w.clock.Now()))
	}
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d delay DSNs, want 1", len(ds))
	}
	p := parseDSN(t, ds[0])
	if p.Recipients[0].Get("Action") != "delayed" || p.OrigType != "text/rfc822-headers" {
		t.Errorf("delay DSN %v %q", p.Recipients[0], p.OrigType)
	}
}

func TestConnectionReuse(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	w.zone.add(t, "reuse.test. MX 5 mx.reuse.test.", "mx.reuse.test. A "+ip)
	w.enqueue("alice@sender.test", nil, "a@reuse.test")
	w.enqueue("alice@sender.test", nil, "b@reuse.test")
	w.engine(w.config()).RunOnce(bg)
	if m := rcv.messages(); len(m) != 2 {
		t.Fatalf("%d messages", len(m))
	}
	if n := rcv.accepts.Load(); n != 1 {
		t.Errorf("%d connections for two messages to one domain, want 1", n)
	}
}

func TestKickWakesWorkers(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	w.zone.add(t, "kick.test. A "+ip)
	cfg := w.config()
	cfg.PollInterval = time.Hour // only a Kick can wake it
	e := w.engine(cfg)
	e.Start()
	waitFor(t, "the first claim", func() bool { return w.mem.claims.Load() >= 1 })
	w.enqueue("alice@sender.test", nil, "a@kick.test")
	e.Kick()
	waitFor(t, "delivery after Kick", func() bool { return len(rcv.messages()) == 1 })
}

func TestTwoWorkersNeverDeliverTwice(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	w.zone.add(t, "twice.test. A "+ip)
	w.mem.now = time.Now
	const n = 30
	for i := range n {
		w.enqueue("alice@sender.test", nil, fmt.Sprintf("r%d@twice.test", i))
	}
	var engines []*Engine
	for i := range 2 {
		cfg := w.config()
		cfg.Now = time.Now
		cfg.Holder = fmt.Sprintf("node%d", i)
		cfg.PollInterval = 10 * time.Millisecond
		cfg.MaxPerConn = 2
		cfg.Workers = 4
		engines = append(engines, w.engine(cfg))
	}
	for _, e := range engines {
		e.Start()
	}
	waitFor(t, "every message", func() bool { its, _ := w.store.ListQueue(bg, 0); return len(its) == 0 })
	seen := map[string]int{}
	for _, m := range rcv.messages() {
		for _, r := range m.Rcpts {
			seen[r]++
		}
	}
	for i := range n {
		if c := seen[fmt.Sprintf("r%d@twice.test", i)]; c != 1 {
			t.Errorf("r%d delivered %d times", i, c)
		}
	}
}

func TestKilledWorkerLeaseTakenOver(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.block = make(chan struct{})
	defer close(rcv.block)
	w.zone.add(t, "kill.test. A "+ip)
	w.mem.now = time.Now
	id := w.enqueue("alice@sender.test", nil, "x@kill.test")

	cfgA := w.config()
	cfgA.Now, cfgA.Holder, cfgA.Lease, cfgA.PollInterval = time.Now, "nodeA", 2*time.Second, 20*time.Millisecond
	a := w.engine(cfgA)
	a.Start()
	waitFor(t, "node A in the middle of the transaction", func() bool { return rcv.blocked.Load() })
	// Kill A: its attempt is cut short and nothing is recorded.
	dead, cancel := context.WithCancel(bg)
	cancel()
	_ = a.Shutdown(dead)
	it, ok := w.item(id)
	if !ok || it.Recipients[0].Attempts != 0 || it.LeaseHolder != "nodeA" {
		t.Fatalf("after the kill: %+v", it)
	}

	cfgB := cfgA
	cfgB.Holder = "nodeB"
	b := w.engine(cfgB)
	b.Start()
	waitFor(t, "node B to deliver after A's lease", func() bool { _, ok := w.item(id); return !ok })
	if m := rcv.messages(); len(m) != 1 {
		t.Fatalf("delivered %d times", len(m))
	}
}

func TestShutdownWaitsForInflight(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.block = make(chan struct{})
	w.zone.add(t, "inflight.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "x@inflight.test")
	e := w.engine(w.config())
	e.Start()
	waitFor(t, "the attempt in flight", func() bool { return rcv.blocked.Load() })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		done <- e.Shutdown(ctx)
	}()
	waitFor(t, "the worker loop to stop", func() bool {
		select {
		case <-e.loopDone:
			return true
		default:
			return false
		}
	})
	close(rcv.block) // the receiver answers 451 now: the attempt ends
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	it, ok := w.item(id)
	if !ok || it.Recipients[0].Attempts != 1 || !strings.HasPrefix(it.Recipients[0].LastReply, "451") {
		t.Fatalf("the in-flight attempt was not recorded: %+v", it)
	}
	// A second Shutdown is harmless.
	if err := e.Shutdown(bg); err != nil {
		t.Fatal(err)
	}
}

func TestReply421AppliesToAllRecipients(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startReceiver(t, w.net, ip, nil, false)
	rcv.rcptHook = func(to string, _ int) error {
		if to == "b@closing.test" {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
		}
		return nil
	}
	w.zone.add(t, "closing.test. A "+ip)
	id := w.enqueue("alice@sender.test", nil, "a@closing.test", "b@closing.test", "c@closing.test")
	w.engine(w.config()).RunOnce(bg)
	it, ok := w.item(id)
	if !ok {
		t.Fatal("gone")
	}
	for _, r := range it.Recipients {
		if r.State != mailstore.RcptPending || !strings.HasPrefix(r.LastReply, "421 4.3.2") {
			t.Errorf("%s: %+v", r.Address, r)
		}
	}
	if len(rcv.messages()) != 0 || len(w.dsns()) != 0 {
		t.Error("delivered or bounced after 421")
	}
}

func TestQueueMetricsAndAttemptLog(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "m.test. A "+w.net.addr())
	var logs bytes.Buffer
	cfg := w.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(&syncWriter{w: &logs}, nil))
	e := w.engine(cfg)
	w.enqueue("alice@sender.test", nil, "a@m.test", "b@m.test")
	w.enqueue("alice@sender.test", nil, "c@m.test")
	w.clock.advance(90 * time.Second)
	e.sampleStats()
	if testutil.ToFloat64(e.metrics.items) != 2 || testutil.ToFloat64(e.metrics.recipients) != 3 || testutil.ToFloat64(e.metrics.oldest) != 90 {
		t.Errorf("queue gauges %v %v %v", testutil.ToFloat64(e.metrics.items), testutil.ToFloat64(e.metrics.recipients), testutil.ToFloat64(e.metrics.oldest))
	}
	e.RunOnce(bg)
	if got := testutil.ToFloat64(e.metrics.results.WithLabelValues("deferred")); got != 3 {
		t.Errorf("deferred %v", got)
	}
	var line map[string]any
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"msg":"delivery attempt"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	for _, k := range []string{"queue", "domain", "mx", "tls", "code", "reply", "duration"} {
		if _, ok := line[k]; !ok {
			t.Errorf("attempt log line lacks %q: %v", k, line)
		}
	}
	if line["domain"] != "m.test" || line["mx"] != "m.test" || line["tls"] != "none" {
		t.Errorf("attempt log line %v", line)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func TestNotifySuccess(t *testing.T) {
	w := newWorld(t)
	ipDSN, ipPlain := w.net.addr(), w.net.addr()
	withDSN := startReceiver(t, w.net, ipDSN, nil, false)
	noDSN := startReceiver(t, w.net, ipPlain, nil, false)
	noDSN.srv.EnableDSN = false
	w.zone.add(t, "dsn.test. A "+ipDSN, "nodsn.test. A "+ipPlain)
	for _, rcpt := range []string{"a@dsn.test", "b@nodsn.test"} {
		if _, err := w.store.Deliver(bg, &mailstore.Delivery{MailFrom: "alice@sender.test", Body: strings.NewReader("Subject: s\r\n\r\nx\r\n"),
			Remote: []mailstore.RemoteRecipient{{Address: rcpt, Notify: "SUCCESS,FAILURE"}}, SenderAccount: 7}); err != nil {
			t.Fatal(err)
		}
	}
	w.engine(w.config()).RunOnce(bg)
	// A DSN receiver is told NOTIFY and reports itself (RFC 3461 §5.2).
	withDSN.mu.Lock()
	got := withDSN.notify["a@dsn.test"]
	withDSN.mu.Unlock()
	if got != "SUCCESS,FAILURE" {
		t.Errorf("NOTIFY passed on as %q", got)
	}
	// One without DSN: we report "relayed" (RFC 3461 §6.2.1).
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs, want 1 (relayed)", len(ds))
	}
	p := parseDSN(t, ds[0])
	if len(p.Recipients) != 1 || p.Recipients[0].Get("Action") != "relayed" || p.Recipients[0].Get("Final-Recipient") != "rfc822; b@nodsn.test" {
		t.Errorf("relayed DSN %v", p.Recipients)
	}
}

func TestDSNQueuedWhenNoLocalSender(t *testing.T) {
	w := newWorld(t)
	w.zone.add(t, "nullmx3.test. MX 0 .")
	// Forwarded mail (SenderAccount 0): the DSN goes back by SMTP.
	_, err := w.store.Deliver(bg, &mailstore.Delivery{MailFrom: "someone@far.test", Body: strings.NewReader("Subject: fwd\r\n\r\nx\r\n"),
		Remote: []mailstore.RemoteRecipient{{Address: "x@nullmx3.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	w.engine(w.config()).RunOnce(bg)
	its, _ := w.store.ListQueue(bg, 0)
	if len(its) != 1 {
		t.Fatalf("queue %+v", its)
	}
	d := its[0]
	if d.MailFrom != "" || len(d.Recipients) != 1 || d.Recipients[0].Address != "someone@far.test" || d.SenderAccount != 0 {
		t.Fatalf("queued DSN %+v", d)
	}
	body, err := w.store.OpenQueued(bg, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(body)
	if p := parseDSN(t, b); p.Recipients[0].Get("Final-Recipient") != "rfc822; x@nullmx3.test" {
		t.Errorf("DSN %v", p.Recipients)
	}
	if len(w.mem.inboxOf(0)) != 0 {
		t.Error("stored locally")
	}
}
