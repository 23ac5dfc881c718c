package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/postrider/postrider/internal/config"
)

// healthcheckTimeout bounds the whole check: a container engine runs it
// every few seconds and must never pile them up.
const healthcheckTimeout = 5 * time.Second

// cmdHealthcheck asks this host's node whether it is ready (GET /readyz on
// POSTRIDER_HTTP_ADDR, or /healthz with --live): for container health
// checks in images without a shell or curl (distroless). Exit 0 when the
// answer is 200, 1 otherwise.
func cmdHealthcheck(args []string, stdout io.Writer) error {
	path := "/readyz"
	switch {
	case len(args) == 1 && args[0] == "--live":
		path = "/healthz"
	case len(args) != 0:
		return usageErr("usage: postrider healthcheck [--live]")
	}
	// Only the HTTP address matters here, so a node whose other settings
	// this command cannot check (no database URL) still gets an answer.
	cfg, err := config.Load()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg.HTTPAddr == "" {
		return usageErr("POSTRIDER_HTTP_ADDR is empty: the node has no HTTP listener to ask")
	}
	url := "http://" + localAddr(cfg.HTTPAddr) + path
	ctx, cancel := context.WithTimeout(context.Background(), healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s %s", url, resp.Status, msg)
	}
	fmt.Fprintln(stdout, msg)
	return nil
}

// localAddr turns a listen address into one to connect to on this host: a
// wildcard or empty host becomes loopback.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// cmdSelfsigned writes the self-signed certificate and key that serve
// would generate (selfsigned-cert.pem and selfsigned-key.pem in
// POSTRIDER_DATA_DIR, for POSTRIDER_HOSTNAME) unless a valid pair is
// already there, and exits. Run once before several nodes start, with the
// directory shared and POSTRIDER_TLS_CERT_FILE/KEY_FILE pointing at it,
// every node serves the same certificate (clients behind one balancer
// would otherwise see a different one on each connection).
func cmdSelfsigned(args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return usageErr("usage: postrider selfsigned (POSTRIDER_DATA_DIR and POSTRIDER_HOSTNAME say where and for whom)")
	}
	cfg, err := config.Load()
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	certFile, keyFile := selfsignedPaths(cfg)
	if err := ensureSelfSigned(certFile, keyFile, cfg.Hostname); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	fmt.Fprintf(stdout, "POSTRIDER_TLS_CERT_FILE=%s\nPOSTRIDER_TLS_KEY_FILE=%s\n", certFile, keyFile)
	return nil
}
