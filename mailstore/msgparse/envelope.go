package msgparse

import (
	"strings"
)

// missingHost is put in Host when an address has no domain, so that an
// IMAP encoder never mistakes it for a group marker (a NIL host means group
// syntax, RFC 9051 §7.5.2). The name is the one UW-IMAP uses.
const missingHost = ".MISSING-HOST-NAME."

// atok is one lexical token of an address header (RFC 5322 §3.2, §3.4).
type atok struct {
	kind byte   // 'a' atom (dots included), 'q' quoted-string, 'c' comment, 'd' domain literal, or a special: < > @ , : ;
	s    string // atom text, unquoted string, comment text or literal with brackets
}

// lexAddresses splits an unfolded address header value into tokens. It
// never fails: stray octets become atoms.
func lexAddresses(v string) []atok {
	var toks []atok
	l := lexer{s: v}
	for l.i < len(l.s) && len(toks) < 4*maxAddresses+64 {
		c := l.s[l.i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.i++
		case c == '(':
			toks = append(toks, atok{kind: 'c', s: strings.TrimSpace(l.comment())})
		case c == '"':
			toks = append(toks, atok{kind: 'q', s: l.quoted()})
		case c == '[':
			end := strings.IndexByte(l.s[l.i:], ']')
			if end < 0 {
				end = len(l.s) - l.i - 1
			}
			toks = append(toks, atok{kind: 'd', s: l.s[l.i : l.i+end+1]})
			l.i += end + 1
		case strings.IndexByte("<>@,:;", c) >= 0:
			toks = append(toks, atok{kind: c})
			l.i++
		case c == ')' || c == ']' || c == '\\':
			l.i++ // stray
		default:
			start := l.i
			for l.i < len(l.s) {
				c := l.s[l.i]
				if c <= ' ' || strings.IndexByte("()<>[]:;@\\,\"", c) >= 0 {
					break
				}
				l.i++
			}
			toks = append(toks, atok{kind: 'a', s: l.s[start:l.i]})
		}
	}
	return toks
}

// addrParser is a lenient RFC 5322 §3.4 address-list parser over tokens,
// including groups (§3.4), obsolete routes and empty list elements
// (§4.4). It never fails; malformed elements are kept as best it can.
type addrParser struct {
	toks []atok
	i    int
	out  []Address
	p    *Parser
}

func parseAddressList(p *Parser, v string) []Address {
	ap := addrParser{toks: lexAddresses(v), p: p}
	ap.list()
	return ap.out
}

func (ap *addrParser) emit(a Address) {
	if len(ap.out) < maxAddresses {
		ap.out = append(ap.out, Address{
			Name: ap.p.keep(a.Name), Adl: ap.p.keep(a.Adl), Mailbox: ap.p.keep(a.Mailbox),
			Host: ap.p.keep(a.Host), Group: a.Group,
		})
	}
}

func (ap *addrParser) peek() byte {
	if ap.i < len(ap.toks) {
		return ap.toks[ap.i].kind
	}
	return 0
}

// words collects display-name / local-part words (atoms, quoted strings,
// stray domain literals) and comments, stopping at the next special.
func (ap *addrParser) words() (ws []atok, comment string) {
	for ap.i < len(ap.toks) {
		t := ap.toks[ap.i]
		switch t.kind {
		case 'a', 'q', 'd':
			ws = append(ws, t)
		case 'c':
			comment = t.s
		default:
			return ws, comment
		}
		ap.i++
	}
	return ws, comment
}

// phrase joins words as a display name: quoted strings unquoted, words
// separated by one space, encoded words left as they are.
func phrase(ws []atok) string {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w.s)
	}
	return b.String()
}

// localPart joins words as a local part (RFC 5322 §3.4.1, with obs-local-part
// CFWS between words dropped); quoting is removed as RFC 9051 §7.5.2 asks.
func localPart(ws []atok) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.s)
	}
	return b.String()
}

// domain reads a domain (dot-atom or literal, RFC 5322 §3.4.1) up to the
// next special other than '.'; comments are returned separately.
func (ap *addrParser) domain() (d, comment string) {
	var b strings.Builder
	for ap.i < len(ap.toks) {
		t := ap.toks[ap.i]
		switch t.kind {
		case 'a', 'd':
			b.WriteString(t.s)
		case 'q':
			b.WriteString(t.s)
		case 'c':
			comment = t.s
		default:
			return b.String(), comment
		}
		ap.i++
	}
	return b.String(), comment
}

