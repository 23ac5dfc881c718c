// Package postgres is the PostgreSQL implementation of mailstore.Store
// (pgx v5). Many stateless nodes share one database: everything a node must
// know lives in the database, and change notifications travel by
// LISTEN/NOTIFY.
//
// Schema (migrations/*.sql, applied by Migrate):
//   - messages: one narrow row per message in a mailbox (UID, modseq,
//     flags bit mask, keywords, dates, size, CRLF size, content id); mailboxes hold
//     UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and exact STATUS counters;
//     expunged holds tombstones (RFC 7162 VANISHED).
//   - contents: each distinct message (by SHA-256) once, with its parse
//     results and lower-cased search texts, reference-counted by message
//     rows and queue items and deleted with its chunks when the last
//     reference goes;
//     chunks: its octets in rows of at most ChunkSize; content_text: the
//     search text of a large content, in overlapping pieces (textspool.go).
//   - queue_items and queue_recipients: the outbound queue (queue.go);
//     an item holds a content reference, so a body is stored once for
//     local copies and remote recipients. dkim_keys, cluster_secrets:
//     what every node must sign and rewrite with (dkim.go).
//   - plpgsql functions (migrations/0002_functions.sql) perform every
//     multi-statement write as one statement (one round trip), holding the
//     hot row locks (account quota row, mailbox UIDNEXT row) briefly, in
//     one global lock order (see the file's header).
//
// Around the schema: deliveries stream large messages through COPY
// (content.go, deliver.go); notifications are sent after commit, coalesced,
// and say which mailbox changed to which modseq (notify.go, payload.go),
// so that each node's hub can tell a session whether its mailbox may have
// changed (hub.go); large mailboxes' message lists are cached per node and
// brought up to date by modseq (listcache.go); message contents, which
// never change, are cached per node (contentcache.go).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postrider/postrider/mailstore"
)

// ChunkSize is the largest piece of a message body stored in one row.
// Messages up to this size are written with a single statement.
const ChunkSize = 256 << 10

// DefaultMaxConns is the pool size when neither Options.MaxConns nor the
// URL's pool_max_conns sets it.
const DefaultMaxConns = 10

// Limits on inputs not covered by mailstore's own bounds.
const (
	// DefaultMaxMessageSize applies when Options.MaxMessageSize is 0. The
	// SMTP/IMAP frontends enforce their own (smaller) configured limit; this
	// is the store's backstop.
	DefaultMaxMessageSize = 1 << 30
	// MaxRecipients bounds one Deliver call.
	MaxRecipients = 10000
	// MaxPasswordHashLength bounds a stored password hash.
	MaxPasswordHashLength = 1024
	// MaxAuthKeys bounds the keys of one auth-failure call; MaxAuthKeyLength
	// one key.
	MaxAuthKeys      = 64
	MaxAuthKeyLength = 512
	// MaxLeaseNameLength bounds lease names and holders.
	MaxLeaseNameLength = 512
	// MaxUIDRanges bounds the ranges of one UID set.
	MaxUIDRanges = 100000
	// MaxSearchNodes bounds the criteria of one Search (all levels), and
	// MaxSearchDepth the nesting of Not/Or.
	MaxSearchNodes = 1000
	MaxSearchDepth = 32
	// MaxParams bounds Delivery.Params.
	MaxParams = 64
	// MaxQueueText bounds the reverse-path and each DSN parameter of a
	// queued delivery. Longer attempt replies and remote host names are
	// cut to MaxQueueReply octets rather than refused: a remote server
	// may say anything.
	MaxQueueText  = 1000
	MaxQueueReply = 4096
	// MaxQueueClaim bounds the items of one ClaimQueue and the IDs of one
	// RenewQueueLease or RetryQueue.
	MaxQueueClaim = 10000
)

