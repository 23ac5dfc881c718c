// Package dkimkeys is the operator's side of the DKIM keys of the local
// domains: selector names, new key pairs (an Ed25519 and an RSA-2048 key,
// as RFC 8463 §3 recommends signing with both), record names, the split of
// long records into TXT strings, each key's state in words, and how long
// the record of a key that stopped signing is kept. Keys are made, their
// records written and their states decided by mailauth, the signer's
// package, so that what we publish and say is what it signs with.
package dkimkeys

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postrider/postrider/mailauth"
	"github.com/postrider/postrider/mailstore"
)

// Algorithms, as mailstore.DKIMKey.Algorithm names them.
const (
	Ed25519 = "ed25519" // RFC 8463
	RSA     = "rsa"     // RFC 6376 §3.3.1 (rsa-sha256), 2048 bits (RFC 8301 §3.2)
)

// KeepRetired is how long the DNS record of a superseded or retired key
// should stay published after it stopped signing: mail signed with it may
// sit in a queue (ours keeps mail up to 5 days by default, others similar)
// or be verified again later, e.g. when a recipient forwards it.
const KeepRetired = 7 * 24 * time.Hour

// DefaultSignAfter is how long after `dkim rotate` the new keys start
// signing: time for the admin to publish their records and for them to
// reach the receivers' resolvers (our records have a TTL of an hour, but a
// zone's negative-answer TTL and slow publishing, e.g. a DNS provider's
// web form or a weekend, take longer). MaxSignAfter bounds the delay.
const (
	DefaultSignAfter = 72 * time.Hour
	MaxSignAfter     = 90 * 24 * time.Hour
)

// ParseSignAfter reads the publish delay of `dkim rotate --sign-after`: a
// Go duration ("48h", "90m", "0") or whole days ("3d"), from 0 to
// MaxSignAfter.
func ParseSignAfter(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && strings.Trim(n, "0123456789") == "" && len(n) <= 3 {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 || d > MaxSignAfter {
		return 0, fmt.Errorf("--sign-after %q: want a duration from 0 to %dd, e.g. 72h or 3d", s, MaxSignAfter/(24*time.Hour))
	}
	return d, nil
}

// Record returns the text of the key's DNS TXT record (RFC 6376 §3.6.1).
func Record(k mailstore.DKIMKey) (string, error) { return mailauth.DKIMRecord(k) }

// RecordName is the owner name of the key's TXT record (RFC 6376 §3.6.2.1).
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + domain
}

// Selectors returns the selectors of a new key pair made at now: "pr",
// the date, then "e" (Ed25519) or "r" (RSA), with a number after them when
// a pair of that day exists already ("pr20261207e", "pr20261207e2"). A
// selector is never one of taken, so a new key never hides an old one
// whose record may still be cached.
func Selectors(now time.Time, taken []string) (ed, rs string) {
	used := make(map[string]bool, len(taken))
	for _, s := range taken {
		used[strings.ToLower(s)] = true
	}
	base := "pr" + now.UTC().Format("20060102")
	for n := 1; ; n++ {
		suffix := ""
		if n > 1 {
			suffix = strconv.Itoa(n)
		}
		ed, rs = base+"e"+suffix, base+"r"+suffix
		if !used[ed] && !used[rs] {
			return ed, rs
		}
	}
}

// NewPair makes an Ed25519 and an RSA key for domain, created at now, with
// selectors not in taken.
func NewPair(domain string, now time.Time, taken []string) ([]mailstore.DKIMKey, error) {
	ed, rs := Selectors(now, taken)
	var out []mailstore.DKIMKey
	for _, k := range []struct{ sel, alg string }{{ed, Ed25519}, {rs, RSA}} {
		key, err := mailauth.GenerateDKIMKey(domain, k.sel, k.alg)
		if err != nil {
			return nil, err
		}
		key.CreatedAt = now
		out = append(out, key)
	}
	return out, nil
}

// SplitTXT cuts a TXT record's text into the character-strings of at most
// 255 octets that a TXT record holds (RFC 1035 §3.3.14); verifiers join
// them again without anything between (RFC 6376 §3.6.2.2).
func SplitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// Active returns the keys that are not retired: those that sign, will
// sign, or are superseded.
func Active(keys []mailstore.DKIMKey) []mailstore.DKIMKey {
	var out []mailstore.DKIMKey
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			out = append(out, k)
		}
	}
	return out
}

// KeyState is a key's state at a moment, for its operator.
type KeyState struct {
	mailauth.DKIMKeyState
	// RemoveAfter is, for a superseded or retired key, when its record may
	// be deleted and the key removed: KeepRetired after it stopped
	// signing. Zero for one that never signed (any time) and for one that
	// signs or will.
	RemoveAfter time.Time
}

// States returns the state at now of each of one domain's keys, in the
// order given (mailauth.DKIMKeyStates decides which signs).
func States(keys []mailstore.DKIMKey, now time.Time) []KeyState {
	ms := mailauth.DKIMKeyStates(keys, now)
	out := make([]KeyState, len(ms))
	for i, m := range ms {
		out[i].DKIMKeyState = m
		if !m.Stopped.IsZero() {
			out[i].RemoveAfter = m.Stopped.Add(KeepRetired)
		}
	}
	return out
}

// Removable reports whether the key may be removed: it neither signs nor
// will sign.
func (s KeyState) Removable() bool {
	return s.Status == mailauth.DKIMSuperseded || s.Status == mailauth.DKIMRetired
}

// Describe says where the key stands, e.g. "signing since 2026-12-07
// 10:00 UTC" or "superseded since 2026-12-10 10:00 UTC, remove after
// 2026-12-17 10:00 UTC".
func (s KeyState) Describe() string {
	switch s.Status {
	case mailauth.DKIMPending:
		return "published, signs from " + Time(SignFrom(s.Key))
	case mailauth.DKIMSigning:
		d := "signing since " + Time(SignFrom(s.Key))
		if !s.Until.IsZero() {
			d += ", until " + Time(s.Until)
		}
		return d
	case mailauth.DKIMSuperseded:
		if s.Stopped.IsZero() {
			return "superseded before it signed, remove any time"
		}
		return "superseded since " + Time(s.Stopped) + ", remove after " + Time(s.RemoveAfter)
	case mailauth.DKIMRetired:
		if s.Stopped.IsZero() {
			return "retired " + Time(s.Key.RetiredAt) + " before it signed, remove any time"
		}
		return "retired " + Time(s.Key.RetiredAt) + ", remove after " + Time(s.RemoveAfter)
	}
	return s.Status.String()
}

// Time writes a moment of a key's life for the operator, in UTC to the
// minute (a rotation's switch is hours away, not days).
func Time(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// SignFrom is when a key signs from: a key without the time signs from its
// creation (mailstore.DKIMKey.SignFrom).
func SignFrom(k mailstore.DKIMKey) time.Time {
	if k.SignFrom.IsZero() {
		return k.CreatedAt
	}
	return k.SignFrom
}