func (ap *addrParser) list() {
	inGroup := false
	for ap.i < len(ap.toks) && len(ap.out) < maxAddresses {
		ws, comment := ap.words()
		switch ap.peek() {
		case 0, ',':
			ap.i++
			if len(ws) > 0 {
				// A bare word list: keep the text as the mailbox.
				ap.emit(Address{Name: comment, Mailbox: localPart(ws), Host: missingHost})
			}
		case ';':
			ap.i++
			if len(ws) > 0 {
				ap.emit(Address{Name: comment, Mailbox: localPart(ws), Host: missingHost})
			}
			if inGroup {
				ap.emit(Address{Group: true}) // RFC 9051 §7.5.2 end of group
				inGroup = false
			}
		case ':':
			ap.i++
			if inGroup {
				continue // nested groups are not allowed: ignore the second start
			}
			// RFC 5322 §3.4 group: display-name ":" [group-list] ";". A
			// group without a name would look like an end marker: its
			// members are kept, the markers are not.
			if name := phrase(ws); name != "" {
				ap.emit(Address{Mailbox: name, Group: true})
				inGroup = true
			}
		case '<':
			ap.i++
			a := ap.angle()
			a.Name = phrase(ws)
			if a.Name == "" {
				a.Name = comment
			}
			if a.Mailbox != "" || a.Name != "" || (a.Host != "" && a.Host != missingHost) {
				ap.emit(a)
			}
		case '@':
			ap.i++
			// addr-spec without angle brackets. With several words before
			// the '@' (a missing '<'), the last is the local part and the
			// others the display name.
			name := ""
			if len(ws) > 1 && ws[len(ws)-1].kind == 'a' {
				name, ws = phrase(ws[:len(ws)-1]), ws[len(ws)-1:]
			}
			host, c2 := ap.domain()
			if host == "" {
				host = missingHost
			}
			if name == "" {
				name = c2
			}
			if name == "" {
				name = comment
			}
			if len(ws) > 0 || host != missingHost {
				ap.emit(Address{Name: name, Mailbox: localPart(ws), Host: host})
			}
		default: // '>' or another stray special
			ap.i++
			if len(ws) > 0 {
				ap.emit(Address{Name: comment, Mailbox: localPart(ws), Host: missingHost})
			}
		}
	}
	if inGroup {
		ap.emit(Address{Group: true})
	}
}

// angle parses the inside of "<" [obs-route] addr-spec ">" (RFC 5322 §3.4,
// §4.4 obs-angle-addr); the route goes to Adl.
func (ap *addrParser) angle() Address {
	var a Address
	if ap.peek() == '@' {
		// obs-route = obs-domain-list ":"; obs-domain-list = "@" domain *("," ["@" domain])
		save := ap.i
		var route []string
		for ap.peek() == '@' || ap.peek() == ',' {
			if ap.peek() == ',' {
				ap.i++
				continue
			}
			ap.i++
			d, _ := ap.domain()
			route = append(route, "@"+d)
		}
		if ap.peek() == ':' {
			ap.i++
			a.Adl = strings.Join(route, ",")
		} else {
			ap.i = save // not a route after all: "<@host>"
		}
	}
	ws, _ := ap.words()
	a.Mailbox = localPart(ws)
	if ap.peek() == '@' {
		ap.i++
		a.Host, _ = ap.domain()
	}
	if a.Host == "" {
		a.Host = missingHost
	}
	// Skip to the closing '>' (and anything malformed before it).
	for ap.i < len(ap.toks) && ap.toks[ap.i].kind != '>' && ap.toks[ap.i].kind != ',' {
		ap.i++
	}
	if ap.peek() == '>' {
		ap.i++
	}
	return a
}

// buildEnvelope fills the RFC 9051 §7.5.2 envelope from a header's fields.
// The first occurrence of each field wins.
func buildEnvelope(p *Parser, fields []rawField) Envelope {
	var e Envelope
	var seen [10]bool
	for _, f := range fields {
		idx := -1
		switch strings.ToLower(f.name) {
		case "date":
			idx = 0
		case "subject":
			idx = 1
		case "from":
			idx = 2
		case "sender":
			idx = 3
		case "reply-to":
			idx = 4
		case "to":
			idx = 5
		case "cc":
			idx = 6
		case "bcc":
			idx = 7
		case "in-reply-to":
			idx = 8
		case "message-id":
			idx = 9
		}
		if idx < 0 || seen[idx] {
			continue
		}
		seen[idx] = true
		switch idx {
		case 0:
			e.Date = p.keep(f.value)
		case 1:
			e.Subject = p.keep(f.value)
		case 2:
			e.From = parseAddressList(p, f.value)
		case 3:
			e.Sender = parseAddressList(p, f.value)
		case 4:
			e.ReplyTo = parseAddressList(p, f.value)
		case 5:
			e.To = parseAddressList(p, f.value)
		case 6:
			e.Cc = parseAddressList(p, f.value)
		case 7:
			e.Bcc = parseAddressList(p, f.value)
		case 8:
			e.InReplyTo = p.keep(f.value)
		case 9:
			e.MessageID = p.keep(f.value)
		}
	}
	// RFC 9051 §7.5.2: absent or empty Sender / Reply-To take From's value.
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	return e
}
