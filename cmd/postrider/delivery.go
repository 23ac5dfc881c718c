package main

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/delivery"
	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/dnsr"
)

// startDelivery starts this node's outbound delivery workers; shutdown
// stops them with the frontends.
func startDelivery(cfg *config.Config, st delivery.Store, log *slog.Logger) (*delivery.Engine, error) {
	res, err := dnsr.New(cfg.DNSResolver)
	if err != nil {
		return nil, fmt.Errorf("POSTRIDER_DNS_RESOLVER: %w", err)
	}
	eng, err := delivery.New(delivery.Config{
		Hostname: cfg.Hostname, Resolver: res,
		RelayHost: cfg.RelayHost, RelayUsername: cfg.RelayUsername, RelayPassword: cfg.RelayPassword,
		Workers: cfg.DeliveryWorkers, QueueLifetime: cfg.QueueLifetime,
		Logger: log, Metrics: prometheus.DefaultRegisterer,
	}, st)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	eng.Start()
	log.Info("outbound delivery started", "proto", "delivery", "workers", cfg.DeliveryWorkers, "relay", cfg.RelayHost)
	return eng, nil
}
