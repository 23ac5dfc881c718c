package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/postrider/postrider/mailstore"
)

var pipeExt = []string{"PIPELINING", "8BITMIME", "DSN", "SIZE 10000000", "ENHANCEDSTATUSCODES"}

// enqueueBody queues body from sender account 7.
func (w *world) enqueueBody(from string, params map[string]string, body string, rcpts ...mailstore.RemoteRecipient) int64 {
	w.t.Helper()
	res, err := w.store.Deliver(bg, &mailstore.Delivery{MailFrom: from, Body: strings.NewReader(body), Params: params, Remote: rcpts, SenderAccount: 7})
	if err != nil {
		w.t.Fatal(err)
	}
	return res.QueueID
}

func rr(addrs ...string) []mailstore.RemoteRecipient {
	var out []mailstore.RemoteRecipient
	for _, a := range addrs {
		out = append(out, mailstore.RemoteRecipient{Address: a})
	}
	return out
}

// rcptState returns an item's recipients by address.
func (w *world) rcptState(id int64) map[string]mailstore.QueueRecipient {
	w.t.Helper()
	it, ok := w.item(id)
	if !ok {
		w.t.Fatalf("item %d gone", id)
	}
	out := map[string]mailstore.QueueRecipient{}
	for _, r := range it.Recipients {
		out[r.Address] = r
	}
	return out
}

const plainBody = "From: <alice@sender.test>\r\nSubject: hello\r\n\r\nHello there.\r\n.leading dot\r\n"

// RFC 2920: MAIL, every RCPT and DATA reach the receiver together, before
// it has replied to any of them, in one read; on the reused connection the
// RSET joins the next group. The parameters go with them (RFC 1870, 6152,
// 3461 xtext, 6533 utf-8-addr-xtext).
func TestPipeliningOneRoundTrip(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true})
	w.zone.add(t, "pipe.test. MX 10 mx.pipe.test.", "mx.pipe.test. A "+ip)
	id1 := w.enqueueBody("alice@sender.test", map[string]string{"RET": "HDRS", "ENVID": "env+1"}, plainBody,
		mailstore.RemoteRecipient{Address: "a@pipe.test", Notify: "SUCCESS,FAILURE", ORCPT: "rfc822;a+x@pipe.test"},
		mailstore.RemoteRecipient{Address: "b@pipe.test", ORCPT: "utf-8;jürgen@pipe.test"},
		mailstore.RemoteRecipient{Address: "c@pipe.test"})
	id2 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("d@pipe.test")...)
	it1, _ := w.item(id1)
	it2, _ := w.item(id2)
	w.engine(w.config()).RunOnce(bg)

	got := rcv.snapshot()
	if got.notPipelined {
		t.Fatal("the client waited for a reply inside a group")
	}
	want := [][]string{
		{fmt.Sprintf("MAIL FROM:<alice@sender.test> BODY=8BITMIME SIZE=%d RET=HDRS ENVID=env+2B1", it1.Size),
			"RCPT TO:<a@pipe.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@pipe.test",
			`RCPT TO:<b@pipe.test> ORCPT=utf-8;j\x{FC}rgen@pipe.test`,
			"RCPT TO:<c@pipe.test>",
			"DATA"},
		{"RSET", fmt.Sprintf("MAIL FROM:<alice@sender.test> BODY=8BITMIME SIZE=%d", it2.Size), "RCPT TO:<d@pipe.test>", "DATA"},
	}
	if fmt.Sprintf("%q", got.groups) != fmt.Sprintf("%q", want) {
		t.Fatalf("groups\n got %q\nwant %q", got.groups, want)
	}
	if !slices.Equal(got.groupReads, []int{1, 1}) {
		t.Errorf("each group should arrive in one read, took %v", got.groupReads)
	}
	if got.accepts != 1 || len(got.msgs) != 2 {
		t.Fatalf("%d connections, %d messages", got.accepts, len(got.msgs))
	}
	if got.msgs[0].Data != plainBody || strings.Join(got.msgs[0].Rcpts, ",") != "a@pipe.test,b@pipe.test,c@pipe.test" {
		t.Errorf("first message %+v", got.msgs[0])
	}
	if last := got.cmds[len(got.cmds)-1]; last != "QUIT" {
		t.Errorf("last command %q", last)
	}
	for _, id := range []int64{id1, id2} {
		if _, ok := w.item(id); ok {
			t.Errorf("item %d still queued", id)
		}
	}
}

