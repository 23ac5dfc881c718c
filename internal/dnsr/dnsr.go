// Package dnsr gives the DNS resolver that outbound delivery and inbound
// mail authentication share: Go's own resolver, sending every query to
// one configured server (POSTRIDER_DNS_RESOLVER) or to the system's.
package dnsr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// DefaultTimeout bounds one query exchange with the server.
const DefaultTimeout = 5 * time.Second

// New returns a resolver that sends every query to server ("host:port"),
// over UDP and over TCP when an answer is truncated; server "" uses the
// system's configuration (/etc/resolv.conf).
func New(server string) (*net.Resolver, error) {
	if server == "" {
		return &net.Resolver{PreferGo: true}, nil
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("dns resolver %q: want host:port: %w", server, err)
	}
	d := net.Dialer{Timeout: DefaultTimeout}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}, nil
}

// NotFound reports whether err says that the name or the record does not
// exist (NXDOMAIN or no data): a permanent answer.
func NotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// Temporary reports whether err is a failure to get an answer (timeout,
// SERVFAIL, unreachable server): the same query may succeed later, so mail
// must be deferred (4xx), never refused or bounced for it.
func Temporary(err error) bool {
	if err == nil || NotFound(err) {
		return false
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.IsTemporary || de.IsTimeout || !de.IsNotFound
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
