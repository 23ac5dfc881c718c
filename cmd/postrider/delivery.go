package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/delivery"
	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/dnsr"
)

// newDelivery builds this node's outbound delivery engine; Start runs its
// workers.
func newDelivery(cfg *config.Config, st delivery.Store, log *slog.Logger) (*delivery.Engine, error) {
	res, err := dnsr.New(cfg.DNSResolver)
	if err != nil {
		return nil, fmt.Errorf("POSTRIDER_DNS_RESOLVER: %w", err)
	}
	src, _ := cfg.OutboundAddrs() // validated with the configuration
	eng, err := delivery.New(delivery.Config{
		SourceAddrs: src,
		Hostname:    cfg.Hostname, Resolver: res,
		RelayHost: cfg.RelayHost, RelayUsername: cfg.RelayUsername, RelayPassword: cfg.RelayPassword,
		Workers: cfg.DeliveryWorkers, QueueLifetime: cfg.QueueLifetime,
		Logger: log, Metrics: prometheus.DefaultRegisterer,
	}, st)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	return eng, nil
}
