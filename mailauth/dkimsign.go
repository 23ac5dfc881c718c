package mailauth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postrider/postrider/mailstore"
)

// DKIM signing of the mail our users submit (RFC 6376), with the keys of
// the RFC5322.From domain kept in the store, so that every node signs
// with the same keys. A domain with both an Ed25519 and an RSA key gets
// both signatures (RFC 8463 §3: receivers that do not know Ed25519 yet
// verify the RSA one).

// Defaults of DKIMSignerOptions.
const (
	// DefaultDKIMKeyTTL is how long a node keeps a domain's keys (or
	// their absence): a key added or retired with `postrider dkim` on any
	// node signs (or stops signing) everywhere within it.
	DefaultDKIMKeyTTL = 30 * time.Second
	// DefaultDKIMWarnInterval spaces the warnings about a domain that has
	// no key.
	DefaultDKIMWarnInterval = time.Hour
	// MaxDKIMBlankRun bounds a run of consecutive line breaks in a body
	// that is signed: go-msgauth's relaxed body canonicalization holds
	// such a run in memory until the next non-blank line (RFC 6376
	// §3.4.4 drops only the trailing ones), so without a bound a message
	// of empty lines would be held whole. No real message has 64 Ki empty
	// lines in a row.
	MaxDKIMBlankRun = 128 << 10
	// maxSigningDomains bounds the From: domains one message is signed
	// for.
	maxSigningDomains = 4
)

// dkimSignedFields are the header fields signed (RFC 6376 §5.4.1): those
// a reader sees or that shape what is shown. Each is listed once more
// than a message normally has it ("oversigned", §5.4.2), so that a field
// added after signing breaks the signature: From: twice, the others once
// (go-msgauth lists a field in h= even where the message lacks it, which
// makes adding it later break the signature too).
var dkimSignedFields = []string{
	"From", "From",
	"Reply-To", "Subject", "Date", "To", "Cc",
	"Message-ID", "In-Reply-To", "References",
	"Sender", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Content-Language", "Content-Disposition",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// ErrDKIMBlankRun is returned for a body with more than MaxDKIMBlankRun
// consecutive line-break octets.
var ErrDKIMBlankRun = errors.New("mailauth: too many consecutive empty lines to sign")

// DKIMKeySource is what signing needs of the store.
type DKIMKeySource interface {
	// ListDKIMKeys lists a domain's keys, active and retired, newest
	// first (mailstore.DKIMKeys).
	ListDKIMKeys(ctx context.Context, domain string) ([]mailstore.DKIMKey, error)
}

// DKIMSignerOptions configures a DKIMSigner; zero values take defaults.
type DKIMSignerOptions struct {
	KeyTTL       time.Duration
	WarnInterval time.Duration
	Logger       *slog.Logger
}

// DKIMSigner signs messages with the store's keys, cached per node for
// KeyTTL. It is safe for concurrent use.
type DKIMSigner struct {
	src  DKIMKeySource
	opts DKIMSignerOptions
	now  func() time.Time

	mu     sync.Mutex
	cache  map[string]signKeysEntry
	warned map[string]time.Time
}

// signKeysEntry is a domain's non-retired keys as the store had them,
// each with its signer (nil when unusable, with the reason in bad).
// Which of them signs is decided at each Sign (DKIMKeyStates), so that a
// rotation takes effect at its time, not up to KeyTTL later.
type signKeysEntry struct {
	keys    []mailstore.DKIMKey
	signers map[string]crypto.Signer
	bad     map[string]error
	exp     time.Time
}

type signKey struct {
	selector  string
	algorithm string
	signer    crypto.Signer
}

// NewDKIMSigner returns a signer reading keys from src.
func NewDKIMSigner(src DKIMKeySource, opts DKIMSignerOptions) *DKIMSigner {
	if opts.KeyTTL <= 0 {
		opts.KeyTTL = DefaultDKIMKeyTTL
	}
	if opts.WarnInterval <= 0 {
		opts.WarnInterval = DefaultDKIMWarnInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &DKIMSigner{src: src, opts: opts, now: time.Now,
		cache: map[string]signKeysEntry{}, warned: map[string]time.Time{}}
}

// Sign reads a message (header section and body, lines ending in CRLF)
// once from r and returns the DKIM-Signature header fields to prepend to
// it, one per signing key of each of domains (lower-case A-labels, the
// domains of the RFC5322.From addresses): per algorithm, the key that
// signs at this moment (DKIMKeyStates), the Ed25519 signature first. A
// domain whose keys do not sign (none, or only ones whose time has not
// come) is skipped, with a warning at most once per WarnInterval; when no
// domain has a signing key the result is empty and the message goes
// unsigned. The message is streamed, never held: memory is bounded by the
// header section (which the caller has bounded) and MaxDKIMBlankRun.
//
// A key whose sign-from time lies ahead does not sign even when it is the
// only one: its record is, by its admin's word, not published yet, and a
// signature that receivers cannot verify is worth no more than none to
// DMARC (RFC 7489 §4.2 needs a passing one) and looks worse to receivers
// that score broken signatures.
func (s *DKIMSigner) Sign(ctx context.Context, domains []string, r io.Reader) ([]byte, error) {
	var opts []*dkim.SignOptions
	seen := map[string]bool{}
	now := s.now()
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" || seen[d] {
			continue
		}
		if len(seen) == maxSigningDomains {
			break
		}
		seen[d] = true
		keys, err := s.signingKeys(ctx, d, now)
		if err != nil {
			return nil, fmt.Errorf("dkim keys of %s: %w", d, err)
		}
		if len(keys) == 0 {
			continue
		}
		for _, k := range keys {
			opts = append(opts, &dkim.SignOptions{
				Domain:                 d,
				Selector:               k.selector,
				Signer:                 k.signer,
				Hash:                   crypto.SHA256,
				HeaderCanonicalization: dkim.CanonicalizationRelaxed,
				BodyCanonicalization:   dkim.CanonicalizationRelaxed,
				HeaderKeys:             dkimSignedFields,
				// No l= (body length): it would let anyone append to
				// a signed message (RFC 6376 §8.2).
			})
		}
	}
	if len(opts) == 0 {
		return nil, nil
	}
	signers := make([]*dkim.Signer, 0, len(opts))
	closeAll := func() {
		for _, sg := range signers {
			_ = sg.Close()
		}
	}
	ws := make([]io.Writer, 0, len(opts))
	for _, o := range opts {
		sg, err := dkim.NewSigner(o)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("dkim signer for %s/%s: %w", o.Domain, o.Selector, err)
		}
		signers = append(signers, sg)
		ws = append(ws, sg)
	}
	g := &signBlankRunGuard{w: io.MultiWriter(ws...)}
	buf := make([]byte, 32<<10)
	if _, err := io.CopyBuffer(g, r, buf); err != nil {
		closeAll()
		return nil, err
	}
	var out []byte
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			for _, rest := range signers[i+1:] {
				_ = rest.Close()
			}
			return nil, fmt.Errorf("dkim signing: %w", err)
		}
		out = append(out, sg.Signature()...)
	}
	return out, nil
}

