package imapd

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// CATENATE (RFC 4469): TEXT and URL parts (RFC 5092 relative URLs, with
// and without UIDVALIDITY, SECTION and PARTIAL), mixed with plain
// messages in one MULTIAPPEND; every refusal stores nothing: a bad URL, a
// UIDVALIDITY or UID that does not match, another user's mailbox (by
// name, by an absolute URL), a section that does not exist, TOOBIG, too
// many parts, an empty message.
func TestCatenateTranscript(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageSize = 1 << 20 })
	src := "From: a@example.org\r\nSubject: src\r\n\r\nHello body\r\n"
	mp := "From: a@example.org\r\nSubject: mp\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\npart one\r\n--b\r\nContent-Type: text/plain\r\n\r\npart two\r\n--b--\r\n"
	e.deliver("alice", "INBOX", src)
	e.deliver("alice", "INBOX", mp)
	e.deliver("bob", "INBOX", "From: b@example.org\r\nSubject: secret\r\n\r\nbob's secret\r\n")
	if _, err := e.store.CreateMailbox(t.Context(), e.accts["bob"].ID, "Secret", ""); err != nil {
		t.Fatal(err)
	}
	inbox := e.mailbox("alice", "INBOX")
	bobInbox := e.mailbox("bob", "INBOX")
	v := inbox.UIDValidity
	c := e.dial()
	c.login("alice")
	c.cmd("C", "CREATE Out")
	out := e.mailbox("alice", "Out")
	hdr := "From: a@example.org\r\nSubject: src\r\n\r\n"
	c.run([]step{
		{"APPEND Out CATENATE (TEXT " + nsl("Subject: t\r\n\r\n") + " TEXT " + nsl("body\r\n") + ")",
			[]string{fmt.Sprintf("$T OK [APPENDUID %d 1] APPEND completed", out.UIDValidity)}},
		{fmt.Sprintf(`APPEND Out (\Seen) CATENATE (URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=HEADER" TEXT `, v) + nsl("new body\r\n") + ")",
			[]string{fmt.Sprintf("$T OK [APPENDUID %d 2] APPEND completed", out.UIDValidity)}},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1")`, []string{"re:$T OK .*"}},
		{`APPEND Out CATENATE (TEXT ` + nsl("X-Pre: 1\r\n") + ` URL "/INBOX/;UID=2/;SECTION=2" URL "/inbox/;uid=1/;section=TEXT/;partial=2.3")`, []string{"re:$T OK .*"}},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;PARTIAL=100000" TEXT ` + nsl("only\r\n") + `) ` + nsl(src) + ` CATENATE (URL "/INBOX/;UID=2/;SECTION=1.MIME" TEXT ` + nsl("x\r\n") + `)`,
			[]string{fmt.Sprintf("$T OK [APPENDUID %d 5:7] APPEND completed", out.UIDValidity)}},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(Subject)" TEXT ` + nsl("b\r\n") + `)`, []string{"re:$T OK .*"}},
	})
	c.cmd("S", "SELECT Out")
	c.run([]step{{"FETCH 1:8 BODY.PEEK[]", []string{
		"* 1 FETCH (BODY[] " + lit("Subject: t\r\n\r\nbody\r\n") + ")",
		"* 2 FETCH (BODY[] " + lit(hdr+"new body\r\n") + ")",
		"* 3 FETCH (BODY[] " + lit(src) + ")",
		"* 4 FETCH (BODY[] " + lit("X-Pre: 1\r\npart twollo") + ")",
		"* 5 FETCH (BODY[] " + lit("only\r\n") + ")",
		"* 6 FETCH (BODY[] " + lit(src) + ")",
		"* 7 FETCH (BODY[] " + lit("Content-Type: text/plain\r\n\r\nx\r\n") + ")",
		"* 8 FETCH (BODY[] " + lit("Subject: src\r\n\r\nb\r\n") + ")",
		"$T OK FETCH completed"}}})

	// Refusals.
	bad := func(url string) string { return `$T NO [BADURL ` + url + `] ` }
	steps := []struct {
		cmd  string
		want string
	}{
		{fmt.Sprintf(`APPEND Out CATENATE (URL "/INBOX;UIDVALIDITY=%d/;UID=1")`, v+1), bad(fmt.Sprintf("/INBOX;UIDVALIDITY=%d/;UID=1", v+1)) + "UIDVALIDITY does not match"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=99")`, bad("/INBOX/;UID=99") + "No such message"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;SECTION=7")`, bad("/INBOX/;UID=1/;SECTION=7") + "No such section"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=0")`, bad("/INBOX/;UID=0") + "Invalid IMAP URL"},
		{`APPEND Out CATENATE (URL "INBOX/;UID=1")`, bad("INBOX/;UID=1") + "Invalid IMAP URL"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;URLAUTH=anonymous")`, bad("/INBOX/;UID=1/;URLAUTH=anonymous") + "Invalid IMAP URL"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;SECTION=1.HEADER.FIELDS%20%7B3%7D")`, bad("/INBOX/;UID=1/;SECTION=1.HEADER.FIELDS%20%7B3%7D") + "Invalid section"},
		// Another user's mailboxes: not in alice's namespace, and an
		// absolute URL naming bob is refused whatever it names.
		{fmt.Sprintf(`APPEND Out CATENATE (URL "/Secret;UIDVALIDITY=%d/;UID=1")`, e.mailbox("bob", "Secret").UIDValidity), bad(fmt.Sprintf("/Secret;UIDVALIDITY=%d/;UID=1", e.mailbox("bob", "Secret").UIDValidity)) + "No such mailbox"},
		{fmt.Sprintf(`APPEND Out CATENATE (URL "imap://bob%%40example.org@%s/INBOX;UIDVALIDITY=%d/;UID=1")`, e.srv.cfg.Hostname, bobInbox.UIDValidity),
			bad(fmt.Sprintf("imap://bob%%40example.org@%s/INBOX;UIDVALIDITY=%d/;UID=1", e.srv.cfg.Hostname, bobInbox.UIDValidity)) + "URL of another user or server"},
		{`APPEND Out CATENATE (URL "imap://alice%40example.org@elsewhere.example/INBOX/;UID=1")`, bad("imap://alice%40example.org@elsewhere.example/INBOX/;UID=1") + "URL of another user or server"},
		// The bad URL in the middle of a MULTIAPPEND: nothing of the
		// messages before it is kept.
		{`APPEND Out ` + nsl(src) + ` CATENATE (TEXT ` + nsl("a: b\r\n") + ` URL "/INBOX/;UID=42")`, bad("/INBOX/;UID=42") + "No such message"},
		{`APPEND Out CATENATE ()`, "$T BAD Expected TEXT or URL in CATENATE"},
		{`APPEND Out CATENATE (URL "/INBOX/;UID=1/;PARTIAL=5000")`, "$T NO [CANNOT] Empty message"},
		{`APPEND Out CATENATE (TEXT {1048577}`, "$T NO [TOOBIG] Message exceeds APPENDLIMIT"},
		{`APPEND Nowhere CATENATE (URL "/INBOX/;UID=1")`, "$T NO [TRYCREATE] No such mailbox"},
		{`APPEND Out CATENATE (` + strings.Repeat(`URL "/INBOX/;UID=1" `, 64) + `URL "/INBOX/;UID=1")`, "$T NO [LIMIT] Too many CATENATE parts (at most 64)"},
	}
	for i, s := range steps {
		tag := fmt.Sprintf("R%d", i)
		c.send(tag + " " + s.cmd)
		got := c.until(tag)
		check(t, s.cmd, got[len(got)-1:], []string{strings.ReplaceAll(s.want, "$T", tag)})
	}
	// RFC 6855 §4: a UTF8 part, once UTF8=ACCEPT is enabled.
	c.run([]step{
		{"APPEND Out CATENATE (UTF8 (~{7+}\r\nx: \u00e9\r\n))", []string{"$T BAD UTF8 APPEND needs ENABLE UTF8=ACCEPT"}},
		{"UNSELECT", []string{"$T OK UNSELECT completed"}},
		{"ENABLE UTF8=ACCEPT", []string{"* ENABLED UTF8=ACCEPT", "$T OK ENABLE completed"}},
		{"APPEND Out CATENATE (UTF8 (~{7+}\r\nS: \u00e9\r\n) URL \"/INBOX/;UID=1/;SECTION=TEXT\")", []string{fmt.Sprintf("$T OK [APPENDUID %d 9] APPEND completed", out.UIDValidity)}},
	})
	c.cmd("X", "EXAMINE Out")
	c.run([]step{
		{"FETCH 9 BODY.PEEK[]", []string{"* 9 FETCH (BODY[] " + lit("S: \u00e9\r\nHello body\r\n") + ")", "$T OK FETCH completed"}},
	})
	if n := e.messages("alice", "Out"); n != 9 {
		t.Fatalf("after refused CATENATEs: %d messages in Out, want 8", n)
	}

	// TOOBIG from URL parts: two copies of a message over the limit.
	e2 := newEnv(t, func(c *Config) { c.MaxMessageSize = 3000 })
	e2.deliver("alice", "INBOX", testMessage("big", strings.Repeat("q", 2000)+"\r\n"))
	c2 := e2.dial()
	c2.login("alice")
	c2.run([]step{
		{`APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")`, []string{"$T NO [TOOBIG] Message exceeds APPENDLIMIT"}},
		{`APPEND INBOX CATENATE (URL "/INBOX/;UID=1" TEXT {1500}`, []string{"$T NO [TOOBIG] Message exceeds APPENDLIMIT"}},
	})
	if n := e2.messages("alice", "INBOX"); n != 1 {
		t.Fatalf("after TOOBIG: %d messages, want 1", n)
	}
}

