package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Input bounds.
const (
	// MaxPasswordLength bounds the passwords that are hashed or verified;
	// longer ones never match (and HashPassword refuses them).
	MaxPasswordLength = 1024
	// MaxUsernameLength bounds the username a client may send; valid
	// addresses are shorter still (mailstore.MaxAddressLength).
	MaxUsernameLength = 512
)

// Errors of HashPassword and VerifyPassword.
var (
	ErrUnknownScheme   = errors.New("auth: unknown password scheme")
	ErrMalformedHash   = errors.New("auth: malformed password hash")
	ErrPasswordTooLong = errors.New("auth: password too long")
	ErrEmptyPassword   = errors.New("auth: empty password")
)

// Argon2Params are argon2id parameters (RFC 9106 §3.1).
type Argon2Params struct {
	Time      uint32 // passes, t
	MemoryKiB uint32 // memory size m, in KiB
	Threads   uint8  // lanes, p
	SaltLen   uint32 // octets of random salt
	KeyLen    uint32 // octets of tag
}

// DefaultArgon2Params are the parameters of every new password hash: t=3,
// m=32 MiB, p=1, 16-octet salt, 32-octet tag.
//
// Why: a node has about 2 cores and IMAP clients log in often (every
// reconnect), so one verification must stay well under a second of one
// core; t=3/m=32 MiB takes about 80 ms on such a machine (a 2-core VM,
// measured with Go 1.26). That is above the OWASP floor (m=19 MiB, t=2) and
// costs an attacker with the hash database 32 MiB per guess. p=1 because
// lanes would only steal cores from concurrent logins. Memory is bounded by
// Options.MaxConcurrentHashes (default GOMAXPROCS) × 32 MiB. RFC 9106 §4's
// first recommendation (m=2 GiB) is for disk encryption, not login servers.
var DefaultArgon2Params = Argon2Params{Time: 3, MemoryKiB: 32 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on the parameters of stored hashes, so that a bad (or hostile)
// hash in the database cannot make a login take minutes or gigabytes.
const (
	maxArgon2MemoryKiB = 512 * 1024
	maxArgon2Time      = 64
	maxArgon2Threads   = 16
	maxBcryptCost      = 16
	// SHA-crypt itself allows up to 999,999,999 rounds; verification
	// refuses more than this (about a second).
	maxSHACryptVerifyRounds = 2_000_000
)

// Dovecot scheme names (doc.dovecot.org, "Password schemes").
const (
	schemeArgon2ID = "ARGON2ID"
	schemeArgon2I  = "ARGON2I"
	schemeBcrypt   = "BLF-CRYPT"
	schemeSHA512   = "SHA512-CRYPT"
	schemeSHA256   = "SHA256-CRYPT"
	schemeCrypt    = "CRYPT" // libc crypt(3): dispatched by $id$
)

func (p Argon2Params) valid() error {
	switch {
	case p.Time < 1 || p.Time > maxArgon2Time,
		p.Threads < 1 || p.Threads > maxArgon2Threads,
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB,
		p.SaltLen < 8 || p.SaltLen > 64,
		p.KeyLen < 16 || p.KeyLen > 128:
		return fmt.Errorf("auth: invalid argon2 parameters t=%d m=%d p=%d salt=%d key=%d",
			p.Time, p.MemoryKiB, p.Threads, p.SaltLen, p.KeyLen)
	}
	return nil
}

// HashPassword hashes a password with argon2id and DefaultArgon2Params, in
// Dovecot's format: {ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash
// (salt and hash in unpadded standard base64, as the PHC string format).
func HashPassword(password string) (string, error) {
	return DefaultArgon2Params.Hash(password)
}

// VerifyPassword checks a password against a stored hash (see
// Argon2Params.Verify) with DefaultArgon2Params as the current parameters.
func VerifyPassword(hash, password string) (ok, needsRehash bool, err error) {
	return DefaultArgon2Params.Verify(hash, password)
}

// Hash hashes a password with argon2id and these parameters.
func (p Argon2Params) Hash(password string) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	if len(password) > MaxPasswordLength {
		return "", ErrPasswordTooLong
	}
	if err := p.valid(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	_, _ = rand.Read(salt) // crypto/rand.Read never returns an error
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("{%s}$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", schemeArgon2ID, argon2.Version,
		p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks a password against a stored hash. Accepted, with or without
// the Dovecot {SCHEME} prefix when the $id$ identifies the scheme:
//
//   - {ARGON2ID} $argon2id$v=19$m=..,t=..,p=..$salt$hash, and {ARGON2I};
//   - {BLF-CRYPT} bcrypt $2a$, $2b$, $2y$;
//   - {SHA512-CRYPT} $6$ and {SHA256-CRYPT} $5$ (SHA-crypt, rounds=);
//   - {CRYPT} followed by any of the above.
//
// needsRehash is true after a match when the hash is not argon2id with
// exactly these parameters. err is non-nil (and ok false) for an unknown
// scheme (ErrUnknownScheme) or an unusable hash (ErrMalformedHash); errors
// never contain the hash. All comparisons are constant-time.
func (p Argon2Params) Verify(stored, password string) (ok, needsRehash bool, err error) {
	scheme, body, err := identify(stored)
	if err != nil {
		return false, false, err
	}
	if len(password) > MaxPasswordLength {
		return false, false, nil
	}
	switch scheme {
	case schemeArgon2ID, schemeArgon2I:
		h, err := parseArgon2(body)
		if err != nil {
			return false, false, err
		}
		ok = h.verify(password)
		return ok, ok && !h.current(p), nil
	case schemeBcrypt:
		ok, err = verifyBcrypt(body, password)
		return ok, ok, err
	default: // schemeSHA512, schemeSHA256
		h, err := parseSHACrypt(body)
		if err != nil {
			return false, false, err
		}
		if h.rounds > maxSHACryptVerifyRounds {
			return false, false, fmt.Errorf("%w: %d SHA-crypt rounds exceed the limit of %d",
				ErrMalformedHash, h.rounds, maxSHACryptVerifyRounds)
		}
		ok = subtle.ConstantTimeCompare([]byte(h.sum), []byte(shaCryptChecksum(h, password))) == 1
		return ok, ok, nil
	}
}

// identify splits a stored hash into its scheme and the crypt-style body.
func identify(stored string) (scheme, body string, err error) {
	body = stored
	prefix := ""
	if strings.HasPrefix(body, "{") {
		end := strings.IndexByte(body, '}')
		if end < 0 || end > 32 {
			return "", "", fmt.Errorf("%w: unterminated {scheme}", ErrMalformedHash)
		}
		prefix, body = strings.ToUpper(body[1:end]), body[end+1:]
	}
	byID := schemeByID(body)
	switch prefix {
	case "", schemeCrypt:
		if byID == "" {
			if prefix == "" {
				return "", "", fmt.Errorf("%w: no {scheme} and no recognised $id$", ErrUnknownScheme)
			}
			return "", "", fmt.Errorf("%w: {CRYPT} with an unsupported $id$", ErrUnknownScheme)
		}
		return byID, body, nil
	case schemeArgon2ID, schemeArgon2I, schemeBcrypt, schemeSHA512, schemeSHA256:
		if byID != prefix {
			return "", "", fmt.Errorf("%w: {%s} with a different $id$", ErrMalformedHash, prefix)
		}
		return prefix, body, nil
	default:
		return "", "", fmt.Errorf("%w {%s}", ErrUnknownScheme, safeSchemeName(prefix))
	}
}

// safeSchemeName keeps only characters that can be in a scheme name, so that
// logging it cannot leak or inject anything.
func safeSchemeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '?'
	}, s)
}