// RFC 2920 §3.1: every reply of a group is checked; each recipient gets
// its own result, with the remote text (multi-line replies joined).
func TestPipelinedMixedReplies(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true, rcptReply: func(to string) string {
		switch to {
		case "amy@mixed.test":
			return "550-5.1.1 no such user\r\n550 5.1.1 try another"
		case "bob@mixed.test":
			return "450 4.2.1 mailbox busy"
		}
		return ""
	}})
	w.zone.add(t, "mixed.test. MX 10 mx.mixed.test.", "mx.mixed.test. A "+ip)
	id := w.enqueueBody("alice@sender.test", nil, plainBody, rr("amy@mixed.test", "bob@mixed.test", "cid@mixed.test")...)
	w.engine(w.config()).RunOnce(bg)

	got := rcv.snapshot()
	if got.notPipelined || len(got.groups) != 1 || len(got.groups[0]) != 5 {
		t.Fatalf("not one group: %q (notPipelined %v)", got.groups, got.notPipelined)
	}
	if len(got.msgs) != 1 || strings.Join(got.msgs[0].Rcpts, ",") != "cid@mixed.test" {
		t.Fatalf("messages %+v", got.msgs)
	}
	rs := w.rcptState(id)
	for addr, want := range map[string][3]string{
		"amy@mixed.test": {"failed", "5.1.1", "550 5.1.1 no such user try another"},
		"bob@mixed.test": {"pending", "4.2.1", "450 4.2.1 mailbox busy"},
		"cid@mixed.test": {"delivered", "2.0.0", "250 2.0.0 queued"},
	} {
		r := rs[addr]
		if string(r.State) != want[0] || r.LastCode != want[1] || r.LastReply != want[2] || r.RemoteMTA != "mx.mixed.test" {
			t.Errorf("%s: %s %s %q %s, want %v", addr, r.State, r.LastCode, r.LastReply, r.RemoteMTA, want)
		}
	}
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs", len(ds))
	}
	p := parseDSN(t, ds[0])
	if len(p.Recipients) != 1 || p.Recipients[0].Get("Final-Recipient") != "rfc822; amy@mixed.test" {
		t.Errorf("DSN recipients %v", p.Recipients)
	}
}

// No RCPT of a pipelined group accepted: no message data is sent. A DATA
// refused is left at that; a DATA accepted anyway gets a single dot (RFC
// 2920 §3.1). Either way the connection carries the next message.
func TestPipelinedAllRefused(t *testing.T) {
	for _, anyway := range []bool{false, true} {
		t.Run(fmt.Sprintf("354anyway=%v", anyway), func(t *testing.T) {
			w := newWorld(t)
			ip := w.net.addr()
			rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true, dataAnyway: anyway, rcptReply: func(to string) string {
				if strings.HasPrefix(to, "no") {
					return "550 5.1.1 no such user"
				}
				return ""
			}})
			w.zone.add(t, "refused.test. A "+ip)
			id1 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("no1@refused.test", "no2@refused.test")...)
			id2 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("yes@refused.test")...)
			w.engine(w.config()).RunOnce(bg)

			got := rcv.snapshot()
			if got.notPipelined || len(got.groups) != 2 || got.groups[1][0] != "RSET" {
				t.Fatalf("groups %q", got.groups)
			}
			wantDots := 0
			if anyway {
				wantDots = 1
			}
			if got.loneDots != wantDots || got.cutData != 0 {
				t.Errorf("single dots %d, cut data %d; want %d, 0", got.loneDots, got.cutData, wantDots)
			}
			if got.accepts != 1 || len(got.msgs) != 1 || strings.Join(got.msgs[0].Rcpts, ",") != "yes@refused.test" {
				t.Fatalf("%d connections, messages %+v", got.accepts, got.msgs)
			}
			if _, ok := w.item(id1); ok {
				t.Error("refused item still queued")
			}
			if _, ok := w.item(id2); ok {
				t.Error("second item not delivered")
			}
			if ds := w.dsns(); len(ds) != 1 || len(parseDSN(t, ds[0]).Recipients) != 2 {
				t.Errorf("want one DSN naming both refused recipients, got %d", len(ds))
			}
		})
	}
}

