package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// The verified-login cache.
//
// An argon2id verification costs tens of milliseconds of CPU and 32 MiB of
// memory by design, and a mail client pays it on every connection: phones
// reconnect whenever the network changes, POP3 clients log in for every
// check, Thunderbird opens several IMAP connections at once. After a login
// succeeds, the node remembers, for VerifiedLoginTTL, a keyed digest of
// the password that matched the account's stored hash:
// HMAC-SHA256(a random key made when the process starts, password). A later
// login of the same account, against the same stored hash, whose password
// gives the same digest is accepted without the argon2id computation.
//
// What stays as before: every attempt still goes through the throttle
// (the reservation in the store comes first, on every node); a wrong
// password never matches an entry and gets the full argon2id verification
// (and its cost); a password change (a new stored hash, read from the
// store at every login) misses the entry at once on every node; digests
// are compared in constant time (hmac.Equal). What it trades: a copy of
// the process's memory would give, for the accounts that logged in within
// the TTL, digests that are cheap to test guesses against (SHA-256 speed
// instead of argon2id's), where it would otherwise give only the plaintext
// passwords of logins in flight. Dovecot offers the same trade as
// auth_cache_size/auth_cache_ttl (off by default there); directory servers
// such as PingDirectory keep a salted SHA-256 of verified passwords by
// default. POSTRIDER_AUTH_CACHE_TTL=0 turns it off.

// maxVerifiedEntries bounds the cache: at about 200 octets an entry
// (account id, the stored hash it was verified against, the digest), about
// 13 MB when full. When full, expired entries go first, then arbitrary ones.
const maxVerifiedEntries = 65536

type verifiedEntry struct {
	hash    string // the stored hash the password was verified against
	digest  [sha256.Size]byte
	expires time.Time
}

type verifiedCache struct {
	ttl time.Duration
	key [32]byte

	mu      sync.Mutex
	entries map[int64]verifiedEntry
}

func newVerifiedCache(ttl time.Duration) *verifiedCache {
	if ttl <= 0 {
		return nil
	}
	c := &verifiedCache{ttl: ttl, entries: map[int64]verifiedEntry{}}
	_, _ = rand.Read(c.key[:]) // never fails (crypto/rand)
	return c
}

func (c *verifiedCache) digest(password string) (d [sha256.Size]byte) {
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(password))
	m.Sum(d[:0])
	return d
}

// check reports whether password was verified for account against the
// stored hash within the TTL. A nil cache never matches.
func (c *verifiedCache) check(account int64, storedHash, password string, now time.Time) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	e, ok := c.entries[account]
	c.mu.Unlock()
	if !ok || e.hash != storedHash || !now.Before(e.expires) {
		return false
	}
	d := c.digest(password)
	return hmac.Equal(d[:], e.digest[:])
}

// remember records a successful verification of password for account
// against storedHash.
func (c *verifiedCache) remember(account int64, storedHash, password string, now time.Time) {
	if c == nil {
		return
	}
	e := verifiedEntry{hash: storedHash, digest: c.digest(password), expires: now.Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[account]; !ok && len(c.entries) >= maxVerifiedEntries {
		c.evict(now)
	}
	c.entries[account] = e
}

// evict makes room: every expired entry, or if none, an eighth of the
// entries (map order: arbitrary). Called with mu held.
func (c *verifiedCache) evict(now time.Time) {
	for id, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, id)
		}
	}
	for id := range c.entries {
		if len(c.entries) < maxVerifiedEntries-maxVerifiedEntries/8 {
			break
		}
		delete(c.entries, id)
	}
}

// len returns the number of entries (tests, metrics).
func (c *verifiedCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
