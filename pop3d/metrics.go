package pop3d

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Prometheus metrics (registered with the default registry, like every
// Postrider frontend). Label values are bounded: commands outside the
// command table are counted as "unknown".
var (
	mConnections = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_pop3_connections_total",
		Help: "POP3 connections accepted, by listener kind (plain, tls) and outcome (served, limited, tls_failed).",
	}, []string{"listener", "outcome"})
	mActive = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "postrider_pop3_connections_active",
		Help: "POP3 connections currently open.",
	})
	mCommands = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_pop3_commands_total",
		Help: "POP3 commands by name and result (ok, err).",
	}, []string{"command", "result"})
	mCommandSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "postrider_pop3_command_duration_seconds",
		Help:    "Time to execute POP3 commands, including sending the response.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"command"})
	mLogins = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_pop3_logins_total",
		Help: "POP3 login attempts by result (ok, invalid, throttled, in_use, error, insecure).",
	}, []string{"result"})
	mBytesSent = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_pop3_message_bytes_sent_total",
		Help: "Message octets sent by RETR and TOP (before byte-stuffing).",
	})
	mMessagesRetrieved = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_pop3_messages_retrieved_total",
		Help: "Messages sent in full by RETR.",
	})
	mMessagesDeleted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "postrider_pop3_messages_deleted_total",
		Help: "Messages deleted by POP3 clients at QUIT, by mode (expunged, hidden).",
	}, []string{"mode"})
	mLockLost = promauto.NewCounter(prometheus.CounterOpts{
		Name: "postrider_pop3_lock_lost_total",
		Help: "Sessions closed because their maildrop lock could not be renewed.",
	})
)

// knownCommand returns name if it is in the command table, else "unknown".
func metricName(name string) string {
	if _, ok := commands[name]; ok {
		return name
	}
	return "unknown"
}
