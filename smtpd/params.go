package smtpd

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The arguments of MAIL and RCPT: a path (RFC 5321 §4.1.2) and ESMTP
// parameters (RFC 5321 §4.1.2 Mail-parameters, Rcpt-parameters) of the
// extensions we offer. Every refusal is a *reply.

// mailParams are MAIL FROM's parameters.
type mailParams struct {
	size  int64  // SIZE= (RFC 1870 §6), 0 when not given
	body  string // BODY= 7BIT or 8BITMIME (RFC 6152 §2), "" when not given
	utf8  bool   // SMTPUTF8 (RFC 6531 §3.4)
	ret   string // RET= FULL or HDRS (RFC 3461 §4.3)
	envID string // ENVID= (RFC 3461 §4.4), decoded
}

// rcptParams are RCPT TO's parameters (RFC 3461 §4.1, §4.2).
type rcptParams struct {
	notify    []string // NEVER, or some of SUCCESS, FAILURE, DELAY
	orcptType string   // upper case: RFC822 or UTF-8
	orcpt     string   // decoded
}

var errPath = errors.New("bad path syntax")

// parseMailArg parses "FROM:<reverse-path> [params]" (RFC 5321 §4.1.1.2).
func parseMailArg(arg string, maxSize int64) (string, mailParams, *reply) {
	var p mailParams
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return "", p, replyErr(501, 5, 5, 2, "Syntax: MAIL FROM:<address> [parameters]")
	}
	from, rest, err := parsePath(rest, true)
	if err != nil {
		return "", p, replyErr(501, 5, 5, 2, "Syntax: MAIL FROM:<address> [parameters]")
	}
	params, r := splitParams(rest)
	if r != nil {
		return "", p, r
	}
	for _, kv := range params {
		key, val := kv[0], kv[1]
		switch key {
		case "SIZE":
			// RFC 1870 §6: a size over our limit is refused with 552
			// whatever its length (it is only digits).
			if val == "" || strings.Trim(val, "0123456789") != "" {
				return "", p, badParam("SIZE")
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n > maxSize {
				return "", p, replyErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size (RFC 1870 §6)")
			}
			p.size = n
		case "BODY":
			switch v := strings.ToUpper(val); v {
			case "7BIT", "8BITMIME":
				p.body = v
			default:
				return "", p, badParam("BODY")
			}
		case "SMTPUTF8":
			if val != "" {
				return "", p, badParam("SMTPUTF8")
			}
			p.utf8 = true
		case "RET":
			switch v := strings.ToUpper(val); v {
			case "FULL", "HDRS":
				p.ret = v
			default:
				return "", p, badParam("RET")
			}
		case "ENVID":
			v, err := decodeXtext(val)
			if err != nil || v == "" || len(v) > maxEnvID || !printableASCII(v) {
				return "", p, badParam("ENVID")
			}
			p.envID = v
		case "AUTH":
			// RFC 4954 §5: the original submitter, "<>" if unknown. We
			// relay nothing, so it is checked and ignored.
			v, err := decodeXtext(val)
			if err != nil || v == "" {
				return "", p, badParam("AUTH")
			}
			if v != "<>" {
				if mbox, rest, err := parsePath(v, false); err != nil || rest != "" || mbox == "" {
					return "", p, badParam("AUTH")
				}
			}
		default:
			return "", p, unknownParam(key)
		}
	}
	return from, p, nil
}

// parseRcptArg parses "TO:<forward-path> [params]" (RFC 5321 §4.1.1.3).
// "<Postmaster>" without a domain (RFC 5321 §4.5.1) comes back as
// postmaster@barePostmasterDomain.
func parseRcptArg(arg string) (string, rcptParams, *reply) {
	var p rcptParams
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return "", p, replyErr(501, 5, 5, 2, "Syntax: RCPT TO:<address> [parameters]")
	}
	rest = strings.TrimLeft(rest, " ")
	var to string
	if pm, ok := cutPrefixFold(rest, "<postmaster>"); ok {
		to, rest = "postmaster@"+barePostmasterDomain, pm
	} else {
		var err error
		to, rest, err = parsePath(rest, false)
		if err != nil || to == "" {
			return "", p, replyErr(501, 5, 5, 2, "Syntax: RCPT TO:<address> [parameters]")
		}
	}
	params, r := splitParams(rest)
	if r != nil {
		return "", p, r
	}
	for _, kv := range params {
		key, val := kv[0], kv[1]
		switch key {
		case "NOTIFY":
			n, ok := parseNotify(val)
			if !ok {
				return "", p, badParam("NOTIFY")
			}
			p.notify = n
		case "ORCPT":
			typ, addr, ok := strings.Cut(val, ";")
			typ = strings.ToUpper(typ)
			var v string
			var err error
			switch typ {
			case "RFC822":
				v, err = decodeXtext(addr)
				if err == nil && !printableASCII(v) {
					err = errPath
				}
			case "UTF-8": // RFC 6533 §3
				v, err = decodeUTF8Xtext(addr)
			default:
				err = errPath
			}
			if !ok || err != nil || v == "" || len(v) > maxCommandLine {
				return "", p, badParam("ORCPT")
			}
			p.orcptType, p.orcpt = typ, v
		default:
			return "", p, unknownParam(key)
		}
	}
	return to, p, nil
}

