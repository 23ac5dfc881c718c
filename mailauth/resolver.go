package mailauth

import (
	"context"
	"net"
	"strings"

	"github.com/postrider/postrider/internal/dnsr"
)

// Resolver is the DNS a Checker queries; *net.Resolver (internal/dnsr)
// satisfies it. Only TXT (SPF, DKIM keys, DMARC), MX, A/AAAA and PTR (SPF
// mechanisms) are asked.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// strictResolver wraps the configured Resolver for the libraries: names
// are made absolute (a search domain from resolv.conf must never be
// appended to a name a sender chose), and every failure to get an answer
// is reported as a temporary *net.DNSError. The libraries tell a DNS
// outage from a permanent answer by net.Error's Temporary(); Go's resolver
// leaves some outage errors (a refused connection to a server, a
// malformed reply) without that mark, and an outage taken for "no record"
// would turn a deferral into a verdict (RFC 7208 §2.6.6, RFC 7489 §6.6.2).
type strictResolver struct{ r Resolver }

func (s strictResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := s.r.LookupTXT(ctx, absolute(name))
	return v, dnsError(name, err)
}

func (s strictResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := s.r.LookupMX(ctx, absolute(name))
	if len(v) > 0 && err != nil && !dnsr.Temporary(err) {
		// Go returns the valid records with an error for invalid ones;
		// SPF uses the valid ones (blitiri's mxField does the same).
		return v, err
	}
	return v, dnsError(name, err)
}

func (s strictResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := s.r.LookupIPAddr(ctx, absolute(host))
	return v, dnsError(host, err)
}

func (s strictResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := s.r.LookupAddr(ctx, addr)
	return v, dnsError(addr, err)
}

// txtFunc adapts the resolver to go-msgauth's context-free TXT lookups.
func (s strictResolver) txtFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return s.LookupTXT(ctx, name) }
}

// dnsError keeps "no such name / no such record" as it is and marks every
// other failure temporary.
func dnsError(name string, err error) error {
	if err == nil || dnsr.NotFound(err) {
		return err
	}
	if !dnsr.Temporary(err) {
		// An error that is neither (e.g. a name Go refuses to send):
		// permanent, as the libraries expect.
		return err
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

// absolute returns name with a trailing dot.
func absolute(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}
