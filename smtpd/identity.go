package smtpd

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"unicode"
)

// Submission identity. RFC 6409 §6.1 leaves the sender policy to the
// server; ours: every address in an originator field of a submitted message
// (From: and Sender:, RFC 5322 §3.6.2; Resent-From: and Resent-Sender:,
// §3.6.6) is one the authenticated account owns, and no display name (or
// the comment a client shows in its place) reads as an address the account
// does not own: `"bob@example.test" <alice@example.test>` is displayed by
// many clients as if bob sent it.

// originatorNames are the checked fields, as the reply names them.
var originatorNames = []string{"From", "Sender", "Resent-From", "Resent-Sender"}

// Errors of the originator check.
var (
	errNoFrom     = errors.New("no From: header field")
	errManyFrom   = errors.New("more than one From: header field")
	errManySender = errors.New("more than one Sender: header field")
)

// originator is one originator field of a header section.
type originator struct {
	field string // one of originatorNames
	addrs []*mail.Address
}

// nameWords decodes RFC 2047 words well enough to read the addresses and
// display names: charsets other than UTF-8 and Latin-1 pass through as
// octets (an ASCII "@" stays visible), except UTF-7, in which "@" is
// "+AEA-" and would slip past the display-name check.
var nameWords = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	if strings.EqualFold(charset, "utf-7") || strings.EqualFold(charset, "unicode-1-1-utf-7") {
		return nil, fmt.Errorf("charset %s refused in originator fields", charset)
	}
	return r, nil
}}

// headerOriginators parses the originator fields of a header section:
// exactly one From: and at most one Sender: (RFC 5322 §3.6), any number of
// Resent-From:/Resent-Sender: (one per resent block, §3.6.6). Sender: and
// Resent-Sender: hold one mailbox.
func headerOriginators(hdr []byte) ([]originator, error) {
	var out []originator
	from, sender := 0, 0
	p := mail.AddressParser{WordDecoder: nameWords}
	for _, f := range headerFields(hdr) {
		name, value, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		name = strings.TrimRight(name, " \t")
		field := ""
		for _, n := range originatorNames {
			if strings.EqualFold(name, n) {
				field = n
			}
		}
		switch field {
		case "":
			continue
		case "From":
			from++
		case "Sender":
			sender++
		}
		list, err := p.ParseList(value)
		single := field == "Sender" || field == "Resent-Sender"
		if err != nil || len(list) == 0 || single && len(list) != 1 {
			return nil, fmt.Errorf("unparsable %s: header field", field)
		}
		out = append(out, originator{field: field, addrs: list})
	}
	switch {
	case from == 0:
		return nil, errNoFrom
	case from > 1:
		return nil, errManyFrom
	case sender > 1:
		return nil, errManySender
	}
	return out, nil
}

// checkFrom applies the submission identity rule to a message's header
// section; nil means the message may go.
func (s *session) checkFrom(hdr []byte) *reply {
	fields, err := headerOriginators(hdr)
	if err != nil {
		return replyErr(553, 5, 7, 1, "Originator header fields must name only addresses you own ("+err.Error()+")")
	}
	for _, f := range fields {
		for _, a := range f.addrs {
			if !s.owns(a.Address) {
				return replyErr(553, 5, 7, 1, f.field+": header address not owned by the authenticated user")
			}
			if foreignAddressIn(a.Name, s.owns) != "" {
				return replyErr(553, 5, 7, 1, f.field+": header display name shows an address not owned by the authenticated user")
			}
		}
	}
	return nil
}

// atLookalikes are characters a mail client renders much like "@".
var atLookalikes = strings.NewReplacer("\uFF20", "@", "\uFE6B", "@")

// foreignAddressIn returns the first address-like token (local@domain) of
// a display name that owns refuses, or "". The name is checked as parsed
// and once more RFC 2047-decoded: encoded words inside a quoted string are
// not words for RFC 2047 §5, but some clients decode them all the same.
func foreignAddressIn(name string, owns func(string) bool) string {
	if name == "" {
		return ""
	}
	names := []string{name}
	if dec, err := nameWords.DecodeHeader(name); err == nil && dec != name {
		names = append(names, dec)
	}
	for _, n := range names {
		// NULs go: a UTF-16 word passes nameWords as octets.
		n = atLookalikes.Replace(strings.ReplaceAll(n, "\x00", ""))
		for _, tok := range strings.FieldsFunc(n, isNameBreak) {
			at := strings.LastIndexByte(tok, '@')
			if at <= 0 || at == len(tok)-1 {
				continue // "@", "x@" or "@x": not an address
			}
			if !owns(tok) {
				return tok
			}
		}
	}
	return ""
}

// isNameBreak reports whether r cannot be part of an address as a
// display name shows one (spaces, quotes, brackets, list punctuation).
func isNameBreak(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune("\"<>()[],;:\\", r)
}