// A CATENATE whose TEXT literal is cut short by the client's disconnect
// stores nothing, nor any message before it in the command.
func TestCatenateTruncated(t *testing.T) {
	e := newEnv(t)
	e.deliver("alice", "INBOX", "Subject: s\r\n\r\nbody\r\n")
	before := e.messages("alice", "INBOX")
	c := e.dial()
	c.login("alice")
	text := strings.Repeat("t", 5000)
	c.send(`b APPEND INBOX ` + nsl("Subject: 1\r\n\r\nx\r\n") + ` CATENATE (URL "/INBOX/;UID=1" TEXT ` + fmt.Sprintf("{%d+}", len(text)))
	c.sendRaw(text[:2000])
	tcp := c.conn.(*net.TCPConn)
	tcp.CloseWrite()
	tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := c.br.ReadString('\n')
		if strings.HasPrefix(l, "b OK") {
			t.Errorf("cut CATENATE acknowledged: %q", l)
		}
		if err != nil {
			break
		}
	}
	waitFor(t, func() bool { return e.srv.OpenConns() == 0 })
	if n := e.messages("alice", "INBOX"); n != before {
		t.Fatalf("%d message(s) stored from a cut CATENATE", n-before)
	}
}

func TestParseIMAPURL(t *testing.T) {
	good := []struct {
		in   string
		want imapURL
	}{
		{"/INBOX/;UID=5", imapURL{mailbox: "INBOX", uid: 5}},
		{"/INBOX;UIDVALIDITY=7/;UID=5/;SECTION=1.2.MIME", imapURL{mailbox: "INBOX", uidValidity: 7, uid: 5, section: "1.2.MIME"}},
		{"/a%20b/c/;uid=1/;partial=0.10", imapURL{mailbox: "a b/c", uid: 1, partial: true, off: 0, n: 10}},
		{"/x/;UID=1/;PARTIAL=3", imapURL{mailbox: "x", uid: 1, partial: true, off: 3, n: -1}},
		{"imap://u%40d@h:143/INBOX/;UID=2", imapURL{user: "u@d", host: "h", mailbox: "INBOX", uid: 2}},
		{"imap://u;AUTH=*@h/INBOX/;UID=2", imapURL{user: "u", host: "h", mailbox: "INBOX", uid: 2}},
	}
	for _, g := range good {
		got, err := parseIMAPURL(g.in)
		if err != nil || got != g.want {
			t.Errorf("parseIMAPURL(%q) = %+v, %v; want %+v", g.in, got, err, g.want)
		}
	}
	for _, b := range []string{"", "/", "//h/INBOX/;UID=1", "/INBOX;UID=1", "/INBOX/;UID=", "/INBOX/;UID=01", "/INBOX/;UID=4294967296",
		"/INBOX;UIDVALIDITY=0/;UID=1", "/INBOX/;UID=1/;SECTION=", "/INBOX/;UID=1/;PARTIAL=1.0", "/INBOX/;UID=1;EXPIRE=x",
		"/%zz/;UID=1", "/%0a/;UID=1", "/INBOX/;UID=1/;PARTIAL=-1", "imap://h", "imap:///INBOX/;UID=1", "/INBOX/;UID=1x",
		"/" + strings.Repeat("a", maxURLLength) + "/;UID=1"} {
		if u, err := parseIMAPURL(b); err == nil {
			t.Errorf("parseIMAPURL(%q) = %+v, want an error", b, u)
		}
	}
}

// FuzzParseIMAPURL: no input makes the URL parser panic, and what it
// accepts names a message (a mailbox and a non-zero UID).
func FuzzParseIMAPURL(f *testing.F) {
	for _, s := range []string{"/INBOX/;UID=5", "/INBOX;UIDVALIDITY=7/;UID=5/;SECTION=1.2.MIME/;PARTIAL=1.2",
		"imap://u%40d;AUTH=*@h:143/a%2Fb/;UID=2", "/%ZZ/;UID=1", "/x/;uid=1;urlauth=a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseIMAPURL(s)
		if err != nil {
			return
		}
		if u.mailbox == "" || u.uid == 0 || u.partial && u.off < 0 {
			t.Fatalf("parseIMAPURL(%q) accepted %+v", s, u)
		}
	})
}
