package frontend

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// allMetrics are the common metrics of every frontend, with a proto label;
// one set per registry, shared by the frontends registered on it.
type allMetrics struct {
	connections *prometheus.CounterVec
	open        *prometheus.GaugeVec
	refused     *prometheus.CounterVec
	commands    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	auth        *prometheus.CounterVec
}

// Metrics are one frontend's view of the common metrics.
type Metrics struct {
	connections *prometheus.CounterVec // by tls
	open        *prometheus.GaugeVec   // by tls (active now: yes, no)
	openTLS     prometheus.Gauge       // open with tls="yes"
	openPlain   prometheus.Gauge       // open with tls="no"
	refused     *prometheus.CounterVec // by reason
	commands    *prometheus.CounterVec // by command, result
	duration    prometheus.ObserverVec // by command
	auth        *prometheus.CounterVec // by result
}

var (
	registriesMu sync.Mutex
	registries   = map[prometheus.Registerer]*allMetrics{}
)

func newAllMetrics() *allMetrics {
	return &allMetrics{
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_connections_total", Help: "Connections accepted, by protocol and whether TLS started at once.",
		}, []string{"proto", "tls"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postrider_connections_open", Help: "Connections being served, by protocol and whether TLS is active (from the start or after STARTTLS/STLS).",
		}, []string{"proto", "tls"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_connections_refused_total", Help: "Connections refused before the greeting, by protocol and reason (per_ip_limit, limit, shutdown, proxy_header, tls_handshake).",
		}, []string{"proto", "reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_commands_total", Help: "Commands by protocol, name and result (ok, no, bad, error...).",
		}, []string{"proto", "command", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "postrider_command_duration_seconds", Help: "Command latency by protocol and name (IMAP IDLE excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"proto", "command"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_auth_total", Help: "Authentication attempts by protocol and result (ok, failed, throttled, ...).",
		}, []string{"proto", "result"}),
	}
}

// metricsFor returns the metric set registered on reg (registering it the
// first time); nil reg gives an unregistered set.
func metricsFor(reg prometheus.Registerer) (*allMetrics, error) {
	if reg == nil {
		return newAllMetrics(), nil
	}
	registriesMu.Lock()
	defer registriesMu.Unlock()
	if m, ok := registries[reg]; ok {
		return m, nil
	}
	m := newAllMetrics()
	for _, c := range []prometheus.Collector{m.connections, m.open, m.refused, m.commands, m.duration, m.auth} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	registries[reg] = m
	return m, nil
}

func (m *allMetrics) forProto(proto string) *Metrics {
	l := prometheus.Labels{"proto": proto}
	fm := &Metrics{
		connections: m.connections.MustCurryWith(l),
		open:        m.open.MustCurryWith(l),
		refused:     m.refused.MustCurryWith(l),
		commands:    m.commands.MustCurryWith(l),
		duration:    m.duration.MustCurryWith(l),
		auth:        m.auth.MustCurryWith(l),
	}
	// The series of the fixed label values exist from the start, at 0, so
	// that a dashboard's rate() shows 0 rather than no data.
	for _, t := range []string{"yes", "no"} {
		fm.connections.WithLabelValues(t)
	}
	fm.openTLS, fm.openPlain = fm.open.WithLabelValues("yes"), fm.open.WithLabelValues("no")
	for _, r := range []string{RefusePerIP.String(), RefuseTotal.String(), RefuseShutdown.String(), "proxy_header", "tls_handshake"} {
		fm.refused.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed", "throttled"} {
		fm.auth.WithLabelValues(r)
	}
	return fm
}

// Command counts one command with its result and latency. Callers keep
// command names to a fixed set (unknown ones as "unknown").
func (m *Metrics) Command(name, result string, took time.Duration) {
	m.commands.WithLabelValues(name, result).Inc()
	if took >= 0 {
		m.duration.WithLabelValues(name).Observe(took.Seconds())
	}
}

// Auth counts one authentication attempt's result.
func (m *Metrics) Auth(result string) { m.auth.WithLabelValues(result).Inc() }
