package delivery

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// DSNAction is the Action field of one recipient in a DSN (RFC 3464 §2.3.3).
type DSNAction string

const (
	ActionFailed  DSNAction = "failed"
	ActionDelayed DSNAction = "delayed"
	ActionRelayed DSNAction = "relayed"
)

// DSNRecipient is one recipient reported in a DSN.
type DSNRecipient struct {
	FinalRecipient string
	// OriginalRecipient is the ORCPT parameter as given ("rfc822;addr"),
	// "" when none (RFC 3461 §4.2, RFC 3464 §2.3.1).
	OriginalRecipient string
	Action            DSNAction
	Status            string // x.y.z (RFC 3463)
	RemoteMTA         string // host name, "" when no remote server answered
	// Diagnostic is the remote server's reply ("550 5.1.1 ...") when
	// RemoteMTA is set, else our own explanation.
	Diagnostic     string
	LastAttempt    time.Time
	WillRetryUntil time.Time // for delayed
}

// DSN is a delivery status notification about one message (RFC 3464).
type DSN struct {
	ReportingMTA string // our host name
	QueueID      int64
	EnvelopeID   string // ENVID (RFC 3461 §4.4), "" when none
	ArrivalDate  time.Time
	To           string // the original reverse-path
	Recipients   []DSNRecipient
	// Headers says to return only the original's header (RET=HDRS, RFC
	// 3461 §4.3), else the full message is returned.
	Headers bool
	Date    time.Time
}

const (
	// dsnMaxReturned bounds the original message returned in a DSN; a
	// larger one is returned as its header only.
	dsnMaxReturned = 1 << 20
	// dsnMaxHeader bounds the header returned with RET=HDRS.
	dsnMaxHeader = 64 << 10
	// dsnMaxDiag bounds a diagnostic text in a DSN.
	dsnMaxDiag = 900
)

