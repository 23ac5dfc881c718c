// Package srs is Postrider's sender rewriting scheme: the reverse-path of
// mail forwarded to another domain is rewritten into an address of ours,
// so that the receiver's SPF check (RFC 7208) of the envelope sender sees
// our domain, which authorises us, instead of the original sender's; a
// bounce to the rewritten address comes back to us, is verified and sent
// on to the original sender.
//
// The address format is the one of Shevek's SRS paper (libsrs2, postsrsd,
// Postfix and Exim setups use it), so receivers that know SRS recognise it:
//
//	SRS0=HHH=TT=orig-domain=orig-local@forwarder      first forwarder
//	SRS1=HHH=first-domain==HHH=TT=orig-domain=orig-local@forwarder
//
// TT is the day of the rewrite (days since the epoch, modulo 1024, in two
// base32 characters); HHH an HMAC-SHA256 of the rest under the cluster's
// key, in base32 (case-insensitive, as mail systems may change the case
// of local parts). A forwarder that gets an SRS0 address as sender makes
// it SRS1 with the first forwarder's domain and its opaque part, and an
// SRS1 address keeps its first forwarder, so an address never grows with
// each hop. Only we verify our hashes, so their length and alphabet are
// ours to choose.
package srs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"strings"
	"time"
)

// Limits and defaults.
const (
	// DefaultMaxAge is how long a rewritten address is honoured: a bounce
	// usually comes back within the sending MTA's queue lifetime (5 days
	// here, Postfix's default); libsrs2 uses 21 days.
	DefaultMaxAge = 21 * 24 * time.Hour
	// hashLen is the number of base32 characters of the hash: 40 bits, so
	// guessing a valid address for a chosen target takes about 2^39 tries.
	hashLen = 8
	// MaxAddressLength bounds what Reverse reads (RFC 5321 §4.5.3.1.3
	// bounds a path to 256 octets with its brackets).
	MaxAddressLength = 254
	// timeBase is the period of the day stamp: two base32 characters.
	timeBase = 1024
)

// Errors of Reverse.
var (
	ErrNotSRS   = errors.New("srs: not an SRS address")
	ErrSyntax   = errors.New("srs: malformed SRS address")
	ErrBadHash  = errors.New("srs: SRS address hash does not verify")
	ErrExpired  = errors.New("srs: SRS address expired")
	ErrTooLong  = errors.New("srs: rewritten address too long")
	ErrNoDomain = errors.New("srs: address has no domain")
)

// Rewriter rewrites and verifies addresses with one key. It is safe for
// concurrent use.
type Rewriter struct {
	key    []byte
	maxAge time.Duration
	now    func() time.Time
}

// New returns a rewriter keyed by key (at least 16 octets; the cluster's
// shared secret, so that every node verifies what any node wrote) that
// honours addresses for maxAge (0 = DefaultMaxAge).
func New(key []byte, maxAge time.Duration) (*Rewriter, error) {
	if len(key) < 16 {
		return nil, errors.New("srs: key shorter than 16 octets")
	}
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if maxAge >= timeBase*24*time.Hour {
		return nil, errors.New("srs: maximum age beyond the day stamp's period")
	}
	return &Rewriter{key: append([]byte(nil), key...), maxAge: maxAge, now: time.Now}, nil
}

// SetClock replaces the clock (tests).
func (r *Rewriter) SetClock(now func() time.Time) { r.now = now }

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// IsSRS reports whether a local part has the form of an SRS address
// (SRS0= or SRS1=, any case).
func IsSRS(local string) bool {
	return len(local) > 5 && local[4] == '=' && (strings.EqualFold(local[:4], "SRS0") || strings.EqualFold(local[:4], "SRS1"))
}