// signingKeys returns the keys of a domain that sign at now, Ed25519
// first.
func (s *DKIMSigner) signingKeys(ctx context.Context, domain string, now time.Time) ([]signKey, error) {
	e, err := s.keys(ctx, domain, now)
	if err != nil {
		return nil, err
	}
	var out []signKey
	var pending time.Time
	for _, st := range DKIMKeyStates(e.keys, now) {
		k := st.Key
		switch st.Status {
		case DKIMPending:
			if pending.IsZero() || signFrom(k).Before(pending) {
				pending = signFrom(k)
			}
			continue
		case DKIMSigning:
		default:
			continue
		}
		sg := e.signers[k.Selector]
		if sg == nil {
			// A key the store holds but we cannot use: the other
			// algorithm's key signs alone, and we say so (the warning
			// interval applies).
			s.warn("dkim key unusable", domain, "selector", k.Selector, "err", e.bad[k.Selector])
			continue
		}
		out = append(out, signKey{selector: k.Selector, algorithm: k.Algorithm, signer: sg})
	}
	switch {
	case len(out) > 0:
	case !pending.IsZero():
		s.warn("no DKIM key of the From: domain signs yet; message sent unsigned", domain, "signs_from", pending.UTC().Format(time.RFC3339))
	default:
		s.warnNoKey(domain)
	}
	if len(out) == 2 && out[0].algorithm != "ed25519" {
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

// keys returns the non-retired keys of a domain, cached for KeyTTL.
func (s *DKIMSigner) keys(ctx context.Context, domain string, now time.Time) (signKeysEntry, error) {
	s.mu.Lock()
	e, ok := s.cache[domain]
	s.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e, nil
	}
	list, err := s.src.ListDKIMKeys(ctx, domain)
	if err != nil && !errors.Is(err, mailstore.ErrNoSuchDomain) {
		return signKeysEntry{}, err
	}
	// A domain that is not (or no longer) ours has no keys. Retired keys
	// never sign, and take over from none (DKIMKeyStates).
	e = signKeysEntry{signers: map[string]crypto.Signer{}, bad: map[string]error{}, exp: now.Add(s.opts.KeyTTL)}
	for _, k := range list {
		if !k.RetiredAt.IsZero() {
			continue
		}
		sg, err := parseSigningKey(k)
		if err != nil {
			e.bad[k.Selector] = err
		} else {
			e.signers[k.Selector] = sg
		}
		k.PrivateKey = nil // parsed; not kept twice
		e.keys = append(e.keys, k)
	}
	s.mu.Lock()
	if len(s.cache) >= maxCachedDomains {
		clear(s.cache)
	}
	s.cache[domain] = e
	s.mu.Unlock()
	return e, nil
}

// maxCachedDomains bounds the key cache (the local domains).
const maxCachedDomains = 10000

// parseSigningKey decodes a stored key (PKCS #8) and checks that it is of
// its stated algorithm.
func parseSigningKey(k mailstore.DKIMKey) (crypto.Signer, error) {
	pk, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, err
	}
	switch key := pk.(type) {
	case ed25519.PrivateKey:
		if k.Algorithm == "ed25519" {
			return key, nil
		}
	case *rsa.PrivateKey:
		// RFC 8301 §3.2: at least 1024 bits; we ask for 2048 when
		// generating, and refuse what verifiers must refuse.
		if k.Algorithm == "rsa" && key.N.BitLen() >= 1024 {
			return key, nil
		}
	}
	return nil, fmt.Errorf("key of type %T is not a usable %q key", pk, k.Algorithm)
}

