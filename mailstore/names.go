package mailstore

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on names.
const (
	MaxAddressLength     = 254 // RFC 5321 §4.5.3.1.3 path limit less the brackets
	MaxLocalPartLength   = 64  // RFC 5321 §4.5.3.1.1
	MaxDomainLength      = 253
	MaxMailboxNameLength = 1000 // octets of a full mailbox name
	MaxMailboxDepth      = 32   // levels of hierarchy
	MaxKeywordLength     = 100
	MaxKeywords          = 100 // distinct keywords on one message
)

// NormalizeDomain validates a domain name and returns it in lower case
// without a trailing dot.
func NormalizeDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if d == "" || len(d) > MaxDomainLength {
		return "", fmt.Errorf("%w: bad domain length", ErrInvalidAddress)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("%w: bad domain label in %q", ErrInvalidAddress, d)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: label may not start or end with '-' in %q", ErrInvalidAddress, d)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%w: invalid character in domain %q", ErrInvalidAddress, d)
			}
		}
	}
	return d, nil
}

// NormalizeAddress validates an account or alias address (local@domain,
// dot-atom local part, no quoting) and returns it in lower case. Postrider
// treats local parts case-insensitively, as most mail servers do.
func NormalizeAddress(a string) (string, error) {
	if len(a) > MaxAddressLength {
		return "", fmt.Errorf("%w: address too long", ErrInvalidAddress)
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 {
		return "", fmt.Errorf("%w: %q has no local part and domain", ErrInvalidAddress, a)
	}
	local, err := normalizeLocal(a[:at])
	if err != nil {
		return "", err
	}
	dom, err := NormalizeDomain(a[at+1:])
	if err != nil {
		return "", err
	}
	return local + "@" + dom, nil
}

// NormalizeAliasAddress accepts what NormalizeAddress accepts and also the
// catch-all form "@domain".
func NormalizeAliasAddress(a string) (string, error) {
	if strings.HasPrefix(a, "@") {
		d, err := NormalizeDomain(a[1:])
		if err != nil {
			return "", err
		}
		return "@" + d, nil
	}
	return NormalizeAddress(a)
}

// SplitAddress splits a normalised address into local part and domain.
func SplitAddress(a string) (local, domain string) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, ""
	}
	return a[:at], a[at+1:]
}

// atext per RFC 5322 §3.2.3.
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func normalizeLocal(l string) (string, error) {
	if l == "" || len(l) > MaxLocalPartLength {
		return "", fmt.Errorf("%w: bad local part length", ErrInvalidAddress)
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return "", fmt.Errorf("%w: misplaced dot in %q", ErrInvalidAddress, l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		// '%' and '!' are source-routing tricks; never part of our names.
		if c == '%' || c == '!' || (c != '.' && !isAtext(c)) {
			return "", fmt.Errorf("%w: invalid character in local part %q", ErrInvalidAddress, l)
		}
	}
	return strings.ToLower(l), nil
}

// NormalizeMailboxName validates a mailbox name: valid UTF-8, no control
// characters, no empty levels, not too long or deep. "INBOX" is matched
// case-insensitively (also as the first level, "inbox/x") and returned as
// "INBOX" (RFC 9051 §5.1).
func NormalizeMailboxName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if len(name) > MaxMailboxNameLength {
		return "", fmt.Errorf("%w: name longer than %d octets", ErrInvalidName, MaxMailboxNameLength)
	}
	if !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	}
	for _, r := range name {
		if unicode.IsControl(r) || r == utf8.RuneError || r == '*' || r == '%' {
			return "", fmt.Errorf("%w: invalid character %q", ErrInvalidName, r)
		}
	}
	levels := strings.Split(name, HierarchyDelimiter)
	if len(levels) > MaxMailboxDepth {
		return "", fmt.Errorf("%w: more than %d levels", ErrInvalidName, MaxMailboxDepth)
	}
	for _, l := range levels {
		if l == "" {
			return "", fmt.Errorf("%w: empty level", ErrInvalidName)
		}
		if l == "." || l == ".." || strings.TrimSpace(l) != l {
			return "", fmt.Errorf("%w: invalid level %q", ErrInvalidName, l)
		}
	}
	if strings.EqualFold(levels[0], "INBOX") {
		levels[0] = "INBOX"
	}
	return strings.Join(levels, HierarchyDelimiter), nil
}

// ValidKeyword reports whether k is a valid IMAP flag keyword (atom without
// '\', RFC 9051 §9 flag-keyword).
func ValidKeyword(k string) bool {
	if k == "" || len(k) > MaxKeywordLength {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}