// Without PIPELINING, one command at a time: nothing before the reply to
// the command before, no RCPT after a refused MAIL, no DATA when no RCPT
// was accepted.
func TestNoPipeliningOneCommandAtATime(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: []string{"8BITMIME", "ENHANCEDSTATUSCODES"},
		mailReply: func(from string) string {
			if from == "refused@sender.test" {
				return "451 4.3.0 try later"
			}
			return ""
		},
		rcptReply: func(to string) string {
			if to == "no@np.test" {
				return "550 5.1.1 no such user"
			}
			return ""
		}})
	w.zone.add(t, "np.test. A "+ip)
	id1 := w.enqueueBody("refused@sender.test", nil, plainBody, rr("x@np.test", "y@np.test")...)
	id2 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("no@np.test")...)
	id3 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("ok@np.test")...)
	w.engine(w.config()).RunOnce(bg)

	got := rcv.snapshot()
	want := []string{"EHLO out.sender.test",
		"MAIL FROM:<refused@sender.test> BODY=8BITMIME",
		"RSET", "MAIL FROM:<alice@sender.test> BODY=8BITMIME", "RCPT TO:<no@np.test>",
		"RSET", "MAIL FROM:<alice@sender.test> BODY=8BITMIME", "RCPT TO:<ok@np.test>", "DATA",
		"QUIT"}
	if !slices.Equal(got.cmds, want) {
		t.Fatalf("commands\n got %q\nwant %q", got.cmds, want)
	}
	if len(got.sentAhead) != 0 {
		t.Errorf("sent before the previous reply: %q", got.sentAhead)
	}
	rs := w.rcptState(id1)
	if r := rs["x@np.test"]; r.State != mailstore.RcptPending || r.LastReply != "451 4.3.0 try later" || rs["y@np.test"].LastReply != r.LastReply {
		t.Errorf("refused MAIL: %+v", rs)
	}
	if _, ok := w.item(id2); ok {
		t.Error("item with a refused recipient still queued")
	}
	if _, ok := w.item(id3); ok || len(got.msgs) != 1 || got.msgs[0].Data != plainBody {
		t.Errorf("third item: queued %v, messages %+v", ok, got.msgs)
	}
}

// 421 in the middle of a group: the server is closing the channel; every
// recipient of the transaction, and of the items after it on the
// connection, stays pending with that reply, and nothing is delivered.
func TestPipelined421MidGroup(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true, rcptReply: func(to string) string {
		if to == "b@closing2.test" {
			return "421 4.3.2 shutting down"
		}
		return ""
	}})
	w.zone.add(t, "closing2.test. A "+ip)
	id1 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("a@closing2.test", "b@closing2.test", "c@closing2.test")...)
	id2 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("d@closing2.test")...)
	w.engine(w.config()).RunOnce(bg)

	got := rcv.snapshot()
	if len(got.msgs) != 0 || got.loneDots != 0 {
		t.Fatalf("delivered after 421: %+v", got.msgs)
	}
	for _, id := range []int64{id1, id2} {
		for addr, r := range w.rcptState(id) {
			if r.State != mailstore.RcptPending || r.LastReply != "421 4.3.2 shutting down" || r.LastCode != "4.3.2" {
				t.Errorf("%s: %+v", addr, r)
			}
		}
	}
	if len(w.dsns()) != 0 {
		t.Error("DSN after 421")
	}
}

