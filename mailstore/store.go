// Package mailstore defines the mail store every Postrider frontend uses:
// domains, accounts, aliases, mailboxes, messages, flags, UIDs,
// mod-sequences, quotas, change notifications, login-failure records and
// cluster leases. It knows nothing of any wire protocol.
//
// Every method that touches the store takes a context; cancelling it cancels
// the queries. Every mailbox-level method takes the account ID as well as the
// mailbox ID and checks that the mailbox belongs to the account, so that a
// frontend bug cannot reach another account's mail.
package mailstore

import (
	"context"
	"io"
	"time"

	"github.com/postrider/postrider/mailstore/msgparse"
)

// The store's interfaces are split by role, so that each consumer names
// the narrow one it uses (smtpd, pop3d and imapd declare theirs) and a test
// double implements only what it is called with. Store is all of them:
// mailstore/postgres is the primary implementation; mailstore/storetest
// checks any implementation.

// Directory holds domains, accounts, aliases and recipient resolution.
type Directory interface {
	CreateDomain(ctx context.Context, name string) error
	// DeleteDomain fails with ErrDomainNotEmpty while accounts or aliases use it.
	DeleteDomain(ctx context.Context, name string) error
	ListDomains(ctx context.Context) ([]string, error)
	IsLocalDomain(ctx context.Context, name string) (bool, error)

	// CreateAccount creates the account and its default mailboxes (INBOX,
	// Drafts, Sent, Trash, Junk, Archive with their special-use attributes,
	// all subscribed). The domain must exist.
	CreateAccount(ctx context.Context, address, passwordHash string) (Account, error)
	// DeleteAccount removes the account, its mailboxes, messages and aliases
	// pointing only to it.
	DeleteAccount(ctx context.Context, address string) error
	// GetAccount looks an account up by its exact (normalised) address.
	GetAccount(ctx context.Context, address string) (Account, error)
	GetAccountByID(ctx context.Context, id int64) (Account, error)
	// ListAccounts lists the accounts of one domain, or of all when domain is "".
	ListAccounts(ctx context.Context, domain string) ([]Account, error)
	SetPasswordHash(ctx context.Context, accountID int64, hash string) error
	// SetQuota sets the storage limit in octets; 0 means unlimited.
	SetQuota(ctx context.Context, accountID int64, limit int64) error
	// QuotaUsage returns the octets stored (sum of message sizes over all
	// mailboxes, kept exact) and the limit (0 = unlimited).
	QuotaUsage(ctx context.Context, accountID int64) (used, limit int64, err error)
	// SetMessageQuota sets the limit on the number of messages over all
	// mailboxes; 0 means unlimited. A delivery, append or copy that would
	// pass it is refused with ErrOverQuota, like one over the storage limit.
	SetMessageQuota(ctx context.Context, accountID int64, limit int64) error
	// Quota returns both resources of the account's one quota root: octets
	// and messages stored, each kept exact, with their limits.
	Quota(ctx context.Context, accountID int64) (Quota, error)
	// DeletedSize returns the octets of the messages flagged \Deleted in a
	// mailbox: what an EXPUNGE would give back to the storage quota.
	// ErrNoSuchMailbox if the mailbox is not the account's.
	DeletedSize(ctx context.Context, accountID, mailboxID int64) (int64, error)

	// CreateAlias maps alias ("local@domain", or "@domain" for a catch-all)
	// to target: the address of an existing local account when target is
	// in a local domain (else ErrNoSuchAccount), otherwise an external
	// address that mail to the alias is forwarded to, stored as
	// NormalizeRemoteAddress returns it (ErrInvalidAddress if it is not
	// one). An alias may have several targets of either kind.
	CreateAlias(ctx context.Context, alias, target string) error
	// DeleteAlias removes one mapping, or all mappings of alias when target
	// is "". An external target is matched in its normalised form.
	DeleteAlias(ctx context.Context, alias, target string) error
	// ListAliases lists aliases of one domain, or all when domain is "";
	// Target is an account's address or an external address.
	ListAliases(ctx context.Context, domain string) ([]Alias, error)
	// Resolve maps an envelope recipient to the accounts that receive it
	// and the external addresses it is forwarded to: exact account, exact
	// alias, then local+tag (SubaddressDelimiter) stripped, then the
	// domain's catch-all; the first of these that matches decides. Errors:
	// ErrInvalidAddress, ErrNotLocalDomain, ErrNoSuchRecipient. Forwards
	// are returned as stored, even when their domain has become local since.
	Resolve(ctx context.Context, address string) (Resolution, error)
	// ResolveRecipient is Resolve for callers that deliver to local
	// accounts only: the accounts of the same resolution, and
	// ErrNoSuchRecipient when it names only external addresses.
	ResolveRecipient(ctx context.Context, address string) ([]Account, error)
	// AccountAddresses returns the addresses an account may send as: its own
	// and the exact aliases (not catch-alls) that point to it.
	AccountAddresses(ctx context.Context, accountID int64) ([]string, error)
}

