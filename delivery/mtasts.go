package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postrider/postrider/internal/dnsr"
)

// MTA-STS (RFC 8461): a domain publishes in DNS that it has a policy and,
// over HTTPS with a valid certificate, which MX hosts are its and whether
// senders must use verified TLS to reach them.

// STSMode is a policy's mode (RFC 8461 §5).
type STSMode string

const (
	STSEnforce STSMode = "enforce"
	STSTesting STSMode = "testing"
	STSNone    STSMode = "none"
)

const (
	// stsMaxPolicySize bounds the policy body; RFC 8461 §3.3 asks for a
	// limit, and a real policy is a few hundred octets.
	stsMaxPolicySize = 64 << 10
	// stsFetchTimeout bounds the whole HTTPS fetch (RFC 8461 §3.3: "a
	// reasonable timeout").
	stsFetchTimeout = 30 * time.Second
	// stsMaxAge is the largest max_age allowed (RFC 8461 §3.2: 31557600).
	stsMaxAge = 31557600
	// stsMaxMX bounds the mx lines kept from one policy.
	stsMaxMX = 100
	// stsCacheMax bounds the domains cached in memory.
	stsCacheMax = 10000
)

// STSPolicy is a parsed MTA-STS policy.
type STSPolicy struct {
	Mode   STSMode
	MX     []string // patterns, lower case: "mx.example.org" or "*.example.org"
	MaxAge time.Duration
}

// ParseSTSPolicy parses a policy body (RFC 8461 §3.2): "key: value" lines
// ending in CRLF or LF; version, mode and max_age are required, and mx
// (one or more) unless the mode is none. Unknown keys are ignored.
func ParseSTSPolicy(b []byte) (*STSPolicy, error) {
	if len(b) > stsMaxPolicySize {
		return nil, errors.New("mta-sts: policy too large")
	}
	var (
		p                     STSPolicy
		haveVersion, haveMode bool
		haveAge               bool
	)
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: malformed line %q", trunc(line, 40))
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			if haveVersion {
				continue // the first one counts
			}
			if v != "STSv1" {
				return nil, fmt.Errorf("mta-sts: version %q", trunc(v, 20))
			}
			haveVersion = true
		case "mode":
			if haveMode {
				continue
			}
			switch STSMode(v) {
			case STSEnforce, STSTesting, STSNone:
				p.Mode = STSMode(v)
			default:
				return nil, fmt.Errorf("mta-sts: mode %q", trunc(v, 20))
			}
			haveMode = true
		case "max_age":
			if haveAge {
				continue
			}
			// RFC 8461 §3.2: 1*10DIGIT, at most 31557600.
			if v == "" || len(v) > 10 || strings.Trim(v, "0123456789") != "" {
				return nil, fmt.Errorf("mta-sts: max_age %q", trunc(v, 20))
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			p.MaxAge = time.Duration(min(n, stsMaxAge)) * time.Second
			haveAge = true
		case "mx":
			if !validMXPattern(v) {
				return nil, fmt.Errorf("mta-sts: mx %q", trunc(v, 40))
			}
			if len(p.MX) < stsMaxMX {
				p.MX = append(p.MX, strings.ToLower(strings.TrimSuffix(v, ".")))
			}
		}
	}
	switch {
	case !haveVersion:
		return nil, errors.New("mta-sts: no version")
	case !haveMode:
		return nil, errors.New("mta-sts: no mode")
	case !haveAge:
		return nil, errors.New("mta-sts: no max_age")
	case len(p.MX) == 0 && p.Mode != STSNone:
		return nil, errors.New("mta-sts: no mx")
	}
	return &p, nil
}

