package netutil

import (
	"bufio"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestConnLimiter(t *testing.T) {
	l := NewConnLimiter(2)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	for i := 0; i < 2; i++ {
		if !l.Acquire(a) {
			t.Fatalf("connection %d refused", i+1)
		}
	}
	if l.Acquire(a) {
		t.Fatal("third accepted")
	}
	if !l.Acquire(b) {
		t.Fatal("other IP refused")
	}
	l.Release(a)
	if !l.Acquire(a) {
		t.Fatal("slot not released")
	}
	// IPv6 addresses in one /64 share the limit.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:1")
	if !l.Acquire(v6a) || !l.Acquire(v6b) || l.Acquire(netip.MustParseAddr("2001:db8::2")) {
		t.Fatal("/64 grouping broken")
	}
	if !NewConnLimiter(0).Acquire(a) {
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