// Build writes the DSN as a multipart/report message (RFC 6522, RFC 3464
// §2) with the original from orig (size octets; nil: no original): a
// human-readable part, the message/delivery-status part and the original
// message or its header. It reads at most dsnMaxReturned octets of orig.
func (d *DSN) Build(orig io.Reader, size int64) ([]byte, error) {
	utf8 := !isASCII(d.To)
	for _, r := range d.Recipients {
		if !isASCII(r.FinalRecipient) || !isASCII(r.OriginalRecipient) {
			utf8 = true
		}
	}
	var returned []byte
	headersOnly := d.Headers || size > dsnMaxReturned
	if orig != nil {
		var err error
		if returned, err = readOriginal(orig, headersOnly); err != nil {
			return nil, err
		}
	}

	boundary := randomToken(12)
	var b bytes.Buffer
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	host := cleanField(d.ReportingMTA)
	w("From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	if d.To != "" {
		w("To: <%s>\r\n", cleanField(d.To))
	}
	w("Subject: %s\r\n", d.subject())
	w("Date: %s\r\n", d.Date.Format(time.RFC1123Z))
	w("Message-ID: <dsn.%d.%s@%s>\r\n", d.QueueID, randomToken(8), host)
	// RFC 3834 §5: an automatic reply; receivers must not answer it.
	w("Auto-Submitted: auto-replied\r\n")
	w("MIME-Version: 1.0\r\n")
	w("Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary)
	w("\r\nThis is a MIME-encapsulated message.\r\n")

	// Part 1: for people.
	w("\r\n--%s\r\n", boundary)
	w("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	w("This is the mail system at %s.\r\n\r\n", host)
	w("%s\r\n\r\n", d.explanation())
	for _, r := range d.Recipients {
		w("<%s>: %s\r\n", cleanField(r.FinalRecipient), cleanField(r.summary()))
	}

	// Part 2: for programs. RFC 6533 §6: message/global-delivery-status
	// when an address is not ASCII.
	w("\r\n--%s\r\n", boundary)
	if utf8 {
		w("Content-Type: message/global-delivery-status\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	} else {
		w("Content-Type: message/delivery-status\r\n\r\n")
	}
	// Per-message fields (RFC 3464 §2.2).
	w("Reporting-MTA: dns; %s\r\n", host)
	w("X-Postrider-Queue-ID: %d\r\n", d.QueueID)
	if d.EnvelopeID != "" {
		w("Original-Envelope-Id: %s\r\n", cleanField(d.EnvelopeID))
	}
	if !d.ArrivalDate.IsZero() {
		w("Arrival-Date: %s\r\n", d.ArrivalDate.Format(time.RFC1123Z))
	}
	// Per-recipient fields (RFC 3464 §2.3), a blank line before each group.
	for _, r := range d.Recipients {
		w("\r\n")
		w("Final-Recipient: %s; %s\r\n", addrType(r.FinalRecipient), cleanField(r.FinalRecipient))
		if r.OriginalRecipient != "" {
			typ, addr, ok := strings.Cut(r.OriginalRecipient, ";")
			if !ok {
				typ, addr = addrType(r.OriginalRecipient), r.OriginalRecipient
			}
			w("Original-Recipient: %s; %s\r\n", cleanField(strings.TrimSpace(typ)), cleanField(strings.TrimSpace(addr)))
		}
		w("Action: %s\r\n", r.Action)
		w("Status: %s\r\n", cleanField(r.Status))
		if r.RemoteMTA != "" {
			w("Remote-MTA: dns; %s\r\n", cleanField(r.RemoteMTA))
			w("Diagnostic-Code: smtp; %s\r\n", cleanField(r.Diagnostic))
		} else if r.Diagnostic != "" {
			w("Diagnostic-Code: X-Postrider; %s\r\n", cleanField(r.Diagnostic))
		}
		if !r.LastAttempt.IsZero() {
			w("Last-Attempt-Date: %s\r\n", r.LastAttempt.Format(time.RFC1123Z))
		}
		if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
			w("Will-Retry-Until: %s\r\n", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}

	// Part 3: the original (RFC 3462 §2: message/rfc822 or
	// text/rfc822-headers; RFC 6532 §3.7 message/global for UTF-8).
	if returned != nil {
		w("\r\n--%s\r\n", boundary)
		switch {
		case headersOnly && utf8:
			w("Content-Type: message/global-headers\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		case headersOnly:
			w("Content-Type: text/rfc822-headers\r\n\r\n")
		case utf8:
			w("Content-Type: message/global\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		default:
			w("Content-Type: message/rfc822\r\n\r\n")
		}
		b.Write(returned)
		if !bytes.HasSuffix(returned, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
	w("\r\n--%s--\r\n", boundary)
	return b.Bytes(), nil
}

// readOriginal returns the whole original (bounded) or its header, with
// CRLF line ends. A line of the original that starts with the boundary
// cannot occur: the boundary is random.
func readOriginal(r io.Reader, headersOnly bool) ([]byte, error) {
	limit := int64(dsnMaxReturned)
	if headersOnly {
		limit = dsnMaxHeader
	}
	br := bufio.NewReader(io.LimitReader(r, limit))
	var out bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			trimmed := bytes.TrimRight(line, "\r\n")
			if headersOnly && len(trimmed) == 0 {
				break
			}
			out.Write(trimmed)
			out.WriteString("\r\n")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

func (d *DSN) subject() string {
	failed, delayed := 0, 0
	for _, r := range d.Recipients {
		switch r.Action {
		case ActionFailed:
			failed++
		case ActionDelayed:
			delayed++
		}
	}
	switch {
	case failed > 0:
		return "Undelivered Mail Returned to Sender"
	case delayed > 0:
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

func (d *DSN) explanation() string {
	var parts []string
	failed, delayed, relayed := false, false, false
	for _, r := range d.Recipients {
		switch r.Action {
		case ActionFailed:
			failed = true
		case ActionDelayed:
			delayed = true
		case ActionRelayed:
			relayed = true
		}
	}
	if failed {
		parts = append(parts, "Your message could not be delivered to the recipients below; this is a permanent error.")
	}
	if delayed {
		parts = append(parts, "Delivery of your message to the recipients below has been delayed; it will be retried, and you need not send it again.")
	}
	if relayed {
		parts = append(parts, "Your message was delivered to the recipients below (to a server that sends no further delivery notices).")
	}
	return strings.Join(parts, "\r\n")
}

func (r *DSNRecipient) summary() string {
	s := r.Diagnostic
	if s == "" {
		s = r.Status
	}
	if r.RemoteMTA != "" {
		s = "host " + r.RemoteMTA + " said: " + s
	}
	return s
}

func addrType(a string) string {
	if isASCII(a) {
		return "rfc822"
	}
	return "utf-8" // RFC 6533 §3
}

// cleanField makes s safe as (part of) a header field body: no line
// breaks or control characters, bounded in length.
func cleanField(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\r' || c == '\n' || c == '\t':
			b.WriteByte(' ')
		case c < 0x20 || c == 0x7f:
		default:
			b.WriteRune(c)
		}
		if b.Len() >= dsnMaxDiag {
			b.WriteString("...")
			break
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