// Mailboxes manages an account's mailboxes and subscriptions.
type Mailboxes interface {
	// CreateMailbox creates a mailbox (specialUse "" or one of the
	// SpecialUse* constants). Parents are created as needed.
	CreateMailbox(ctx context.Context, accountID int64, name, specialUse string) (Mailbox, error)
	// DeleteMailbox deletes a mailbox and its messages. INBOX cannot be
	// deleted (ErrProtectedMailbox); a mailbox with children cannot
	// (ErrHasChildren).
	DeleteMailbox(ctx context.Context, accountID int64, name string) error
	// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
	// its messages to a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
	RenameMailbox(ctx context.Context, accountID int64, oldName, newName string) error
	GetMailbox(ctx context.Context, accountID int64, name string) (Mailbox, error)
	ListMailboxes(ctx context.Context, accountID int64) ([]Mailbox, error)
	MailboxStatus(ctx context.Context, accountID, mailboxID int64) (MailboxStatus, error)
	// MailboxStatusByName is GetMailbox and MailboxStatus in one step.
	MailboxStatusByName(ctx context.Context, accountID int64, name string) (MailboxStatus, error)
	// SetSubscribed subscribes or unsubscribes a name (which need not exist).
	SetSubscribed(ctx context.Context, accountID int64, name string, subscribed bool) error
	ListSubscriptions(ctx context.Context, accountID int64) ([]string, error)
}

