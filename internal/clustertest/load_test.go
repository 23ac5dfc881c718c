package clustertest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// lineClient is a line-based client whose failures are errors, not test
// failures: load generators keep going through outages.
type lineClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialLines(ip, addr string) (*lineClient, error) {
	c, err := dialFrom(ip, addr)
	if err != nil {
		return nil, err
	}
	return &lineClient{c: c, r: bufio.NewReader(c)}, nil
}

func (l *lineClient) send(s string) error {
	_ = l.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := l.c.Write([]byte(s + "\r\n"))
	return err
}

func (l *lineClient) line(d time.Duration) (string, error) {
	_ = l.c.SetReadDeadline(time.Now().Add(d))
	s, err := l.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// until reads lines until one starts with prefix (returned with the lines
// before it).
func (l *lineClient) until(prefix string, d time.Duration) (string, []string, error) {
	deadline := time.Now().Add(d)
	var before []string
	for {
		s, err := l.line(time.Until(deadline))
		if err != nil {
			return "", before, fmt.Errorf("waiting for %q: %w (after %q)", prefix, err, before)
		}
		if strings.HasPrefix(s, prefix) {
			return s, before, nil
		}
		before = append(before, s)
	}
}

// reply reads an SMTP reply (all its lines) and returns the last.
func (l *lineClient) reply() (string, error) {
	for {
		s, err := l.line(30 * time.Second)
		if err != nil {
			return "", err
		}
		if len(s) < 4 || s[3] != '-' {
			return s, nil
		}
	}
}

func (l *lineClient) close() { l.c.Close() }

// loadErr is what a load client saw go wrong: temporary (4xx, NO
// [UNAVAILABLE], BYE, a broken connection) or permanent (perm), which no
// outage, kill or restart may cause.
type loadErr struct {
	perm bool
	msg  string
}

func (e *loadErr) Error() string { return e.msg }

func temp(format string, a ...any) error { return &loadErr{msg: fmt.Sprintf(format, a...)} }
func perm(format string, a ...any) error { return &loadErr{perm: true, msg: fmt.Sprintf(format, a...)} }

// smtpLoad delivers a stream of messages, each with its own Message-ID,
// never resent: a message without a 250 after its final dot is
// unacknowledged and may or may not be stored, but never twice.
type smtpLoad struct {
	targets func(worker, attempt int) string // address to connect to
	ip      string
	prefix  string

	mu        sync.Mutex
	acked     map[string]time.Time
	sent      int
	tempErrs  int
	permErrs  []string
	lastTemp  string
	seq       atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
	connected atomic.Int64
}

func startSMTPLoad(workers int, ip, prefix string, targets func(worker, attempt int) string) *smtpLoad {
	s := &smtpLoad{targets: targets, ip: ip, prefix: prefix, acked: map[string]time.Time{}, stop: make(chan struct{})}
	for w := range workers {
		s.wg.Add(1)
		go s.run(w)
	}
	return s
}

func (s *smtpLoad) halt() {
	close(s.stop)
	s.wg.Wait()
}

func (s *smtpLoad) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *smtpLoad) run(w int) {
	defer s.wg.Done()
	attempt := 0
	var c *lineClient
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for !s.stopped() {
		if c == nil {
			attempt++
			var err error
			c, err = s.connect(w, attempt)
			if err != nil {
				s.fail(err)
				c = nil
				time.Sleep(100 * time.Millisecond)
				continue
			}
			s.connected.Add(1)
		}
		id := fmt.Sprintf("%s-%d@load.test", s.prefix, s.seq.Add(1))
		err := s.deliver(c, id)
		if err != nil {
			s.fail(err)
			c.close()
			c = nil
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.acked[id] = time.Now()
		s.mu.Unlock()
	}
}

func (s *smtpLoad) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := err.(*loadErr); ok && e.perm {
		s.permErrs = append(s.permErrs, e.msg)
		return
	}
	s.tempErrs++
	s.lastTemp = err.Error()
}

