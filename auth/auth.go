// Package auth verifies logins for the SMTP submission, IMAP and POP3
// frontends: password hashing (argon2id, plus verification of imported
// Dovecot-style hashes), the SASL PLAIN and LOGIN mechanisms, and throttling
// of failed logins kept in the store so that it holds across nodes.
//
// It knows nothing of any wire protocol: frontends decode base64, handle the
// "*" cancellation and map the errors of this package to replies:
//
//   - ErrInvalidCredentials (and ErrAuthorizationFailed, which wraps it):
//     unknown user or wrong password, deliberately indistinguishable;
//   - ErrThrottled (a *ThrottledError with RetryAfter): too many failures;
//   - ErrMalformed: a SASL response that does not parse;
//   - anything else: a temporary failure (the store is unreachable, the
//     context was cancelled).
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// Errors returned by Authenticate and SASL sessions.
var (
	// ErrInvalidCredentials means the user is unknown or the password is
	// wrong; callers cannot (and must not try to) tell which.
	ErrInvalidCredentials = errors.New("auth: invalid credentials")
	// ErrAuthorizationFailed means a SASL client asked to act as another
	// identity (RFC 4616 §2 authzid), which Postrider never permits. It wraps
	// ErrInvalidCredentials, so a frontend that only checks that still
	// answers correctly; IMAP may answer [AUTHORIZATIONFAILED] (RFC 5530).
	ErrAuthorizationFailed = fmt.Errorf("%w: authorization identity not permitted", ErrInvalidCredentials)
	// ErrThrottled is wrapped by *ThrottledError.
	ErrThrottled = errors.New("auth: too many failed logins")
	// ErrMalformed means a SASL client response does not follow the
	// mechanism's syntax.
	ErrMalformed = errors.New("auth: malformed SASL response")
	// ErrUnsupportedMechanism is returned by NewSASL for a mechanism not in
	// Mechanisms().
	ErrUnsupportedMechanism = errors.New("auth: unsupported SASL mechanism")
)

// ThrottledError refuses a login without checking the password because too
// many logins failed recently. errors.Is(err, ErrThrottled) is true.
type ThrottledError struct {
	// RetryAfter is an upper bound of the time until the refusal lifts, if
	// no further failures happen.
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("auth: too many failed logins, retry after %s", e.RetryAfter.Round(time.Second))
}

// Unwrap makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Unwrap() error { return ErrThrottled }

// Store is the subset of mailstore.Store that auth needs (mailstore.Store
// satisfies it).
type Store interface {
	GetAccount(ctx context.Context, address string) (mailstore.Account, error)
	SetPasswordHash(ctx context.Context, accountID int64, hash string) error
	ReserveAuthFailure(ctx context.Context, keys []string, limits []int, since, at time.Time) (mailstore.AuthReservation, error)
	ConfirmAuthFailure(ctx context.Context, r mailstore.AuthReservation) error
	ReleaseAuthFailure(ctx context.Context, r mailstore.AuthReservation, forget []string) error
}

var _ Store = mailstore.Store(nil)

// Options configure an Authenticator. The zero value is valid.
type Options struct {
	// Argon2 are the parameters of new hashes (and of rehashing); zero
	// selects DefaultArgon2Params. Tests may pass something cheaper.
	Argon2 Argon2Params
	// Throttle is the failed-login policy; zero fields take defaults.
	Throttle ThrottlePolicy
	// MaxConcurrentHashes bounds how many password hashes are computed at
	// once (each argon2id computation holds MemoryKiB of memory); logins
	// beyond it wait. Default: GOMAXPROCS.
	MaxConcurrentHashes int
	// Now returns the current time (tests); default time.Now.
	Now func() time.Time
	// Logger is used when the context carries none (see ContextWithLogger);
	// default slog.Default().
	Logger *slog.Logger
	// VerifiedLoginTTL is how long a successful login's password is
	// remembered (as a keyed digest) so that the account's next logins
	// with the same password and stored hash skip argon2id (verified.go);
	// zero turns this off.
	VerifiedLoginTTL time.Duration
}

// Authenticator verifies logins. It is safe for concurrent use.
type Authenticator struct {
	store    Store
	params   Argon2Params
	policy   ThrottlePolicy
	now      func() time.Time
	logger   *slog.Logger
	hashSem  chan struct{}
	sleep    func(ctx context.Context, d time.Duration) error // replaced in tests
	dummy    func() string
	storeTTL time.Duration  // bound on writes done after the client's context ends
	gcBusy   atomic.Bool    // a reclaimHashMemory collection is running
	verified *verifiedCache // nil when off
	hashes   atomic.Int64   // password hash verifications run (tests)
}

