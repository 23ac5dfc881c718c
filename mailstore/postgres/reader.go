package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/postrider/postrider/mailstore"
)

// OpenMessage implements mailstore.Store. The first query checks the
// message and returns the first piece needed (for messages up to ChunkSize,
// everything), so a typical FETCH BODY[] costs one round trip; further
// pieces are read one chunk at a time as the caller reads.
func (s *Store) OpenMessage(ctx context.Context, accountID, mailboxID int64, uid uint32, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("%w: negative offset", mailstore.ErrInvalidArgument)
	}
	want := int64(ChunkSize)
	if length >= 0 && length < want {
		want = length
	}
	var r msgReader
	var first []byte
	err := s.pool.QueryRow(ctx, `
		SELECT c.id, c.size, c.chunk_size,
		       (SELECT substring(ch.data FROM ($4 % c.chunk_size)::int + 1 FOR least($5, c.chunk_size - $4 % c.chunk_size)::int)
		          FROM chunks ch WHERE ch.content_id = c.id AND ch.seq = ($4 / c.chunk_size)::int)
		  FROM mailboxes mb
		  JOIN messages m ON m.mailbox_id = mb.id AND m.uid = $3
		  JOIN contents c ON c.id = m.content_id
		 WHERE mb.id = $2 AND mb.account_id = $1`,
		accountID, mailboxID, int64(uid), offset, want).Scan(&r.contentID, &r.size, &r.chunkSize, &first)
	if errors.Is(err, pgx.ErrNoRows) {
		if cerr := s.checkMailbox(ctx, accountID, mailboxID); cerr != nil {
			return nil, cerr
		}
		return nil, fmt.Errorf("open message %d: %w", uid, mailstore.ErrNoSuchMessage)
	}
	if err != nil {
		return nil, mapErr("open message", err)
	}
	r.ctx, r.s = ctx, s
	r.pos = min(offset, r.size)
	r.end = r.size
	if length >= 0 && r.pos+length < r.end {
		r.end = r.pos + length
	}
	if r.pos < r.end {
		if int64(len(first)) > r.end-r.pos {
			first = first[:r.end-r.pos]
		}
		r.cur = first
	}
	return &r, nil
}

// msgReader streams octets [pos, end) of a content, one chunk at a time.
type msgReader struct {
	ctx       context.Context
	s         *Store
	contentID int64
	size      int64
	chunkSize int64
	pos, end  int64 // pos: absolute offset of cur[0]
	cur       []byte
	buf       []byte // chunk buffer, allocated on the first fill
	closed    bool
}

func (r *msgReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read of closed message")
	}
	if len(r.cur) == 0 {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.pos += int64(n)
	return n, nil
}

func (r *msgReader) fill() error {
	seq := r.pos / r.chunkSize
	off := r.pos % r.chunkSize
	n := min(r.chunkSize-off, r.end-r.pos)
	if r.buf == nil {
		r.buf = make([]byte, r.chunkSize)
	}
	// Scan into the reader's own buffer: no allocation per chunk.
	data := pgtype.PreallocBytes(r.buf[:cap(r.buf)])
	err := r.s.pool.QueryRow(r.ctx, `SELECT substring(data FROM $3::int + 1 FOR $4::int) FROM chunks
		WHERE content_id = $1 AND seq = $2`, r.contentID, int32(seq), int32(off), int32(n)).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read message: content removed while reading: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return mapErr("read message", err)
	}
	if int64(len(data)) != n {
		return fmt.Errorf("read message: chunk %d holds %d octets, want %d: %w", seq, len(data), n, io.ErrUnexpectedEOF)
	}
	r.cur = data
	return nil
}

func (r *msgReader) Close() error {
	r.closed = true
	r.cur, r.buf = nil, nil
	return nil
}