func (s *smtpLoad) connect(w, attempt int) (*lineClient, error) {
	c, err := dialLines(s.ip, s.targets(w, attempt))
	if err != nil {
		return nil, temp("connect: %v", err)
	}
	if err := expectCode(c, "greeting", "220"); err != nil {
		c.close()
		return nil, err
	}
	if err := c.send("EHLO load.test"); err != nil {
		c.close()
		return nil, temp("EHLO: %v", err)
	}
	if err := expectCode(c, "EHLO", "250"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// expectCode reads a reply: want is success, 4xx (and a broken
// connection) temporary, anything else permanent.
func expectCode(c *lineClient, what, want string) error {
	r, err := c.reply()
	if err != nil {
		return temp("%s: %v", what, err)
	}
	switch {
	case strings.HasPrefix(r, want):
		return nil
	case strings.HasPrefix(r, "4"):
		return temp("%s: %s", what, r)
	}
	return perm("%s: %s", what, r)
}

func (s *smtpLoad) deliver(c *lineClient, id string) error {
	s.mu.Lock()
	s.sent++
	s.mu.Unlock()
	steps := []struct{ cmd, want string }{
		{"MAIL FROM:<bob@load.test>", "250"},
		{"RCPT TO:<" + user + ">", "250"},
		{"DATA", "354"},
	}
	for _, st := range steps {
		if err := c.send(st.cmd); err != nil {
			return temp("%s: %v", st.cmd, err)
		}
		if err := expectCode(c, st.cmd, st.want); err != nil {
			return err // the caller hangs up and starts afresh
		}
	}
	body := "From: bob@load.test\r\nTo: " + user + "\r\nSubject: load " + id + "\r\nMessage-ID: <" + id + ">\r\n\r\nload\r\n."
	if err := c.send(body); err != nil {
		return temp("body: %v", err)
	}
	return expectCode(c, "end of data", "250")
}

func (s *smtpLoad) ackedIDs() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]time.Time, len(s.acked))
	for k, v := range s.acked {
		m[k] = v
	}
	return m
}

func (s *smtpLoad) summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("SMTP: %d sent, %d acknowledged, %d temporary errors, %d permanent errors (last temporary: %q)",
		s.sent, len(s.acked), s.tempErrs, len(s.permErrs), s.lastTemp)
}

