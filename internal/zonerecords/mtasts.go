package zonerecords

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MTA-STS modes (RFC 8461 §5).
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// PolicyPath is where a policy is served (RFC 8461 §3.3).
const PolicyPath = "/.well-known/mta-sts.txt"

// PolicyMaxAge is the max_age we publish: one week, within RFC 8461 §3.2's
// advice of weeks (senders cache the policy that long, renewing it before
// it expires, so a short outage of the policy host costs nothing).
const PolicyMaxAge = 7 * 24 * time.Hour

// maxHostLen bounds the Host header we look at: a domain name is at most
// 253 octets (RFC 1035 §2.3.4), plus "mta-sts.", a port and brackets.
const maxHostLen = 300

// Policy is the MTA-STS policy of the local domains: every local domain
// is served by the same MX host.
type Policy struct {
	Mode   string   // ModeEnforce, ModeTesting or ModeNone
	MX     []string // host names (or "*.example.org" patterns) of the MX records
	MaxAge time.Duration
}

// NewPolicy is the policy for our MX host in mode.
func NewPolicy(mode, mxHost string) Policy {
	return Policy{Mode: mode, MX: []string{strings.TrimSuffix(strings.ToLower(mxHost), ".")}, MaxAge: PolicyMaxAge}
}

// ValidMode reports whether m is an MTA-STS mode.
func ValidMode(m string) bool {
	return m == ModeEnforce || m == ModeTesting || m == ModeNone
}

// Text is the policy file (RFC 8461 §3.2): key/value lines ending in CRLF.
func (p Policy) Text() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + p.Mode + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(p.MaxAge/time.Second), 10) + "\r\n")
	return b.String()
}

// ID is the policy's id for the _mta-sts TXT record: it must change
// whenever the policy does (RFC 8461 §3.1), so it is derived from the
// policy's text, and every node prints the same one. 20 hex digits fit
// the record's 1*32 ALPHA/DIGIT.
func (p Policy) ID() string {
	h := sha256.Sum256([]byte(p.Text()))
	return hex.EncodeToString(h[:10])
}

// PolicyDomain returns the domain whose policy a request's Host header
// asks for: "mta-sts.example.org" (any case, with or without a port or a
// final dot) names example.org (RFC 8461 §3.3). ok is false for any other
// host.
func PolicyDomain(host string) (domain string, ok bool) {
	if len(host) == 0 || len(host) > maxHostLen {
		return "", false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	rest, found := strings.CutPrefix(host, "mta-sts.")
	if !found || !validDomain(rest) {
		return "", false
	}
	return rest, true
}

// validDomain checks an ASCII domain name of at least two labels: letters,
// digits and hyphens, labels of 1 to 63 octets, none starting or ending
// with a hyphen (RFC 1035 §2.3.1, RFC 5890 A-labels included).
func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// LocalDomains tells whether a domain is one of ours.
type LocalDomains interface {
	IsLocalDomain(ctx context.Context, name string) (bool, error)
}

// PolicyHandler serves the policy at PolicyPath for every local domain,
// named by the Host header; 404 for any other host (RFC 8461 §3.3: a
// sender treats it as no policy). It is plain HTTP: senders fetch the
// policy only over HTTPS with a valid certificate for mta-sts.DOMAIN, so
// it goes behind the operator's TLS proxy.
func PolicyHandler(p Policy, dirs LocalDomains, log *slog.Logger) http.Handler {
	text := p.Text()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain, ok := PolicyDomain(r.Host)
		if !ok {
			http.NotFound(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		local, err := dirs.IsLocalDomain(ctx, domain)
		if err != nil {
			// A sender that gets no policy keeps its cached one
			// (RFC 8461 §5.1); tell it to come back.
			log.Warn("mta-sts policy: domain lookup failed", "domain", domain, "err", err)
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
		if !local {
			http.NotFound(w, r)
			return
		}
		// RFC 8461 §3.2: media type text/plain.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(text)))
		if r.Method == http.MethodHead {
			return
		}
		fmt.Fprint(w, text)
	})
}
