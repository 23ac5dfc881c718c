// Package config holds every POSTRIDER_* environment variable: its default,
// its meaning and its validation. `postrider config` prints this table, so the
// README never drifts from the code.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is the whole configuration. Each field's `desc` tag is its meaning.
type Config struct {
	DatabaseURL string `env:"DATABASE_URL" desc:"PostgreSQL URL (postgres://user@host:5432/db). Required: the embedded single-file store is not available yet. For a highly available PostgreSQL, list every host and ask for the primary: postgres://user@db1:5432,db2:5432/db?target_session_attrs=read-write&connect_timeout=5; after a failover each node reconnects to the new primary on its own (SMTP answers 4xx and /readyz fails until then)"`
	DataDir     string `env:"DATA_DIR" envDefault:"./data" desc:"directory for generated keys and certificates"`
	Hostname    string `env:"HOSTNAME" desc:"FQDN used in greetings and Received: headers (default: the host's name)"`

	SMTPAddr        string `env:"SMTP_ADDR" envDefault:":25" desc:"inbound SMTP (MX) listen address; empty disables (same for every _ADDR)"`
	SubmissionAddr  string `env:"SUBMISSION_ADDR" envDefault:":587" desc:"SMTP submission with STARTTLS"`
	SubmissionsAddr string `env:"SUBMISSIONS_ADDR" envDefault:":465" desc:"SMTP submission with implicit TLS"`
	IMAPAddr        string `env:"IMAP_ADDR" envDefault:":143" desc:"IMAP with STARTTLS"`
	IMAPSAddr       string `env:"IMAPS_ADDR" envDefault:":993" desc:"IMAP with implicit TLS"`
	POP3Addr        string `env:"POP3_ADDR" envDefault:":110" desc:"POP3 with STLS"`
	POP3SAddr       string `env:"POP3S_ADDR" envDefault:":995" desc:"POP3 with implicit TLS"`
	HTTPAddr        string `env:"HTTP_ADDR" envDefault:":8080" desc:"HTTP: /healthz, /readyz, /metrics"`

	TLSCertFile string `env:"TLS_CERT_FILE" desc:"PEM certificate chain; when empty (with the key) a self-signed certificate is generated in the data directory and a warning logged"`
	TLSKeyFile  string `env:"TLS_KEY_FILE" desc:"PEM private key for TLS_CERT_FILE"`

	AllowInsecureAuth bool          `env:"ALLOW_INSECURE_AUTH" envDefault:"false" desc:"allow plaintext authentication without TLS from non-loopback clients (loopback is always allowed)"`
	AuthCacheTTL      time.Duration `env:"AUTH_CACHE_TTL" envDefault:"15m" desc:"how long a node remembers that a password matched an account's stored hash (as an HMAC-SHA256 digest under a per-process random key), so the account's next logins with that password skip the argon2id computation; a wrong password or a changed password always gets the full check, and the failed-login throttle applies to every attempt; 0 turns it off (every login verifies argon2id, as Dovecot without auth_cache)"`
	TrustedProxies    []string      `env:"TRUSTED_PROXIES" envSeparator:"," desc:"comma-separated CIDRs whose connections must start with a PROXY protocol (v1/v2) header"`

	MaxMessageSize Size   `env:"MAX_MESSAGE_SIZE" envDefault:"52428800" desc:"largest message in bytes (suffixes K, M, G allowed); SMTP SIZE, IMAP APPENDLIMIT"`
	RelayHost      string `env:"RELAY_HOST" desc:"host:port of a smarthost that all outbound mail goes through instead of by MX (STARTTLS when offered; port 465 means implicit TLS)"`
	RelayUsername  string `env:"RELAY_USERNAME" desc:"user name for AUTH at RELAY_HOST; with it, TLS with a certificate valid for the relay's name is required and AUTH PLAIN (or LOGIN) is used"`
	RelayPassword  string `env:"RELAY_PASSWORD" secret:"true" desc:"password for RELAY_USERNAME"`
	MTASTSMode     string `env:"MTA_STS_MODE" envDefault:"testing" desc:"MTA-STS policy mode (enforce, testing or none; RFC 8461 §5) served for every local domain at /.well-known/mta-sts.txt on HTTP_ADDR, to be published over HTTPS by your TLS proxy; start with testing and switch to enforce once TLS reports show that senders reach you over TLS with a valid certificate"`

	DNSResolver     string        `env:"DNS_RESOLVER" desc:"host:port of the DNS server for outbound routing, MTA-STS and mail authentication; empty uses the system's (/etc/resolv.conf)"`
	QueueLifetime   time.Duration `env:"QUEUE_LIFETIME" envDefault:"120h" desc:"how long outbound mail is retried (back-off from 1 minute doubling to 1 hour) before its pending recipients fail and the sender gets a DSN"`
	DeliveryWorkers int           `env:"DELIVERY_WORKERS" envDefault:"16" desc:"concurrent outbound deliveries (SMTP connections) per node"`
	OutboundIPs     string        `env:"OUTBOUND_IPS" desc:"source address of outbound SMTP connections: one IPv4 and/or one IPv6 address of this host, comma-separated (as Postfix's smtp_bind_address and smtp_bind_address6), so that receivers see the address your SPF record and reverse DNS name; empty lets the system choose"`

	MaxConnsPerIP    int           `env:"MAX_CONNS_PER_IP" envDefault:"50" desc:"open connections allowed per client IP (IPv6 per /64) on each protocol; 0 = unlimited"`
	MaxConns         int           `env:"MAX_CONNS" envDefault:"2000" desc:"open connections allowed per node for each protocol: SMTP (all three SMTP listeners together), IMAP (both listeners) and POP3 (both listeners) each get this many; beyond it a client gets a temporary refusal (SMTP 421, IMAP BYE [UNAVAILABLE], POP3 -ERR [SYS/TEMP]) and is disconnected. An idle connection measured 9-11 KB of memory in plaintext and up to 70 KB with TLS, so 3 × 2000 idle TLS connections take about 420 MB; 0 = unlimited"`
	SMTPMinDataRate  int           `env:"SMTP_MIN_DATA_RATE" envDefault:"1024" desc:"lowest average rate in bytes/s of an SMTP DATA/BDAT transfer once its first 5 minutes of credit are used (as Postfix's smtpd_min_data_rate); a slower one gets 421 4.4.2 and nothing is stored; a transfer never lasts over 1 hour; 0 = no minimum"`
	MaxRecipients    int           `env:"MAX_RECIPIENTS" envDefault:"100" desc:"recipients per SMTP transaction"`
	InboundAuth      bool          `env:"INBOUND_AUTH" envDefault:"true" desc:"check SPF, DKIM and DMARC on mail received on SMTP_ADDR (port 25; submission is authenticated and not checked), record the verdict in an Authentication-Results: header field and apply DMARC_POLICY; false turns the checks off (forged Authentication-Results: fields naming HOSTNAME are still removed)"`
	DMARCPolicy      string        `env:"DMARC_POLICY" envDefault:"enforce" desc:"what a DMARC failure does: enforce = what the sender domain's policy says (p=reject: refused with 550 5.7.1, p=quarantine: delivered to the recipient's Junk mailbox); quarantine-only = both go to Junk, nothing is refused; report-only = delivered as usual, the verdict only in Authentication-Results:. A message whose From: names more than one domain (or that has several From: fields, or an unreadable one) counts as p=reject. A DNS failure during the checks gives 451 4.4.3 (the sender retries), except in report-only"`
	POP3KeepDeleted  bool          `env:"POP3_KEEP_DELETED" envDefault:"false" desc:"POP3 DELE hides messages from POP3 only instead of expunging them (IMAP still sees them)"`
	POP3MarkSeen     bool          `env:"POP3_MARK_SEEN" envDefault:"true" desc:"POP3 RETR sets the \\Seen flag"`
	DBMaxConns       int           `env:"DB_MAX_CONNS" envDefault:"32" desc:"PostgreSQL connections per node (pool size)"`
	ContentCacheSize Size          `env:"CONTENT_CACHE_SIZE" envDefault:"64M" desc:"memory in bytes (suffixes K, M, G allowed) each node keeps for message contents IMAP FETCH reads (parsed envelope and structure, messages up to 64 KB whole, the header of larger ones), least recently used first out; contents never change, so the cache is never stale"`
	DrainPeriod      time.Duration `env:"DRAIN_PERIOD" envDefault:"10s" desc:"after SIGTERM, how long the node keeps serving (existing and new connections) with /readyz answering 503, so that the load balancer takes it out of rotation before clients are told to go (SMTP 421, IMAP BYE, POP3 -ERR); longer than the balancer's health check interval times its fall count; a second SIGTERM or SIGINT ends it early; SIGINT skips it; 0 disables"`
	ShutdownTimeout  time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" desc:"how long in-flight work may finish, after the drain period, before it is cancelled"`

	TombstoneRetention time.Duration `env:"TOMBSTONE_RETENTION" envDefault:"720h" desc:"how long the UIDs of expunged messages are kept for IMAP resynchronisation (CONDSTORE/QRESYNC VANISHED); a client away longer is told every UID it knew that no longer exists; 0 keeps them forever"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" desc:"trace, debug, info, warn or error; trace logs every protocol line, with credentials and message contents masked"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"json" desc:"json or text"`
}