// Messages stores, reads, flags and removes messages.
type Messages interface {
	// Deliver stores one message for every recipient in one transaction; the
	// content is stored once and shared. It returns only after commit.
	//
	// The body ends only where its reader returns io.EOF itself. Any other
	// error from the reader, io.ErrUnexpectedEOF or anything wrapping it
	// included (a connection that closed before the octets it announced),
	// fails the whole operation: nothing is stored (see ErrTruncated).
	Deliver(ctx context.Context, d *Delivery) (DeliveryResult, error)
	// Append stores a message in one mailbox (IMAP APPEND). The body ends
	// only at io.EOF, as for Deliver.
	Append(ctx context.Context, accountID, mailboxID int64, flags Flags, date time.Time, body io.Reader) (AppendResult, error)
	// MultiAppend stores one or more messages in one mailbox atomically
	// (IMAP MULTIAPPEND, RFC 3502 §3): all of them are committed or none.
	// next returns the messages one at a time, ok false after the last;
	// each body is read to its io.EOF before next is called again, so
	// that a frontend can read them one after the other from its
	// connection and no two bodies need be held at once. An error from
	// next or from a body (as for Deliver), a message over the size
	// limit, more than MaxMultiAppend messages or a total over the quota
	// (ErrOverQuota) fails the whole operation and stores nothing. The
	// results are in message order; their UIDs are consecutive.
	MultiAppend(ctx context.Context, accountID, mailboxID int64, next func() (m AppendMessage, ok bool, err error)) ([]AppendResult, error)
	// Copy copies messages (those of uids that exist) to another mailbox of
	// the same account, in ascending UID order.
	Copy(ctx context.Context, accountID, srcMailboxID int64, uids UIDSet, dstMailboxID int64) (CopyResult, error)
	// Move is Copy plus expunge from the source, atomically.
	Move(ctx context.Context, accountID, srcMailboxID int64, uids UIDSet, dstMailboxID int64) (CopyResult, error)
	// StoreFlags changes flags of the messages in uids. With unchangedSince >
	// 0 (CONDSTORE), messages whose modseq is greater are left alone and
	// reported in Modified. Messages whose flags do not change keep their
	// modseq and are not reported in Updated.
	StoreFlags(ctx context.Context, accountID, mailboxID int64, uids UIDSet, op FlagOp, flags Flags, unchangedSince uint64) (StoreResult, error)
	// Expunge removes messages, leaving tombstones. With onlyDeleted, only
	// messages with \Deleted are removed. A nil uids means every message.
	// UIDs that are already gone are ignored.
	Expunge(ctx context.Context, accountID, mailboxID int64, uids UIDSet, onlyDeleted bool) (ExpungeResult, error)

	// ListMessages returns the messages whose UIDs are in uids (nil = all),
	// ascending by UID.
	ListMessages(ctx context.Context, accountID, mailboxID int64, uids UIDSet) ([]MessageMeta, error)
	// FetchDetails returns the parsed envelope and structure of messages.
	FetchDetails(ctx context.Context, accountID, mailboxID int64, uids UIDSet) ([]MessageDetail, error)
	// OpenMessage streams octets [offset, offset+length) of a message
	// (length < 0: to the end), reading the store in bounded chunks.
	// ErrNoSuchMessage if the UID is not (or no longer) in the mailbox.
	OpenMessage(ctx context.Context, accountID, mailboxID int64, uid uint32, offset, length int64) (io.ReadCloser, error)
	// ReadMessages reads the whole octets of several messages in one go,
	// for a caller about to send them all (a POP3 download reads ahead).
	// uids must be strictly ascending (else ErrInvalidArgument); the result
	// has one entry per UID, in the same order: Gone when the message is
	// not (or no longer) in the mailbox; Whole with Data when it was read;
	// neither when it was left out, and the caller streams it with
	// OpenMessage. Messages are read in UID order while their total stays
	// within maxTotal octets: the first one that does not fit and all
	// after it are left out. A backend may also leave out a message it
	// stores in several pieces (one larger than 64 KiB at the least), so
	// that large messages are never held whole in memory. Data may use
	// buf's memory (nil: the backend allocates), and is valid until the
	// caller reuses buf. ErrNoSuchMailbox if the mailbox is not the
	// account's, whatever uids holds.
	ReadMessages(ctx context.Context, accountID, mailboxID int64, uids []uint32, maxTotal int64, buf []byte) ([]MessageOctets, error)
	// Search evaluates criteria in the store and returns matching UIDs,
	// ascending.
	Search(ctx context.Context, accountID, mailboxID int64, c *SearchCriteria) ([]uint32, error)

	// ClaimRecent atomically takes the \Recent status of messages: it returns the UIDs in the mailbox at or
	// above the mailbox's recent watermark (and below uidnext) and advances the watermark to uidnext, so that
	// exactly one caller anywhere in the cluster gets each UID. EXAMINE must not call it (read-only).
	ClaimRecent(ctx context.Context, accountID, mailboxID int64) ([]uint32, error)

	// SelectMailbox reads what a session needs to open a mailbox (IMAP
	// SELECT/EXAMINE): the mailbox with its status and every message, all
	// from one snapshot, and with claimRecent the ClaimRecent of it, after
	// that snapshot. ErrNoSuchMailbox when the account has no such mailbox.
	SelectMailbox(ctx context.Context, accountID int64, name string, claimRecent bool) (Selection, error)

	// MessageContents returns what is stored about the contents of
	// messages of a mailbox: out[i] is for refs[i]. Each ref's ContentID
	// must be one the store reported for that UID of this account's
	// mailbox (MessageMeta.ContentID, AppendResult.ContentID) or 0 when
	// unknown: a content this node holds in memory is returned by its id
	// without asking the database (contents never change), the others are
	// read for all refs in one query that checks the account owns the
	// mailbox. A message that no longer exists and whose content is not
	// held has a zero out[i] (Parsed nil).
	MessageContents(ctx context.Context, accountID, mailboxID int64, refs []ContentRef) ([]MessageContent, error)

	// SaveDates returns the save dates (RFC 8514: when each message was
	// delivered, appended, copied or moved into this mailbox) of the
	// messages whose UIDs are in uids (nil = all), ascending by UID.
	// ErrNoSuchMailbox if the mailbox is not the account's.
	SaveDates(ctx context.Context, accountID, mailboxID int64, uids UIDSet) ([]SaveDate, error)
}

