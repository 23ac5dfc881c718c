package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postrider/postrider/internal/config"
	"github.com/postrider/postrider/internal/zonerecords"
	"github.com/postrider/postrider/mailstore"
)

// opsStore is what the queue, dkim and dns commands use.
type opsStore interface {
	queueStore
	dkimStore
}

// openOpsStore opens the store for the queue, dkim and dns commands.
func openOpsStore(ctx context.Context) (opsStore, func(), error) {
	st, err := openAdminStore(ctx)
	if err != nil {
		return nil, nil, err
	}
	return st, st.Close, nil
}

func cmdDNS(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return usageErr("usage: postrider dns DOMAIN")
	}
	rest, err := aLabelArgs(args)
	if err != nil {
		return err
	}
	domain := strings.TrimSuffix(strings.ToLower(rest[0]), ".")
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if err := zonerecords.CheckHostname(cfg.Hostname); err != nil {
		return &exitError{code: 2, err: err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, closeStore, err := openOpsStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := checkLocal(ctx, st, domain); err != nil {
		return err
	}
	keys, err := st.ListDKIMKeys(ctx, domain)
	if err != nil {
		return err
	}
	text, err := zonerecords.Write(zonerecords.Params{
		Domain:    domain,
		Hostname:  cfg.Hostname,
		RelayHost: cfg.RelayHost,
		Policy:    zonerecords.NewPolicy(cfg.MTASTSMode, cfg.Hostname),
		Keys:      keys,
		Services:  zonerecords.ClientServices(serviceAddrs(cfg)),
		Now:       time.Now(),
	})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, text)
	// DMARC and TLS-RPT reports go to postmaster, which every domain must
	// have anyway (RFC 5321 §4.5.1).
	postmaster := "postmaster@" + domain
	if _, err := st.ResolveRecipient(ctx, postmaster); errors.Is(err, mailstore.ErrNoSuchRecipient) {
		fmt.Fprintf(stderr, "warning: %s receives no mail, but DMARC and TLS reports are sent to it (and RFC 5321 §4.5.1 requires it): add it, e.g. `postrider alias add %s ADMIN@%s`\n", postmaster, postmaster, domain)
	} else if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintf(stderr, "warning: %s has no DKIM key: run `postrider dkim generate %s`\n", domain, domain)
	}
	return nil
}

// serviceAddrs maps the client services of the SRV records to their
// listeners' addresses (empty: disabled).
func serviceAddrs(cfg *config.Config) map[string]string {
	return map[string]string{
		"submission": cfg.SubmissionAddr, "submissions": cfg.SubmissionsAddr,
		"imap": cfg.IMAPAddr, "imaps": cfg.IMAPSAddr,
		"pop3": cfg.POP3Addr, "pop3s": cfg.POP3SAddr,
	}
}