// parseNotify parses NOTIFY's value (RFC 3461 §4.1): NEVER alone, or a
// list of SUCCESS, FAILURE and DELAY without repeats.
func parseNotify(val string) ([]string, bool) {
	parts := strings.Split(strings.ToUpper(val), ",")
	if len(parts) > 3 {
		return nil, false
	}
	seen := map[string]bool{}
	for _, v := range parts {
		switch v {
		case "NEVER":
			if len(parts) != 1 {
				return nil, false
			}
		case "SUCCESS", "FAILURE", "DELAY":
			if seen[v] {
				return nil, false
			}
			seen[v] = true
		default:
			return nil, false
		}
	}
	return parts, true
}

func badParam(key string) *reply {
	return replyErr(501, 5, 5, 4, "Invalid "+key+" parameter value")
}

// unknownParam: RFC 5321 §4.1.1.11, 555 for a parameter not recognized.
func unknownParam(key string) *reply {
	if len(key) > 20 {
		key = key[:20]
	}
	return replyErr(555, 5, 5, 4, "Parameter "+key+" not recognized")
}

// splitParams splits "KEY[=VALUE] ..." (RFC 5321 §4.1.2 esmtp-param) into
// upper-case keys and values: at most maxParams, each key once.
func splitParams(s string) ([][2]string, *reply) {
	fields := strings.Fields(s)
	if len(fields) > maxParams {
		return nil, replyErr(501, 5, 5, 4, "Too many parameters")
	}
	out := make([][2]string, 0, len(fields))
	for _, f := range fields {
		key, val, _ := strings.Cut(f, "=")
		if !validParamKey(key) || strings.IndexByte(val, '=') >= 0 {
			return nil, replyErr(501, 5, 5, 4, "Malformed parameter")
		}
		key = strings.ToUpper(key)
		for _, kv := range out {
			if kv[0] == key {
				return nil, replyErr(501, 5, 5, 4, "Parameter "+key+" given twice")
			}
		}
		out = append(out, [2]string{key, val})
	}
	return out, nil
}

// validParamKey: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func validParamKey(k string) bool {
	if k == "" || k[0] == '-' {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isLDH(k[i]) {
			return false
		}
	}
	return true
}

// parsePath parses a path (RFC 5321 §4.1.2) at the start of s and returns
// the mailbox and what follows. Leniencies, as most servers have them: a
// space after the colon, and a path without angle brackets. A source
// route ("@a,@b:") is dropped (RFC 5321 §4.1.2, Appendix C); a quoted
// local part is unquoted (the store judges what it then holds). With
// null, "<>" is the null reverse-path (RFC 5321 §4.5.5) and gives "".
func parsePath(s string, null bool) (mbox, rest string, err error) {
	s = strings.TrimLeft(s, " ")
	if null && strings.HasPrefix(s, "<>") {
		return "", s[2:], nil
	}
	bracket := strings.HasPrefix(s, "<")
	if bracket {
		s = s[1:]
	}
	if strings.HasPrefix(s, "@") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return "", "", errPath
		}
		s = s[i+1:]
	}
	var local strings.Builder
	if strings.HasPrefix(s, `"`) { // Quoted-string
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
				if i == len(s) {
					return "", "", errPath
				}
			}
			if isControl(s[i]) { // qtextSMTP, quoted-pairSMTP
				return "", "", errPath
			}
			local.WriteByte(s[i])
		}
		if i == len(s) {
			return "", "", errPath
		}
		s = s[i+1:]
	} else { // Dot-string (and UTF-8, RFC 6531 §3.3)
		i := 0
		for ; i < len(s) && s[i] != '@'; i++ {
			if c := s[i]; c == ' ' || isControl(c) || strings.IndexByte(`()<>[]:;\,"`, c) >= 0 {
				return "", "", errPath
			}
		}
		local.WriteString(s[:i])
		s = s[i:]
	}
	if local.Len() == 0 || !strings.HasPrefix(s, "@") {
		return "", "", errPath
	}
	// The domain or address literal runs to the end of the path; the
	// address checks (parseAddress) judge it.
	end := strings.IndexAny(s, " >")
	if end < 0 {
		end = len(s)
	}
	domain := s[1:end]
	s = s[end:]
	if domain == "" || strings.IndexFunc(domain, func(r rune) bool { return r < 0x80 && isControl(byte(r)) }) >= 0 {
		return "", "", errPath
	}
	if bracket {
		if !strings.HasPrefix(s, ">") {
			return "", "", errPath
		}
		s = s[1:]
	}
	if s != "" && s[0] != ' ' {
		return "", "", errPath
	}
	return local.String() + "@" + domain, s, nil
}

// decodeXtext decodes RFC 3461 §4 xtext: printable ASCII but "+" and "=",
// and "+" followed by two upper-case hex digits.
func decodeXtext(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '+' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
			return "", errPath
		}
		n, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// decodeUTF8Xtext decodes RFC 6533 §3 utf-8-addr-xtext/unitext:
// "\x{HEX}" escapes, no controls, space, "+", "=" or other backslashes.
func decodeUTF8Xtext(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errPath
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(s[i+1:], "x{")
			end := strings.IndexByte(rest, '}')
			if !ok || end < 1 || end > 6 {
				return "", errPath
			}
			n, err := strconv.ParseUint(rest[:end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(n)) || n == 0 {
				return "", errPath
			}
			b.WriteRune(rune(n))
			i += 2 + end + 1
		case c <= ' ' || c == 0x7f || c == '+' || c == '=':
			return "", errPath
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isControl(c byte) bool { return c < ' ' || c == 0x7f }

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// cutPrefixFold is strings.CutPrefix, case-insensitive.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}
