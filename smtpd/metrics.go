package smtpd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Prometheus metrics (default registry). Label values are bounded sets.
var (
	connsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_connections_total",
		Help: "SMTP connections accepted, by role (inbound, submission, submissions).",
	}, []string{"role"})
	connsActive = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postrider_smtp_connections_active",
		Help: "SMTP connections open, by role.",
	}, []string{"role"})
	connRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_connections_rejected_total",
		Help: "SMTP connections refused before the greeting, by reason (per_ip_limit, proxy_header, tls_handshake).",
	}, []string{"reason"})
	commands = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_commands_total",
		Help: "SMTP command replies, by command and reply class (2xx..5xx); MESSAGE is the reply to the end of DATA.",
	}, []string{"command", "result"})
	messagesAccepted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_messages_accepted_total",
		Help: "Messages delivered to the store and acknowledged with 250, by role.",
	}, []string{"role"})
	messagesRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_messages_rejected_total",
		Help: "Messages refused at the end of DATA/BDAT, by role and reason.",
	}, []string{"role", "reason"})
	rcptRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_recipients_rejected_total",
		Help: "RCPT/MAIL addresses refused, by reason.",
	}, []string{"reason"})
	bytesReceived = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_received_bytes_total",
		Help: "Octets of message content received in accepted messages, by role.",
	}, []string{"role"})
	deliveryLatency = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "postrider_smtp_delivery_duration_seconds",
		Help:    "Time of the store delivery (commit included) of one accepted message.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	authAttempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_auth_total",
		Help: "AUTH exchanges on submission, by result (ok, invalid, throttled, malformed, error).",
	}, []string{"result"})
	bareNewline = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_bare_newline_total",
		Help: "Bare CR or LF seen, by where (command, data).",
	}, []string{"where"})
	discardedPlaintext = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_smtp_starttls_discarded_bytes_total",
		Help: "Plaintext octets pipelined after STARTTLS and discarded (RFC 3207 §4.2).",
	})
	lineTooLong = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_smtp_line_too_long_total",
		Help: "Connections closed for an over-long command line.",
	})
	tooManyErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_smtp_too_many_errors_total",
		Help: "Connections closed after too many error replies.",
	})
)

// metricVerb bounds the command label.
func metricVerb(v string) string {
	switch v {
	case "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "AUTH", "STARTTLS", "MESSAGE":
		return v
	}
	return "OTHER"
}
