package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// maintenanceLease names the cluster lease that makes one node at a time
// run the periodic maintenance.
const maintenanceLease = "maintenance:tombstones"

// runMaintenance prunes the tombstones of messages expunged more than
// retention ago, about once per interval across the cluster: each node
// tries every interval (jittered) and only the one that takes the lease,
// held for the interval, does the work. It returns when ctx ends.
// The first run is after first.
func runMaintenance(ctx context.Context, st mailstore.Store, retention, interval, first time.Duration, holder string, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	wait := first
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = interval + jitter(interval/10)
		ok, err := st.AcquireLease(ctx, maintenanceLease, holder, interval)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("maintenance: lease", "err", err)
			}
			continue
		}
		if !ok {
			continue // another node has it this round
		}
		start := time.Now()
		n, err := st.PruneTombstones(ctx, start.Add(-retention))
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("maintenance: pruning tombstones failed", "pruned", n, "err", err)
			}
			continue
		}
		log.Info("maintenance: pruned tombstones", "pruned", n, "older_than", retention.String(), "took", time.Since(start).String())
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
