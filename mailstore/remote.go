package mailstore

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// NormalizeRemoteAddress validates the address of a remote recipient or
// of an external alias target and returns it in the form it is sent in
// (RCPT TO), with its domain: the domain in lower case with U-labels
// turned into A-labels (RFC 5890 §2.3.2.1; RFC 6531 §3.2 lets either be
// sent), the local part as given, since only its destination may
// interpret it (RFC 5321 §2.4), but in one canonical spelling: a
// dot-string where one can spell it, else a quoted string with only the
// needed escapes (RFC 5321 §4.1.2). The local part may be given quoted or
// already unquoted, and may hold UTF-8 (RFC 6531 §3.3). Address literals
// are refused: mail to other domains goes by their MX.
func NormalizeRemoteAddress(a string) (addr, domain string, err error) {
	if len(a) > 4*MaxAddressLength || !utf8.ValidString(a) {
		return "", "", fmt.Errorf("%w: bad remote address", ErrInvalidAddress)
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", fmt.Errorf("%w: %q has no local part and domain", ErrInvalidAddress, a)
	}
	local, err := canonicalLocal(a[:at])
	if err != nil {
		return "", "", err
	}
	dom := a[at+1:]
	if strings.HasPrefix(dom, "[") {
		return "", "", fmt.Errorf("%w: address literal %s: remote mail goes to domains", ErrInvalidAddress, dom)
	}
	if !isASCIIString(dom) {
		// RFC 5891 §5 lookup rules: mapping (case folding), then A-labels.
		if dom, err = idna.Lookup.ToASCII(dom); err != nil {
			return "", "", fmt.Errorf("%w: domain %q: %v", ErrInvalidAddress, a[at+1:], err)
		}
	}
	if domain, err = NormalizeDomain(dom); err != nil {
		return "", "", err
	}
	addr = local + "@" + domain
	if len(addr) > MaxAddressLength {
		return "", "", fmt.Errorf("%w: address too long", ErrInvalidAddress)
	}
	return addr, domain, nil
}

// canonicalLocal returns a local part as a dot-string when it is one, else
// quoted (RFC 5321 §4.1.2 Local-part, RFC 6531 §3.3 for UTF-8). A valid
// quoted string is taken as quoted; anything else as the unquoted text.
func canonicalLocal(l string) (string, error) {
	text := l
	if u, ok := unquoteLocal(l); ok {
		text = u
	}
	if text == "" {
		return "", fmt.Errorf("%w: empty local part", ErrInvalidAddress)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return "", fmt.Errorf("%w: control character in local part", ErrInvalidAddress)
		}
	}
	out := text
	if !isDotString(text) {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(text); i++ {
			if c := text[i]; c == '"' || c == '\\' {
				b.WriteByte('\\') // quoted-pairSMTP
			}
			b.WriteByte(text[i])
		}
		b.WriteByte('"')
		out = b.String()
	}
	if len(out) > MaxLocalPartLength {
		return "", fmt.Errorf("%w: local part longer than %d octets", ErrInvalidAddress, MaxLocalPartLength)
	}
	return out, nil
}

// unquoteLocal undoes a Quoted-string (RFC 5321 §4.1.2: qtextSMTP and
// quoted-pairSMTP; RFC 6531 §3.3 adds UTF-8); ok is false when l is not
// one.
func unquoteLocal(l string) (string, bool) {
	if len(l) < 2 || l[0] != '"' || l[len(l)-1] != '"' {
		return "", false
	}
	in := l[1 : len(l)-1]
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch {
		case c == '\\':
			if i+1 == len(in) || in[i+1] < 32 || in[i+1] > 126 {
				return "", false
			}
			i++
			b.WriteByte(in[i])
		case c == '"', c < 32 || c == 127:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// isDotString reports whether s is a Dot-string (RFC 5321 §4.1.2) of
// atext or UTF-8 (RFC 6531 §3.3 atext =/ UTF8-non-ascii).
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && c < 0x80 && !isAtext(c) {
			return false
		}
	}
	return true
}

func isASCIIString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