// A server that refuses MAIL, or every RCPT, in a pipelined group and
// then closes: the refusals are the transaction's outcome; the items
// after it wait for another connection.
func TestPipelinedRefusedThenClosed(t *testing.T) {
	for _, c := range []struct {
		name string
		rcv  *rawReceiver
		diag string
	}{
		{"MAIL", &rawReceiver{mailReply: func(string) string { return "550 5.7.1 go away" },
			rcptReply: func(string) string { return "421 4.7.0 closing" }}, "smtp; 550 5.7.1 go away"},
		{"RCPT", &rawReceiver{rcptReply: func(string) string { return "550 5.1.1 no such user" },
			dataReply: "421 4.7.0 closing"}, "smtp; 550 5.1.1 no such user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			ip := w.net.addr()
			c.rcv.ext, c.rcv.hold = pipeExt, true
			startRaw(t, w.net, ip, c.rcv)
			w.zone.add(t, "goaway.test. A "+ip)
			id1 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("a@goaway.test", "b@goaway.test")...)
			id2 := w.enqueueBody("alice@sender.test", nil, plainBody, rr("c@goaway.test")...)
			w.engine(w.config()).RunOnce(bg)
			if _, ok := w.item(id1); ok {
				t.Error("refused item still queued")
			}
			ds := w.dsns()
			if len(ds) != 1 {
				t.Fatalf("%d DSNs", len(ds))
			}
			if p := parseDSN(t, ds[0]); len(p.Recipients) != 2 || p.Recipients[1].Get("Diagnostic-Code") != c.diag {
				t.Errorf("DSN recipients %v", p.Recipients)
			}
			if r := w.rcptState(id2)["c@goaway.test"]; r.State != mailstore.RcptPending || r.LastReply != "421 4.7.0 closing" {
				t.Errorf("second item %+v", r)
			}
		})
	}
}

// RFC 6152 §3: 8-bit mail never goes to a receiver without 8BITMIME; it
// fails with 5.6.3 and a clear reason, before any MAIL. A 7-bit body goes,
// whatever its BODY= said, without BODY=; to a receiver with 8BITMIME the
// 8-bit body goes intact with BODY=8BITMIME.
func Test8BitMIME(t *testing.T) {
	w := newWorld(t)
	ip7, ip8 := w.net.addr(), w.net.addr()
	old := startRaw(t, w.net, ip7, &rawReceiver{ext: []string{"PIPELINING", "ENHANCEDSTATUSCODES"}, hold: true})
	modern := startRaw(t, w.net, ip8, &rawReceiver{ext: pipeExt, hold: true})
	w.zone.add(t, "old.test. A "+ip7, "modern.test. A "+ip8)
	body8 := "From: <alice@sender.test>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nDéjà vu.\r\n"
	id8 := w.enqueueBody("alice@sender.test", map[string]string{"BODY": "8BITMIME"}, body8, rr("a@old.test")...)
	id7 := w.enqueueBody("alice@sender.test", map[string]string{"BODY": "8BITMIME"}, plainBody, rr("b@old.test")...)
	idm := w.enqueueBody("alice@sender.test", nil, body8, rr("c@modern.test")...)
	w.engine(w.config()).RunOnce(bg)

	for _, id := range []int64{id8, id7, idm} {
		if _, ok := w.item(id); ok {
			t.Errorf("item %d still queued", id)
		}
	}
	o := old.snapshot()
	if len(o.groups) != 1 || o.groups[0][0] != "MAIL FROM:<alice@sender.test>" || o.groups[0][1] != "RCPT TO:<b@old.test>" {
		t.Fatalf("old receiver got groups %q", o.groups)
	}
	if len(o.msgs) != 1 || o.msgs[0].Data != plainBody {
		t.Fatalf("old receiver got %+v", o.msgs)
	}
	m := modern.snapshot()
	if len(m.groups) != 1 || !strings.Contains(m.groups[0][0], " BODY=8BITMIME") || len(m.msgs) != 1 || m.msgs[0].Data != body8 {
		t.Fatalf("modern receiver got %q %+v", m.groups, m.msgs)
	}
	ds := w.dsns()
	if len(ds) != 1 {
		t.Fatalf("%d DSNs", len(ds))
	}
	r := parseDSN(t, ds[0]).Recipients
	if len(r) != 1 || r[0].Get("Final-Recipient") != "rfc822; a@old.test" || r[0].Get("Status") != "5.6.3" ||
		!strings.Contains(r[0].Get("Diagnostic-Code"), "8BITMIME") || r[0].Get("Remote-MTA") != "dns; old.test" {
		t.Errorf("DSN %v", r)
	}
}

// failingStore fails reading one item's body after some octets.
type failingStore struct {
	Store
	id    int64
	after int
}

