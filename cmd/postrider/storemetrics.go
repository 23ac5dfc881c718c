package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/mailstore/postgres"
)

// registerStoreMetrics exports the store's node-local caches: the content
// cache (hits, misses, size) and the change hints (how often a session
// could skip its catch-up query).
func registerStoreMetrics(reg prometheus.Registerer, st *postgres.Store) error {
	cache := func(f func(hits, misses uint64, bytes int64, entries int) float64) func() float64 {
		return func() float64 { return f(st.ContentCacheStats()) }
	}
	cs := []prometheus.Collector{
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
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
