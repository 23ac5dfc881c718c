package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/postrider/postrider/mailstore"
)

// reply is an SMTP reply (RFC 5321 §4.2) with its enhanced status code
// (RFC 3463, announced by ENHANCEDSTATUSCODES, RFC 2034). Every error a
// session method returns is a *reply built here; the mapping from internal
// errors to replies is in this file only, and the conn writes them.
type reply struct {
	code int
	enh  [3]int // class.subject.detail; class 0 = none (greeting, EHLO, 334, 354)
	text string
}

func (r *reply) Error() string { return r.String() }

// String is the reply line without its CRLF.
func (r *reply) String() string {
	if r.enh[0] == 0 {
		return strconv.Itoa(r.code) + " " + r.text
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.code, r.enh[0], r.enh[1], r.enh[2], r.text)
}

func replyErr(code, class, subject, detail int, msg string) *reply {
	return &reply{code: code, enh: [3]int{class, subject, detail}, text: msg}
}

// senderSyntaxReply maps a MAIL FROM address error.
func senderSyntaxReply(err error) *reply {
	rcptRejected.WithLabelValues("syntax").Inc()
	if errors.Is(err, errAddrNonASCII) {
		// RFC 6531 §3.5: X.6.7 non-ASCII address without SMTPUTF8.
		return replyErr(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8 (RFC 6531 §3.4)")
	}
	return replyErr(501, 5, 1, 7, "Bad sender address syntax")
}

// recipientSyntaxReply maps a RCPT TO address error.
func recipientSyntaxReply(err error) *reply {
	if errors.Is(err, errAddrNonASCII) {
		return replyErr(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8 (RFC 6531 §3.4)")
	}
	return replyErr(501, 5, 1, 3, "Bad recipient address syntax")
}

// readReply maps an error that ended receiving a message (a content
// refusal, or a transfer that failed), and returns the metrics reason.
func readReply(err error) (*reply, string) {
	var de *dataError
	var ne net.Error
	switch {
	case errors.Is(err, errTransferCut):
		return errTransferCut, "cut_short"
	case errors.Is(err, errTransferTimeout), errors.Is(err, errTransferTooSlow):
		return err.(*reply), "timeout"
	case errors.As(err, &de):
		switch de {
		case errBareCR:
			bareNewline.WithLabelValues("data").Inc()
			return replyErr(554, 5, 6, 0, "Message refused: bare CR in message data (RFC 5321 §2.3.8)"), de.reason
		case errBareLF: // not after normalization; kept for the scanner's sake
			return replyErr(554, 5, 6, 0, "Message refused: bare LF in message data (RFC 5321 §2.3.8)"), de.reason
		case errNUL:
			return replyErr(554, 5, 6, 0, "Message refused: NUL octet in message data (RFC 5322 §2.3)"), de.reason
		case errHeader:
			return replyErr(552, 5, 3, 4, "Message header section too large"), de.reason
		}
		return replyErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size (RFC 1870 §6.3)"), de.reason
	case errors.As(err, &ne) && ne.Timeout():
		return errTransferTimeout, "timeout"
	case errors.Is(err, net.ErrClosed):
		return replyErr(421, 4, 3, 2, "Service shutting down"), "aborted"
	}
	// The spool failed.
	return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later"), "read_error"
}

// Replies that end a message transfer and the connection.
var (
	errTransferTimeout = replyErr(421, 4, 4, 2, "Timeout while receiving the message, closing connection")
	errTransferTooSlow = replyErr(421, 4, 4, 2, "Message transfer too slow, closing connection")
	// errTransferCut: the connection ended in the middle of a transfer
	// (EOF or reset); nobody is left to read it.
	errTransferCut = replyErr(451, 4, 4, 2, "Connection closed during the message transfer")
)

// deliverReply maps an error of the store delivery.
func deliverReply(err error) (*reply, string) {
	switch {
	case errors.Is(err, mailstore.ErrUnavailable):
		// Checked first: an outage is never a permanent (5xx) failure.
		return replyErr(451, 4, 3, 0, "Mail store temporarily unavailable, please try again later"), "store_unavailable"
	case errors.Is(err, mailstore.ErrOverQuota):
		return replyErr(552, 5, 2, 2, "Mailbox full: quota exceeded"), "over_quota"
	case errors.Is(err, mailstore.ErrTooLarge):
		return replyErr(552, 5, 3, 4, "Message too large for the mail store"), "too_large"
	case errors.Is(err, context.Canceled):
		return replyErr(421, 4, 3, 2, "Service shutting down"), "aborted"
	}
	return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later"), "store_error"
}
