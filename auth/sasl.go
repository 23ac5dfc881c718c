package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/postrider/postrider/mailstore"
)

// SASL (RFC 4422) server side of the PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login) mechanisms. Frontends decode and encode
// base64, handle the client's "*" cancellation (RFC 4422 §3.5) and send the
// challenges this package returns.

// MaxSASLResponse bounds one decoded client response: an authzid and an
// authcid of 255 octets (RFC 4616 §2 requires accepting that much), two NULs
// and a password of MaxPasswordLength. Frontends may use it to bound the
// (base64) line they read.
const MaxSASLResponse = 255 + 1 + 255 + 1 + MaxPasswordLength

// Challenges of the LOGIN mechanism (draft-murchison-sasl-login-00 §2).
var (
	loginUsernameChallenge = []byte("Username:")
	loginPasswordChallenge = []byte("Password:")
)

// errSessionOver is returned when Next is called after the exchange ended.
var errSessionOver = errors.New("auth: SASL exchange already finished")

// Mechanisms returns the supported SASL mechanisms, strongest first.
func Mechanisms() []string { return []string{"PLAIN", "LOGIN"} }

// SASLSession is the server side of one SASL exchange.
type SASLSession interface {
	// Next takes the client's decoded response — nil when the client sent
	// none yet (no initial response) — and returns the next challenge, or
	// done=true on success (then Account is valid). Errors are those of
	// Authenticate, plus ErrMalformed and ErrAuthorizationFailed. After
	// done or an error the exchange is over.
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// Account is the authenticated account after done.
	Account() mailstore.Account
}

// NewSASL starts a server exchange for mech (case-insensitive, RFC 4422 §3.1)
// with the client at remote.
func (a *Authenticator) NewSASL(mech string, remote netip.Addr) (SASLSession, error) {
	switch strings.ToUpper(mech) {
	case "PLAIN":
		return &plainSession{a: a, remote: remote}, nil
	case "LOGIN":
		return &loginSession{a: a, remote: remote}, nil
	}
	return nil, ErrUnsupportedMechanism
}

type saslState int

const (
	saslStart saslState = iota
	saslWaiting
	saslWaitingPassword // LOGIN only
	saslOver
)

type plainSession struct {
	a       *Authenticator
	remote  netip.Addr
	state   saslState
	account mailstore.Account
}

func (s *plainSession) Account() mailstore.Account { return s.account }

// Next implements RFC 4616 §2: the client's one message is
// [authzid] NUL authcid NUL passwd. Without an initial response the server
// first sends an empty challenge (RFC 4422 §5 item 2a).
func (s *plainSession) Next(ctx context.Context, response []byte) ([]byte, bool, error) {
	switch s.state {
	case saslOver:
		return nil, false, errSessionOver
	case saslStart:
		if response == nil {
			s.state = saslWaiting
			return []byte{}, false, nil
		}
	}
	s.state = saslOver
	authzid, authcid, passwd, err := parsePlain(response)
	if err != nil {
		return nil, false, err
	}
	if authzid != "" && !sameIdentity(authzid, authcid) {
		// Checked before the password, so it reveals nothing about it.
		s.a.log(ctx).Info("SASL PLAIN authorization identity refused", slog.String("client", ClientBucket(s.remote)))
		return nil, false, ErrAuthorizationFailed
	}
	acct, err := s.a.Authenticate(ctx, authcid, passwd, s.remote)
	if err != nil {
		return nil, false, err
	}
	s.account = acct
	return nil, true, nil
}

// parsePlain splits a PLAIN message (RFC 4616 §2):
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//	authcid = 1*SAFE ; passwd = 1*SAFE ; SAFE = any UTF-8 character but NUL
//
// Identities must be valid UTF-8. The password is taken as octets: some
// clients send non-UTF-8 (e.g. Latin-1) passwords, which then simply have
// to match what was hashed.
func parsePlain(msg []byte) (authzid, authcid, passwd string, err error) {
	if len(msg) > MaxSASLResponse {
		return "", "", "", fmt.Errorf("%w: PLAIN message longer than %d octets", ErrMalformed, MaxSASLResponse)
	}
	zid, rest, ok1 := bytes.Cut(msg, []byte{0})
	cid, pw, ok2 := bytes.Cut(rest, []byte{0})
	switch {
	case !ok1 || !ok2:
		return "", "", "", fmt.Errorf("%w: PLAIN message needs two NUL separators", ErrMalformed)
	case bytes.IndexByte(pw, 0) >= 0:
		return "", "", "", fmt.Errorf("%w: PLAIN message has more than two NULs", ErrMalformed)
	case len(cid) == 0 || len(pw) == 0:
		return "", "", "", fmt.Errorf("%w: empty PLAIN authcid or password", ErrMalformed)
	case !utf8.Valid(zid) || !utf8.Valid(cid):
		return "", "", "", fmt.Errorf("%w: PLAIN identity is not UTF-8", ErrMalformed)
	}
	return string(zid), string(cid), string(pw), nil
}

// sameIdentity reports whether authzid names the same account as authcid.
// Postrider never lets one account act as another (no admin proxy logins),
// so an authzid is only accepted when it is the authcid itself.
func sameIdentity(authzid, authcid string) bool {
	if authzid == authcid {
		return true
	}
	z, err1 := mailstore.NormalizeAddress(authzid)
	c, err2 := mailstore.NormalizeAddress(authcid)
	return err1 == nil && err2 == nil && z == c
}

type loginSession struct {
	a        *Authenticator
	remote   netip.Addr
	state    saslState
	username string
	account  mailstore.Account
}

func (s *loginSession) Account() mailstore.Account { return s.account }

// Next implements LOGIN (draft-murchison-sasl-login-00 §2): the server asks
// "Username:" and "Password:", the client answers each. A client's initial
// response (SMTP "AUTH LOGIN <user>", common practice) is the username.
func (s *loginSession) Next(ctx context.Context, response []byte) ([]byte, bool, error) {
	if len(response) > MaxSASLResponse {
		s.state = saslOver
		return nil, false, fmt.Errorf("%w: LOGIN response longer than %d octets", ErrMalformed, MaxSASLResponse)
	}
	switch s.state {
	case saslStart:
		if response == nil {
			s.state = saslWaiting
			return loginUsernameChallenge, false, nil
		}
		fallthrough
	case saslWaiting:
		if len(response) == 0 || bytes.IndexByte(response, 0) >= 0 || !utf8.Valid(response) {
			s.state = saslOver
			return nil, false, fmt.Errorf("%w: LOGIN username empty or not UTF-8", ErrMalformed)
		}
		s.username = string(response)
		s.state = saslWaitingPassword
		return loginPasswordChallenge, false, nil
	case saslWaitingPassword:
		s.state = saslOver
		if len(response) == 0 || bytes.IndexByte(response, 0) >= 0 {
			return nil, false, fmt.Errorf("%w: LOGIN password empty or contains NUL", ErrMalformed)
		}
		acct, err := s.a.Authenticate(ctx, s.username, string(response), s.remote)
		if err != nil {
			return nil, false, err
		}
		s.account = acct
		return nil, true, nil
	}
	return nil, false, errSessionOver
}
