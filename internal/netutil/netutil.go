// Package netutil holds listener plumbing shared by the protocol frontends:
// PROXY protocol for trusted load balancers, per-IP connection limits and
// loopback checks.
package netutil

import (
	"net"
	"net/netip"
	"sync"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// ProxyHeaderTimeout bounds how long a trusted proxy may take to send the
// PROXY header.
const ProxyHeaderTimeout = 5 * time.Second

// ProxyListener wraps ln so that connections from trusted prefixes must
// start with a PROXY protocol v1 or v2 header (their RemoteAddr is then the
// real client); connections from anywhere else are passed through untouched
// (a "PROXY" line from them is ordinary protocol input, never trusted).
// With no trusted prefixes ln is returned as is.
func ProxyListener(ln net.Listener, trusted []netip.Prefix) net.Listener {
	if len(trusted) == 0 {
		return ln
	}
	return &proxyproto.Listener{
		Listener:          ln,
		ReadHeaderTimeout: ProxyHeaderTimeout,
		ConnPolicy: func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
			if a := AddrOf(o.Upstream); a.IsValid() {
				for _, p := range trusted {
					if p.Contains(a) {
						return proxyproto.REQUIRE, nil
					}
				}
			}
			return proxyproto.SKIP, nil
		},
	}
}

// AddrOf returns the IP of a net.Addr (TCP or UDP), unmapped; the zero
// Addr when it has none.
func AddrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// RemoteIP returns the client IP of a connection (after PROXY handling).
func RemoteIP(c net.Conn) netip.Addr { return AddrOf(c.RemoteAddr()) }

// IsLoopback reports whether a connection comes from the loopback network.
func IsLoopback(c net.Conn) bool { return RemoteIP(c).IsLoopback() }

// ConnLimiter counts open connections per client IP (IPv6 by /64).
type ConnLimiter struct {
	max int
	mu  sync.Mutex
	n   map[netip.Addr]int
}

// NewConnLimiter allows at most max connections per IP; max <= 0 means no limit.
func NewConnLimiter(max int) *ConnLimiter {
	return &ConnLimiter{max: max, n: make(map[netip.Addr]int)}
}

func limitKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Acquire takes a slot for ip; false if the IP is at its limit. Every true
// must be paired with Release.
func (l *ConnLimiter) Acquire(ip netip.Addr) bool {
	if l == nil || l.max <= 0 {
		return true
	}
	k := limitKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[k] >= l.max {
		return false
	}
	l.n[k]++
	return true
}

// Release frees a slot taken by Acquire.
func (l *ConnLimiter) Release(ip netip.Addr) {
	if l == nil || l.max <= 0 {
		return
	}
	k := limitKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[k] <= 1 {
		delete(l.n, k)
	} else {
		l.n[k]--
	}
}
