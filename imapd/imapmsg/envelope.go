package imapmsg

import (
	"bytes"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// Placeholders for the parts of a non-group address that the header left
// out (e.g. "To: root"). NIL there would turn the address into a group
// marker (RFC 9051 §7.5.2), and an empty string is read as NIL by many
// clients, so Dovecot's spelling is used.
const (
	missingMailbox = "MISSING_MAILBOX"
	missingHost    = "MISSING_DOMAIN"
)

// WriteEnvelope writes the ENVELOPE data item value (RFC 9051 §7.5.2,
// RFC 3501 §7.4.2):
//
//	(date subject from sender reply-to to cc bcc in-reply-to message-id)
//
// Empty fields are NIL. When Sender or Reply-To is absent or empty, the
// From list is sent in its place, as the RFC requires of the server. A nil
// envelope is written as ten NILs.
func WriteEnvelope(w *bytes.Buffer, e *msgparse.Envelope) {
	if e == nil {
		w.WriteString("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)")
		return
	}
	w.WriteByte('(')
	writeNString(w, e.Date)
	w.WriteByte(' ')
	writeNString(w, e.Subject)
	w.WriteByte(' ')
	writeAddressList(w, e.From)
	w.WriteByte(' ')
	sender := e.Sender
	if len(sender) == 0 {
		sender = e.From
	}
	writeAddressList(w, sender)
	w.WriteByte(' ')
	replyTo := e.ReplyTo
	if len(replyTo) == 0 {
		replyTo = e.From
	}
	writeAddressList(w, replyTo)
	w.WriteByte(' ')
	writeAddressList(w, e.To)
	w.WriteByte(' ')
	writeAddressList(w, e.Cc)
	w.WriteByte(' ')
	writeAddressList(w, e.Bcc)
	w.WriteByte(' ')
	writeNString(w, e.InReplyTo)
	w.WriteByte(' ')
	writeNString(w, e.MessageID)
	w.WriteByte(')')
}

// writeAddressList writes env-from etc.: "(" 1*address ")" / nil. Addresses
// follow each other without a separator (RFC 9051 §9).
func writeAddressList(w *bytes.Buffer, l []msgparse.Address) {
	if len(l) == 0 {
		w.WriteString("NIL")
		return
	}
	w.WriteByte('(')
	for i := range l {
		writeAddress(w, &l[i])
	}
	w.WriteByte(')')
}

// writeAddress writes one address: (addr-name addr-adl addr-mailbox
// addr-host). RFC 9051 §7.5.2 group syntax: a group start is (NIL NIL
// "group name" NIL), a group end (NIL NIL NIL NIL).
func writeAddress(w *bytes.Buffer, a *msgparse.Address) {
	if a.Group {
		w.WriteString("(NIL NIL ")
		writeNString(w, a.Mailbox)
		w.WriteString(" NIL)")
		return
	}
	w.WriteByte('(')
	writeNString(w, a.Name)
	w.WriteByte(' ')
	writeNString(w, a.Adl)
	w.WriteByte(' ')
	mailbox, host := a.Mailbox, a.Host
	if mailbox == "" {
		mailbox = missingMailbox
	}
	if host == "" {
		host = missingHost
	}
	writeString(w, mailbox)
	w.WriteByte(' ')
	writeString(w, host)
	w.WriteByte(')')
}
