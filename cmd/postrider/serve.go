package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/zonerecords"
	"github.com/postrider/postrider/mailstore/postgres"
)

func newLogger(cfg *config.Config) *slog.Logger {
	return newLoggerTo(cfg, os.Stderr)
}

func newLoggerTo(cfg *config.Config, w io.Writer) *slog.Logger {
	lvl, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: replaceLogAttr}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// replaceLogAttr names the trace level TRACE (slog would print DEBUG-4)
// and writes durations as strings with units ("1.52ms") instead of bare
// nanosecond integers.
func replaceLogAttr(groups []string, a slog.Attr) slog.Attr {
	switch {
	case len(groups) == 0 && a.Key == slog.LevelKey:
		if l, ok := a.Value.Any().(slog.Level); ok && l <= config.LevelTrace {
			a.Value = slog.StringValue("TRACE")
		}
	case a.Value.Kind() == slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// frontend is one protocol server with its listeners.
type frontend interface {
	Shutdown(ctx context.Context) error
}

func cmdServe(args []string) error {
	if len(args) != 0 {
		return usageErr("usage: postrider serve (configuration comes from POSTRIDER_* variables)")
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	for _, name := range config.UnknownVariables(os.Environ()) {
		log.Warn("unknown configuration variable ignored", "var", name)
	}

	// The first SIGINT or SIGTERM ends ctx (and so a start in progress);
	// the signal itself decides whether the node drains first, and a
	// second one ends the drain.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	firstSig := make(chan os.Signal, 1)
	go func() {
		select {
		case sig := <-sigs:
			firstSig <- sig
			stop()
		case <-ctx.Done():
		}
	}()
	// SIGHUP reloads the TLS certificate; it must never stop the server
	// (its default action would, and it is what renewal hooks send).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := postgres.Migrate(startCtx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("database migration: %w", err)
	}
	observer, observed := storeObserver()
	st, err := postgres.Open(startCtx, cfg.DatabaseURL, postgres.Options{MaxConns: int32(cfg.DBMaxConns), Logger: log,
		ContentCacheBytes: int64(cfg.ContentCacheSize), Observer: observer})
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer st.Close()
	if err := registerStoreMetrics(prometheus.DefaultRegisterer, st, observed); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	authn := auth.New(st, auth.Options{Logger: log, VerifiedLoginTTL: cfg.AuthCacheTTL})
	tlsConf, certs, err := tlsConfig(cfg, log)
	if err != nil {
		return err
	}

	// Open every listener before serving anything, so that a taken port
	// stops the start cleanly.
	var (
		wg        sync.WaitGroup
		serveErrs = make(chan error, 16)
		shutdown  atomic.Bool
	)
	// The delivery engine exists before smtpd, which wakes its workers
	// after every commit that queued mail; it starts once the listeners
	// are open and is stopped with the frontends.
	eng, err := newDelivery(cfg, st, log)
	if err != nil {
		return err
	}
	fronts, err := startFrontends(cfg, st, authn, tlsConf, eng.Kick, log, &wg, serveErrs)
	if err != nil {
		return err
	}
	eng.Start()
	log.Info("outbound delivery started", "proto", "delivery", "workers", cfg.DeliveryWorkers, "relay", cfg.RelayHost)
	fronts = append(fronts, eng)

	var httpSrv *http.Server
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			shutdownAll(fronts, time.Second)
			return fmt.Errorf("POSTRIDER_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
		httpSrv = &http.Server{Handler: httpHandler(cfg, st, &shutdown, log), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErrs <- fmt.Errorf("http: %w", err)
			}
		}()
		log.Info("listening", "proto", "http", "addr", ln.Addr().String())
	}
	mctx, stopMaintenance := context.WithCancel(context.Background()) // runs through the drain
	defer stopMaintenance()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The first run comes soon after start (so that a cluster that
		// restarts often still prunes), spread over the nodes.
		holder := cfg.Hostname + ":" + strconv.Itoa(os.Getpid())
		runMaintenance(mctx, st, cfg.TombstoneRetention, time.Hour, time.Minute+jitter(time.Minute), holder, log)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		certs.watch(mctx, hup, certCheckInterval)
	}()
	log.Info("postrider started", "version", version, "hostname", cfg.Hostname)

	var runErr error
	select {
	case <-ctx.Done():
		sig := <-firstSig
		shutdown.Store(true) // /readyz fails from now on
		if sig == syscall.SIGTERM && cfg.DrainPeriod > 0 {
			runErr = drain(cfg.DrainPeriod, sigs, serveErrs, log)
		}
		log.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
	case runErr = <-serveErrs:
		log.Error("server failed; shutting down", "err", runErr)
	}
	shutdown.Store(true)
	stopMaintenance()
	shutdownAll(fronts, cfg.ShutdownTimeout)
	if httpSrv != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = httpSrv.Shutdown(sctx)
		c()
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// drain is the first stage of a SIGTERM: /readyz already fails, so that
// the load balancer's health checks take the node out of rotation, while
// every listener still accepts and every session goes on as usual (a
// client the balancer still sends here is served, not refused). It ends
// after period, at a second signal, or when a server fails.
func drain(period time.Duration, sigs <-chan os.Signal, serveErrs <-chan error, log *slog.Logger) error {
	log.Info("draining: /readyz fails, connections are still served", "period", period.String())
	t := time.NewTimer(period)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case sig := <-sigs:
		log.Info("drain ended early", "signal", sig.String())
		return nil
	case err := <-serveErrs:
		log.Error("server failed while draining", "err", err)
		return err
	}
}

func shutdownAll(fronts []frontend, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fronts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = f.Shutdown(ctx)
		}()
	}
	wg.Wait()
}

func httpHandler(cfg *config.Config, st *postgres.Store, shutdown *atomic.Bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	// RFC 8461 §3.3: the MTA-STS policy of every local domain, for the
	// operator's HTTPS proxy to publish at https://mta-sts.DOMAIN/.
	mux.Handle("GET "+zonerecords.PolicyPath, zonerecords.PolicyHandler(zonerecords.NewPolicy(cfg.MTASTSMode, cfg.Hostname), st, log))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if shutdown.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	return mux
}
