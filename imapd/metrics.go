package imapd

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. They are registered on
// Config.Metrics when it is set.
type metrics struct {
	connections   prometheus.Counter
	active        prometheus.Gauge
	idle          prometheus.Gauge
	commands      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	logins        *prometheus.CounterVec
	limitRefusals *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postrider_imap_connections_total", Help: "IMAP connections accepted.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_imap_connections_active", Help: "IMAP connections open now.",
		}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_imap_idle_active", Help: "IMAP connections in IDLE now.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_imap_commands_total", Help: "IMAP commands by name and result (ok, no, bad, bye).",
		}, []string{"command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "postrider_imap_command_duration_seconds", Help: "IMAP command latency (IDLE excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"command"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_imap_logins_total", Help: "IMAP logins by result (ok, failed, throttled, limit).",
		}, []string{"result"}),
		limitRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_imap_limit_refusals_total", Help: "IMAP connections or commands refused by a limit.",
		}, []string{"limit"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connections, m.active, m.idle, m.commands, m.duration, m.logins, m.limitRefusals} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// commandLabel bounds the label values to known command names.
func commandLabel(name string, uid bool) string {
	if commands[name] == nil {
		return "unknown"
	}
	if uid {
		return "UID " + name
	}
	return name
}

// observe records one finished command.
func (m *metrics) observe(cx *cmdCtx, status string, start time.Time) {
	label := commandLabel(cx.name, cx.uid)
	m.commands.WithLabelValues(label, strings.ToLower(status)).Inc()
	if cx.name != "IDLE" {
		m.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
	}
}

// levelTrace is the protocol trace level: command lines, with credentials
// masked and literal contents never logged.
const levelTrace = slog.LevelDebug - 4

// traceCommand logs the first line of a command at levelTrace.
func (c *conn) traceCommand(cx *cmdCtx) {
	if !c.log.Enabled(context.Background(), levelTrace) {
		return
	}
	line := string(c.p.line)
	switch cx.name {
	case "LOGIN", "AUTHENTICATE":
		line = cx.tag + " " + cx.name + " ***"
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	c.log.Log(context.Background(), levelTrace, "C:", "line", line)
}
