package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/imapd"
	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/dnsr"
	kit "github.com/postrider/postrider/internal/frontend"
	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/pop3d"
	"github.com/postrider/postrider/smtpd"
)

type listenSpec struct {
	envName string
	addr    string
	proto   string
	serve   func(net.Listener) error
}

// startFrontends builds the three protocol servers and starts a goroutine
// per configured listener. Every listener is opened before any is served.
func startFrontends(cfg *config.Config, st mailstore.Store, authn *auth.Authenticator, tlsConf *tls.Config,
	log *slog.Logger, wg *sync.WaitGroup, errs chan<- error) ([]frontend, error) {
	proxies, _ := cfg.TrustedProxyPrefixes()
	maxMsg := int64(cfg.MaxMessageSize)
	minRate := int64(cfg.SMTPMinDataRate)
	if minRate == 0 {
		minRate = -1 // no minimum (smtpd's zero means its default)
	}

	// What every frontend shares (the kit adds proto= to the logger).
	common := kit.Config{
		Hostname: cfg.Hostname, TLS: tlsConf, TrustedProxies: proxies, AllowInsecureAuth: cfg.AllowInsecureAuth,
		MaxConnsPerIP: cfg.MaxConnsPerIP, MaxConns: cfg.MaxConns,
		Logger: log, Metrics: prometheus.DefaultRegisterer,
	}
	inAuth, err := inboundAuth(cfg)
	if err != nil {
		return nil, err
	}
	smtpSrv, err := smtpd.New(smtpd.Config{
		Config:         common,
		MaxMessageSize: maxMsg, MaxRecipients: cfg.MaxRecipients, MinDataRate: minRate,
		InboundAuth: inAuth,
	}, st, authn)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	imapSrv, err := imapd.New(imapd.Config{Config: common, MaxMessageSize: maxMsg}, st, authn)
	if err != nil {
		return nil, fmt.Errorf("imap: %w", err)
	}
	pop3Srv, err := pop3d.New(pop3d.Config{
		Config: common, KeepDeleted: cfg.POP3KeepDeleted, MarkSeenOnRetr: cfg.POP3MarkSeen,
	}, st, authn)
	if err != nil {
		return nil, fmt.Errorf("pop3: %w", err)
	}

	specs := []listenSpec{
		{"POSTRIDER_SMTP_ADDR", cfg.SMTPAddr, "smtp", smtpSrv.ServeInbound},
		{"POSTRIDER_SUBMISSION_ADDR", cfg.SubmissionAddr, "submission", func(l net.Listener) error { return smtpSrv.ServeSubmission(l, false) }},
		{"POSTRIDER_SUBMISSIONS_ADDR", cfg.SubmissionsAddr, "submissions", func(l net.Listener) error { return smtpSrv.ServeSubmission(l, true) }},
		{"POSTRIDER_IMAP_ADDR", cfg.IMAPAddr, "imap", func(l net.Listener) error { return imapSrv.Serve(l, false) }},
		{"POSTRIDER_IMAPS_ADDR", cfg.IMAPSAddr, "imaps", func(l net.Listener) error { return imapSrv.Serve(l, true) }},
		{"POSTRIDER_POP3_ADDR", cfg.POP3Addr, "pop3", func(l net.Listener) error { return pop3Srv.Serve(l, false) }},
		{"POSTRIDER_POP3S_ADDR", cfg.POP3SAddr, "pop3s", func(l net.Listener) error { return pop3Srv.Serve(l, true) }},
	}
	var lns []net.Listener
	for _, s := range specs {
		if s.addr == "" {
			lns = append(lns, nil)
			continue
		}
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			for _, l := range lns {
				if l != nil {
					l.Close()
				}
			}
			return nil, fmt.Errorf("%s %s: %w", s.envName, s.addr, err)
		}
		lns = append(lns, ln)
	}
	for i, s := range specs {
		ln := lns[i]
		if ln == nil {
			continue
		}
		log.Info("listening", "proto", s.proto, "addr", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				errs <- fmt.Errorf("%s: %w", s.proto, err)
			}
		}()
	}
	return []frontend{smtpSrv, imapSrv, pop3Srv}, nil
}

// inboundAuth builds the SPF/DKIM/DMARC checker of port 25 mail; nil when
// POSTRIDER_INBOUND_AUTH is false.
func inboundAuth(cfg *config.Config) (*mailauth.Checker, error) {
	if !cfg.InboundAuth {
		return nil, nil
	}
	r, err := dnsr.New(cfg.DNSResolver)
	if err != nil {
		return nil, fmt.Errorf("POSTRIDER_DNS_RESOLVER: %w", err)
	}
	mode, err := mailauth.ParseMode(cfg.DMARCPolicy)
	if err != nil {
		return nil, fmt.Errorf("POSTRIDER_DMARC_POLICY: %w", err)
	}
	return &mailauth.Checker{Resolver: r, Mode: mode}, nil
}
