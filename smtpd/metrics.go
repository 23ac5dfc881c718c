package smtpd

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// SMTP's own Prometheus metrics (default registry); connections, commands
// and logins are the frontend kit's common metrics (proto="smtp"). Label
// values are bounded sets.
var (
	messagesAccepted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_messages_accepted_total",
		Help: "Messages delivered to the store and acknowledged with 250, by role.",
	}, []string{"role"})
	messagesRejected = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_messages_rejected_total",
		Help: "Messages refused at the end of DATA/BDAT, by role and reason.",
	}, []string{"role", "reason"})
	messagesQueued = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_messages_queued_total",
		Help: "Queue items committed for outbound delivery (remote recipients of a submission, forwards, SRS bounces), by role.",
	}, []string{"role"})
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
	bareNewline = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_smtp_bare_newline_total",
		Help: "Bare line endings seen, by where: command (connection closed), data (bare CR, message refused), data_lf (message with bare LFs stored with CRLF).",
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

// metricVerb bounds the command label ("unknown" for anything else).
func metricVerb(v string) string {
	switch v {
	case "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS",
		"MESSAGE", // the reply at the end of DATA
		"CONNECT": // the greeting
		return v
	}
	return "unknown"
}
