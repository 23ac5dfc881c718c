package netutil

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestConnLimiter(t *testing.T) {
	l := NewConnLimiter(2, 0)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	for i := 0; i < 2; i++ {
		if l.Acquire(a) != nil {
			t.Fatalf("connection %d refused", i+1)
		}
	}
	if l.Acquire(a) == nil {
		t.Fatal("third accepted")
	}
	if l.Acquire(b) != nil {
		t.Fatal("other IP refused")
	}
	l.Release(a)
	if l.Acquire(a) != nil {
		t.Fatal("slot not released")
	}
	// IPv6 addresses in one /64 share the limit.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:1")
	if l.Acquire(v6a) != nil || l.Acquire(v6b) != nil || l.Acquire(netip.MustParseAddr("2001:db8::2")) == nil {
		t.Fatal("/64 grouping broken")
	}
	if NewConnLimiter(0, 0).Acquire(a) != nil {
		t.Fatal("0 must mean unlimited")
	}
}

// TestProxyListener: a trusted peer's PROXY header sets the remote address;
// an untrusted peer's "PROXY" line is left in the stream, untrusted.
func TestProxyListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, tc := range []struct {
		trusted  []netip.Prefix
		wantIP   string
		wantLine string
	}{
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "192.0.2.9", "HELLO\r\n"},
		{[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, "127.0.0.1", "PROXY TCP4 192.0.2.9 127.0.0.1 5555 25\r\n"},
	} {
		ln := ProxyListener(raw, tc.trusted)
		go func() {
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				return
			}
			defer c.Close()
			c.Write([]byte("PROXY TCP4 192.0.2.9 127.0.0.1 5555 25\r\nHELLO\r\n"))
			time.Sleep(200 * time.Millisecond)
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got := RemoteIP(c).String(); got != tc.wantIP || line != tc.wantLine {
			t.Errorf("trusted %v: remote %s line %q; want %s %q", tc.trusted, got, line, tc.wantIP, tc.wantLine)
		}
		if IsLoopback(c) != (tc.wantIP == "127.0.0.1") {
			t.Errorf("IsLoopback wrong for %s", tc.wantIP)
		}
		c.Close()
	}
}

// TestConnLimiterGlobal: the total is shared by every address, a refusal
// says which limit applied, and Release frees the slot.
func TestConnLimiterGlobal(t *testing.T) {
	l := NewConnLimiter(2, 3)
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	for _, ip := range []netip.Addr{a, a, b} {
		if err := l.Acquire(ip); err != nil {
			t.Fatalf("%s refused: %v", ip, err)
		}
	}
	if err := l.Acquire(c); !errors.Is(err, ErrGlobalLimit) {
		t.Fatalf("fourth connection: %v, want ErrGlobalLimit", err)
	}
	l.Release(b)
	if err := l.Acquire(a); !errors.Is(err, ErrPerIPLimit) {
		t.Fatalf("third from a: %v, want ErrPerIPLimit", err)
	}
	if err := l.Acquire(c); err != nil {
		t.Fatalf("slot not freed: %v", err)
	}
	// Unknown clients (the invalid Addr) share one bucket.
	u := NewConnLimiter(2, 0)
	for i := 0; i < 2; i++ {
		if err := u.Acquire(netip.Addr{}); err != nil {
			t.Fatalf("unknown client %d refused under the limit: %v", i+1, err)
		}
	}
	if err := u.Acquire(netip.Addr{}); !errors.Is(err, ErrPerIPLimit) {
		t.Fatalf("third unknown client: %v", err)
	}
	if err := u.Acquire(a); err != nil {
		t.Fatalf("known client refused because of unknown ones: %v", err)
	}
}

// TestPeerUnknown: a trusted proxy's "PROXY UNKNOWN" (v1) or LOCAL (v2)
// header makes the client unknown: not the proxy's (loopback) address, not
// loopback; a TCP header names the client.
func TestPeerUnknown(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := ProxyListener(raw, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	v2 := "\r\n\r\n\x00\r\nQUIT\n"
	for _, tc := range []struct {
		name, header, wantIP string
	}{
		{"v1 UNKNOWN", "PROXY UNKNOWN\r\n", ""},
		{"v1 UNKNOWN with addresses", "PROXY UNKNOWN 192.0.2.9 127.0.0.1 5555 25\r\n", ""},
		{"v2 LOCAL", v2 + "\x20\x00\x00\x00", ""},
		{"v2 LOCAL with addresses", v2 + "\x20\x11\x00\x0c" + "\xc0\x00\x02\x09" + "\x7f\x00\x00\x01" + "\x15\xb3\x00\x19", ""},
		{"v1 TCP4", "PROXY TCP4 192.0.2.9 127.0.0.1 5555 25\r\n", "192.0.2.9"},
	} {
		go func() {
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				return
			}
			defer c.Close()
			c.Write([]byte(tc.header + "HELLO\r\n"))
			time.Sleep(200 * time.Millisecond)
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		p := PeerOf(c)
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "HELLO\r\n" {
			t.Errorf("%s: line %q %v", tc.name, line, err)
		}
		got := ""
		if p.IP.IsValid() {
			got = p.IP.String()
		}
		if got != tc.wantIP || p.Proxy != netip.MustParseAddr("127.0.0.1") || HeaderFailed(c) {
			t.Errorf("%s: peer %+v (header failed %v), want client %q via 127.0.0.1", tc.name, p, HeaderFailed(c), tc.wantIP)
		}
		if IsLoopback(c) {
			t.Errorf("%s: an unknown client counts as loopback", tc.name)
		}
		wantLog := "remote " + tc.wantIP + " proxy 127.0.0.1"
		if tc.wantIP == "" {
			wantLog = "remote unknown proxy 127.0.0.1"
		}
		if got := strings.TrimSpace(strings.Trim(fmt.Sprint(p.LogAttrs()), "[]")); got != wantLog {
			t.Errorf("%s: log attributes %q, want %q", tc.name, got, wantLog)
		}
		c.Close()
	}
}