// SaveDate is one message's save date.
type SaveDate struct {
	UID uint32
	At  time.Time
}

// Selection is what SelectMailbox read: the mailbox and its status
// (Recent counts the unclaimed messages before any claim), its messages
// ascending by UID, and the UIDs claimed \Recent (with claimRecent).
type Selection struct {
	Status   MailboxStatus
	Messages []MessageMeta
	Recent   []uint32
}

// ContentRef names one message's content for MessageContents.
type ContentRef struct {
	UID       uint32
	ContentID int64 // 0: unknown
}

// MessageContent is a stored message content: its parse result and, when
// small enough, its octets. Both are shared and must not be modified.
type MessageContent struct {
	ContentID int64
	Size      int64
	Parsed    *msgparse.Message // Envelope, Structure, Date, HeaderSize, Lines (no SearchHeaders/Text)
	// Data holds the first len(Data) octets of the message: all of them
	// when len(Data) == Size; otherwise its header (Parsed.HeaderSize
	// octets) when that is small enough, else nothing. The rest is read
	// with OpenMessage.
	Data []byte
}

// ChangeFeed tells what changed in a mailbox, and when something did.
type ChangeFeed interface {
	// Changes returns what changed after sinceModSeq: messages added or whose
	// flags changed (Updated, ascending UID) and UIDs expunged (Vanished).
	Changes(ctx context.Context, accountID, mailboxID int64, sinceModSeq uint64) (Changes, error)

	// Subscribe returns a channel that receives a value after commits that
	// change the account's mail on any node (values coalesce; the channel has
	// capacity 1). The receiver catches up with Changes. cancel releases it.
	Subscribe(accountID int64) (ch <-chan struct{}, cancel func())

	// ChangeMark returns this node's position in the stream of change
	// notifications. A session takes one after Subscribe and before it
	// reads a mailbox's state (Changes, ListMessages, SelectMailbox), and
	// passes it to MayHaveChanged with the mod-sequence that read returned.
	ChangeMark() ChangeMark
	// MayHaveChanged reports whether the mailbox may have changed after
	// mod-sequence since, where since was read after mark was taken by a
	// session subscribed to the account. It reports false only when this
	// node has received every notification of the account's changes since
	// mark (its listener stayed connected) and none of them names the
	// mailbox with a higher mod-sequence or the account as a whole (a
	// mailbox created, renamed or deleted, or a writer that could not
	// tell). A change made through this node is known at once, one made on
	// another node when its notification arrives; so a caller that skips
	// Changes on false trades nothing but that latency, as a wake-up would.
	MayHaveChanged(accountID, mailboxID int64, since uint64, mark ChangeMark) bool
}

// ChangeMark is a position in a node's stream of change notifications
// (ChangeFeed.ChangeMark).
type ChangeMark uint64

// AuthFailures records failed logins for throttling, shared by all nodes.
type AuthFailures interface {
	// ReserveAuthFailure decides and records a login attempt in one atomic
	// step, cluster-wide: it counts the failures of each key at or after
	// since and, unless some key with a positive limit (limits[i] for
	// keys[i]; 0 = no limit) already has that many, records one failure at
	// time at under every key, in flight. So however many attempts run at
	// once on however many nodes, a key with limit n never has more than n
	// failures in the window, each of them a reservation. A reservation
	// counts as a failure, in flight, until confirmed with
	// ConfirmAuthFailure (then it is decided) or released with
	// ReleaseAuthFailure. The limits count every failure, in flight or
	// decided; the reservation reports both counts.
	ReserveAuthFailure(ctx context.Context, keys []string, limits []int, since, at time.Time) (AuthReservation, error)
	// ConfirmAuthFailure marks the failures that reservation r recorded (if
	// any are left) decided: the attempt's password was wrong. Confirming
	// twice, or a released or empty reservation, changes nothing.
	ConfirmAuthFailure(ctx context.Context, r AuthReservation) error
	// ReleaseAuthFailure deletes the failures that reservation r recorded
	// (if any are left) and every failure of the forget keys, in flight or
	// decided, in one step.
	ReleaseAuthFailure(ctx context.Context, r AuthReservation, forget []string) error
	// AuthFailures counts failures (in flight and decided) per key at or
	// after since.
	AuthFailures(ctx context.Context, keys []string, since time.Time) (map[string]int, error)
}

