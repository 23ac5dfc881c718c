package mailauth

import (
	"strings"
)

// maxValue bounds a value taken from the message or DNS into the header.
const maxValue = 253

// maxReason bounds a reason.
const maxReason = 160

// AuthResults returns the Authentication-Results: header field (RFC 8601
// §2.2) for r, with authservID as the authserv-id, folded with one result
// per line and ending in CRLF. Every value is written as a token where it
// can be and quoted otherwise; nothing from the message or DNS can break
// out of its value (CR, LF and other controls are replaced).
func (r *Result) AuthResults(authservID string) []byte {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(value(authservID))

	// RFC 8601 §2.7.2: spf, with smtp.mailfrom or smtp.helo (RFC 7208 §9.1).
	b.WriteString(";\r\n\tspf=")
	b.WriteString(r.SPF.Result)
	reason(&b, r.SPF.Reason)
	if r.SPF.Domain != "" {
		if r.SPF.Identity == "helo" {
			b.WriteString(" smtp.helo=" + value(r.SPF.Domain))
		} else {
			b.WriteString(" smtp.mailfrom=" + mailfrom(r.SPF.MailFrom, r.SPF.Domain))
		}
	}

	// RFC 8601 §2.7.1 (and RFC 6008 header.b): one dkim per signature.
	if len(r.DKIM) == 0 {
		b.WriteString(";\r\n\tdkim=none")
	}
	for _, d := range r.DKIM {
		b.WriteString(";\r\n\tdkim=")
		b.WriteString(d.Result)
		reason(&b, d.Reason)
		if d.Domain != "" {
			b.WriteString(" header.d=" + value(d.Domain))
		}
		if d.Selector != "" {
			b.WriteString(" header.s=" + value(d.Selector))
		}
		if d.B != "" {
			b.WriteString(" header.b=" + value(d.B))
		}
	}

	// RFC 7489 §11.2.
	b.WriteString(";\r\n\tdmarc=")
	b.WriteString(r.DMARC.Result)
	if r.DMARC.Policy != "" {
		b.WriteString(" (p=" + r.DMARC.Policy + ")")
	}
	reason(&b, r.DMARC.Reason)
	if r.DMARC.FromDomain != "" {
		b.WriteString(" header.from=" + value(r.DMARC.FromDomain))
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

func reason(b *strings.Builder, s string) {
	if s != "" {
		b.WriteString(" reason=" + quote(s, maxReason))
	}
}

// mailfrom renders smtp.mailfrom (RFC 8601 §2.2 pvalue): local@domain
// when the local part is a dot-atom (RFC 5322 §3.4.1), else the domain
// alone, which the grammar allows.
func mailfrom(addr, domain string) string {
	at := strings.LastIndexByte(addr, '@')
	v := value(domain)
	if at > 0 && isDotAtom(addr[:at]) && len(addr[:at]) <= 64 && v == domain {
		return addr[:at] + "@" + domain
	}
	return v
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext: RFC 5322 §3.2.3 atext (ASCII).
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// value renders a value (RFC 2045 §5.1): a token when it is one, else a
// quoted-string.
func value(s string) string {
	if len(s) > maxValue {
		s = s[:maxValue]
	}
	ok := s != ""
	for i := 0; i < len(s) && ok; i++ {
		ok = isTokenChar(s[i])
	}
	if ok {
		return s
	}
	return quote(s, maxValue)
}

// quote renders s as a quoted-string (RFC 5322 §3.2.4) of at most max
// octets of content: quotes and backslashes escaped, controls and
// non-ASCII octets replaced by "?".
func quote(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
