package delivery

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParseSTSPolicy: any body from a policy server parses or fails
// cleanly, and a parsed policy is within bounds.
func FuzzParseSTSPolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 0\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 31557601\n"))
	f.Add([]byte("version:STSv1\nmode:enforce\nmx:*.\nmax_age:1"))
	f.Add([]byte("\n\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseSTSPolicy(b)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > stsMaxAge*time.Second || len(p.MX) > stsMaxMX {
			t.Fatalf("out of bounds: %+v", p)
		}
		if p.Mode != STSEnforce && p.Mode != STSTesting && p.Mode != STSNone {
			t.Fatalf("mode %q", p.Mode)
		}
		for _, m := range p.MX {
			p.MatchMX(m)
			p.MatchMX("x." + m)
		}
	})
}

// FuzzSTSRecordID: any TXT record set.
func FuzzSTSRecordID(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;", "v=spf1 -all")
	f.Add("v=STSv1;id=;id=x", "")
	f.Fuzz(func(t *testing.T, a, b string) {
		id, ok := stsRecordID([]string{a, b})
		if ok && (id == "" || len(id) > 32) {
			t.Fatalf("id %q", id)
		}
	})
}

// FuzzPlainOpening: whatever a server sends before TLS (greeting, EHLO
// and STARTTLS replies), the opening ends without panic, within its
// bounds.
func FuzzPlainOpening(f *testing.F) {
	f.Add([]byte("220 mx.test ESMTP\r\n250-mx.test\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 8BITMIME\r\n220 go ahead\r\n"))
	f.Add([]byte("220-mx.test\r\n220 hi\r\n250 mx.test\r\n"))
	f.Add([]byte("554 no service\r\n"))
	f.Add([]byte("220 x\r\n502 no EHLO\r\n"))
	f.Add([]byte("220 x\r\n250-x\r\n250 STARTTLS\r\n220 ok\r\nextra"))
	f.Add([]byte("220 x\r\n250-x\r\n250 STARTTLS\r\n454 no TLS now\r\n"))
	f.Add([]byte("220 x\r\n500 what\r\n250 hi\r\n"))
	f.Add([]byte("220 x\r\n250-x\r\n220 mixed codes\r\n"))
	f.Fuzz(func(t *testing.T, server []byte) {
		c, s := net.Pipe()
		defer c.Close()
		go func() {
			go io.Copy(io.Discard, s)
			_, _ = s.Write(server)
			s.Close()
		}()
		cc := newClientConn(c, c)
		cc.ext = nil
		tlsNext, r := plainOpening(cc, "out.test", target{host: "mx.test", addr: "pipe", requireTLS: len(server)%2 == 0})
		if r == nil && cc.ext == nil {
			t.Fatal("neither extensions nor a failure")
		}
		if r != nil && tlsNext {
			t.Fatal("a failure, and TLS next")
		}
		if r != nil && r.state != "pending" {
			t.Fatalf("opening failure not temporary: %+v", r)
		}
		if r != nil && strings.ContainsAny(r.reply, "\r\n") {
			t.Fatalf("reply with a line break: %q", r.reply)
		}
	})
}

// FuzzEnhanced: any reply text.
func FuzzEnhanced(f *testing.F) {
	f.Add(550, "5.1.1 no such user")
	f.Add(250, "2.0.0")
	f.Add(451, "4.x.1 odd")
	f.Fuzz(func(t *testing.T, code int, msg string) {
		e := enhanced(code, msg)
		if len(e) < 5 || (e[0] != '2' && e[0] != '4' && e[0] != '5' && e[0] != '3') {
			t.Fatalf("enhanced(%d, %q) = %q", code, msg, e)
		}
	})
}

// FuzzReadReply: any octets from a server are read as replies within the
// bounds (code, line length, line count) or refused; the result made of a
// reply is one line with a state that matches its code.
func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250 ok\r\n"))
	f.Add([]byte("250-mx.test greets you\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"))
	f.Add([]byte("550-5.1.1 first line\r\n550 5.1.1 second line\r\n"))
	f.Add([]byte("250 2.1.0 ok\r\n250 2.1.5 ok\r\n450 4.2.0 later\r\n354 go\r\n"))
	f.Add([]byte("421 4.3.2 closing\n"))
	f.Add([]byte("354\r\n"))
	f.Add([]byte("250-a\r\n251 b\r\n"))
	f.Add([]byte("250 partial"))
	f.Add([]byte("999 out of grammar\r\n"))
	f.Add([]byte("550 4.1.1 class mismatch\r\n"))
	f.Add(bytes.Repeat([]byte("250-x\r\n"), maxReplyLines+1))
	f.Add(append([]byte("250 "), bytes.Repeat([]byte("x"), maxReplyLine)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), maxReplyLine)
		for range 1000 {
			rp, err := readReply(br)
			if err != nil {
				if rp != nil {
					t.Fatal("a reply with an error")
				}
				return
			}
			if rp.code < 200 || rp.code > 559 || len(rp.lines) == 0 || len(rp.lines) > maxReplyLines {
				t.Fatalf("out of bounds: %d, %d lines", rp.code, len(rp.lines))
			}
			for _, l := range rp.lines {
				if len(l) > maxReplyLine || strings.ContainsAny(l, "\n") {
					t.Fatalf("line %q", l)
				}
			}
			r := replyResult("mx.test", rp)
			if strings.ContainsAny(r.reply, "\r\n") || !strings.HasPrefix(r.reply, strconv.Itoa(rp.code)) {
				t.Fatalf("reply %q", r.reply)
			}
			want := map[int]string{2: "delivered", 3: "delivered", 4: "pending", 5: "failed"}[rp.code/100]
			if string(r.state) != want || (rp.code >= 400 && r.code[0] != byte('0'+rp.code/100)) {
				t.Fatalf("code %d: state %q, enhanced %q", rp.code, r.state, r.code)
			}
		}
	})
}
