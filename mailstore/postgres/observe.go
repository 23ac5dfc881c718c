package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Observer receives the store's measurements; the server turns them into
// Prometheus metrics (cmd/postrider/storemetrics.go), so that this package
// needs no metrics library. Every field may be nil.
type Observer struct {
	// Query is called when a statement (kind "query": Exec, Query,
	// QueryRow, transaction control included) or a pipelined batch
	// (kind "batch") finishes, with how long it took from send to the
	// last row read, and its error (nil on success).
	Query func(kind string, took time.Duration, err error)
	// NotifyLag is called when a change notification from another node
	// arrives carrying a stamp (notifyStampChannel): the time from the
	// sender's first commit in the batch to its arrival here. Wall clocks
	// of the two nodes are compared, so their difference is included.
	NotifyLag func(lag time.Duration)
}

// queryTracer implements pgx's QueryTracer and BatchTracer for
// Observer.Query.
type queryTracer struct {
	observe func(kind string, took time.Duration, err error)
}

type traceStartKey struct{}

func (q queryTracer) start(ctx context.Context) context.Context {
	return context.WithValue(ctx, traceStartKey{}, time.Now())
}

func (q queryTracer) end(ctx context.Context, kind string, err error) {
	if t, ok := ctx.Value(traceStartKey{}).(time.Time); ok {
		q.observe(kind, time.Since(t), err)
	}
}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return q.start(ctx)
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	q.end(ctx, "query", d.Err)
}

func (q queryTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return q.start(ctx)
}

func (q queryTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (q queryTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	q.end(ctx, "batch", d.Err)
}

// ConnectionStats reports how many connections the pool has opened since
// Open (the first ones included: every later one replaces a connection
// that broke, idled out or reached its lifetime) and how many times the
// notification listener reconnected after losing its connection.
func (s *Store) ConnectionStats() (poolOpened, listenerReconnects int64) {
	return s.pool.Stat().NewConnsCount(), s.listenReconnects.Load()
}

// notifyStampChannel carries, beside some change notifications, the time
// of the sender's first commit among the changes sent with it: decimal
// microseconds since the Unix epoch. A separate channel, because
// parseNotifyPayload rejects any entry it does not know and a node that
// rejects a payload counts everything as changed: nodes from before the
// stamp do not LISTEN here and never see it.
const notifyStampChannel = "postrider_changes_stamp"

// notifyStampEvery bounds how often a node stamps its notifications: a
// sample of the lag, not one per transaction.
const notifyStampEvery = 100 * time.Millisecond

// notifyStamp renders t for notifyStampChannel.
func notifyStamp(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// parseNotifyStamp parses a notifyStampChannel payload.
func parseNotifyStamp(p string) (time.Time, bool) {
	us, ok := parseDecimal(p)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}