// Prefix is the common prefix of every variable.
const Prefix = "POSTRIDER_"

// Size is a byte count that accepts K, M and G suffixes (powers of 1024).
type Size int64

// UnmarshalText parses "52428800", "50M", "1G", "512k".
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1<<10, t[:n-1]
		case 'm', 'M':
			mult, t = 1<<20, t[:n-1]
		case 'g', 'G':
			mult, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v <= 0 || v > (1<<40)/mult {
		return fmt.Errorf("%q is not a size in bytes (e.g. 52428800 or 50M)", string(b))
	}
	*s = Size(v * mult)
	return nil
}

// Load reads the configuration from the environment and validates it. An
// error names the offending variable.
func Load() (*Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: Prefix}); err != nil {
		return nil, cleanEnvError(err)
	}
	c.applyEmptyAddrs()
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.Hostname = h
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func cleanEnvError(err error) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		msgs := make([]string, len(agg.Errors))
		for i, e := range agg.Errors {
			msgs[i] = e.Error()
			var pe env.ParseError
			if errors.As(e, &pe) {
				msgs[i] = fmt.Sprintf("%s%s: %v", Prefix, envNameOf(pe.Name), pe.Err)
			}
		}
		return fmt.Errorf("invalid configuration: %s", strings.Join(msgs, "; "))
	}
	return fmt.Errorf("invalid configuration: %w", err)
}

