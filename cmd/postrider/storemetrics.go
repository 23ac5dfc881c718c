package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/mailstore/postgres"
)

// storeObserver returns the Observer to open the store with and the
// metrics it feeds, for registerStoreMetrics.
func storeObserver() (postgres.Observer, []prometheus.Collector) {
	queries := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "postrider_store_query_duration_seconds", Help: "Database statements (kind query) and pipelined batches (kind batch), from send to last row, by result (ok, error).",
		Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	}, []string{"kind", "result"})
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "postrider_notify_lag_seconds", Help: "Change notifications from other nodes: from the sender's commit to arrival here (sampled; includes the nodes' clock difference).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
	})
	// The series, created now so that they exist at 0 and resolved once:
	// the observer runs on every statement.
	series := map[string][2]prometheus.Observer{}
	for _, k := range []string{"query", "batch"} {
		series[k] = [2]prometheus.Observer{queries.WithLabelValues(k, "ok"), queries.WithLabelValues(k, "error")}
	}
	obs := postgres.Observer{
		Query: func(kind string, took time.Duration, err error) {
			s, ok := series[kind]
			if !ok {
				s = [2]prometheus.Observer{queries.WithLabelValues(kind, "ok"), queries.WithLabelValues(kind, "error")}
			}
			i := 0
			if err != nil {
				i = 1
			}
			s[i].Observe(took.Seconds())
		},
		NotifyLag: func(d time.Duration) { lag.Observe(d.Seconds()) },
	}
	return obs, []prometheus.Collector{queries, lag}
}

// registerStoreMetrics exports the observer's metrics (storeObserver), the
// database connections opened and the store's node-local caches: the
// content cache (hits, misses, size) and the change hints (how often a
// session could skip its catch-up query).
func registerStoreMetrics(reg prometheus.Registerer, st *postgres.Store, observed []prometheus.Collector) error {
	cache := func(f func(hits, misses uint64, bytes int64, entries int) float64) func() float64 {
		return func() float64 { return f(st.ContentCacheStats()) }
	}
	cs := append(observed,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_store_connections_opened_total", Help: "Database connections the pool opened: the first ones, then one for each that broke or aged out (a database restart or failover shows as a jump).",
		}, func() float64 { o, _ := st.ConnectionStats(); return float64(o) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_store_listener_reconnects_total", Help: "Times the change-notification listener lost its database connection and reconnected.",
		}, func() float64 { _, r := st.ConnectionStats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_content_cache_hits_total", Help: "Message contents IMAP read from the node's content cache.",
		}, cache(func(h, _ uint64, _ int64, _ int) float64 { return float64(h) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_content_cache_misses_total", Help: "Message contents IMAP read from the database (then cached).",
		}, cache(func(_, m uint64, _ int64, _ int) float64 { return float64(m) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "postrider_content_cache_bytes", Help: "Estimated memory held by the content cache (bound: POSTRIDER_CONTENT_CACHE_SIZE).",
		}, cache(func(_, _ uint64, b int64, _ int) float64 { return float64(b) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "postrider_content_cache_entries", Help: "Message contents in the content cache.",
		}, cache(func(_, _ uint64, _ int64, n int) float64 { return float64(n) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_change_checks_skipped_total", Help: "Session catch-ups skipped because no notification said the mailbox changed.",
		}, func() float64 { s, _ := st.ChangeHintStats(); return float64(s) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "postrider_change_checks_needed_total", Help: "Session checks that found the mailbox may have changed (a catch-up query follows).",
		}, func() float64 { _, n := st.ChangeHintStats(); return float64(n) }),
	)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