func (s *DKIMSigner) warnNoKey(domain string) {
	s.warn("no DKIM key for the From: domain; message sent unsigned", domain)
}

// warn logs a warning about a domain at most once per WarnInterval.
func (s *DKIMSigner) warn(msg, domain string, args ...any) {
	now := s.now()
	s.mu.Lock()
	last, ok := s.warned[domain+"\x00"+msg]
	if !ok || now.Sub(last) >= s.opts.WarnInterval {
		if len(s.warned) >= maxCachedDomains {
			clear(s.warned)
		}
		s.warned[domain+"\x00"+msg] = now
	}
	s.mu.Unlock()
	if !ok || now.Sub(last) >= s.opts.WarnInterval {
		s.opts.Logger.Warn(msg, append([]any{"domain", domain}, args...)...)
	}
}

// signBlankRunGuard passes a message on and fails it when a run of CR and LF
// octets grows over MaxDKIMBlankRun (see there). Spaces and tabs neither
// end a run nor count: the canonicalizer keeps holding the line breaks
// across them.
type signBlankRunGuard struct {
	w   io.Writer
	run int
}

func (g *signBlankRunGuard) Write(p []byte) (int, error) {
	for _, c := range p {
		switch c {
		case '\r', '\n':
			g.run++
			if g.run > MaxDKIMBlankRun {
				return 0, ErrDKIMBlankRun
			}
		case ' ', '\t':
		default:
			g.run = 0
		}
	}
	return g.w.Write(p)
}

// GenerateDKIMKey makes a new signing key for domain: algorithm "ed25519"
// (RFC 8463) or "rsa" (2048 bits, RFC 8301 §3.2).
func GenerateDKIMKey(domain, selector, algorithm string) (mailstore.DKIMKey, error) {
	var pk any
	switch algorithm {
	case "ed25519":
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			return mailstore.DKIMKey{}, err
		}
		pk = priv
	case "rsa":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return mailstore.DKIMKey{}, err
		}
		pk = priv
	default:
		return mailstore.DKIMKey{}, fmt.Errorf("mailauth: unknown DKIM algorithm %q", algorithm)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		return mailstore.DKIMKey{}, err
	}
	return mailstore.DKIMKey{Domain: domain, Selector: selector, Algorithm: algorithm, PrivateKey: der}, nil
}

// DKIMRecord returns the TXT record that publishes a key's public half at
// selector._domainkey.domain (RFC 6376 §3.6.1; RFC 8463 §4.2 for
// Ed25519, whose p= is the raw 32-octet key).
func DKIMRecord(k mailstore.DKIMKey) (string, error) {
	sg, err := parseSigningKey(k)
	if err != nil {
		return "", err
	}
	var pub []byte
	switch p := sg.Public().(type) {
	case ed25519.PublicKey:
		pub = p
	default:
		if pub, err = x509.MarshalPKIXPublicKey(p); err != nil {
			return "", err
		}
	}
	return "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(pub), nil
}
