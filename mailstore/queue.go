package mailstore

import (
	"context"
	"io"
	"time"
)

// Queue is the outbound queue: messages for remote recipients, committed
// before the SMTP 250 and worked by delivery workers on every node. Each
// item is worked by exactly one node at a time: ClaimQueue locks due items
// with SKIP LOCKED and gives the claimer a lease; a node that dies loses
// its leases when they expire, and another node takes the items over.
//
// A message is queued by Deliver (Delivery.Remote), so that its local and
// remote recipients are committed in one transaction and its body is
// stored once.
type Queue interface {
	// ClaimQueue takes up to max items that are due (NextAttempt <= now)
	// and not leased by a live holder (no lease, or its lease ended at or
	// before now), most overdue first, leases them to holder until
	// now+lease and returns them with their pending recipients only.
	// Items locked by a concurrent claim are skipped, never waited for.
	// A claimed item's NextAttempt becomes its lease's end: the earliest
	// time another holder may take it. holder must be unique to one
	// process (a lease is checked by holder only). Times are the callers'
	// clocks; items queued by Deliver or made due by RetryQueue are due
	// at any now. Items may come with their Body.
	ClaimQueue(ctx context.Context, holder string, now time.Time, lease time.Duration, max int) ([]QueueItem, error)
	// RenewQueueLease extends holder's lease of the items until now+lease
	// (and their NextAttempt with it); it returns the IDs whose lease
	// holder still holds (a lease lost to expiry and another claim, or an
	// item removed, is not returned). A lease that ended but that nobody
	// claimed since is still holder's, and renewed.
	RenewQueueLease(ctx context.Context, holder string, ids []int64, now time.Time, lease time.Duration) ([]int64, error)
	// OpenQueued streams the message of a queued item, reading the store
	// in bounded chunks. ErrNoSuchQueueItem if it is gone. If the item is
	// removed while its message is read, a later Read may fail (wrapping
	// io.ErrUnexpectedEOF): a sender must then abort the transfer.
	OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error)
	// FinishAttempt records the outcome of one delivery attempt of an item
	// held by holder, for the recipients it names (others are unchanged),
	// in one transaction: each recipient's state, reply and attempt count;
	// the item's next attempt time (next, when some recipient is still
	// pending) and its warning mark (warned, see QueueItem.WarnedAt); and
	// releases the lease. When no recipient is pending any more the item
	// is done: it is removed with its recipients and its body's reference
	// is released. ErrLeaseLost if holder no longer holds the item
	// (nothing is recorded: the new holder works it); when the item is
	// gone (an operator removed it) the error matches both ErrLeaseLost
	// and ErrNoSuchQueueItem. Each result must name a pending recipient
	// of the item, once (else ErrInvalidArgument, nothing recorded); a
	// result with State RcptPending records a temporary failure. Next
	// must be set when some recipient stays pending. At zero means now.
	FinishAttempt(ctx context.Context, holder string, a QueueAttempt) error
	// FinishAttempts records several attempts by holder, each as
	// FinishAttempt would (the i-th error is FinishAttempt's for as[i]),
	// in fewer round trips where the store can: one attempt that is
	// refused does not keep the others from being recorded.
	FinishAttempts(ctx context.Context, holder string, as []QueueAttempt) []error

	// ListQueue lists queued items, oldest (first queued) first, with all
	// their recipients (max <= 0: all).
	ListQueue(ctx context.Context, max int) ([]QueueItem, error)
	// GetQueueItem returns one item with all its recipients;
	// ErrNoSuchQueueItem if there is none.
	GetQueueItem(ctx context.Context, id int64) (QueueItem, error)
	// RetryQueue makes items due now (ids nil: every item) and returns how
	// many. Leases are left alone: a leased item is claimable again only
	// when its lease ends, or when its holder finishes the attempt (which
	// sets the next attempt itself).
	RetryQueue(ctx context.Context, ids []int64) (int, error)
	// RemoveQueueItem deletes an item and releases its body, whatever its
	// state (an operator's decision: no DSN is sent); ErrNoSuchQueueItem
	// if there is none.
	RemoveQueueItem(ctx context.Context, id int64) error
	// QueueStats returns the number of items and recipients still pending
	// and the age of the oldest item (zero when empty), for metrics.
	QueueStats(ctx context.Context, now time.Time) (QueueStats, error)
}

