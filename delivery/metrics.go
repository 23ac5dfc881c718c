package delivery

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	items, recipients, oldest prometheus.Gauge
	results                   *prometheus.CounterVec // by result: delivered, deferred, failed
	connections               *prometheus.CounterVec // by tls: tls, plain
	bytes                     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		items: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_queue_items", Help: "Outbound queue items with recipients still pending (sampled).",
		}),
		recipients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_queue_recipients", Help: "Outbound queue recipients still pending (sampled).",
		}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postrider_queue_oldest_age_seconds", Help: "Age of the oldest outbound queue item (sampled; 0 when empty).",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_delivery_recipients_total", Help: "Outbound delivery attempts per recipient, by result (delivered, deferred, failed).",
		}, []string{"result"}),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postrider_delivery_connections_total", Help: "Outbound SMTP connections established, by whether TLS was used (tls, plain).",
		}, []string{"tls"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postrider_delivery_bytes_total", Help: "Octets of queued messages a receiver accepted for at least one recipient, once per SMTP transaction (a message sent to two domains counts twice).",
		}),
	}
	for _, r := range []string{"delivered", "deferred", "failed"} {
		m.results.WithLabelValues(r)
	}
	m.connections.WithLabelValues("tls")
	m.connections.WithLabelValues("plain")
	if reg == nil {
		return m, nil
	}
	// A second engine on the same registry (tests) shares the first's.
	if err := reg.Register(m.bytes); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.bytes = are.ExistingCollector.(prometheus.Counter)
	}
	gauges := []*prometheus.Gauge{&m.items, &m.recipients, &m.oldest}
	for _, g := range gauges {
		if err := reg.Register(*g); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			*g = are.ExistingCollector.(prometheus.Gauge)
		}
	}
	for _, v := range []**prometheus.CounterVec{&m.results, &m.connections} {
		if err := reg.Register(*v); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			*v = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return m, nil
}
