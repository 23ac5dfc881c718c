package delivery

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseSTSPolicy(t *testing.T) {
	p, err := ParseSTSPolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != STSEnforce || p.MaxAge != 604800*time.Second || len(p.MX) != 3 {
		t.Fatalf("%+v", p)
	}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.Example.COM.": true, "backupmx.example.com": true,
		"a.example.net": true, "a.b.example.net": false, "example.net": false, "mail.example.org": false,
	} {
		if got := p.MatchMX(host); got != want {
			t.Errorf("MatchMX(%q) = %v", host, got)
		}
	}
	bad := []string{
		"",
		"mode: enforce\nmx: a.b\nmax_age: 1\n", // no version
		"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",  // wrong version
		"version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",   // bad mode
		"version: STSv1\nmode: enforce\nmax_age: 1\n",           // no mx
		"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", // bad max_age
		"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901\n",
		"version: STSv1\nmode: enforce\nmx: a b\nmax_age: 1\n",
		"version: STSv1\nmode enforce\n",
	}
	for _, b := range bad {
		if _, err := ParseSTSPolicy([]byte(b)); err == nil {
			t.Errorf("accepted %q", b)
		}
	}
	if p, err := ParseSTSPolicy([]byte("version: STSv1\nmode: none\nmax_age: 99999999\nextension: x\n")); err != nil || p.Mode != STSNone || p.MaxAge != stsMaxAge*time.Second {
		t.Errorf("mode none without mx: %+v %v", p, err)
	}
}

func TestSTSRecordID(t *testing.T) {
	for _, c := range []struct {
		txts []string
		id   string
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z"},
		{[]string{"v=STSv1;id=abc"}, "abc"},
		{[]string{"v=spf1 -all", "v=STSv1; id=x1"}, "x1"},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, ""}, // RFC 8461 §3.1: more than one
		{[]string{"v=STSv1;"}, ""},
		{[]string{"v=STSv1; id=has-dash"}, ""},
	} {
		id, ok := stsRecordID(c.txts)
		if id != c.id || ok != (c.id != "") {
			t.Errorf("%q: %q %v", c.txts, id, ok)
		}
	}
}

func TestOrderMX(t *testing.T) {
	mxs := []*net.MX{{Host: "c.test.", Pref: 20}, {Host: "a.test.", Pref: 10}, {Host: "b.test.", Pref: 10}, {Host: "A.test.", Pref: 30}}
	firsts := map[string]int{}
	for range 200 {
		o := orderMX(mxs)
		if len(o) != 3 || o[2] != "c.test" {
			t.Fatalf("order %v", o)
		}
		firsts[o[0]]++
	}
	// Equal preferences come in random order (RFC 5321 §5.1).
	if firsts["a.test"] == 0 || firsts["b.test"] == 0 {
		t.Errorf("no shuffle among equals: %v", firsts)
	}
}

func TestInterleave(t *testing.T) {
	in := []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("::2"), netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	got := interleave(in)
	want := "[::1 10.0.0.1 ::2 10.0.0.2]"
	var s []string
	for _, a := range got {
		s = append(s, a.String())
	}
	if "["+strings.Join(s, " ")+"]" != want {
		t.Errorf("got %v", s)
	}
}

func TestEnhancedCode(t *testing.T) {
	for _, c := range []struct {
		code int
		msg  string
		want string
	}{
		{250, "2.1.5 ok", "2.1.5"}, {550, "no such user", "5.0.0"}, {451, "4.7.1 try later", "4.7.1"},
		{550, "5.1 short", "5.0.0"}, {421, "", "4.0.0"}, {250, "9.9.9 odd", "2.0.0"},
	} {
		if got := enhanced(c.code, c.msg); got != c.want {
			t.Errorf("enhanced(%d, %q) = %q, want %q", c.code, c.msg, got, c.want)
		}
	}
}

func TestNotifies(t *testing.T) {
	if !notifies("", ActionFailed) || !notifies("", ActionDelayed) || notifies("", ActionRelayed) {
		t.Error("default NOTIFY is FAILURE,DELAY")
	}
	if notifies("NEVER", ActionFailed) || notifies("SUCCESS", ActionFailed) || !notifies("success,FAILURE", ActionFailed) {
		t.Error("explicit NOTIFY not honoured")
	}
	if parseNotify("NEVER,FAILURE") != nil || parseNotify("FAILURE,FAILURE") != nil || parseNotify("SOMETIMES") != nil {
		t.Error("invalid NOTIFY accepted")
	}
}
