package pop3d_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/internal/pgtest"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
)

// readCall is one ReadMessages call seen by recordingStore.
type readCall struct {
	first    uint32 // the first UID asked for
	uids     int
	maxTotal int64
	read     int64 // octets returned whole
}

// recordingStore counts the store reads a session makes: ReadMessages
// (read-ahead batches) and OpenMessage (streamed messages).
type recordingStore struct {
	mailstore.Store
	opens   atomic.Int64
	mu      sync.Mutex
	started []uint32 // the first UID of every ReadMessages call, at its start
	reads   []readCall
}

func (r *recordingStore) OpenMessage(ctx context.Context, accountID, mailboxID int64, uid uint32, offset, length int64) (io.ReadCloser, error) {
	r.opens.Add(1)
	return r.Store.OpenMessage(ctx, accountID, mailboxID, uid, offset, length)
}

func (r *recordingStore) ReadMessages(ctx context.Context, accountID, mailboxID int64, uids []uint32, maxTotal int64, buf []byte) ([]mailstore.MessageOctets, error) {
	r.mu.Lock()
	r.started = append(r.started, uids[0])
	r.mu.Unlock()
	got, err := r.Store.ReadMessages(ctx, accountID, mailboxID, uids, maxTotal, buf)
	c := readCall{uids: len(uids), maxTotal: maxTotal}
	if len(uids) > 0 {
		c.first = uids[0]
	}
	for _, m := range got {
		c.read += int64(len(m.Data))
	}
	r.mu.Lock()
	r.reads = append(r.reads, c)
	r.mu.Unlock()
	return got, err
}

// readFrom reports whether a read starting at uid has started, and
// whether it has returned.
func (r *recordingStore) readFrom(uid uint32) (started, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range r.started {
		started = started || u == uid
	}
	for _, c := range r.reads {
		done = done || c.first == uid
	}
	return started, done
}

func (r *recordingStore) calls() []readCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]readCall(nil), r.reads...)
}

// wireForm is what a client holds after RETR of a stored message, with the
// byte-stuffing undone: every line ending CRLF (bare CR and LF become
// CRLF) and a final CRLF when the message lacks one (see doc.go, Sizes).
func wireForm(stored string) string {
	var b strings.Builder
	line := 0 // octets on the current line
	for i := 0; i < len(stored); i++ {
		switch c := stored[i]; c {
		case '\r':
			if i+1 < len(stored) && stored[i+1] == '\n' {
				i++
			}
			b.WriteString("\r\n")
			line = 0
		case '\n':
			b.WriteString("\r\n")
			line = 0
		default:
			b.WriteByte(c)
			line++
		}
	}
	if line > 0 {
		b.WriteString("\r\n")
	}
	return b.String()
}

// dotted is a body of n lines, some starting with dots, with CRLF endings.
func dotted(tag string, n int) string {
	var b strings.Builder
	for i := range n {
		switch i % 7 {
		case 0:
			fmt.Fprintf(&b, ".%s line %d starts with a dot\r\n", tag, i)
		case 3:
			b.WriteString(".\r\n")
		default:
			fmt.Fprintf(&b, "%s line %d of the body, some text to fill it up to a realistic length\r\n", tag, i)
		}
	}
	return b.String()
}

// retrAll sends RETR 1..n in one write (RFC 2449 §6.6) and checks every
// message octet for octet against want (the stored messages), and each
// "+OK" size against its octets.
func retrAll(t *testing.T, c *client, want []string) {
	t.Helper()
	cmds := make([]string, len(want))
	for i := range want {
		cmds[i] = fmt.Sprintf("RETR %d", i+1)
	}
	c.send(cmds...)
	for i, stored := range want {
		exp := wireForm(stored)
		if l := c.line(); l != fmt.Sprintf("+OK %d octets", len(exp)) {
			t.Fatalf("RETR %d: %q, want %d octets", i+1, l, len(exp))
		}
		if got := string(c.body()); got != exp {
			t.Fatalf("RETR %d: got %d octets, want %d (first difference at %d)", i+1, len(got), len(exp), firstDifference(got, exp))
		}
	}
}