// Options configure a Store. The zero value is usable.
type Options struct {
	// MaxConns is the pool size (0: the URL's pool_max_conns, else
	// DefaultMaxConns). The notification listener uses one more connection.
	MaxConns int32
	// Logger receives operational messages (never message contents or
	// password hashes). nil means slog.Default().
	Logger *slog.Logger
	// MaxMessageSize is the largest message Deliver/Append accept
	// (0: DefaultMaxMessageSize); larger ones fail with ErrTooLarge.
	MaxMessageSize int64
	// Location is the server's zone for SEARCH date criteria on the internal
	// date (RFC 9051 §6.4.4 SINCE/BEFORE/ON). nil means UTC.
	Location *time.Location
	// AuthFailureRetention is how long login failures are kept
	// (0: 48 hours). Older rows are pruned opportunistically.
	AuthFailureRetention time.Duration
	// ListenBackoffMax caps the reconnect delay of the notification
	// listener (0: 5 s).
	ListenBackoffMax time.Duration
	// ListenProbeInterval is how long the notification listener waits
	// without a notification before it checks its connection
	// (notify.go probeListener; 0: 30 s).
	ListenProbeInterval time.Duration
	// ListCacheMessages bounds the messages of large mailboxes this node
	// keeps in memory for ListMessages (0: DefaultListCacheMessages;
	// negative: no cache). See listcache.go.
	ListCacheMessages int
	// ContentCacheBytes bounds this node's cache of message contents
	// (0: DefaultContentCacheBytes; negative: no cache). See
	// contentcache.go.
	ContentCacheBytes int64
	// NoGroupCommit delivers every message in its own transaction, even
	// when several go to one mailbox at once (see groupcommit.go); for
	// comparisons.
	NoGroupCommit bool
	// Observer receives query latencies and notification lag (observe.go).
	Observer Observer
}

// Store implements mailstore.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	opts Options

	hub        *hub
	ownPIDs    *pidSet       // backends of this Store's pool (notify.go)
	lists      *listCache    // nil when disabled
	contents   *contentCache // nil when disabled
	notifier   *notifier
	stopListen context.CancelFunc
	listenDone chan struct{}
	notifyDone chan struct{}
	closeOnce  sync.Once

	releaseWake  chan struct{} // see releases.go
	releaseDone  chan struct{}
	releaseRuns  atomic.Int64 // drains the release goroutine finished (tests)
	releaseDirty atomic.Bool  // an expunge since the last drain began

	nextPrune atomic.Int64 // unix nanoseconds of the next auth-failure prune

	groups         groupCommitter // see groupcommit.go
	groupedCommits atomic.Int64   // transactions that committed several deliveries
	groupFallbacks atomic.Int64   // shared transactions that failed

	listenReconnects atomic.Int64 // see ConnectionStats
}

var _ mailstore.Store = (*Store)(nil)

// Open connects to the database and starts the notification listener and
// the release of expunged messages' contents (releases.go). It
// does not migrate (see Migrate); Ping reports ErrSchemaOutdated until the
// schema is current.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(databaseURL, "pool_max_conns"):
		// pgxpool's default, max(4, CPUs), would queue a busy node's
		// sessions behind a handful of connections.
		cfg.MaxConns = DefaultMaxConns
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.AuthFailureRetention <= 0 {
		opts.AuthFailureRetention = 48 * time.Hour
	}
	if opts.ListenBackoffMax <= 0 {
		opts.ListenBackoffMax = 5 * time.Second
	}
	if opts.ListenProbeInterval <= 0 {
		opts.ListenProbeInterval = 30 * time.Second
	}
	if opts.ListCacheMessages == 0 {
		opts.ListCacheMessages = DefaultListCacheMessages
	}
	if opts.ContentCacheBytes == 0 {
		opts.ContentCacheBytes = DefaultContentCacheBytes
	}
	cfg.ConnConfig.DialFunc = markEOF(cfg.ConnConfig.DialFunc)
	if opts.Observer.Query != nil {
		cfg.ConnConfig.Tracer = queryTracer{opts.Observer.Query}
	}
	own := &pidSet{pids: map[uint32]struct{}{}}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		own.add(c.PgConn().PID())
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) { own.remove(c.PgConn().PID()) }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: create pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{
		pool:       pool,
		log:        opts.Logger.With("component", "mailstore/postgres"),
		opts:       opts,
		hub:        newHub(),
		ownPIDs:    own,
		lists:      newListCache(opts.ListCacheMessages),
		contents:   newContentCache(opts.ContentCacheBytes),
		notifier:   newNotifier(),
		listenDone: make(chan struct{}),
		notifyDone: make(chan struct{}),
		groups:     groupCommitter{queues: map[groupKey]*groupQueue{}},

		releaseWake: make(chan struct{}, 1),
		releaseDone: make(chan struct{}),
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.stopListen = cancel
	go s.listen(lctx, cfg.ConnConfig.Copy())
	go s.sendNotifications(lctx)
	go s.runReleases(lctx)
	s.signalRelease() // what a stopped node left pending
	return s, nil
}

