package imapd

import (
	"context"
	"errors"
	"fmt"

	"github.com/postrider/postrider/mailstore"
)

// Status words of tagged and untagged status responses (RFC 9051 §7.1).
const (
	statusOK  = "OK"
	statusNO  = "NO"
	statusBAD = "BAD"
	statusBYE = "BYE"
)

// protoError is an error that the client is told about. It is turned into
// a tagged NO/BAD (or an untagged BYE and a disconnect) in exactly one place,
// conn.complete.
type protoError struct {
	status string // statusNO, statusBAD or statusBYE
	code   string // response code without brackets (RFC 9051 §7.1), or ""
	text   string // human-readable text; never contains internal details
}

func (e *protoError) Error() string {
	if e.code != "" {
		return e.status + " [" + e.code + "] " + e.text
	}
	return e.status + " " + e.text
}

// errBad is a syntax or state error: tagged BAD (RFC 9051 §7.1.3).
func errBad(format string, args ...any) error {
	return &protoError{status: statusBAD, text: fmt.Sprintf(format, args...)}
}

// errNo is an operational failure: tagged NO with an optional response code
// (RFC 9051 §7.1.2, RFC 5530).
func errNo(code, text string) error {
	return &protoError{status: statusNO, code: code, text: text}
}

// errBye ends the connection: untagged BYE then close (RFC 9051 §7.1.5).
func errBye(code, text string) error {
	return &protoError{status: statusBYE, code: code, text: text}
}

// errClosed means the connection is gone (read/write failure, EOF): nothing
// more can be sent.
var errClosed = errors.New("imapd: connection closed")

// errInternal is what a client sees for any failure it must not learn the
// details of (RFC 5530 SERVERBUG).
var errInternal = errNo("SERVERBUG", "Internal server error, try again later")

// Response codes used in several places (RFC 5530, RFC 9051 §7.1).
const (
	codeNonexistent   = "NONEXISTENT"
	codeTryCreate     = "TRYCREATE"
	codeAlreadyExists = "ALREADYEXISTS"
	codeCannot        = "CANNOT"
	codeTooBig        = "TOOBIG"
	codeLimit         = "LIMIT"
	codeOverQuota     = "OVERQUOTA"
	codeAuthFailed    = "AUTHENTICATIONFAILED"
	codeUnavailable   = "UNAVAILABLE"
	codePrivacy       = "PRIVACYREQUIRED"
	codeClientBug     = "CLIENTBUG"
	codeExpungeIssued = "EXPUNGEISSUED"
	codeHasChildren   = "HASCHILDREN"
	codeInUse         = "INUSE"
)

// storeError maps a store error to the protoError the client sees. It
// returns nil for errors that are not client-visible (the caller logs them
// and answers with errInternal).
func storeError(err error) *protoError {
	var pe *protoError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, mailstore.ErrUnavailable):
		// RFC 5530 §3 UNAVAILABLE: a subsystem is down, try again later
		// (not SERVERBUG, which some clients take as final). Before the
		// context cases: a database deadline is an outage, not a shutdown.
		return &protoError{statusNO, codeUnavailable, "Mail store temporarily unavailable, try again later"}
	case errors.Is(err, mailstore.ErrNoSuchMailbox):
		return &protoError{statusNO, codeNonexistent, "No such mailbox"}
	case errors.Is(err, mailstore.ErrExists):
		return &protoError{statusNO, codeAlreadyExists, "Mailbox already exists"}
	case errors.Is(err, mailstore.ErrInvalidName):
		return &protoError{statusNO, codeCannot, "Invalid mailbox name"}
	case errors.Is(err, mailstore.ErrProtectedMailbox):
		return &protoError{statusNO, codeCannot, "This mailbox cannot be deleted"}
	case errors.Is(err, mailstore.ErrHasChildren):
		return &protoError{statusNO, codeHasChildren, "Mailbox has children; delete them first"}
	case errors.Is(err, mailstore.ErrOverQuota):
		return &protoError{statusNO, codeOverQuota, "Quota exceeded"}
	case errors.Is(err, mailstore.ErrTooLarge):
		return &protoError{statusNO, codeTooBig, "Message too large"}
	case errors.Is(err, mailstore.ErrNoSuchMessage):
		return &protoError{statusNO, codeExpungeIssued, "Message no longer exists"}
	case errors.Is(err, mailstore.ErrInvalidArgument):
		return &protoError{statusBAD, "", "Invalid arguments"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &protoError{statusBYE, codeUnavailable, "Server shutting down"}
	}
	return nil
}
