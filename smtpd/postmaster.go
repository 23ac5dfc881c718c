package smtpd

import (
	"context"
	"errors"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// barePostmasterDomain stands in for the missing domain of "RCPT
// TO:<Postmaster>" (parseRcptArg): RFC 5321 §4.5.1, every SMTP server MUST
// accept Postmaster without a domain. The .invalid TLD (RFC 2606) can name
// no real domain.
const barePostmasterDomain = "postmaster.invalid"

// resolvePostmaster finds the accounts behind the server's postmaster:
// postmaster@ the server's host name or one of its parent domains
// (mx.example.org, then example.org) if that resolves, else postmaster@ the
// first local domain (in name order) where it resolves.
func (s *session) resolvePostmaster(ctx context.Context) (mailstore.Resolution, error) {
	var cands []string
	for h := strings.ToLower(strings.TrimSuffix(s.srv.cfg.Hostname, ".")); strings.Contains(h, "."); h = h[strings.IndexByte(h, '.')+1:] {
		cands = append(cands, h)
	}
	domains, err := s.srv.store.ListDomains(ctx)
	if err != nil {
		return mailstore.Resolution{}, err
	}
	cands = append(cands, domains...)
	for _, d := range cands {
		res, err := s.srv.rcache.resolve(ctx, s.srv.store, "postmaster@"+d)
		switch {
		case err == nil && len(res.Accounts)+len(res.Forwards) > 0:
			return res, nil
		case err == nil, errors.Is(err, mailstore.ErrNotLocalDomain), errors.Is(err, mailstore.ErrNoSuchRecipient),
			errors.Is(err, mailstore.ErrInvalidAddress):
			continue
		default:
			return mailstore.Resolution{}, err
		}
	}
	return mailstore.Resolution{}, mailstore.ErrNoSuchRecipient
}