func schemeByID(body string) string {
	switch {
	case strings.HasPrefix(body, "$argon2id$"):
		return schemeArgon2ID
	case strings.HasPrefix(body, "$argon2i$"):
		return schemeArgon2I
	case strings.HasPrefix(body, "$2a$"), strings.HasPrefix(body, "$2b$"), strings.HasPrefix(body, "$2y$"):
		return schemeBcrypt
	case strings.HasPrefix(body, "$5$"):
		return schemeSHA256
	case strings.HasPrefix(body, "$6$"):
		return schemeSHA512
	}
	return ""
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

type argon2Hash struct {
	id      bool // argon2id, else argon2i
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseArgon2 parses "$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>" (the
// PHC string format, as written by libsodium, the argon2 reference CLI and
// Dovecot). Only version 19 (0x13) exists in golang.org/x/crypto/argon2.
func parseArgon2(s string) (argon2Hash, error) {
	var h argon2Hash
	bad := func(what string) (argon2Hash, error) {
		return argon2Hash{}, fmt.Errorf("%w: argon2 %s", ErrMalformedHash, what)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("field count")
	}
	switch parts[1] {
	case "argon2id":
		h.id = true
	case "argon2i":
	default:
		return bad("variant")
	}
	if parts[2] != "v=19" {
		return bad("version")
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return bad("parameters")
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		digits, found := strings.CutPrefix(kv[i], name)
		if !found || digits == "" || len(digits) > 10 {
			return bad("parameters")
		}
		v, err := strconv.ParseUint(digits, 10, 32)
		if err != nil {
			return bad("parameters")
		}
		vals[i] = v
	}
	m, t, p := vals[0], vals[1], vals[2]
	if p < 1 || p > maxArgon2Threads || t < 1 || t > maxArgon2Time || m < 8*p || m > maxArgon2MemoryKiB {
		return bad("parameters out of range")
	}
	h.memory, h.time, h.threads = uint32(m), uint32(t), uint8(p)
	var err error
	if h.salt, err = b64.DecodeString(strings.TrimRight(parts[4], "=")); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return bad("salt")
	}
	if h.key, err = b64.DecodeString(strings.TrimRight(parts[5], "=")); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return bad("hash")
	}
	return h, nil
}

func (h argon2Hash) verify(password string) bool {
	var got []byte
	if h.id {
		got = argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	} else {
		got = argon2.Key([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	}
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// current reports whether the hash is argon2id with exactly the parameters p.
func (h argon2Hash) current(p Argon2Params) bool {
	return h.id && h.memory == p.MemoryKiB && h.time == p.Time && h.threads == p.Threads &&
		len(h.salt) == int(p.SaltLen) && len(h.key) == int(p.KeyLen)
}

// verifyBcrypt checks a bcrypt hash ($2a$, $2b$, $2y$ — the same algorithm
// for passwords under 256 octets; golang.org/x/crypto/bcrypt accepts all
// three). bcrypt only uses the first 72 octets of a password, as Dovecot's
// BLF-CRYPT always did.
func verifyBcrypt(s, password string) (bool, error) {
	cost, err := bcrypt.Cost([]byte(s))
	if err != nil {
		return false, fmt.Errorf("%w: bcrypt", ErrMalformedHash)
	}
	if cost > maxBcryptCost {
		return false, fmt.Errorf("%w: bcrypt cost %d exceeds the limit of %d", ErrMalformedHash, cost, maxBcryptCost)
	}
	err = bcrypt.CompareHashAndPassword([]byte(s), []byte(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("%w: bcrypt", ErrMalformedHash)
	}
}

// randomPassword returns an unguessable password (for the dummy hash).
func randomPassword() string { return rand.Text() }
