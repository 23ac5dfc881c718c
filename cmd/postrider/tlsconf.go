package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/selfsigned"
)

// tlsConfig loads the configured certificate, or generates (once) a
// self-signed one in the data directory. TLS 1.2 is the minimum. The
// certificate is served through a certReloader, so that a renewed
// certificate is picked up without a restart (see certReloader).
func tlsConfig(cfg *config.Config, log *slog.Logger) (*tls.Config, *certReloader, error) {
	certFile, keyFile := cfg.TLSCertFile, cfg.TLSKeyFile
	if certFile == "" {
		certFile, keyFile = selfsignedPaths(cfg)
		if err := ensureSelfSigned(certFile, keyFile, cfg.Hostname); err != nil {
			return nil, nil, fmt.Errorf("self-signed certificate: %w", err)
		}
		log.Warn("no TLS certificate configured: using a self-signed certificate; clients will not trust it",
			"cert", certFile, "hint", "set POSTRIDER_TLS_CERT_FILE and POSTRIDER_TLS_KEY_FILE")
	}
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, nil, err
	}
	return &tls.Config{
		GetCertificate: r.getCertificate,
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tls12CipherSuites,
	}, r, nil
}

// certReloader serves the certificate and key files and reloads them when
// they change (checked every certCheckInterval: certbot and similar tools
// replace the files in place or through symlinks) and on SIGHUP, the usual
// renewal hook. New connections get the new certificate; a file that fails
// to load is logged and the certificate in use is kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	stamp             string // the files' identity when last loaded
	mu                sync.Mutex
}

// certCheckInterval is how often the files are checked for a change.
const certCheckInterval = 30 * time.Second

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// fileStamp identifies the current contents of the files cheaply: size and
// modification time of what the paths resolve to (following symlinks).
func (r *certReloader) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			b.WriteString("missing;")
			continue
		}
		fmt.Fprintf(&b, "%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

func (r *certReloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp := r.fileStamp()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s: %w", r.certFile, err)
	}
	r.cert.Store(&cert)
	r.stamp = stamp
	return nil
}

// reload loads the files again; force reloads even if they look unchanged
// (SIGHUP). It reports whether a new certificate is in use.
func (r *certReloader) reload(force bool) bool {
	r.mu.Lock()
	same := r.stamp == r.fileStamp()
	r.mu.Unlock()
	if same && !force {
		return false
	}
	if err := r.load(); err != nil {
		r.log.Error("TLS certificate not reloaded; keeping the one in use", "err", err)
		r.mu.Lock()
		r.stamp = r.fileStamp() // do not log the same broken files every interval
		r.mu.Unlock()
		return false
	}
	leaf := r.cert.Load().Leaf
	attrs := []any{"cert", r.certFile}
	if leaf != nil {
		attrs = append(attrs, "subject", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.log.Info("TLS certificate reloaded", attrs...)
	return true
}

// watch reloads on every value from hup and whenever the files change,
// until ctx ends.
func (r *certReloader) watch(ctx context.Context, hup <-chan os.Signal, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP: reloading the TLS certificate")
			r.reload(true)
		case <-t.C:
			r.reload(false)
		}
	}
}

// tls12CipherSuites are the TLS 1.2 suites offered: the ECDHE ones of
// Mozilla's "intermediate" server profile, AEAD only, so no CBC suite with
// SHA-1 or SHA-256 MACs (Lucky13-class padding oracles) and no static-RSA
// key exchange (no forward secrecy). Go picks their order itself; TLS 1.3
// suites are not configurable (all of them are AEAD).
var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// selfsignedPaths are where the generated certificate and key live.
func selfsignedPaths(cfg *config.Config) (certFile, keyFile string) {
	return filepath.Join(cfg.DataDir, "selfsigned-cert.pem"), filepath.Join(cfg.DataDir, "selfsigned-key.pem")
}

func ensureSelfSigned(certFile, keyFile, host string) error {
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && c.Leaf != nil && time.Now().Before(c.Leaf.NotAfter.Add(-24*time.Hour)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	c, err := selfsigned.New(host, []string{host, "localhost", "127.0.0.1", "::1"}, 2*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, c.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, c.CertPEM, 0o644)
}

func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
