package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailauth"
)

// Defaults for the limits of Config left at zero. Every limit of the
// server is here or in Config; nothing else in the package hard-codes one.
const (
	DefaultMaxMessageSize = 50 << 20 // octets; SIZE (RFC 1870)
	// DefaultMaxRecipients is the minimum RFC 5321 §4.5.3.1.8 requires a
	// server to accept.
	DefaultMaxRecipients  = 100
	DefaultMaxErrors      = 20        // error replies before we disconnect
	DefaultMaxHeaderBytes = 256 << 10 // bound on a message's header section
	// DefaultCommandTimeout is RFC 5321 §4.5.3.2.7's server timeout.
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultDataTimeout bounds inactivity while a message is being
	// received (RFC 5321 §4.5.3.2.5 gives the client 3 minutes per block).
	DefaultDataTimeout = 5 * time.Minute
	// DefaultMessageTimeout bounds a whole DATA/BDAT transfer, so that a
	// slow but live 50 MB upload (≥ 15 KB/s) finishes.
	DefaultMessageTimeout = time.Hour
	// DefaultMinDataRate is the lowest average rate, in octets per second,
	// that a DATA/BDAT transfer must keep once it has used up DataTimeout
	// of credit (see conn.dataDeadline). Postfix ≥ 3.7 has the same
	// idea (smtpd_min_data_rate = 500, applied with
	// smtpd_per_request_deadline, by default only under overload), on top
	// of smtpd_timeout = 300 s per read; mox has a 30 s deadline per read
	// and maddy a single 10 min read_timeout. A per-read timeout alone lets
	// a client hold a connection for as long as the whole-message timeout
	// by sending one byte per DataTimeout; 1 KiB/s costs a sender that
	// wants to hold a slot bandwidth, while any real link is far faster.
	DefaultMinDataRate = 1024
	// DefaultDeliverTimeout bounds one store delivery.
	DefaultDeliverTimeout = 2 * time.Minute
	// DefaultSpoolMemory is how much of a message is kept in memory before
	// the rest is spooled to an unlinked temporary file.
	DefaultSpoolMemory = 1 << 20
)

// Fixed protocol bounds.
const (
	// maxCommandLine bounds an ordinary command line including CRLF. RFC
	// 5321 §4.5.3.1.4 gives 512 octets and lets extensions raise it; MAIL
	// with SIZE, BODY, SMTPUTF8, RET and ENVID (RFC 3461 §4.4) fits well.
	maxCommandLine = 2048
	// maxAuthLine bounds an AUTH command or SASL response line (RFC 4954 §4:
	// 12288 octets).
	maxAuthLine = 12288
	// readBufferSize is the per-connection input buffer; it must exceed
	// maxAuthLine.
	readBufferSize = 32 << 10
	// maxParams bounds the ESMTP parameters of one MAIL or RCPT command
	// (RFC 5321 §4.1.2 Mail-parameters); we know seven.
	maxParams = 10
	// maxEnvID bounds ENVID (RFC 3461 §4.4: 100 characters).
	maxEnvID = 100
	// maxMessageSizeCap bounds MaxMessageSize (1 TiB): sizes stay far from
	// int64 overflow when chunks are added up.
	maxMessageSizeCap = 1 << 40
	// writeTimeout bounds writing one reply.
	writeTimeout = time.Minute
	// shutdownWriteTimeout bounds writing the 421 sent at shutdown.
	shutdownWriteTimeout = 2 * time.Second
	// maxHelo bounds the EHLO/HELO argument kept for Received:.
	maxHelo = 255
)

