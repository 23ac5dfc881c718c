package pop3d

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// POP3's own Prometheus metrics (registered with the default registry).
// Connections, commands (by name and result, with latency) and logins are
// the shared kit's: postrider_connections_*, postrider_commands_total,
// postrider_command_duration_seconds and postrider_auth_total with
// proto="pop3". Label values are bounded: commands outside the command
// table are counted as "unknown".
var (
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
