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
// stops them with the frontends. A store without an outbound queue gets
// none (nothing can be queued on it either).
func startDelivery(cfg *config.Config, st any, log *slog.Logger) (*delivery.Engine, error) {
	qs, ok := st.(delivery.Store)
	if !ok {
		log.Warn("outbound delivery not started: the store has no outbound queue")
		return nil, nil
	}
	res, err := dnsr.New(cfg.DNSResolver)
	if err != nil {
		return nil, fmt.Errorf("POSTRIDER_DNS_RESOLVER: %w", err)
	}
	eng, err := delivery.New(delivery.Config{
		Hostname: cfg.Hostname, Resolver: res,
		RelayHost: cfg.RelayHost, RelayUsername: cfg.RelayUsername, RelayPassword: cfg.RelayPassword,
		Workers: cfg.DeliveryWorkers, QueueLifetime: cfg.QueueLifetime,
		Logger: log, Metrics: prometheus.DefaultRegisterer,
	}, qs)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	eng.Start()
	log.Info("outbound delivery started", "proto", "delivery", "workers", cfg.DeliveryWorkers, "relay", cfg.RelayHost)
	return eng, nil
}
