package smtpd

import (
	"context"
	"errors"
	"net"

	smtp "github.com/emersion/go-smtp"

	"github.com/postrider/postrider/mailstore"
)

// go-smtp turns a session error into a reply only if the error IS a
// *smtp.SMTPError (a type assertion, not errors.As: a wrapped one becomes
// "554 5.0.0 Error: transaction failed: ..." or "451 4.0.0 <text>", leaking
// internals). So every error a session method returns is a *smtp.SMTPError
// built here, and the mapping from internal errors to replies is in this
// file only. Enhanced status codes: RFC 3463 and RFC 2034.

func replyErr(code, class, subject, detail int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{class, subject, detail}, Message: msg}
}

// senderSyntaxReply maps a MAIL FROM address error.
func senderSyntaxReply(err error) *smtp.SMTPError {
	rcptRejected.WithLabelValues("syntax").Inc()
	if errors.Is(err, errAddrNonASCII) {
		// RFC 6531 §3.5: X.6.7 non-ASCII address without SMTPUTF8.
		return replyErr(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8 (RFC 6531 §3.4)")
	}
	return replyErr(501, 5, 1, 7, "Bad sender address syntax")
}

// recipientSyntaxReply maps a RCPT TO address error.
func recipientSyntaxReply(err error) *smtp.SMTPError {
	if errors.Is(err, errAddrNonASCII) {
		return replyErr(553, 5, 6, 7, "Non-ASCII address requires SMTPUTF8 (RFC 6531 §3.4)")
	}
	return replyErr(501, 5, 1, 3, "Bad recipient address syntax")
}

// readReply maps an error that ended reading a message, and returns the
// metrics reason.
func readReply(err error) (*smtp.SMTPError, string) {
	var de *dataError
	var ne net.Error
	var se *smtp.SMTPError
	switch {
	case errors.Is(err, errTransferCut):
		return errTransferCut, "cut_short"
	case errors.As(err, &se):
		return se, "timeout"
	case errors.As(err, &de):
		switch de {
		case errBareCR, errBareLF:
			bareNewline.WithLabelValues("data").Inc()
			return replyErr(554, 5, 6, 0, "Message refused: bare CR or LF in message data (RFC 5321 §2.3.8)"), de.reason
		case errNUL:
			return replyErr(554, 5, 6, 0, "Message refused: NUL octet in message data (RFC 5322 §2.3)"), de.reason
		case errHeader:
			return replyErr(552, 5, 3, 4, "Message header section too large"), de.reason
		}
		return replyErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size (RFC 1870 §6.3)"), de.reason
	case errors.Is(err, smtp.ErrDataTooLarge):
		return replyErr(552, 5, 3, 4, "Message size exceeds fixed maximum message size (RFC 1870 §6.3)"), "too_large"
	case errors.Is(err, smtp.ErrDataReset):
		return replyErr(503, 5, 5, 1, "Message transfer aborted"), "aborted"
	case errors.As(err, &ne) && ne.Timeout():
		return replyErr(421, 4, 4, 2, "Timeout while receiving the message"), "timeout"
	case errors.Is(err, net.ErrClosed):
		return replyErr(421, 4, 3, 2, "Service shutting down"), "aborted"
	}
	// The client went away (unexpected EOF) or the spool failed.
	return replyErr(451, 4, 3, 0, "Temporary local problem, please try again later"), "read_error"
}

// deliverReply maps an error of the store delivery.
func deliverReply(err error) (*smtp.SMTPError, string) {
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