// Leases are named cluster-wide locks with a lifetime (e.g. the POP3
// maildrop lock, the housekeeping lease).
type Leases interface {
	// AcquireLease takes the named lease for holder until now+ttl. It
	// succeeds (true) if the lease is free, expired, or already held by
	// holder; false if someone else holds it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// RenewLease extends a lease held by holder; false if it is no longer held.
	RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Maintenance is housekeeping and the store's own health.
type Maintenance interface {
	// PruneTombstones deletes, in every mailbox, the tombstones of messages
	// expunged before before, and returns how many. Changes since a
	// mod-sequence older than the newest pruned tombstone of a mailbox then
	// report VanishedIncomplete.
	PruneTombstones(ctx context.Context, before time.Time) (int, error)

	// Ping checks that the store is reachable and its schema current.
	Ping(ctx context.Context) error
	Close()
}

// Store is every role: what the server process wires up and what a backend
// implements.
type Store interface {
	Directory
	Mailboxes
	Messages
	ChangeFeed
	AuthFailures
	Leases
	Maintenance
	Queue
	DKIMKeys
	Metadata
}

// AuthReservation is the result of ReserveAuthFailure.
type AuthReservation struct {
	// Counts are the failures of each key in the window before this
	// attempt, in flight and decided (every requested key is present); the
	// limits apply to them.
	Counts map[string]int
	// Decided are the decided failures among Counts: reservations whose
	// attempt was confirmed a failure (every requested key is present).
	Decided map[string]int
	// Reserved is false when a key had reached its limit: nothing was
	// recorded and the attempt must be refused.
	Reserved bool
	// Keys, At and ID identify the recorded failures for
	// ReleaseAuthFailure; ID is 0 when nothing was recorded.
	Keys []string
	At   time.Time
	ID   int64
}

// SubaddressDelimiter separates local part and tag: user+tag@example.org.
const SubaddressDelimiter = "+"

// HierarchyDelimiter separates mailbox name levels.
const HierarchyDelimiter = "/"

// Special-use attributes (RFC 6154).
const (
	SpecialUseAll     = `\All`
	SpecialUseArchive = `\Archive`
	SpecialUseDrafts  = `\Drafts`
	SpecialUseFlagged = `\Flagged`
	SpecialUseJunk    = `\Junk`
	SpecialUseSent    = `\Sent`
	SpecialUseTrash   = `\Trash`
)

// DefaultMailboxes are created with every account, in this order.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Drafts", SpecialUseDrafts},
	{"Sent", SpecialUseSent},
	{"Trash", SpecialUseTrash},
	{"Junk", SpecialUseJunk},
	{"Archive", SpecialUseArchive},
}

// Account is one mail user.
type Account struct {
	ID           int64
	Address      string // normalised local@domain
	PasswordHash string
	QuotaLimit   int64 // octets; 0 = unlimited
	MessageLimit int64 // messages; 0 = unlimited
	CreatedAt    time.Time
}

// Quota is the usage and limits of an account (a limit of 0 = unlimited).
type Quota struct {
	StorageUsed, StorageLimit   int64 // octets
	MessagesUsed, MessagesLimit int64
}

// Alias maps an address (or "@domain") to an account address or an
// external address.
type Alias struct {
	Alias  string
	Target string
}

// Resolution is where mail to one envelope recipient goes (Resolve): local
// accounts (ascending ID, each once) and external addresses it is
// forwarded to (as NormalizeRemoteAddress returns them, sorted, each once).
// At least one of them is not empty.
type Resolution struct {
	Accounts []Account
	Forwards []string
}

// Mailbox is one folder of an account.
type Mailbox struct {
	ID            int64
	AccountID     int64
	Name          string // "INBOX" or a name using HierarchyDelimiter
	SpecialUse    string
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	Subscribed    bool
}

