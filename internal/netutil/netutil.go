// Package netutil holds listener plumbing shared by the protocol frontends:
// PROXY protocol for trusted load balancers, per-IP and global connection
// limits and loopback checks.
package netutil

import (
	"errors"
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

// Peer is who is at the other end of an accepted connection.
//
// IP is the client. It is the invalid (zero) netip.Addr when the client is
// unknown: a trusted proxy sent "PROXY UNKNOWN" (v1), a v2 LOCAL command or
// an UNSPEC/UNIX address family, or no valid header at all. The proxy's own
// address is then never used in the client's place (it is often loopback,
// which would unlock plaintext authentication, and it is shared by every
// client). An unknown client is a remote client: never loopback
// (netip.Addr{}.IsLoopback() is false), one shared bucket for the per-IP
// connection limit, and "unknown" for auth throttling (auth.ClientBucket).
type Peer struct {
	IP    netip.Addr // the client; invalid = unknown
	Proxy netip.Addr // the trusted proxy the connection came through; invalid when direct
}

// PeerOf returns the peer of a connection accepted from a ProxyListener (or
// any other listener). For a trusted proxy's connection it reads the PROXY
// header, waiting at most ProxyHeaderTimeout.
func PeerOf(c net.Conn) Peer {
	pc, ok := c.(*proxyproto.Conn)
	if !ok {
		return Peer{IP: AddrOf(c.RemoteAddr())}
	}
	p := Peer{Proxy: AddrOf(pc.Raw().RemoteAddr())}
	h := pc.ProxyHeader() // nil when the header was missing or invalid
	if h == nil || h.Command.IsLocal() || h.SourceAddr == nil {
		return p
	}
	p.IP = AddrOf(h.SourceAddr) // invalid for AF_UNIX sources
	return p
}

// HeaderFailed reports whether c came from a trusted proxy without a valid
// PROXY header; such a connection must be closed (its reads fail).
func HeaderFailed(c net.Conn) bool {
	pc, ok := c.(*proxyproto.Conn)
	return ok && pc.ProxyHeader() == nil
}

// Unknown reports whether the client's address is unknown.
func (p Peer) Unknown() bool { return !p.IP.IsValid() }

// ClientString is the client address for logs: "unknown" when unknown.
func (p Peer) ClientString() string {
	if p.Unknown() {
		return "unknown"
	}
	return p.IP.String()
}

// LogAttrs are the slog attributes naming the peer: remote=<client or
// "unknown">, and proxy=<address> for a proxied connection.
func (p Peer) LogAttrs() []any {
	if !p.Proxy.IsValid() {
		return []any{"remote", p.ClientString()}
	}
	return []any{"remote", p.ClientString(), "proxy", p.Proxy.String()}
}

// RemoteIP returns the client IP of a connection (after PROXY handling);
// invalid when the client is unknown (see Peer).
func RemoteIP(c net.Conn) netip.Addr { return PeerOf(c).IP }

// IsLoopback reports whether a connection comes from the loopback network;
// an unknown client (see Peer) is not loopback.
func IsLoopback(c net.Conn) bool { return RemoteIP(c).IsLoopback() }

// Refusals of ConnLimiter.Acquire.
var (
	ErrPerIPLimit  = errors.New("too many connections from the client's address")
	ErrGlobalLimit = errors.New("too many connections")
)

// ConnLimiter counts the open connections of one protocol server: in total
// and per client IP (IPv6 by /64; every unknown client, see Peer, in one
// shared bucket).
type ConnLimiter struct {
	perIP, total int
	mu           sync.Mutex
	open         int
	n            map[netip.Addr]int
}

// NewConnLimiter allows at most perIP connections per IP and total
// connections in all; a limit <= 0 means no limit.
func NewConnLimiter(perIP, total int) *ConnLimiter {
	return &ConnLimiter{perIP: perIP, total: total, n: make(map[netip.Addr]int)}
}

func limitKey(ip netip.Addr) netip.Addr {
	if ip.Is6() && !ip.Is4In6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip // the invalid Addr is the unknown clients' one bucket
}

// Acquire takes a slot for ip: nil, ErrGlobalLimit when the server is at
// its total, or ErrPerIPLimit when ip is at its limit. Every nil must be
// paired with Release.
func (l *ConnLimiter) Acquire(ip netip.Addr) error {
	if l == nil {
		return nil
	}
	k := limitKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total > 0 && l.open >= l.total {
		return ErrGlobalLimit
	}
	if l.perIP > 0 && l.n[k] >= l.perIP {
		return ErrPerIPLimit
	}
	l.open++
	l.n[k]++
	return nil
}

// Release frees a slot taken by Acquire.
func (l *ConnLimiter) Release(ip netip.Addr) {
	if l == nil {
		return
	}
	k := limitKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.n[k] <= 1 {
		delete(l.n, k)
	} else {
		l.n[k]--
	}
}
