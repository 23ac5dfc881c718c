package mailstore

import (
	"context"
	"errors"
	"strings"
)

// Metadata stores IMAP METADATA entries (RFC 5464) of an account's
// mailboxes and of the server. Server entries (mailbox "") belong to the
// account: no account ever reads or changes another's entries, "/shared"
// ones included (nothing is shared between accounts).
type Metadata interface {
	// GetMetadata returns the entries of a mailbox (or, with mailbox "",
	// the server) named in names, each with the entries below it down to
	// depth levels (0: the entry itself; MetadataDepthInfinity: all), in
	// name order, at most MaxMetadataAccount. Names must be valid and
	// lower-case (NormalizeMetadataName). ErrNoSuchMailbox when the
	// account has no such mailbox.
	GetMetadata(ctx context.Context, accountID int64, mailbox string, names []string, depth int) ([]MetadataEntry, error)
	// SetMetadata sets entries (Value non-nil) and removes them (Value
	// nil) all at once or not at all. Names must be valid and lower-case,
	// each at most once; values at most MaxMetadataValue octets
	// (ErrInvalidArgument otherwise). ErrMetadataTooMany when the mailbox
	// (or server) would hold more than MaxMetadataObject entries or the
	// account more than MaxMetadataAccount; ErrNoSuchMailbox.
	SetMetadata(ctx context.Context, accountID int64, mailbox string, entries []MetadataEntry) error
}

// MetadataEntry is one entry: its name, lower-case, with its "/private"
// or "/shared" prefix, and its value (nil: none).
type MetadataEntry struct {
	Name  string
	Value []byte
}

// Limits of METADATA (RFC 5464 §4.1: at least 1024 octets and 10 entries
// must be accepted; §7: limits prevent one user from filling the store).
const (
	MaxMetadataValue   = 16 << 10 // octets of one value
	MaxMetadataObject  = 100      // entries of one mailbox or of the server
	MaxMetadataAccount = 500      // entries of one account, all mailboxes and the server
	MaxMetadataName    = 255      // octets of an entry name
	// MetadataDepthInfinity is GetMetadata's depth for every descendant.
	MetadataDepthInfinity = -1
)

// ErrMetadataTooMany: a SetMetadata would exceed MaxMetadataObject or
// MaxMetadataAccount entries; nothing was changed.
var ErrMetadataTooMany = errors.New("too many metadata entries")

// NormalizeMetadataName checks the name of an entry to set (RFC 5464 §3.2: under
// "/private" or "/shared", at least two components, no "//", no final
// "/", no "*" or "%", ASCII above 0x19 only; at most MaxMetadataName
// octets) and returns it lower-cased (names are case-insensitive).
func NormalizeMetadataName(name string) (string, bool) { return normalizeMetadata(name, false) }

// NormalizeMetadataLookup checks a name GetMetadata looks up: an entry
// name, or one of its ancestors down to "/private" and "/shared" (whose
// descendants a depth finds).
func NormalizeMetadataLookup(name string) (string, bool) { return normalizeMetadata(name, true) }

func normalizeMetadata(name string, lookup bool) (string, bool) {
	if len(name) > MaxMetadataName || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= 0x19 || c >= 0x7f || c == '*' || c == '%' {
			return "", false
		}
	}
	name = strings.ToLower(name)
	if lookup && (name == "/private" || name == "/shared") {
		return name, true
	}
	rest, ok := strings.CutPrefix(name, "/private/")
	if !ok {
		rest, ok = strings.CutPrefix(name, "/shared/")
	}
	if !ok || rest == "" {
		return "", false
	}
	// §3.2: under /…/vendor/ a name has at least four components.
	if v, isVendor := strings.CutPrefix(rest, "vendor"); !lookup && isVendor && (v == "" || v[0] == '/') && strings.Count(rest, "/") < 2 {
		return "", false
	}
	return name, true
}