// Forward rewrites sender (local@domain, the domain in its ASCII form) into
// an address at domain ours. A null sender stays null (RFC 5321 §4.5.5:
// nothing may bounce to it).
func (r *Rewriter) Forward(sender, ours string) (string, error) {
	if sender == "" {
		return "", nil
	}
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return "", ErrNoDomain
	}
	local, domain := sender[:at], strings.ToLower(sender[at+1:])
	if !validDomain(domain) {
		return "", ErrNoDomain
	}
	var out string
	switch {
	case IsSRS(local) && strings.EqualFold(local[:4], "SRS0"):
		// The sender was rewritten once: keep its opaque part, and
		// where to send it back (its forwarder).
		opaque := local[4:]
		out = "SRS1=" + r.hash("1", domain, opaque) + "=" + domain + "=" + opaque
	case IsSRS(local):
		// SRS1: keep the first forwarder; only our hash is new.
		parts := strings.SplitN(local, "=", 4)
		if len(parts) == 4 && validDomain(strings.ToLower(parts[2])) && strings.HasPrefix(parts[3], "=") {
			first := strings.ToLower(parts[2])
			out = "SRS1=" + r.hash("1", first, parts[3]) + "=" + first + "=" + parts[3]
			break
		}
		// Not one we can parse: treat it as an ordinary address.
		out = r.srs0(local, domain)
	default:
		out = r.srs0(local, domain)
	}
	out += "@" + strings.ToLower(ours)
	if len(out) > MaxAddressLength {
		return "", ErrTooLong
	}
	return out, nil
}

func (r *Rewriter) srs0(local, domain string) string {
	ts := r.stamp(r.now())
	return "SRS0=" + r.hash("0", ts, domain, local) + "=" + ts + "=" + domain + "=" + local
}

// Reverse verifies an SRS address of ours (its local part; the domain
// part is whichever of our domains it came to) and returns the address it
// stands for: the original sender for SRS0, the first forwarder's SRS0
// address for SRS1. ErrNotSRS when it is not an SRS address at all.
func (r *Rewriter) Reverse(local string) (string, error) {
	if !IsSRS(local) {
		return "", ErrNotSRS
	}
	if len(local) > MaxAddressLength {
		return "", ErrSyntax
	}
	if strings.EqualFold(local[:4], "SRS1") {
		// SRS1=HHH=first-domain==opaque
		parts := strings.SplitN(local, "=", 4)
		if len(parts) != 4 || parts[2] == "" || len(parts[3]) < 2 || parts[3][0] != '=' {
			return "", ErrSyntax
		}
		first := strings.ToLower(parts[2])
		if !validDomain(first) {
			return "", ErrSyntax
		}
		if !r.check(parts[1], "1", first, parts[3]) {
			return "", ErrBadHash
		}
		return "SRS0" + parts[3] + "@" + first, nil
	}
	// SRS0=HHH=TT=domain=local
	parts := strings.SplitN(local, "=", 5)
	if len(parts) != 5 || parts[4] == "" || len(parts[2]) != 2 {
		return "", ErrSyntax
	}
	ts, domain, orig := strings.ToUpper(parts[2]), strings.ToLower(parts[3]), parts[4]
	if !validDomain(domain) {
		return "", ErrSyntax
	}
	day, ok := decodeStamp(ts)
	if !ok {
		return "", ErrSyntax
	}
	if !r.check(parts[1], "0", ts, domain, orig) {
		return "", ErrBadHash
	}
	// The stamp wraps every 1024 days; a stamp from the future reads as
	// one almost a period old, hence expired.
	today := int(r.now().Unix()/86400) % timeBase
	age := (today - day + timeBase) % timeBase
	if time.Duration(age)*24*time.Hour > r.maxAge {
		return "", ErrExpired
	}
	return orig + "@" + domain, nil
}

// stamp is the day of t in two base32 characters.
func (r *Rewriter) stamp(t time.Time) string {
	d := int(t.Unix()/86400) % timeBase
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	return string([]byte{alpha[d>>5], alpha[d&31]})
}

func decodeStamp(s string) (int, bool) {
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d int
		switch {
		case c >= 'A' && c <= 'Z':
			d = int(c - 'A')
		case c >= '2' && c <= '7':
			d = int(c-'2') + 26
		default:
			return 0, false
		}
		v = v<<5 | d
	}
	return v, true
}

// hash is the truncated HMAC of the parts, lower-cased (mail systems may
// change the case of an address; we must still verify it), each part
// length-prefixed so that no two lists of parts hash alike.
func (r *Rewriter) hash(parts ...string) string {
	m := hmac.New(sha256.New, r.key)
	for _, p := range parts {
		p = strings.ToLower(p)
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	return b32.EncodeToString(m.Sum(nil))[:hashLen]
}

func (r *Rewriter) check(got string, parts ...string) bool {
	want := r.hash(parts...)
	return hmac.Equal([]byte(strings.ToUpper(got)), []byte(want))
}

// validDomain checks a domain as SRS carries it: letters, digits, "-",
// and "." between non-empty labels (RFC 5321 §4.1.2), or an address
// literal is refused. Enough to be sure that nothing but a domain is
// turned into a forward-path.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