// imapLoad marks unseen messages \Seen one at a time; every STORE that
// got OK is an acknowledged flag change that must not be lost.
type imapLoad struct {
	target func(worker, attempt int) string
	ip     string

	mu       sync.Mutex
	acked    map[uint32]bool
	ops      int
	tempErrs int
	permErrs []string
	lastTemp string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startIMAPLoad(workers int, ip string, target func(worker, attempt int) string) *imapLoad {
	l := &imapLoad{target: target, ip: ip, acked: map[uint32]bool{}, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go l.run(w)
	}
	return l
}

func (l *imapLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

func (l *imapLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *imapLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := err.(*loadErr); ok && e.perm {
		l.permErrs = append(l.permErrs, e.msg)
		return
	}
	l.tempErrs++
	l.lastTemp = err.Error()
}

// command sends a tagged command and reads to its completion: OK is
// success, NO [UNAVAILABLE]/BYE/a broken connection temporary, the rest
// permanent.
func command(c *lineClient, tag, cmd string) ([]string, error) {
	if err := c.send(tag + " " + cmd); err != nil {
		return nil, temp("%s: %v", cmd, err)
	}
	var lines []string
	for {
		s, err := c.line(30 * time.Second)
		if err != nil {
			return lines, temp("%s: %v", cmd, err)
		}
		if strings.HasPrefix(s, "* BYE") {
			return lines, temp("%s: %s", cmd, s)
		}
		if strings.HasPrefix(s, tag+" ") {
			switch {
			case strings.HasPrefix(s, tag+" OK"):
				return lines, nil
			case strings.Contains(s, "[UNAVAILABLE]"), strings.Contains(s, "[INUSE]"):
				return lines, temp("%s: %s", cmd, s)
			}
			return lines, perm("%s: %s", cmd, s)
		}
		lines = append(lines, s)
	}
}

func (l *imapLoad) connect(w, attempt int) (*lineClient, error) {
	c, err := dialLines(l.ip, l.target(w, attempt))
	if err != nil {
		return nil, temp("connect: %v", err)
	}
	g, err := c.line(10 * time.Second)
	if err != nil || !strings.HasPrefix(g, "* OK") {
		c.close()
		return nil, temp("greeting %q: %v", g, err)
	}
	for _, cmd := range []string{`LOGIN ` + user + ` "` + password + `"`, "SELECT INBOX"} {
		if _, err := command(c, "s", cmd); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (l *imapLoad) run(w int) {
	defer l.wg.Done()
	var c *lineClient
	attempt := 0
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for n := 0; !l.stopped(); n++ {
		if c == nil {
			attempt++
			var err error
			if c, err = l.connect(w, attempt); err != nil {
				l.fail(err)
				c = nil
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		uid, err := l.step(c, n)
		if err != nil {
			l.fail(err)
			c.close()
			c = nil
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if uid == 0 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		l.acked[uid] = true
		l.mu.Unlock()
	}
}

// step finds an unseen message and marks it \Seen; it returns the UID of
// the acknowledged change, 0 when nothing was unseen.
func (l *imapLoad) step(c *lineClient, n int) (uint32, error) {
	l.mu.Lock()
	l.ops++
	l.mu.Unlock()
	lines, err := command(c, fmt.Sprintf("q%d", n), "UID SEARCH UNSEEN")
	if err != nil {
		return 0, err
	}
	var uid uint64
	for _, s := range lines {
		if f := strings.Fields(s); len(f) > 2 && f[1] == "SEARCH" {
			uid, _ = strconv.ParseUint(f[2+n%(len(f)-2)], 10, 32)
		}
	}
	if uid == 0 {
		return 0, nil
	}
	l.mu.Lock()
	l.ops++
	l.mu.Unlock()
	if _, err := command(c, fmt.Sprintf("f%d", n), fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Seen)`, uid)); err != nil {
		return 0, err
	}
	return uint32(uid), nil
}

func (l *imapLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("IMAP: %d commands, %d acknowledged \\Seen changes, %d temporary errors, %d permanent errors (last temporary: %q)",
		l.ops, len(l.acked), l.tempErrs, len(l.permErrs), l.lastTemp)
}

// storedByMessageID counts the stored messages of every load Message-ID.
func storedByMessageID(t *testing.T, dbURL string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT trim(both '<>' from c.parsed->'envelope'->>'message_id'), count(*)
		FROM messages m JOIN contents c ON c.id = m.content_id GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var id *string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		if id != nil {
			got[*id] = n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkDeliveries fails the test unless every acknowledged message is
// stored exactly once and no message of the load is stored twice; it
// returns how many unacknowledged messages were stored anyway.
func checkDeliveries(t *testing.T, dbURL string, s *smtpLoad) (lost, unackedStored int) {
	t.Helper()
	stored := storedByMessageID(t, dbURL)
	acked := s.ackedIDs()
	for id := range acked {
		switch n := stored[id]; {
		case n == 0:
			lost++
			t.Errorf("acknowledged message %s is not stored", id)
		case n > 1:
			t.Errorf("acknowledged message %s is stored %d times", id, n)
		}
	}
	for id, n := range stored {
		if !strings.HasPrefix(id, s.prefix+"-") {
			continue
		}
		if n > 1 {
			t.Errorf("message %s is stored %d times", id, n)
		}
		if _, ok := acked[id]; !ok {
			unackedStored++
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.permErrs {
		t.Errorf("SMTP permanent error under load: %s", e)
	}
	return lost, unackedStored
}

// checkFlags reads the flags over IMAP from addr and returns how many
// acknowledged \Seen changes are missing; strict fails the test for each.
func checkFlags(t *testing.T, ip, addr string, l *imapLoad, strict bool) (lost int) {
	t.Helper()
	c, err := dialLines(ip, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.line(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{`LOGIN ` + user + ` "` + password + `"`, "EXAMINE INBOX"} {
		if _, err := command(c, "c", cmd); err != nil {
			t.Fatal(err)
		}
	}
	lines, err := command(c, "f", "UID FETCH 1:* (FLAGS)")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for _, s := range lines {
		i := strings.Index(s, "UID ")
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+4:])
		u, _ := strconv.ParseUint(strings.TrimRight(f[0], ")"), 10, 32)
		seen[uint32(u)] = strings.Contains(s, `\Seen`)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for uid := range l.acked {
		if !seen[uid] {
			lost++
			if strict {
				t.Errorf("acknowledged \\Seen on UID %d is lost", uid)
			}
		}
	}
	for _, e := range l.permErrs {
		t.Errorf("IMAP permanent error under load: %s", e)
	}
	return lost
}