// MailboxStatus adds counts to a mailbox.
type MailboxStatus struct {
	Mailbox
	Messages uint32
	Unseen   uint32
	Deleted  uint32
	Size     int64 // sum of message sizes
	// Recent counts the messages at or above the mailbox's recent
	// watermark: those no session has claimed yet (see ClaimRecent).
	// Reading it claims nothing.
	Recent uint32
}

// SystemFlag is a bit set of IMAP system flags.
type SystemFlag uint8

const (
	FlagSeen SystemFlag = 1 << iota
	FlagAnswered
	FlagFlagged
	FlagDeleted
	FlagDraft
)

// Flags are a message's system flags and keywords. Keywords are atoms
// (e.g. "$Forwarded", "$Junk"), compared case-insensitively and stored in
// the case first used.
type Flags struct {
	System   SystemFlag
	Keywords []string
}

// FlagOp says how StoreFlags combines flags.
type FlagOp int

const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// UIDRange is an inclusive range of UIDs; Stop 0 means "to the end" (*).
type UIDRange struct{ Start, Stop uint32 }

// UIDSet is a union of ranges. A nil UIDSet passed where documented means
// "all messages"; an empty non-nil set matches nothing.
type UIDSet []UIDRange

// Contains reports whether uid is in the set.
func (s UIDSet) Contains(uid uint32) bool {
	for _, r := range s {
		if uid >= r.Start && (r.Stop == 0 || uid <= r.Stop) {
			return true
		}
	}
	return false
}

// UIDs builds a set from individual UIDs.
func UIDs(uids ...uint32) UIDSet {
	s := make(UIDSet, 0, len(uids))
	for _, u := range uids {
		if n := len(s); n > 0 && s[n-1].Stop+1 == u {
			s[n-1].Stop = u
			continue
		}
		s = append(s, UIDRange{u, u})
	}
	return s
}

// MessageMeta is the narrow per-message row.
type MessageMeta struct {
	UID          uint32
	ModSeq       uint64
	Flags        Flags
	InternalDate time.Time
	Size         int64
	// CRLFSize is Size with bare LF/CR counted as CRLF plus a final CRLF if
	// missing: the octets POP3 RETR sends (msgparse.Message.CRLFSize).
	CRLFSize int64
	// ContentID identifies the message's content in the store (copies of
	// a message share it; contents never change and their ids are never
	// reused), for MessageContents. 0 when the reporting call does not
	// know it (StoreResult).
	ContentID int64
}

// MessageOctets is one message of a ReadMessages call.
type MessageOctets struct {
	UID uint32
	// Gone: the message is not (or no longer) in the mailbox.
	Gone bool
	// Whole: Data holds every octet of the message (empty for an empty
	// message). When neither Gone nor Whole, the message was not read.
	Whole bool
	Data  []byte
}

// MessageDetail adds the parse results stored at delivery.
type MessageDetail struct {
	MessageMeta
	Parsed *msgparse.Message // Envelope, Structure, Date, HeaderSize, Lines (no SearchHeaders/Text)
}

// Recipient is one delivery target.
type Recipient struct {
	AccountID int64
	Mailbox   string // "" means INBOX
	Flags     Flags
}

// Delivery is one message for one or more recipients.
type Delivery struct {
	MailFrom     string
	Recipients   []Recipient
	Body         io.Reader // the full message as it will be stored
	InternalDate time.Time // zero means now
	// Params holds protocol parameters to keep with the delivery (e.g. SMTP
	// DSN ENVID/RET/NOTIFY/ORCPT), stored for later use.
	Params map[string]string
	// Remote recipients are queued for outbound delivery (see Queue) in
	// the same transaction as the local copies; a delivery may have only
	// remote recipients (Recipients empty). Their addresses are stored as
	// NormalizeRemoteAddress returns them (ErrInvalidAddress for one it
	// refuses), a repeated address once; quota does not apply to them.
	// SenderAccount is the submitting account (0 for forwarded mail and
	// DSNs), to which DSNs about them go.
	Remote        []RemoteRecipient
	SenderAccount int64
}

