package mailstore

import (
	"errors"
	"fmt"
)

// Typed errors. Implementations wrap them (fmt.Errorf("%w: ...")) so callers
// test with errors.Is and frontends map each to a protocol reply.
var (
	ErrInvalidAddress   = errors.New("invalid address")
	ErrInvalidName      = errors.New("invalid mailbox name")
	ErrInvalidArgument  = errors.New("invalid argument")
	ErrExists           = errors.New("already exists")
	ErrNoSuchDomain     = errors.New("no such domain")
	ErrNoSuchAccount    = errors.New("no such account")
	ErrNoSuchAlias      = errors.New("no such alias")
	ErrNoSuchMailbox    = errors.New("no such mailbox")
	ErrNoSuchMessage    = errors.New("no such message")
	ErrNotLocalDomain   = errors.New("domain is not local")
	ErrNoSuchRecipient  = errors.New("no such recipient")
	ErrDomainNotEmpty   = errors.New("domain still has accounts or aliases")
	ErrProtectedMailbox = errors.New("mailbox cannot be deleted")
	ErrHasChildren      = errors.New("mailbox has children")
	ErrOverQuota        = errors.New("quota exceeded")
	ErrTooLarge         = errors.New("message too large")
	ErrSchemaOutdated   = errors.New("database schema is not current")
	// ErrTruncated wraps the error of a message body whose reader failed
	// before io.EOF: the message was cut short and nothing was stored.
	ErrTruncated = errors.New("message body cut short")
	// ErrUnavailable is a temporary failure of the store itself (database
	// unreachable, connection lost, overloaded, shutting down): the same
	// request may succeed later. Frontends answer "try again later"
	// (IMAP NO [UNAVAILABLE], POP3 [SYS/TEMP], SMTP 451 4.3.0), never a
	// permanent failure.
	ErrUnavailable = errors.New("mail store temporarily unavailable")
	// ErrNoSuchQueueItem: the outbound queue has no item with that ID
	// (delivered, bounced or removed).
	ErrNoSuchQueueItem = errors.New("no such queue item")
	// ErrLeaseLost: the caller no longer holds the lease of a queue item
	// (it expired and another node claimed it); nothing was recorded.
	ErrLeaseLost = errors.New("queue lease lost")
	// ErrNoSuchKey: the domain has no DKIM key with that selector.
	ErrNoSuchKey = errors.New("no such DKIM key")
)

// QuotaError names the accounts a delivery would push over quota.
type QuotaError struct {
	AccountIDs []int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded for %d recipient(s)", len(e.AccountIDs))
}

// Unwrap makes errors.Is(err, ErrOverQuota) true.
func (e *QuotaError) Unwrap() error { return ErrOverQuota }
