package smtpd

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/postrider/postrider/internal/srs"
	"github.com/postrider/postrider/mailstore"
)

// address is an envelope mailbox as parsePath hands it over: source routes
// ("@a,@b:") already dropped (RFC 5321 §4.1.2 allows ignoring them, and we
// do: they never make us relay) and a quoted local part already unquoted.
type address struct {
	local   string
	domain  string // lower-case ASCII (A-labels), or an address literal "[...]"
	literal bool
}

var (
	errAddrSyntax   = errors.New("bad address syntax")
	errAddrNonASCII = errors.New("non-ASCII address without SMTPUTF8")
)

// parseAddress checks an envelope mailbox (RFC 5321 §4.1.2, RFC 6531 §3.3)
// and splits it at its last "@" (a quoted local part may hold "@"; the
// domain never does). The local part is left for the store to judge: any
// local part it cannot hold ("user%host", "a@b" from a quoted string) is
// an unknown user there, never a route elsewhere.
func parseAddress(s string, smtputf8 bool) (address, error) {
	if s == "" || len(s) > mailstore.MaxAddressLength || !utf8.ValidString(s) {
		return address{}, errAddrSyntax
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return address{}, errAddrSyntax
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if !ascii && !smtputf8 {
		return address{}, errAddrNonASCII
	}
	at := strings.LastIndexByte(s, '@')
	// RFC 5321 §4.5.3.1.1 bounds a local part to 64 octets; SRS
	// addresses (ours coming back, others' as senders) are often longer,
	// and §4.5.3.1 asks that limits be avoided where possible: the whole
	// path stays bounded.
	if at <= 0 || at == len(s)-1 || at > mailstore.MaxLocalPartLength && !srs.IsSRS(s[:at]) {
		return address{}, errAddrSyntax
	}
	a := address{local: s[:at]}
	dom := s[at+1:]
	if strings.HasPrefix(dom, "[") {
		if !validAddressLiteral(dom) {
			return address{}, errAddrSyntax
		}
		a.domain, a.literal = dom, true
		return a, nil
	}
	d, err := asciiDomain(dom)
	if err != nil {
		return address{}, err
	}
	a.domain = d
	return a, nil
}

// validAddressLiteral checks an address literal (RFC 5321 §4.1.3).
func validAddressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	in := s[1 : len(s)-1]
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		ip, err := netip.ParseAddr(v6)
		return err == nil && ip.Is6()
	}
	if ip, err := netip.ParseAddr(in); err == nil {
		return ip.Is4()
	}
	// General-address-literal: Standardized-tag ":" 1*dcontent
	tag, content, ok := strings.Cut(in, ":")
	if !ok || tag == "" || content == "" {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if !isLDH(tag[i]) {
			return false
		}
	}
	for i := 0; i < len(content); i++ {
		if c := content[i]; c < 33 || c > 126 || c == '[' || c == ']' || c == '\\' {
			return false
		}
	}
	return true
}

func isLDH(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// asciiDomain validates a domain (RFC 5321 §4.1.2 Domain: no empty label,
// hence no trailing dot) and returns it in lower case, with U-labels
// (RFC 6531 §3.3) converted to A-labels (RFC 5891 §4.4, RFC 3492).
func asciiDomain(d string) (string, error) {
	if d == "" || len(d) > mailstore.MaxDomainLength*4 {
		return "", errAddrSyntax
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		if l == "" {
			return "", errAddrSyntax
		}
		if !isASCII(l) {
			u := norm.NFKC.String(cases.Fold().String(l))
			p, err := punyEncode(u)
			if err != nil {
				return "", err
			}
			l = "xn--" + p
		}
		labels[i] = strings.ToLower(l)
	}
	out := strings.Join(labels, ".")
	if len(out) > mailstore.MaxDomainLength {
		return "", errAddrSyntax
	}
	for _, l := range labels {
		if len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", errAddrSyntax
		}
		for i := 0; i < len(l); i++ {
			if !isLDH(l[i]) {
				return "", errAddrSyntax
			}
		}
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Punycode parameters (RFC 3492 §5).
const (
	pcBase        = 36
	pcTMin        = 1
	pcTMax        = 26
	pcSkew        = 38
	pcDamp        = 700
	pcInitialBias = 72
	pcInitialN    = 128
)

// punyEncode encodes one label (RFC 3492 §6.3).
func punyEncode(label string) (string, error) {
	runes := []rune(label)
	if len(runes) > 63 {
		return "", errAddrSyntax
	}
	out := make([]byte, 0, 63)
	for _, r := range runes {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	b := len(out)
	h := b
	if b > 0 {
		out = append(out, '-')
	}
	n, delta, bias := pcInitialN, 0, pcInitialBias
	for h < len(runes) {
		m := int(utf8.MaxRune) + 1
		for _, r := range runes {
			if int(r) >= n && int(r) < m {
				m = int(r)
			}
		}
		delta += (m - n) * (h + 1)
		n = m
		for _, r := range runes {
			if int(r) < n {
				delta++
			}
			if int(r) != n {
				continue
			}
			q := delta
			for k := pcBase; ; k += pcBase {
				t := k - bias
				if t < pcTMin {
					t = pcTMin
				} else if t > pcTMax {
					t = pcTMax
				}
				if q < t {
					break
				}
				out = append(out, punyDigit(t+(q-t)%(pcBase-t)))
				q = (q - t) / (pcBase - t)
			}
			out = append(out, punyDigit(q))
			bias = punyAdapt(delta, h+1, h == b)
			delta = 0
			h++
		}
		delta++
		n++
	}
	return string(out), nil
}

func punyDigit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}

func punyAdapt(delta, numPoints int, first bool) int {
	if first {
		delta /= pcDamp
	} else {
		delta /= 2
	}
	delta += delta / numPoints
	k := 0
	for delta > ((pcBase-pcTMin)*pcTMax)/2 {
		delta /= pcBase - pcTMin
		k += pcBase
	}
	return k + (pcBase-pcTMin+1)*delta/(delta+pcSkew)
}

// isDotAtom reports whether a local part can be written without quotes
// (RFC 5321 §4.1.2 Dot-string; UTF-8 allowed per RFC 6531 §3.3).
func isDotAtom(l string) bool {
	if l == "" || l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c >= 0x80 || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// pathString renders a mailbox for Return-Path: (RFC 5321 §4.1.2),
// quoting the local part when needed.
func pathString(mbox string) string {
	at := strings.LastIndexByte(mbox, '@')
	if at < 0 {
		return ""
	}
	local, dom := mbox[:at], mbox[at+1:]
	if isDotAtom(local) {
		return local + "@" + dom
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteString(`"@`)
	b.WriteString(dom)
	return b.String()
}
