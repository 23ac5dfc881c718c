// Package dkimkeys makes the DKIM signing keys of the local domains and the
// DNS records that publish them: key generation (Ed25519 and RSA-2048, as
// RFC 8463 §3 recommends signing with both), selector names, the stored
// PKCS #8 form and the TXT record text.
package dkimkeys

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// Algorithms, as mailstore.DKIMKey.Algorithm names them.
const (
	Ed25519 = "ed25519" // RFC 8463
	RSA     = "rsa"     // RFC 6376 §3.3.1 (rsa-sha256)
)

// RSABits is the size of generated RSA keys: RFC 8301 §3.2 requires at
// least 1024 bits and recommends 2048; 2048 still fits a TXT record that
// every DNS provider accepts (longer keys need many strings).
const RSABits = 2048

// KeepRetired is how long the DNS record of a retired key should stay
// published after it stopped signing: mail signed with it may sit in a
// queue (ours keeps mail up to 5 days by default, others similar) or be
// verified again later, e.g. when a recipient forwards it.
const KeepRetired = 7 * 24 * time.Hour

// Generate makes a new private key of the algorithm and returns its PKCS #8
// DER form, as the store keeps it.
func Generate(alg string) ([]byte, error) {
	var key any
	switch alg {
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		key = k
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, RSABits)
		if err != nil {
			return nil, err
		}
		key = k
	default:
		return nil, fmt.Errorf("dkim: unknown algorithm %q", alg)
	}
	return x509.MarshalPKCS8PrivateKey(key)
}

// Signer parses a stored key and checks that it is of its declared
// algorithm.
func Signer(k mailstore.DKIMKey) (crypto.Signer, error) {
	key, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s of %s: %w", k.Selector, k.Domain, err)
	}
	switch key := key.(type) {
	case ed25519.PrivateKey:
		if k.Algorithm == Ed25519 {
			return key, nil
		}
	case *rsa.PrivateKey:
		if k.Algorithm == RSA {
			return key, nil
		}
	}
	return nil, fmt.Errorf("dkim key %s of %s: stored key is a %T, not %s", k.Selector, k.Domain, key, k.Algorithm)
}

// Record returns the text of the key's DNS TXT record (RFC 6376 §3.6.1):
// for Ed25519 p= is the raw 32-octet public key (RFC 8463 §4.2), for RSA
// the DER SubjectPublicKeyInfo, the form that OpenSSL and opendkim publish
// and every verifier reads.
func Record(k mailstore.DKIMKey) (string, error) {
	s, err := Signer(k)
	if err != nil {
		return "", err
	}
	var pub []byte
	switch p := s.Public().(type) {
	case ed25519.PublicKey:
		pub = p
	case *rsa.PublicKey:
		if pub, err = x509.MarshalPKIXPublicKey(p); err != nil {
			return "", err
		}
	}
	return "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

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
		der, err := Generate(k.alg)
		if err != nil {
			return nil, err
		}
		out = append(out, mailstore.DKIMKey{Domain: domain, Selector: k.sel, Algorithm: k.alg, PrivateKey: der, CreatedAt: now})
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
