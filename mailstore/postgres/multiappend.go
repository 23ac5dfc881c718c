package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postrider/postrider/mailstore"
)

// MultiAppend implements mailstore.Store (IMAP MULTIAPPEND, RFC 3502).
//
// A single small message, the common APPEND, takes Append's path (one
// statement, group-committed): its first chunk is read before next is
// asked whether another follows, so nothing about it changes.
//
// Several messages, or a first one larger than a chunk, go through one
// transaction on one connection. Each body is streamed, as it arrives,
// into a pending content row (chunks, search-text pieces and the staged
// header text, exactly as a large Append streams one), so the Go heap
// holds one ChunkSize buffer whatever the number or size of the messages.
// The staged rows are new and lock nothing anyone waits for. Only when
// the last body has been read do the pr_deliver calls run, one per
// message, sent in one batch from a savepoint (retried on deadlock as
// writeBatch does): they take the account lock (quota is charged message
// by message on the same row, so the last call sees the total: RFC 3502
// §6.3.11 all or nothing, RFC 9208 §4.3 [OVERQUOTA]) and the mailbox
// lock (consecutive UIDs), and hold them only for that round trip and the
// commit, never while a client is still sending. Any error, the client's
// included, rolls everything back: the pending rows vanish with the
// transaction.
//
// It is not group-committed: groupcommit.go combines single-statement
// transactions of small messages, and these already share one commit.
func (s *Store) MultiAppend(ctx context.Context, accountID, mailboxID int64, next func() (mailstore.AppendMessage, bool, error)) ([]mailstore.AppendResult, error) {
	m, ok, err := next()
	if err != nil {
		return nil, err
	}
	if !ok || m.Body == nil {
		return nil, fmt.Errorf("%w: no message to append", mailstore.ErrInvalidArgument)
	}
	if _, _, err := normFlags(m.Flags); err != nil {
		return nil, err
	}
	bufp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bufp)
	buf := *bufp

	n, small, err := readChunk(m.Body, buf)
	if err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	rest := m.Body
	if !small {
		var one [1]byte
		k, eof, err := readChunk(m.Body, one[:])
		switch {
		case err != nil:
			return nil, fmt.Errorf("append: %w", err)
		case k == 1:
			rest = io.MultiReader(bytes.NewReader(one[:]), m.Body)
		case eof:
			small = true
		}
	}
	var second *mailstore.AppendMessage
	if small {
		m2, more, err := next()
		if err != nil {
			return nil, err
		}
		if !more {
			res, err := s.Append(ctx, accountID, mailboxID, m.Flags, m.Date, bytes.NewReader(buf[:n]))
			if err != nil {
				return nil, err
			}
			return []mailstore.AppendResult{res}, nil
		}
		if m2.Body == nil {
			return nil, fmt.Errorf("%w: no body", mailstore.ErrInvalidArgument)
		}
		second = &m2
	}
	// Several messages, or a large first one: parsed as they are staged.
	in := newIngest(s.opts.MaxMessageSize, true)
	spool := &textSpool{}
	in.p.SetTextSink(spool.write)
	if err := in.write(buf[:n]); err != nil {
		return nil, err
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, mapErr("append", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		rollback(conn)
		return nil, mapErr("append", err)
	}
	var msgs []stagedAppend
	stage := func(m mailstore.AppendMessage, in *ingest, spool *textSpool, first []byte, rest io.Reader) error {
		if len(msgs) >= mailstore.MaxMultiAppend {
			return fmt.Errorf("%w: more than %d messages in one append", mailstore.ErrInvalidArgument, mailstore.MaxMultiAppend)
		}
		sys, kw, err := normFlags(m.Flags)
		if err != nil {
			return err
		}
		pending, c, err := streamPending(ctx, conn, in, spool, buf, first, rest)
		if err != nil {
			return err
		}
		date := m.Date
		if date.IsZero() {
			date = time.Now().Truncate(time.Second)
		}
		msgs = append(msgs, stagedAppend{pending: pending, c: c, sys: sys, kw: kw, date: date})
		return nil
	}
	err = stage(m, in, spool, buf[:n], rest)
	if err == nil && second != nil {
		err = s.stageNext(*second, stage)
	}
	for err == nil {
		m, ok, nerr := next()
		if nerr != nil {
			err = nerr
			break
		}
		if !ok {
			break
		}
		if m.Body == nil {
			err = fmt.Errorf("%w: no body", mailstore.ErrInvalidArgument)
			break
		}
		err = s.stageNext(m, stage)
	}
	if err != nil {
		rollback(conn)
		return nil, mapErr("append", err)
	}
	out, err := s.commitAppends(ctx, conn, accountID, mailboxID, msgs)
	if err != nil {
		return nil, mapErr("append", err)
	}
	return out, nil
}