func firstDifference(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestPipelinedMixedDownload: a maildrop of small SMTP messages (with
// dot-stuffed lines), IMAP-appended ones with bare LF, bare CR and no final
// line ending, an empty one, and large ones stored in several chunks (one
// with bare LFs) is downloaded with every RETR in one write, twice; every
// octet arrives, and the small messages come in a few batched store reads
// while each large one is streamed.
func TestPipelinedMixedDownload(t *testing.T) {
	e := newEnv(t)
	var want []string
	large := 0
	for i := range 150 {
		var m string
		switch {
		case i == 5:
			m = "Subject: bare LF\n\n.starts with a dot\nline\n.\nend\n"
			e.appendRaw(m)
		case i == 6:
			m = "Subject: bare CR\r\r.dot\rx\r"
			e.appendRaw(m)
		case i == 7:
			m = "Subject: no final line ending\r\n\r\n.last"
			e.appendRaw(m)
		case i == 8:
			m = ""
			e.appendRaw(m)
		case i == 40 || i == 120:
			m = testMsg(fmt.Sprint("large", i), dotted(fmt.Sprint("L", i), 9000)) // ~700 KB: 3 chunks
			e.deliver(m)
			large++
		case i == 90:
			m = "Subject: large with bare LF\n\n" + strings.Repeat(".a line of a large message\n", 12000) + "no final newline"
			e.appendRaw(m)
			large++
		case i == 100:
			m = testMsg("medium", dotted("M", 2500)) // ~190 KB: read ahead, 1 chunk
			e.deliver(m)
		default:
			m = testMsg(fmt.Sprint("small", i), dotted(fmt.Sprint("s", i), 20+i%50))
			e.deliver(m)
		}
		want = append(want, m)
	}
	st := &recordingStore{Store: e.st}
	n := e.start(st, nil)
	for round := range 2 {
		c := dial(t, n.addr)
		c.login()
		before, opens := len(st.calls()), st.opens.Load()
		retrAll(t, c, want)
		c.ok("QUIT")
		reads := st.calls()[before:]
		if len(reads) == 0 || len(reads) > len(want)/16 {
			t.Errorf("round %d: %d store reads for %d messages, want a few batches", round, len(reads), len(want))
		}
		for _, r := range reads {
			if r.uids > pop3d.AheadMessages || r.read > pop3d.AheadBytes || r.maxTotal > pop3d.AheadBytes {
				t.Errorf("round %d: a read of %d messages, %d octets (bound %d): over the bounds", round, r.uids, r.read, r.maxTotal)
			}
		}
		if got := st.opens.Load() - opens; got != int64(large) {
			t.Errorf("round %d: %d messages streamed, want the %d large ones", round, got, large)
		}
	}
}

// TestReadAheadBound: a maildrop of messages whose total is several times
// the read-ahead bound is read in batches that each stay within it, and
// every octet arrives, for a pipelining client and a lock-step one.
func TestReadAheadBound(t *testing.T) {
	e := newEnv(t)
	var want []string
	var total int64
	for i := range 40 {
		m := testMsg(fmt.Sprint("bound", i), dotted(fmt.Sprint("b", i), 1700)) // ~125 KB
		e.deliver(m)
		want = append(want, m)
		total += int64(len(m))
	}
	if total < 3*pop3d.AheadBytes {
		t.Fatalf("maildrop of %d octets: too small for the test", total)
	}
	st := &recordingStore{Store: e.st}
	n := e.start(st, nil)
	check := func(what string, reads []readCall) {
		t.Helper()
		var read int64
		for _, r := range reads {
			read += r.read
			if r.read > pop3d.AheadBytes || r.maxTotal > pop3d.AheadBytes {
				t.Errorf("%s: a read of %d octets (bound %d), read-ahead bound %d", what, r.read, r.maxTotal, pop3d.AheadBytes)
			}
		}
		if read < total || len(reads) < int(total/pop3d.AheadBytes) {
			t.Errorf("%s: %d reads of %d octets in all, for %d octets", what, len(reads), read, total)
		}
	}

	c := dial(t, n.addr)
	c.login()
	retrAll(t, c, want)
	c.ok("QUIT")
	check("pipelined", st.calls())

	c = loginWhenFree(t, n.addr)
	before := len(st.calls())
	for i, m := range want {
		c.ok(fmt.Sprint("RETR ", i+1))
		if got := string(c.body()); got != wireForm(m) {
			t.Fatalf("lock-step RETR %d: got %d octets, want %d", i+1, len(got), len(wireForm(m)))
		}
	}
	c.ok("QUIT")
	check("lock-step", st.calls()[before:])
	if st.opens.Load() != 0 {
		t.Errorf("%d messages streamed, want none (all are small enough to read ahead)", st.opens.Load())
	}
}

// TestTopFromReadAhead: TOP of a message read ahead (by an earlier RETR)
// is served from memory, TOP of one that is not is streamed from the
// store; both agree with the stored message, bare LFs and stuffing
// included, and TOP never reads ahead itself.
func TestTopFromReadAhead(t *testing.T) {
	e := newEnv(t)
	msgs := []string{
		testMsg("one", "1\r\n"),
		"Subject: two\nX-Bare: lf\n\n.first\nsecond\n.\nthird\n",
		testMsg("three", ".a\r\nb\r\n.c\r\n"),
	}
	e.deliver(msgs[0])
	e.appendRaw(msgs[1])
	e.deliver(msgs[2])
	st := &recordingStore{Store: e.st}
	n := e.start(st, nil)
	c := dial(t, n.addr)
	c.login()
	c.ok("RETR 1") // reads messages 1 and 2 (a client that does not pipeline)
	c.body()
	if len(st.calls()) != 1 {
		t.Fatalf("RETR 1: %d store reads", len(st.calls()))
	}
	top := func(msg, lines int, want string) {
		t.Helper()
		c.ok(fmt.Sprintf("TOP %d %d", msg, lines))
		if got := string(c.body()); got != want {
			t.Errorf("TOP %d %d: got %q, want %q", msg, lines, got, want)
		}
	}
	top(2, 0, "Subject: two\r\nX-Bare: lf\r\n\r\n")
	top(2, 2, "Subject: two\r\nX-Bare: lf\r\n\r\n.first\r\nsecond\r\n")
	top(2, 100, wireForm(msgs[1]))
	if opens := st.opens.Load(); opens != 0 {
		t.Errorf("TOP of a message read ahead opened %d messages", opens)
	}
	top(3, 1, "From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: three\r\nMessage-ID: <three@example.net>\r\n\r\n.a\r\n")
	if opens := st.opens.Load(); opens != 1 {
		t.Errorf("TOP of a message not read ahead opened %d messages, want 1", opens)
	}
	if len(st.calls()) != 1 {
		t.Errorf("TOP read ahead: %d store reads", len(st.calls()))
	}
	// RETR 2 is still served from the read-ahead.
	c.ok("RETR 2")
	if got := string(c.body()); got != wireForm(msgs[1]) {
		t.Errorf("RETR 2 after TOP: %q", got)
	}
	if len(st.calls()) != 1 || st.opens.Load() != 1 {
		t.Errorf("RETR 2: %d reads, %d opens", len(st.calls()), st.opens.Load())
	}
}

// awaitNotified returns once every subscriber of alice on node has been
// told of changes committed through other before the call: a change to
// fence (another account) is committed through other after them and its
// notification awaited on node, twice. Notifications travel in order
// through one listener per node, and the second fence is committed after
// the first arrived, so after it everything committed before the call has
// been fanned out on node.
func awaitNotified(t *testing.T, node, other mailstore.Store, fence mailstore.Account) {
	t.Helper()
	box, err := other.GetMailbox(context.Background(), fence.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ch, cancel := node.Subscribe(fence.ID)
		if _, err := other.Append(context.Background(), fence.ID, box.ID, mailstore.Flags{}, time.Now(), strings.NewReader("Subject: fence\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("no notification of the fence")
		}
		cancel()
	}
}

// TestExpungedAfterReadAhead: another session (IMAP, on another node)
// expunges messages after this session read them ahead: once the change is
// notified, RETR answers "-ERR ... removed" for them as it does for any
// message expunged during the session, and every other message arrives
// whole. The client fetches in lock-step, so the read-ahead grows and
// reads the next batch in the background while the client reads; messages
// are expunged from the batch being sent (2 after RETR 1, 60 after RETR
// 50) and, once, from the batch read in the background just before the
// client gets to it.
func TestExpungedAfterReadAhead(t *testing.T) {
	e := newEnv(t)
	fence := e.addAccount("fence@example.org", testPass)
	var want []string
	var uids []uint32
	for i := range 200 {
		m := testMsg(fmt.Sprint("x", i), dotted(fmt.Sprint("x", i), 10))
		u := e.deliver(m)
		uids = append(uids, u)
		want = append(want, m)
	}
	st := &recordingStore{Store: e.st}
	n := e.start(st, nil)
	imap := pgtest.OpenStore(t, e.url)
	gone := map[int]bool{}
	expunge := func(k int) {
		t.Helper()
		if _, err := imap.Expunge(context.Background(), e.acc.ID, e.inbox.ID, mailstore.UIDs(uids[k-1]), false); err != nil {
			t.Fatal(err)
		}
		awaitNotified(t, e.st, imap, fence)
		gone[k] = true
	}
	c := dial(t, n.addr)
	c.login()
	background := 0 // message number where a background read starts
	for k := 1; k <= len(want); k++ {
		switch k {
		case 2, 60:
			expunge(k)
		}
		r := c.cmd(fmt.Sprint("RETR ", k))
		if gone[k] {
			if want := fmt.Sprintf("-ERR Message %d was removed by another client (e.g. IMAP) during this session", k); r != want {
				t.Fatalf("RETR %d: %q, want %q", k, r, want)
			}
			continue
		}
		if !strings.HasPrefix(r, "+OK") {
			t.Fatalf("RETR %d: %q", k, r)
		}
		if got := string(c.body()); got != wireForm(want[k-1]) {
			t.Fatalf("RETR %d: wrong octets", k)
		}
		// A read starting at the next message, which the client has not
		// asked for: the read-ahead reads it in the background. Once it
		// is done, expunge its second message before the client gets
		// there.
		if background != 0 || k+2 > len(want) {
			continue
		}
		if started, _ := st.readFrom(uids[k]); started {
			waitFor(t, "the read in the background", func() bool { _, done := st.readFrom(uids[k]); return done })
			background = k + 1
			expunge(k + 2)
		}
	}
	if background == 0 {
		t.Errorf("the read-ahead never read a batch in the background for a lock-step download")
	}
	c.run(`
		C: DELE 60
		S: +OK Message 60 deleted
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (1 messages deleted)
	`)
	if got, limit := len(st.calls()), 200/8; got > limit {
		t.Errorf("%d store reads for 200 lock-step RETRs, want at most %d", got, limit)
	}
}

// TestDeleThenRetr: a message marked deleted cannot be retrieved, whether
// it was read ahead or not; after RSET it can again, whole; pipelined RETRs
// around deleted messages get each message right.
func TestDeleThenRetr(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 8 {
		m := testMsg(fmt.Sprint("d", i), dotted(fmt.Sprint("d", i), 5))
		e.deliver(m)
		want = append(want, m)
	}
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.ok("RETR 1") // reads message 2 ahead
	c.body()
	c.run(`
		C: DELE 2
		S: +OK Message 2 deleted
		C: RETR 2
		S: -ERR Message 2 is already deleted
		C: TOP 2 0
		S: -ERR Message 2 is already deleted
		C: DELE 4
		S: +OK Message 4 deleted
		C: RETR 3
		C: RETR 4
		C: RETR 5
		S: +OK *
	`)
	if got := string(c.body()); got != wireForm(want[2]) {
		t.Fatalf("RETR 3: %q", got)
	}
	c.run(`
		S: -ERR Message 4 is already deleted
		S: +OK *
	`)
	if got := string(c.body()); got != wireForm(want[4]) {
		t.Fatalf("RETR 5: %q", got)
	}
	c.ok("RSET")
	for _, num := range []int{2, 4} {
		c.ok(fmt.Sprint("RETR ", num))
		if got := string(c.body()); got != wireForm(want[num-1]) {
			t.Fatalf("RETR %d after RSET: %q", num, got)
		}
	}
	c.run(`
		C: DELE 6
		S: +OK Message 6 deleted
		C: QUIT
		S: +OK pop.example.org POP3 server signing off (1 messages deleted)
	`)
	if got := len(e.messages()); got != 7 {
		t.Fatalf("%d messages left, want 7", got)
	}
}

// corrupt cuts the stored octets of a message short in the database, as
// damage would (or a content removed while a reader streams it).
func corrupt(t *testing.T, e *env, uid uint32, seq int) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tag, err := conn.Exec(ctx, `UPDATE chunks SET data = substring(data FROM 1 FOR 10)
		WHERE seq = $3 AND content_id = (SELECT content_id FROM messages WHERE mailbox_id = $1 AND uid = $2)`,
		e.inbox.ID, int64(uid), seq)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("corrupt: %v, %d rows", err, tag.RowsAffected())
	}
}

// TestNothingCutShort: a message whose stored octets cannot be read whole
// is never sent as if complete. One read ahead fails before its "+OK"
// (an internal error, the session goes on); one streamed in chunks fails
// after its "+OK" and some octets: the connection is closed without the
// terminating line, so the client cannot take it for a whole message.
func TestNothingCutShort(t *testing.T) {
	e := newEnv(t)
	small := e.deliver(testMsg("small", "a small message\r\n"))
	e.deliver(testMsg("fine", "fine\r\n"))
	big := e.deliver(testMsg("big", dotted("big", 9000)))
	corrupt(t, e, small, 0)
	corrupt(t, e, big, 1)
	n := e.start(nil, nil)
	c := dial(t, n.addr)
	c.login()
	c.run(`
		C: RETR 1
		S: -ERR [SYS/TEMP] Internal server error, try again later
		C: RETR 2
		S: +OK *
	`)
	if got := string(c.body()); got != wireForm(testMsg("fine", "fine\r\n")) {
		t.Fatalf("RETR 2: %q", got)
	}
	c.send("RETR 3")
	if l := c.line(); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("RETR 3: %q", l)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatalf("RETR 3: %v", err)
	}
	if len(rest) == 0 || strings.HasSuffix(string(rest), "\r\n.\r\n") {
		t.Fatalf("RETR 3 of a damaged message: %d octets, ending %q: want some and no terminator", len(rest), rest[max(0, len(rest)-10):])
	}
}