// Config configures a Server. Zero limits take the Default* values above.
type Config struct {
	// Config holds what every frontend has: Hostname (the FQDN of the
	// greeting and Received: fields), TLS (STARTTLS, RFC 3207, and port
	// 465; nil disables both; never below TLS 1.2), TrustedProxies,
	// AllowInsecureAuth (AUTH without TLS from non-loopback clients),
	// MaxConnsPerIP and MaxConns (over all SMTP listeners of the server; 0
	// or less = unlimited; beyond them a client gets 421 instead of the
	// greeting), Logger and Metrics (the common frontend metrics).
	frontend.Config

	MaxMessageSize int64 // octets (SIZE); 0 = DefaultMaxMessageSize
	MaxRecipients  int   // per transaction; 0 = DefaultMaxRecipients
	// MaxErrors is how many error replies a client may provoke before it
	// is disconnected; 0 = DefaultMaxErrors.
	MaxErrors int
	// MaxHeaderBytes bounds a message's header section; 0 = default.
	MaxHeaderBytes int64

	CommandTimeout time.Duration // waiting for a command line
	DataTimeout    time.Duration // inactivity during DATA/BDAT
	MessageTimeout time.Duration // a whole DATA/BDAT transfer
	// MinDataRate is the lowest average DATA/BDAT rate in octets per
	// second after the first DataTimeout of credit; 0 = DefaultMinDataRate,
	// negative = no minimum (DataTimeout and MessageTimeout still apply).
	MinDataRate    int64
	DeliverTimeout time.Duration // one store delivery

	// SpoolDir holds spooled message data (unlinked temporary files);
	// "" = os.TempDir().
	SpoolDir string
	// SpoolMemory is how many octets of a message are kept in memory
	// before spooling to disk; 0 = DefaultSpoolMemory.
	SpoolMemory int64

	// OnQueued, when set, is called after a commit that queued mail for
	// remote recipients (e.g. to wake the delivery workers); it must not
	// block.
	OnQueued func()
	// SRSMaxAge is how long an address rewritten for forwarding is
	// honoured when a bounce comes back to it; 0 = srs.DefaultMaxAge.
	SRSMaxAge time.Duration
	// InboundAuth checks SPF, DKIM and DMARC on mail received on the
	// inbound listener (port 25), adds Authentication-Results: and applies
	// DMARC policies by its Mode (inboundauth.go); nil disables the checks.
	// Forged Authentication-Results: fields naming Hostname are removed
	// either way.
	InboundAuth *mailauth.Checker
}

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return cfg, fmt.Errorf("smtpd: no hostname: %w", err)
		}
		cfg.Hostname = h
	}
	if strings.ContainsAny(cfg.Hostname, " \t\r\n<>()[];") || len(cfg.Hostname) > maxHelo {
		return cfg, fmt.Errorf("smtpd: invalid hostname %q", cfg.Hostname)
	}
	if cfg.MaxMessageSize < 0 || cfg.MaxRecipients < 0 || cfg.MaxErrors < 0 || cfg.MaxHeaderBytes < 0 || cfg.SpoolMemory < 0 {
		return cfg, errors.New("smtpd: negative limit")
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize > maxMessageSizeCap {
		return cfg, fmt.Errorf("smtpd: MaxMessageSize %d over %d", cfg.MaxMessageSize, int64(maxMessageSizeCap))
	}
	// For the kit, 0 means no limit.
	cfg.MaxConnsPerIP, cfg.MaxConns = max(cfg.MaxConnsPerIP, 0), max(cfg.MaxConns, 0)
	if cfg.MaxRecipients == 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MaxErrors == 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CommandTimeout, DefaultCommandTimeout)
	def(&cfg.DataTimeout, DefaultDataTimeout)
	def(&cfg.MessageTimeout, DefaultMessageTimeout)
	def(&cfg.DeliverTimeout, DefaultDeliverTimeout)
	if cfg.MinDataRate == 0 {
		cfg.MinDataRate = DefaultMinDataRate
	}
	if cfg.SpoolMemory == 0 {
		cfg.SpoolMemory = DefaultSpoolMemory
	}
	if cfg.InboundAuth != nil {
		if cfg.InboundAuth.Resolver == nil {
			return cfg, errors.New("smtpd: InboundAuth without a Resolver")
		}
		// The checks read the header section smtpd accepted.
		chk := *cfg.InboundAuth
		chk.MaxHeader = int(cfg.MaxHeaderBytes)
		cfg.InboundAuth = &chk
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TLS != nil {
		t := cfg.TLS.Clone()
		// RFC 3207 leaves versions to the implementation; we refuse
		// anything older than TLS 1.2.
		if t.MinVersion < tls.VersionTLS12 {
			t.MinVersion = tls.VersionTLS12
		}
		cfg.TLS = t
	}
	return cfg, nil
}