// stagedAppend is one message of a MultiAppend, streamed into a pending
// content row and waiting for its pr_deliver.
type stagedAppend struct {
	pending int64
	c       *content
	sys     int16
	kw      []string
	date    time.Time
}

// stageNext streams a further message with a fresh ingest and text spool;
// its first chunk is read by the chunk source itself (readChunk turns a
// failing reader into mailstore.ErrTruncated).
func (s *Store) stageNext(m mailstore.AppendMessage, stage func(mailstore.AppendMessage, *ingest, *textSpool, []byte, io.Reader) error) error {
	in := newIngest(s.opts.MaxMessageSize, true)
	spool := &textSpool{}
	in.p.SetTextSink(spool.write)
	return stage(m, in, spool, nil, m.Body)
}

// commitAppends runs pr_deliver for every staged message in one batch from
// a savepoint (retried on deadlock), commits, and notifies.
func (s *Store) commitAppends(ctx context.Context, conn *pgxpool.Conn, accountID, mailboxID int64, msgs []stagedAppend) ([]mailstore.AppendResult, error) {
	mb := mailboxID
	b := &pgx.Batch{}
	for _, m := range msgs {
		pending := m.pending
		args := deliverArgs(&pending, m.c, nil, []target{{account: accountID, mailbox: &mb, flags: m.sys, kw: strings.Join(m.kw, " ")}}, m.date, "", nil, nil)
		b.Queue(deliverSQL, args...)
	}
	if _, err := conn.Exec(ctx, "SAVEPOINT pr_write"); err != nil {
		rollback(conn)
		return nil, err
	}
	var rows []delivered
	var err error
	for attempt := 0; ; attempt++ {
		rows, err = runAppendBatch(ctx, conn, b, len(msgs))
		if err != nil && retryable(err) && attempt < 5 {
			if _, rerr := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT pr_write"); rerr != nil {
				err = rerr
				break
			}
			continue
		}
		break
	}
	if err == nil {
		_, err = conn.Exec(ctx, "COMMIT")
	}
	if err != nil {
		rollback(conn)
		s.notifyUncertain(err, accountID)
		return nil, err
	}
	s.notifyChanges(deliveredChanges(rows))
	out := make([]mailstore.AppendResult, len(msgs))
	for i, r := range rows {
		m := msgs[i]
		out[i] = mailstore.AppendResult{UIDValidity: uint32(r.uidvalidity), UID: uint32(r.uid), Size: m.c.size,
			ModSeq: uint64(r.modseq), Flags: mailstore.Flags{System: mailstore.SystemFlag(m.sys), Keywords: m.kw},
			InternalDate: m.date.Truncate(time.Microsecond), CRLFSize: m.c.crlfSize, ContentID: r.content}
	}
	return out, nil
}

// runAppendBatch sends the batch and reads one delivered row per message.
func runAppendBatch(ctx context.Context, conn *pgxpool.Conn, b *pgx.Batch, n int) ([]delivered, error) {
	br := conn.SendBatch(ctx, b)
	out := make([]delivered, 0, n)
	var err error
	for i := 0; i < n && err == nil; i++ {
		var rows pgx.Rows
		if rows, err = br.Query(); err != nil {
			break
		}
		var ds []delivered
		if ds, err = scanDelivered(rows, nil); err == nil && len(ds) != 1 {
			err = fmt.Errorf("append: %d rows stored", len(ds))
		}
		out = append(out, ds...)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return out, err
}
