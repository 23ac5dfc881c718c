// Package dkimkeys is the operator's side of the DKIM keys of the local
// domains: selector names, new key pairs (an Ed25519 and an RSA-2048 key,
// as RFC 8463 §3 recommends signing with both), record names, the split of
// long records into TXT strings, and how long a retired key's record is
// kept. Keys are made and their records written by mailauth, the signer's
// package, so that what we publish is what it signs with.
package dkimkeys

import (
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

// KeepRetired is how long the DNS record of a retired key should stay
// published after it stopped signing: mail signed with it may sit in a
// queue (ours keeps mail up to 5 days by default, others similar) or be
// verified again later, e.g. when a recipient forwards it.
const KeepRetired = 7 * 24 * time.Hour

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

// Active returns the keys that sign (not retired).
func Active(keys []mailstore.DKIMKey) []mailstore.DKIMKey {
	var out []mailstore.DKIMKey
	for _, k := range keys {
		if k.RetiredAt.IsZero() {
			out = append(out, k)
		}
	}
	return out
}