func (c *Config) validate() error {
	bad := func(name, format string, a ...any) error {
		return fmt.Errorf("invalid configuration: %s%s: %s", Prefix, name, fmt.Sprintf(format, a...))
	}
	addrs := []struct{ name, v string }{
		{"SMTP_ADDR", c.SMTPAddr}, {"SUBMISSION_ADDR", c.SubmissionAddr}, {"SUBMISSIONS_ADDR", c.SubmissionsAddr},
		{"IMAP_ADDR", c.IMAPAddr}, {"IMAPS_ADDR", c.IMAPSAddr}, {"POP3_ADDR", c.POP3Addr}, {"POP3S_ADDR", c.POP3SAddr},
		{"HTTP_ADDR", c.HTTPAddr},
	}
	for _, a := range addrs {
		if a.v == "" {
			continue
		}
		if err := checkHostPort(a.v); err != nil {
			return bad(a.name, "%q: %v", a.v, err)
		}
	}
	if c.RelayHost != "" {
		if err := checkHostPort(c.RelayHost); err != nil {
			return bad("RELAY_HOST", "%q: %v", c.RelayHost, err)
		}
	}
	switch c.MTASTSMode {
	case "enforce", "testing", "none":
	default:
		return bad("MTA_STS_MODE", "%q: want enforce, testing or none", c.MTASTSMode)
	}
	if c.RelayUsername != "" && c.RelayHost == "" {
		return bad("RELAY_USERNAME", "needs RELAY_HOST")
	}
	if c.RelayPassword != "" && c.RelayUsername == "" {
		return bad("RELAY_PASSWORD", "needs RELAY_USERNAME")
	}
	if c.DNSResolver != "" {
		if err := checkHostPort(c.DNSResolver); err != nil {
			return bad("DNS_RESOLVER", "%q: %v", c.DNSResolver, err)
		}
	}
	if c.QueueLifetime <= 0 {
		return bad("QUEUE_LIFETIME", "must be positive")
	}
	if _, err := c.OutboundAddrs(); err != nil {
		return bad("OUTBOUND_IPS", "%q: %v", c.OutboundIPs, err)
	}
	if c.DeliveryWorkers < 1 || c.DeliveryWorkers > 1000 {
		return bad("DELIVERY_WORKERS", "must be between 1 and 1000")
	}
	switch c.DMARCPolicy {
	case "enforce", "quarantine-only", "report-only":
	default:
		return bad("DMARC_POLICY", "%q: want enforce, quarantine-only or report-only", c.DMARCPolicy)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("TLS_CERT_FILE", "TLS_CERT_FILE and TLS_KEY_FILE must be set together")
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		return bad("TRUSTED_PROXIES", "%v", err)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return bad("LOG_LEVEL", "%v", err)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return bad("LOG_FORMAT", "%q: want json or text", c.LogFormat)
	}
	if c.MaxConnsPerIP < 0 {
		return bad("MAX_CONNS_PER_IP", "must not be negative")
	}
	if c.MaxConns < 0 {
		return bad("MAX_CONNS", "must not be negative")
	}
	if c.SMTPMinDataRate < 0 {
		return bad("SMTP_MIN_DATA_RATE", "must not be negative")
	}
	if c.MaxRecipients < 1 || c.MaxRecipients > 100000 {
		return bad("MAX_RECIPIENTS", "must be between 1 and 100000")
	}
	if c.DBMaxConns < 2 || c.DBMaxConns > 1000 {
		return bad("DB_MAX_CONNS", "must be between 2 and 1000")
	}
	if c.AuthCacheTTL < 0 || c.AuthCacheTTL > 24*time.Hour {
		return bad("AUTH_CACHE_TTL", "%s: want 0 (off) up to 24h", c.AuthCacheTTL)
	}
	if c.DrainPeriod < 0 || c.DrainPeriod > time.Hour {
		return bad("DRAIN_PERIOD", "must be between 0 and 1h")
	}
	if c.ShutdownTimeout < 0 {
		return bad("SHUTDOWN_TIMEOUT", "must not be negative")
	}
	if c.TombstoneRetention != 0 && c.TombstoneRetention < time.Hour {
		return bad("TOMBSTONE_RETENTION", "must be 0 (keep forever) or at least 1h")
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n<>[]") {
		return bad("HOSTNAME", "%q is not a host name", c.Hostname)
	}
	return nil
}

func checkHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

// OutboundAddrs parses OutboundIPs: at most one IPv4 and one IPv6
// address.
func (c *Config) OutboundAddrs() ([]netip.Addr, error) {
	var out []netip.Addr
	var v4, v6 bool
	for _, f := range strings.Split(c.OutboundIPs, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("%q is not a unicast IP address", f)
		}
		a = a.Unmap()
		if a.Is4() && v4 || a.Is6() && v6 {
			return nil, fmt.Errorf("more than one IPv%d address", map[bool]int{true: 4, false: 6}[a.Is4()])
		}
		v4, v6 = v4 || a.Is4(), v6 || a.Is6()
		out = append(out, a)
	}
	return out, nil
}

// TrustedProxyPrefixes parses TRUSTED_PROXIES (CIDRs or single addresses).
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR", s)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// ParseLevel maps LOG_LEVEL to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want trace, debug, info, warn or error", s)
}

// Variable describes one environment variable for `postrider config`.
type Variable struct {
	Name, Default, Meaning string
}

// Variables lists every variable in declaration order.
func Variables() []Variable {
	params, err := env.GetFieldParamsWithOptions(&Config{}, env.Options{Prefix: Prefix})
	if err != nil {
		return nil
	}
	descs := map[string]string{}
	collectDescs(descs)
	out := make([]Variable, 0, len(params))
	for _, p := range params {
		out = append(out, Variable{Name: p.Key, Default: p.DefaultValue, Meaning: descs[p.Key]})
	}
	return out
}