func validMXPattern(v string) bool {
	v = strings.TrimPrefix(v, "*.")
	if v == "" || len(v) > 253 {
		return false
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

// MatchMX reports whether host is one of the policy's MX patterns (RFC
// 8461 §4.1): case-insensitive; "*.example.org" stands for exactly one
// left-most label.
func (p *STSPolicy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range p.MX {
		if rest, ok := strings.CutPrefix(m, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if host == m {
			return true
		}
	}
	return false
}

// stsRecord parses the TXT record at _mta-sts.DOMAIN (RFC 8461 §3.1) and
// returns its id. Exactly one record starting with "v=STSv1" must exist.
func stsRecordID(txts []string) (string, bool) {
	id, n := "", 0
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		n++
		for _, f := range strings.Split(t, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			if strings.TrimSpace(k) == "id" {
				id = strings.TrimSpace(v)
			}
		}
	}
	if n != 1 || id == "" || len(id) > 32 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		return "", false
	}
	return id, true
}

type stsEntry struct {
	id      string
	policy  *STSPolicy
	expires time.Time
}

// stsCache fetches and caches the policies of destination domains. The
// cache is per node: a policy is public and any node can fetch it again.
type stsCache struct {
	resolver *net.Resolver
	client   *http.Client
	port     int // 0: 443
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	entries map[string]stsEntry
}

func newSTSCache(r *net.Resolver, tlsConf *tls.Config, port int, log *slog.Logger, now func() time.Time) *stsCache {
	c := &stsCache{resolver: r, port: port, log: log, now: now, entries: map[string]stsEntry{}}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Resolver: r}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if c.port != 0 {
				host, _, _ := net.SplitHostPort(addr)
				addr = net.JoinHostPort(host, strconv.Itoa(c.port))
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 20 * time.Second,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
		Proxy:                 nil, // never through a proxy: the certificate must be the domain's
	}
	c.client = &http.Client{
		Transport: tr,
		Timeout:   stsFetchTimeout,
		// RFC 8461 §3.3: redirects must not be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c
}

// Policy returns the domain's policy in effect, or nil when it has none
// (or none could be had and none is cached). RFC 8461 §5.1: a cached,
// unexpired policy is used while the TXT id is unchanged, and also when
// the TXT lookup or the fetch fails; a new id means a new fetch.
func (c *stsCache) Policy(ctx context.Context, domain string) *STSPolicy {
	now := c.now()
	c.mu.Lock()
	e, cached := c.entries[domain]
	c.mu.Unlock()
	if cached && !now.Before(e.expires) {
		cached = false
	}

	txts, err := c.resolver.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		if cached {
			return e.policy
		}
		if !dnsr.NotFound(err) {
			c.log.Debug("mta-sts txt lookup failed", "domain", domain, "err", err)
		}
		return nil
	}
	id, ok := stsRecordID(txts)
	if !ok {
		if cached {
			return e.policy
		}
		return nil
	}
	if cached && e.id == id {
		return e.policy
	}
	p, err := c.fetch(ctx, domain)
	if err != nil {
		c.log.Warn("mta-sts policy fetch failed", "domain", domain, "cached", cached, "err", err)
		if cached {
			return e.policy // RFC 8461 §5.1: keep the unexpired policy
		}
		return nil
	}
	c.store(domain, stsEntry{id: id, policy: p, expires: now.Add(p.MaxAge)}, now)
	return p
}

func (c *stsCache) store(domain string, e stsEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= stsCacheMax {
		for d, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, d)
			}
		}
		for d := range c.entries { // still full: drop any one
			if len(c.entries) < stsCacheMax {
				break
			}
			delete(c.entries, d)
		}
	}
	c.entries[domain] = e
}

// fetch gets https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461
// §3.3): a valid certificate for that name, status 200, text/plain, no
// redirects, bounded in size and time.
func (c *stsCache) fetch(ctx context.Context, domain string) (*STSPolicy, error) {
	ctx, cancel := context.WithTimeout(ctx, stsFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("content type %q, want text/plain", trunc(resp.Header.Get("Content-Type"), 60))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, stsMaxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > stsMaxPolicySize {
		return nil, errors.New("policy too large")
	}
	return ParseSTSPolicy(b)
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