// New returns an Authenticator over store.
func New(store Store, opts Options) *Authenticator {
	a := &Authenticator{
		store:    store,
		params:   opts.Argon2,
		policy:   opts.Throttle.withDefaults(),
		now:      opts.Now,
		logger:   opts.Logger,
		sleep:    sleepContext,
		storeTTL: 10 * time.Second,
		verified: newVerifiedCache(opts.VerifiedLoginTTL),
	}
	if a.params == (Argon2Params{}) {
		a.params = DefaultArgon2Params
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.logger == nil {
		a.logger = slog.Default()
	}
	n := opts.MaxConcurrentHashes
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	a.hashSem = make(chan struct{}, n)
	// The dummy hash is what unknown users are verified against, so that
	// they cost the same time as known ones. It is computed in the
	// background now, not on the first login (which would make the first
	// unknown user measurably slower), once per process and parameters.
	a.dummy = dummyHash(a.params)
	go a.dummy()
	return a
}

// dummies holds one dummy-hash function per Argon2Params.
var dummies sync.Map

func dummyHash(params Argon2Params) func() string {
	f, _ := dummies.LoadOrStore(params, sync.OnceValue(func() string {
		h, err := params.Hash(randomPassword())
		if err != nil {
			// Only possible with invalid parameters; fall back to defaults.
			h, _ = DefaultArgon2Params.Hash(randomPassword())
		}
		return h
	}))
	return f.(func() string)
}

type loggerKey struct{}

// ContextWithLogger attaches a logger (typically carrying the connection id)
// that Authenticate and SASL sessions use for the login's log lines.
func ContextWithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

func (a *Authenticator) log(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return a.logger
}

// Authenticate verifies a login. The username is normalised with
// mailstore.NormalizeAddress; remote is the client's address (after PROXY
// protocol), which keys the throttling (see ThrottlePolicy; an invalid remote
// counts under one shared "unknown" address, so always pass it).
//
// Errors: ErrInvalidCredentials for an unknown user, an invalid username, a
// wrong, empty or over-long password, or an account without a usable hash — all
// alike, also in timing (unknown users are verified against a dummy argon2id
// hash); *ThrottledError; anything else is a temporary failure.
//
// On success the failures of this client address are forgotten and, if the
// stored hash is not argon2id with the current parameters, the password is
// rehashed and stored (failure to store is logged, not returned).
func (a *Authenticator) Authenticate(ctx context.Context, username, password string, remote netip.Addr) (mailstore.Account, error) {
	log := a.log(ctx)
	addr, addrErr := mailstore.NormalizeAddress(username)
	if addrErr != nil || len(username) > MaxUsernameLength {
		addr = ""
	}
	keys := throttleKeys(addr, remote)
	now := a.now()
	// One atomic step in the store decides and, unless refused, records this
	// attempt as a failure, so that concurrent attempts on any node count it.
	res, err := a.store.ReserveAuthFailure(ctx, keys.list(), keys.limits(a.policy), now.Add(-a.policy.Window), now)
	if err != nil {
		return mailstore.Account{}, fmt.Errorf("auth: reserving login attempt: %w", err)
	}
	v := a.policy.decide(keys, res.Counts, res.Decided)
	if !res.Reserved || v.blocked {
		if res.Reserved {
			// The store and decide apply the same limits; should they
			// ever disagree, refuse and take nothing.
			a.releaseAttempt(ctx, res, nil)
		}
		if v.retryAfter <= 0 {
			v.retryAfter = a.policy.Window
		}
		log.Warn("login refused, too many failures", userAttr(addr), slog.String("client", keys.bucket),
			slog.String("limit", v.reason), slog.Duration("retry_after", v.retryAfter))
		return mailstore.Account{}, &ThrottledError{RetryAfter: v.retryAfter}
	}
	// The reservation stays a failure only if the password turns out wrong
	// (then it is confirmed, and counts for the delays too); an attempt that
	// ends without a verdict (client gone, store error) gives it back, so it
	// neither counts nor sticks.
	verdict := false
	defer func() {
		if !verdict {
			a.releaseAttempt(ctx, res, nil)
		}
	}()
	if v.delay > 0 {
		log.Info("delaying login after failures", userAttr(addr), slog.String("client", keys.bucket),
			slog.String("limit", v.reason), slog.Duration("delay", v.delay))
		if err := a.sleep(ctx, v.delay); err != nil {
			return mailstore.Account{}, err
		}
	}

	var acct mailstore.Account
	known := false
	if addr != "" {
		acct, err = a.store.GetAccount(ctx, addr)
		switch {
		case err == nil:
			known = acct.PasswordHash != ""
		case errors.Is(err, mailstore.ErrNoSuchAccount) || errors.Is(err, mailstore.ErrInvalidAddress):
		default:
			return mailstore.Account{}, fmt.Errorf("auth: looking up account: %w", err)
		}
	}

	usable := known && password != "" && len(password) <= MaxPasswordLength
	if usable && a.verified.check(acct.ID, acct.PasswordHash, password, now) {
		// Verified against this very hash a moment ago (verified.go).
		verdict = true
		a.releaseAttempt(ctx, res, keys.resetOnSuccess())
		return acct, nil
	}
	if err := a.acquire(ctx); err != nil {
		return mailstore.Account{}, err
	}
	ok, rehash := false, false
	// Empty passwords never match: a legacy hash of "" must not open an
	// account (and HashPassword would refuse to upgrade it).
	if usable {
		var verr error
		ok, rehash, verr = a.verify(acct.PasswordHash, password)
		if verr != nil {
			// Never log the hash itself.
			log.Warn("stored password hash unusable", slog.String("user", addr), slog.String("err", verr.Error()))
		}
	} else {
		// The same work as a real verification, so that timing does not
		// tell unknown users (or over-long passwords) from wrong passwords.
		_, _, _ = a.verify(a.dummy(), password[:min(len(password), MaxPasswordLength)])
	}
	var newHash string
	if ok && rehash {
		newHash, err = a.params.Hash(password)
		if err != nil {
			log.Warn("rehashing password failed", slog.String("user", addr), slog.String("err", err.Error()))
			newHash = ""
		}
	}
	a.release()

	verdict = true
	if !ok {
		reason := "wrong password"
		if !known {
			reason = "unknown user"
		}
		log.Info("login failed", userAttr(addr), slog.String("client", keys.bucket), slog.String("reason", reason))
		// The reservation is the recorded failure: it was written before the
		// check, so dropping the connection does not make a guess free. It
		// is confirmed before the verdict goes out, so the client's next
		// attempt is delayed by it.
		a.confirmAttempt(ctx, res)
		return mailstore.Account{}, ErrInvalidCredentials
	}

	// A success is no failure: give the reservation back and forget the
	// failures of this client address (ThrottlePolicy).
	a.releaseAttempt(ctx, res, keys.resetOnSuccess())
	if newHash != "" {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.storeTTL)
		defer cancel()
		if err := a.store.SetPasswordHash(wctx, acct.ID, newHash); err != nil {
			log.Warn("storing upgraded password hash", slog.String("user", addr), slog.String("err", err.Error()))
		} else {
			acct.PasswordHash = newHash
			log.Info("password hash upgraded", slog.String("user", addr))
		}
	}
	a.verified.remember(acct.ID, acct.PasswordHash, password, now)
	return acct, nil
}

