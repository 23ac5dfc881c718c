package imapd

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/postrider/postrider/auth"
	"github.com/postrider/postrider/mailstore"
)

// authenticator is what the server needs of package auth.
type authenticator interface {
	Authenticate(ctx context.Context, user, pass string, remote netip.Addr) (mailstore.Account, error)
	Mechanisms() []string
	NewSASL(mech string, remote netip.Addr) (saslSession, error)
	// failure classifies an authentication error.
	failure(err error) authFailure
}

// saslSession is one server-side SASL exchange.
type saslSession interface {
	Next(ctx context.Context, resp []byte) (challenge []byte, done bool, err error)
	Account() mailstore.Account
}

type authFailure int

const (
	authOtherError authFailure = iota // internal: logged, SERVERBUG
	authInvalid                       // wrong user or password, malformed exchange
	authThrottled                     // too many recent failures
)

type authAdapter struct{ a *auth.Authenticator }

func (x authAdapter) Authenticate(ctx context.Context, user, pass string, remote netip.Addr) (mailstore.Account, error) {
	return x.a.Authenticate(ctx, user, pass, remote)
}

// authContext lets package auth log with the connection's logger.
func authContext(ctx context.Context, log *slog.Logger) context.Context {
	return auth.ContextWithLogger(ctx, log)
}

func (authAdapter) Mechanisms() []string { return auth.Mechanisms() }

func (x authAdapter) NewSASL(mech string, remote netip.Addr) (saslSession, error) {
	s, err := x.a.NewSASL(mech, remote)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (authAdapter) failure(err error) authFailure {
	switch {
	case errors.Is(err, auth.ErrThrottled):
		return authThrottled
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrMalformed):
		return authInvalid
	}
	return authOtherError
}