func (f *failingStore) OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error) {
	rc, err := f.Store.OpenQueued(ctx, id)
	if err != nil || id != f.id {
		return rc, err
	}
	return io.NopCloser(io.MultiReader(io.LimitReader(rc, int64(f.after)), errReader{})), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// A body that cannot be read to its end never gets its final dot: the
// connection is dropped in the middle of the data, and the recipients stay
// pending with a local reason.
func TestBodyReadFailureNoFinalDot(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true})
	w.zone.add(t, "cut.test. A "+ip)
	id := w.enqueueBody("alice@sender.test", nil, plainBody+strings.Repeat("line of text\r\n", 5000), rr("a@cut.test")...)
	w.store = &failingStore{Store: w.mem, id: id, after: 40000}
	w.engine(w.config()).RunOnce(bg)

	waitFor(t, "the receiver to see the connection end", func() bool { return rcv.snapshot().cutData == 1 })
	got := rcv.snapshot()
	if len(got.msgs) != 0 || got.loneDots != 0 {
		t.Fatalf("a message was completed: %+v", got.msgs)
	}
	r := w.rcptState(id)["a@cut.test"]
	if r.State != mailstore.RcptPending || r.LastCode != "4.3.0" || !strings.Contains(r.LastReply, "disk on fire") {
		t.Errorf("recipient %+v", r)
	}
}

// AUTH LOGIN to a smarthost that offers only LOGIN, after STARTTLS; the
// commands after it pipelined.
func TestSmarthostAuthLogin(t *testing.T) {
	w := newWorld(t)
	ip := w.net.addr()
	cert := w.ca.issue(t, "loginrelay.test")
	rcv := startRaw(t, w.net, ip, &rawReceiver{ext: pipeExt, hold: true, auth: "relayuser:relaypass",
		tls: &tls.Config{Certificates: []tls.Certificate{*cert}}})
	w.zone.add(t, "loginrelay.test. A "+ip)
	id := w.enqueueBody("alice@sender.test", nil, plainBody, rr("a@one.test", "b@two.test")...)
	w.engine(w.relayConfig("loginrelay.test", true)).RunOnce(bg)
	got := rcv.snapshot()
	if got.authed != "relayuser:relaypass" || len(got.msgs) != 1 || len(got.groups) != 1 || len(got.groups[0]) != 4 {
		t.Fatalf("relay: auth %q, groups %q, messages %+v", got.authed, got.groups, got.msgs)
	}
	if _, ok := w.item(id); ok {
		t.Error("still queued")
	}
}

// readReply: the grammar of RFC 5321 §4.2 and our bounds.
func TestReadReply(t *testing.T) {
	long := "250 " + strings.Repeat("x", maxReplyLine)
	many := strings.Repeat("250-x\r\n", maxReplyLines) + "250 x\r\n"
	for _, c := range []struct {
		in    string
		code  int
		lines string
		err   bool
	}{
		{"250 ok\r\n", 250, "ok", false},
		{"250\r\n", 250, "", false},
		{"354 go\n", 354, "go", false},
		{"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 250, "mx|PIPELINING|8BITMIME", false},
		{"550-5.1.1 a\r\n550 5.1.1 b\r\n", 550, "5.1.1 a|5.1.1 b", false},
		{"250-a\r\n251 b\r\n", 0, "", true}, // codes differ
		{"250_ok\r\n", 0, "", true},         // no separator
		{"199 low\r\n", 0, "", true},        // out of grammar
		{"260 high\r\n", 0, "", true},       // second digit above 5
		{"25 short\r\n", 0, "", true},       // short code
		{"250-a\r\n", 0, "", true},          // cut short
		{long + "\r\n", 0, "", true},        // line too long
		{many, 0, "", true},                 // too many lines
		{"", 0, "", true},                   // nothing
		{"220 ok", 0, "", true},             // no line end
		{"\r\n", 0, "", true},               // empty line
	} {
		rp, err := readReply(bufio.NewReaderSize(strings.NewReader(c.in), maxReplyLine))
		if (err != nil) != c.err {
			t.Errorf("%q: err %v", clip(c.in), err)
			continue
		}
		if err == nil && (rp.code != c.code || strings.Join(rp.lines, "|") != c.lines) {
			t.Errorf("%q: %d %q", clip(c.in), rp.code, rp.lines)
		}
	}
	// Replies in a row, as a pipelined group brings them.
	br := bufio.NewReaderSize(strings.NewReader("250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n"), maxReplyLine)
	for _, want := range []int{250, 550, 354} {
		if rp, err := readReply(br); err != nil || rp.code != want {
			t.Fatalf("want %d, got %+v %v", want, rp, err)
		}
	}
}