// confirmAttempt marks the reservation res a decided failure. Like
// releaseAttempt it runs even when the client has gone away (bounded by
// storeTTL); a failure to write is logged, and the reservation then stays in
// flight: it counts for the limits but not for the delays.
func (a *Authenticator) confirmAttempt(ctx context.Context, res mailstore.AuthReservation) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.storeTTL)
	defer cancel()
	if err := a.store.ConfirmAuthFailure(wctx, res); err != nil {
		a.log(ctx).Warn("confirming failed login attempt", slog.Any("err", err))
	}
}

// releaseAttempt gives back the reservation res and forgets the failures of
// the forget keys. It runs even when the client has gone away (bounded by
// storeTTL); a failure to write is logged, and the reservation then counts
// as a failure until it leaves the window.
func (a *Authenticator) releaseAttempt(ctx context.Context, res mailstore.AuthReservation, forget []string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.storeTTL)
	defer cancel()
	if err := a.store.ReleaseAuthFailure(wctx, res, forget); err != nil {
		a.log(ctx).Warn("releasing login attempt", slog.Any("err", err))
	}
}

// verify checks password against a stored hash (Argon2Params.Verify) and
// counts the computation.
func (a *Authenticator) verify(stored, password string) (ok, needsRehash bool, err error) {
	a.hashes.Add(1)
	return a.params.Verify(stored, password)
}

// acquire takes a slot for one hash computation.
func (a *Authenticator) acquire(ctx context.Context) error {
	select {
	case a.hashSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *Authenticator) release() {
	<-a.hashSem
	a.reclaimHashMemory()
}

// reclaimHashMemory collects the memory of a finished hash at once. Each
// argon2id computation allocates its whole memory (MemoryKiB, 32 MiB by
// default) and drops it when done; left to the pacer, that garbage raised
// the heap goal to twice the hashes in flight and the server's peak RSS to
// about 185 MB after ten logins with nothing else going on. A collection
// with the rest of the heap small costs about a millisecond, against the
// tens of milliseconds of the hash; one runs at a time, so a login storm
// starts at most one per finished hash and usually fewer.
func (a *Authenticator) reclaimHashMemory() {
	if a.params.MemoryKiB < 4*1024 || !a.gcBusy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer a.gcBusy.Store(false)
		runtime.GC()
	}()
}

// userAttr logs a username only when it is a valid address: whatever else a
// client typed into the user field might be a password.
func userAttr(addr string) slog.Attr {
	if addr == "" {
		return slog.String("user", "(invalid)")
	}
	return slog.String("user", addr)
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