// Close stops the listener, releases what expunges left pending (for a
// bounded time) and closes the pool. Subscriber channels are not closed;
// their cancel functions stay valid.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.flushNotifications()
		s.stopListen()
		<-s.listenDone
		<-s.notifyDone
		<-s.releaseDone
		s.finishReleases()
		s.pool.Close()
	})
}

// Pool exposes the connection pool to tests and maintenance tools.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks connectivity and that every embedded migration is applied.
func (s *Store) Ping(ctx context.Context) error {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
			return fmt.Errorf("%w: no schema_migrations table", mailstore.ErrSchemaOutdated)
		}
		return mapErr("postgres: ping", err)
	}
	if want := latestVersion(); v < want {
		return fmt.Errorf("%w: database at version %d, want %d", mailstore.ErrSchemaOutdated, v, want)
	}
	return nil
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapErr turns errors raised by our SQL and common constraint violations
// into mailstore's typed errors, keeping the original message as context.
// op names the operation for the message.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if unavailable(err) {
		if errors.Is(err, mailstore.ErrUnavailable) {
			return fmt.Errorf("%s: %w", op, err)
		}
		return fmt.Errorf("%s: %w: %w", op, mailstore.ErrUnavailable, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%s: %w", op, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	switch pe.Code {
	case "PR001":
		return fmt.Errorf("%s: %w", op, mailstore.ErrNoSuchMailbox)
	case "PR002":
		return fmt.Errorf("%s: %w", op, mailstore.ErrNoSuchAccount)
	case "PR003":
		return fmt.Errorf("%s: %w", op, &mailstore.QuotaError{AccountIDs: parseIDList(pe.Detail)})
	case "PR004":
		return fmt.Errorf("%s: %w: %s", op, mailstore.ErrInvalidArgument, pe.Message)
	case "23505": // unique_violation
		return fmt.Errorf("%s: %w", op, mailstore.ErrExists)
	case "22021", "22P05", "54000", "22001": // bad encoding, untranslatable, too large, too long
		return fmt.Errorf("%s: %w: %s", op, mailstore.ErrInvalidArgument, pe.Message)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func parseIDList(s string) []int64 {
	var ids []int64
	var cur int64
	have := false
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			cur = cur*10 + int64(s[i]-'0')
			have = true
			continue
		}
		if have {
			ids = append(ids, cur)
		}
		cur, have = 0, false
	}
	return ids
}

// retryable reports whether a failed transaction may simply be run again.
func retryable(err error) bool {
	switch pgCode(err) {
	case "40P01", "40001": // deadlock_detected, serialization_failure
		return true
	}
	return false
}

// uidRanges converts a UID set to the (starts, stops) arrays the SQL side
// uses: sorted, merged, Stop 0 ("*") as the largest UID. A nil set yields
// nil arrays (meaning all messages).
func uidRanges(set mailstore.UIDSet) (starts, stops []int64, err error) {
	if set == nil {
		return nil, nil, nil
	}
	if len(set) > MaxUIDRanges {
		return nil, nil, fmt.Errorf("%w: more than %d UID ranges", mailstore.ErrInvalidArgument, MaxUIDRanges)
	}
	rs := make([][2]int64, 0, len(set))
	for _, r := range set {
		a, b := int64(r.Start), int64(r.Stop)
		if b == 0 {
			b = 1<<32 - 1
		}
		if a > b {
			a, b = b, a
		}
		rs = append(rs, [2]int64{a, b})
	}
	sortRanges(rs)
	starts = make([]int64, 0, len(rs))
	stops = make([]int64, 0, len(rs))
	for _, r := range rs {
		if n := len(stops); n > 0 && r[0] <= stops[n-1]+1 {
			if r[1] > stops[n-1] {
				stops[n-1] = r[1]
			}
			continue
		}
		starts = append(starts, r[0])
		stops = append(stops, r[1])
	}
	return starts, stops, nil
}

func sortRanges(rs [][2]int64) {
	slices.SortFunc(rs, func(a, b [2]int64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
}