// DKIMKeys holds the DKIM signing keys of the local domains, in the store
// so that every node signs with the same keys.
type DKIMKeys interface {
	// AddDKIMKey stores a key. ErrExists if the domain already has that
	// selector; ErrNoSuchDomain if the domain is not local;
	// ErrInvalidArgument unless the selector is a domain name's labels
	// (RFC 6376 §3.1; stored in lower case) and PrivateKey a PKCS #8 key
	// of Algorithm. A zero CreatedAt means now; a zero SignFrom means
	// CreatedAt (the key signs at once). The key goes with its domain
	// (DeleteDomain).
	AddDKIMKey(ctx context.Context, k DKIMKey) error
	// ListDKIMKeys lists the keys of one domain, or of all when domain is
	// "", active and retired, newest (by CreatedAt) first within a domain.
	// SignFrom is always set.
	ListDKIMKeys(ctx context.Context, domain string) ([]DKIMKey, error)
	// RetireDKIMKeys marks the active keys of domain other than those in
	// keep (by selector) retired at time at: they no longer sign, and stay
	// listed so that their DNS records can be kept until mail signed with
	// them has been verified. ErrNoSuchDomain if the domain is not local.
	RetireDKIMKeys(ctx context.Context, domain string, keep []string, at time.Time) error
	// DeleteDKIMKey removes one key; ErrNoSuchKey if there is none.
	DeleteDKIMKey(ctx context.Context, domain, selector string) error
	// ClusterSecret returns the secret stored under name, first storing
	// gen() if there is none, atomically: every node gets the same secret
	// (e.g. the SRS key). gen is called at most once per call, and not at
	// all when the secret exists; its error is returned as it is.
	ClusterSecret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
}

// QueueRecipientState is where one recipient of a queued message stands.
type QueueRecipientState string

const (
	RcptPending   QueueRecipientState = "pending"   // to be (re)tried
	RcptDelivered QueueRecipientState = "delivered" // a remote server took it (2xx)
	RcptFailed    QueueRecipientState = "failed"    // permanent failure or expiry; a DSN is due or sent
)

// RemoteRecipient is a remote recipient of a delivery, queued for the
// outbound workers.
type RemoteRecipient struct {
	Address string // the forward-path as it will be sent (RCPT TO)
	// ORCPT and Notify are the DSN parameters (RFC 3461 §4.1, §4.2) the
	// client gave, kept for the DSN; "" when none.
	ORCPT  string
	Notify string
}

// QueueRecipient is one recipient of a queued item.
type QueueRecipient struct {
	ID      int64
	Address string
	Domain  string // lower case A-label domain of Address (the destination)
	ORCPT   string
	Notify  string
	State   QueueRecipientState
	// Attempts counts the attempts made for this recipient; LastAttempt
	// is the time of the last one and LastReply the remote server's reply
	// or our own diagnostic ("" before the first attempt). LastCode is the
	// enhanced status code (e.g. "4.4.1", "5.1.1") of LastReply.
	Attempts    int
	LastAttempt time.Time
	LastCode    string
	LastReply   string
	RemoteMTA   string // the host that gave LastReply, "" when none did
}

// QueueItem is one queued message and its recipients.
type QueueItem struct {
	ID int64
	// MailFrom is the reverse-path to send ("" for a DSN, RFC 5321
	// §4.5.5). SenderAccount is the local account that submitted it (0
	// for forwarded mail and DSNs), whose mailbox gets DSNs.
	MailFrom      string
	SenderAccount int64
	// Params are the transaction's parameters (e.g. "ret", "envid",
	// "body", "smtputf8"), as given to Deliver.
	Params      map[string]string
	Size        int64
	CreatedAt   time.Time
	NextAttempt time.Time
	// WarnedAt is when a delay warning DSN was sent (zero: none yet).
	WarnedAt    time.Time
	LeaseHolder string // "" when not leased
	LeaseUntil  time.Time
	Recipients  []QueueRecipient
	// Body, when not nil, is the whole message: ClaimQueue may read a
	// small one along with the item (a store read less per message for
	// the delivery workers). nil: read it with OpenQueued.
	Body []byte
}

// QueueRecipientResult is the outcome of an attempt for one recipient.
type QueueRecipientResult struct {
	RecipientID int64
	State       QueueRecipientState
	Code        string // enhanced status code, e.g. "2.0.0", "4.4.1", "5.1.1"
	Reply       string
	RemoteMTA   string
}

// QueueAttempt is what FinishAttempt records.
type QueueAttempt struct {
	ItemID  int64
	At      time.Time
	Results []QueueRecipientResult
	// Next is when pending recipients are tried again.
	Next time.Time
	// Warned, when not zero, sets the item's WarnedAt.
	Warned time.Time
}

// QueueStats summarises the queue.
type QueueStats struct {
	Items      int
	Recipients int
	OldestAge  time.Duration
}

// DKIMKey is one DKIM signing key of a local domain.
type DKIMKey struct {
	Domain    string
	Selector  string
	Algorithm string // "ed25519" or "rsa" (RFC 8463, RFC 6376)
	// PrivateKey is the PKCS #8 DER of the private key.
	PrivateKey []byte
	CreatedAt  time.Time
	// SignFrom is when the key may start signing: a rotated-in key is
	// published first and signs only once its DNS record has had time to
	// reach the receivers' resolvers. Which non-retired key of an
	// algorithm signs at a given time is decided by mailauth
	// (DKIMKeyStates): the newest whose SignFrom has passed.
	SignFrom  time.Time
	RetiredAt time.Time // zero unless retired: a retired key never signs
}