// Delivered says where one recipient's copy went.
type Delivered struct {
	AccountID int64
	MailboxID int64
	UID       uint32
	// ModSeq is the copy's mod-sequence: the mailbox's highest after the
	// delivery (every change raises a mailbox's by exactly one).
	ModSeq uint64
}

// DeliveryResult describes a committed delivery.
type DeliveryResult struct {
	Size      int64
	Delivered []Delivered
	// QueueID is the queue item of the remote recipients (0: none).
	QueueID int64
	// ContentID is the stored content every copy shares (0 for a delivery
	// to remote recipients only).
	ContentID int64
}

// AppendResult describes a committed append: enough for a session that
// has the mailbox selected to add the message to its view without asking
// the store (ModSeq says whether anything else changed in between).
type AppendResult struct {
	UIDValidity  uint32
	UID          uint32
	Size         int64
	ModSeq       uint64 // the message's, and the mailbox's highest after the append
	Flags        Flags  // as stored (keywords deduplicated)
	InternalDate time.Time
	CRLFSize     int64
	ContentID    int64
}

// AppendMessage is one message of a MultiAppend.
type AppendMessage struct {
	Flags Flags
	Date  time.Time // internal date; zero means now
	Body  io.Reader
}

// MaxMultiAppend bounds the messages of one MultiAppend: they are staged
// in one open transaction and committed by as many statements in one
// round trip, and a session's command holds one pooled connection while
// its client sends them.
const MaxMultiAppend = 100

// CopyResult maps source UIDs to new UIDs (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32
	SrcUIDs     []uint32
	DstUIDs     []uint32
	// ModSeq is the destination's highest mod-sequence after the copy
	// (that of every new message), SrcModSeq the source's after a move
	// (that of the tombstones). Both are 0 when nothing was copied.
	ModSeq, SrcModSeq uint64
}

// StoreResult reports a flag change.
type StoreResult struct {
	Updated  []MessageMeta // messages whose flags changed, with new modseq
	Modified []uint32      // UIDs that failed UNCHANGEDSINCE
}

// ExpungeResult reports removed UIDs and the new highest modseq.
type ExpungeResult struct {
	UIDs          []uint32
	HighestModSeq uint64
}

// Changes is what happened in a mailbox after a mod-sequence.
type Changes struct {
	HighestModSeq uint64
	UIDNext       uint32
	Updated       []MessageMeta
	Vanished      []uint32
	// VanishedIncomplete reports that tombstones of messages expunged after
	// since were pruned (see PruneTombstones): Vanished lists only those
	// kept, and a caller that must know every message expunged after since
	// compares the UIDs it knows with the messages that exist instead. RFC
	// 7162 §4.1 allows a server to report every expunged UID of the set a
	// client asks about.
	VanishedIncomplete bool
}

// SearchCriteria mirrors IMAP SEARCH (RFC 9051 §6.4.4); all set fields must
// match (AND). String matches are case-insensitive substring matches.
type SearchCriteria struct {
	UIDs []UIDSet // each set must contain the UID

	// Internal date (date only, in the server's zone) and Date: header date.
	Since, Before, On             time.Time
	SentSince, SentBefore, SentOn time.Time
	// Save date (RFC 8514 §5), compared as the internal date is.
	SavedSince, SavedBefore, SavedOn time.Time

	// ContentIDs: the message's content must be each of them
	// (MessageMeta.ContentID; IMAP SEARCH EMAILID, RFC 8474 §6).
	ContentIDs []int64

	Header []HeaderCriterion // FROM/TO/CC/BCC/SUBJECT/HEADER
	Body   []string          // in the decoded body text
	Text   []string          // in the headers or the body text

	Flag    Flags // must have all
	NotFlag Flags // must have none

	Larger  int64 // size > Larger (0 = unset)
	Smaller int64 // size < Smaller (0 = unset)

	ModSeq uint64 // modseq >= ModSeq (0 = unset)

	Not []SearchCriteria
	Or  [][2]SearchCriteria
}

// HeaderCriterion matches a header field (name case-insensitive) whose
// decoded value contains Value; an empty Value matches any message that has
// the field.
type HeaderCriterion struct {
	Key   string
	Value string
}
