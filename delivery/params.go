package delivery

import (
	"fmt"
	"strings"

	"github.com/postrider/postrider/mailstore"
)

// needsUTF8 reports whether the item needs SMTPUTF8 (RFC 6531 §3.4): the
// client asked for it, or an address is not ASCII.
func needsUTF8(it *mailstore.QueueItem, rcpts []mailstore.QueueRecipient) bool {
	if param(it.Params, "smtputf8") != "" || !isASCII(it.MailFrom) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r.Address) {
			return true
		}
	}
	return false
}

// param reads a transaction parameter whatever its case ("ret", "RET").
func param(p map[string]string, key string) string {
	if v, ok := p[key]; ok {
		return v
	}
	for k, v := range p {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// safePath reports whether an address can go between the angle brackets
// of a command: no line break or other control, no bracket. The queue
// holds only addresses that smtpd checked; this keeps a bad one from ever
// becoming a command of its own.
func safePath(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// mailCommand is MAIL FROM with the parameters the receiver takes (RFC
// 5321 §4.1.1.2): BODY=8BITMIME (RFC 6152 §2), SIZE (RFC 1870 §6),
// SMTPUTF8 (RFC 6531 §3.4), RET and ENVID (RFC 3461 §4.3, §4.4).
func (s *session) mailCommand(it *mailstore.QueueItem, utf8 bool) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + it.MailFrom + ">")
	if s.eightBit {
		// Declared for every message: a 7-bit body is valid 8BITMIME,
		// and a client's own BODY= (or its absence) is no proof.
		b.WriteString(" BODY=8BITMIME")
	}
	if s.c.hasExt("SIZE") && it.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", it.Size)
	}
	if utf8 {
		b.WriteString(" SMTPUTF8")
	}
	if s.dsn {
		switch strings.ToUpper(param(it.Params, "ret")) {
		case "FULL":
			b.WriteString(" RET=FULL")
		case "HDRS":
			b.WriteString(" RET=HDRS")
		}
		if id := param(it.Params, "envid"); id != "" && printableASCII(id) && len(id) <= 100 {
			b.WriteString(" ENVID=" + xtext(id))
		}
	}
	return b.String()
}

// rcptCommand is RCPT TO with the DSN parameters passed on to a receiver
// that offers DSN (RFC 3461 §5.2: a relay that talks to a DSN server
// passes NOTIFY and ORCPT). Invalid values are dropped, not sent.
func (s *session) rcptCommand(rc mailstore.QueueRecipient) string {
	var b strings.Builder
	b.WriteString("RCPT TO:<" + rc.Address + ">")
	if !s.dsn {
		return b.String()
	}
	if n := parseNotify(rc.Notify); len(n) > 0 {
		b.WriteString(" NOTIFY=" + strings.Join(n, ","))
	}
	if typ, addr, ok := strings.Cut(rc.ORCPT, ";"); ok && addr != "" {
		switch strings.ToLower(strings.TrimSpace(typ)) {
		case "rfc822":
			if printableASCII(addr) {
				b.WriteString(" ORCPT=rfc822;" + xtext(addr))
			}
		case "utf-8":
			b.WriteString(" ORCPT=utf-8;" + utf8AddrText(addr, s.smtputf8))
		}
	}
	return b.String()
}

// xtext encodes a value of ENVID or of an rfc822 ORCPT (RFC 3461 §4):
// "+", "=" and every octet outside "!".."~" as "+" and two upper-case
// hex digits.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// utf8AddrText encodes a utf-8 ORCPT address (RFC 6533 §3): "\x{HEX}" for
// "+", "=", "\", controls and spaces; non-ASCII characters as they are to
// a receiver with SMTPUTF8 (utf-8-addr-unitext), else as "\x{HEX}" too
// (utf-8-addr-xtext).
func utf8AddrText(s string, unitext bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 0x80 && unitext:
			b.WriteRune(r)
		case r <= ' ' || r >= 0x7f || r == '+' || r == '=' || r == '\\':
			fmt.Fprintf(&b, `\x{%02X}`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// parseNotify parses NOTIFY (RFC 3461 §4.1): NEVER alone, or some of
// SUCCESS, FAILURE, DELAY. nil when absent or invalid.
func parseNotify(v string) []string {
	if v == "" {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.ToUpper(strings.TrimSpace(f))
		if seen[f] {
			return nil
		}
		seen[f] = true
		switch f {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
			out = append(out, f)
		default:
			return nil
		}
	}
	if seen["NEVER"] && len(out) > 1 {
		return nil
	}
	return out
}

// notifies reports whether a recipient wants a DSN for action (RFC 3461
// §4.1); without NOTIFY, failures and delays are reported.
func notifies(notify string, a DSNAction) bool {
	n := parseNotify(notify)
	if n == nil {
		return a == ActionFailed || a == ActionDelayed
	}
	want := map[DSNAction]string{ActionFailed: "FAILURE", ActionDelayed: "DELAY", ActionRelayed: "SUCCESS"}[a]
	for _, x := range n {
		if x == want {
			return true
		}
	}
	return false
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
