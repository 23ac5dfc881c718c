package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A successful login is remembered for VerifiedLoginTTL: the account's
// next logins with the same password skip the hash; a wrong password, a
// changed stored hash or an expired entry get the full verification; the
// throttle still comes first.
func TestVerifiedLoginCache(t *testing.T) {
	st := newFakeStore()
	st.add("alice@example.org", mustHash(t, "right"))
	h := newHarness(t, st)
	h.verified = newVerifiedCache(10 * time.Minute)
	ctx := context.Background()
	login := func(pw string, wantOK bool, wantHashes int64, when string) {
		t.Helper()
		before := h.hashes.Load()
		_, err := h.Authenticate(ctx, "alice@example.org", pw, ip1)
		if (err == nil) != wantOK {
			t.Fatalf("%s: Authenticate = %v, want ok=%v", when, err, wantOK)
		}
		if got := h.hashes.Load() - before; got != wantHashes {
			t.Fatalf("%s: %d hash verifications, want %d", when, got, wantHashes)
		}
	}
	login("right", true, 1, "first login")
	login("right", true, 0, "second login")
	login("Right", false, 1, "wrong password with an entry")
	if n := st.count("user:alice@example.org"); n != 1 {
		t.Fatalf("the wrong password counted %d failures, want 1", n)
	}
	login("right", true, 0, "right password after a wrong one")

	// A new stored hash (a password change on any node) misses at once.
	st.mu.Lock()
	a := st.accounts["alice@example.org"]
	a.PasswordHash = mustHash(t, "new")
	st.accounts["alice@example.org"] = a
	st.mu.Unlock()
	login("right", false, 1, "old password after the change")
	login("new", true, 1, "new password, first time")
	login("new", true, 0, "new password again")

	// Expired.
	h.advance(11 * time.Minute)
	login("new", true, 1, "after the TTL")
	login("new", true, 0, "remembered again")

	// Off: every login verifies.
	h.verified = nil
	login("new", true, 1, "cache off")
	login("new", true, 1, "cache off, again")
}

// The throttle decides before the cache: a client over its limit is refused
// even with the remembered password.
func TestVerifiedLoginThrottledFirst(t *testing.T) {
	st := newFakeStore()
	st.add("alice@example.org", mustHash(t, "right"))
	h := newHarness(t, st)
	h.verified = newVerifiedCache(time.Hour)
	ctx := context.Background()
	if _, err := h.Authenticate(ctx, "alice@example.org", "right", ip1); err != nil {
		t.Fatal(err)
	}
	blocked := false
	for i := 0; i < 200 && !blocked; i++ {
		_, err := h.Authenticate(ctx, "alice@example.org", "guess", ip2)
		blocked = errors.Is(err, ErrThrottled)
	}
	if !blocked {
		t.Fatal("the guesses from ip2 were never throttled")
	}
	before := h.hashes.Load()
	if _, err := h.Authenticate(ctx, "alice@example.org", "right", ip2); !errors.Is(err, ErrThrottled) {
		t.Fatalf("a throttled client with the remembered password: %v, want ErrThrottled", err)
	}
	if h.hashes.Load() != before {
		t.Fatal("a throttled login ran a verification")
	}
}

func TestVerifiedCacheBound(t *testing.T) {
	c := newVerifiedCache(time.Minute)
	now := time.Now()
	for i := int64(0); i < maxVerifiedEntries+10; i++ {
		c.remember(i, "h", "pw", now)
	}
	if n := c.len(); n > maxVerifiedEntries || n < maxVerifiedEntries-maxVerifiedEntries/8 {
		t.Fatalf("%d entries after %d inserts, bound %d", n, maxVerifiedEntries+10, maxVerifiedEntries)
	}
	if !c.check(maxVerifiedEntries+9, "h", "pw", now) {
		t.Fatal("the newest entry was evicted")
	}
	// Expired entries go first.
	for i := int64(0); c.len() < maxVerifiedEntries; i++ {
		c.remember(1e9+i, "h", "pw", now)
	}
	later := now.Add(2 * time.Minute)
	c.remember(-1, "h", "pw", later)
	if n := c.len(); n != 1 {
		t.Fatalf("%d entries after an insert with all others expired, want 1", n)
	}
	if newVerifiedCache(0) != nil {
		t.Fatal("TTL 0 must turn the cache off")
	}
}