// TestReadAheadMemoryShared: sessions downloading at once share the
// server's read-ahead budget (Config.ReadAheadMemory). With a budget of
// two small buffers, four pipelined downloads each read 64 KiB at a time
// at most, all of them complete with every octet, and the budget is whole
// again once they have quit.
func TestReadAheadMemoryShared(t *testing.T) {
	e := newEnv(t)
	const clients = 4
	var accs []mailstore.Account
	for i := range clients {
		accs = append(accs, e.addAccount(fmt.Sprintf("shared%d@example.org", i), testPass))
	}
	var want []string
	for i := range 30 {
		m := testMsg(fmt.Sprint("shared", i), dotted(fmt.Sprint("sh", i), 250)) // ~20 KB
		want = append(want, m)
		var rcpts []mailstore.Recipient
		for _, a := range accs {
			rcpts = append(rcpts, mailstore.Recipient{AccountID: a.ID})
		}
		if _, err := e.st.Deliver(context.Background(), &mailstore.Delivery{MailFrom: "bob@example.net",
			Recipients: rcpts, Body: strings.NewReader(m)}); err != nil {
			t.Fatal(err)
		}
	}
	st := &recordingStore{Store: e.st}
	n := e.start(st, func(c *pop3d.Config) { c.ReadAheadMemory = 128 << 10 })
	var wg sync.WaitGroup
	for _, a := range accs {
		wg.Go(func() {
			c := dial(t, n.addr)
			c.ok("USER " + a.Address)
			c.ok("PASS " + testPass)
			retrAll(t, c, want)
			c.ok("QUIT")
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	reads := st.calls()
	if len(reads) < clients*2 {
		t.Errorf("%d store reads for %d downloads", len(reads), clients)
	}
	for _, r := range reads {
		if r.maxTotal > 64<<10 || r.read > 64<<10 {
			t.Errorf("a read of %d octets (bound %d) with a budget of 128 KiB for %d sessions", r.read, r.maxTotal, clients)
		}
	}
	waitFor(t, "the read-ahead budget to be whole again", func() bool { return n.srv.ReadAheadInUse() == 0 })
}
