package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postrider/postrider/mailstore"
)

// listRows lists a mailbox's messages (those in the ranges; all when
// starts is nil) with the mailbox's HIGHESTMODSEQ read in the same
// statement. It bypasses pgx's row scanning: the rows arrive in the binary
// format and are decoded here, which for 100,000 messages takes about half
// the time of any aggregate-into-arrays query (whose per-element send
// functions dominate) and a fraction of generic Scan.
//
// The first row is a header from the mailboxes row (HIGHESTMODSEQ and the
// message count, for sizing); no rows at all means the mailbox is not the
// account's.
func (s *Store) listRows(ctx context.Context, accountID, mailboxID int64, starts, stops []int64) (uint64, []mailstore.MessageMeta, error) {
	from := `messages m`
	cond := `m.mailbox_id = $2::bigint AND `
	params := [][]byte{[]byte(strconv.FormatInt(accountID, 10)), []byte(strconv.FormatInt(mailboxID, 10))}
	if starts != nil {
		from = `unnest($3::bigint[], $4::bigint[]) r(s, e) JOIN messages m ON m.mailbox_id = $2::bigint AND m.uid BETWEEN r.s AND r.e`
		cond = ""
		params = append(params, int64Array(starts), int64Array(stops))
	}
	sql := `SELECT highestmodseq, msg_count, 0::smallint, NULL::text, NULL::timestamptz, 0::bigint, 0::bigint, 0::bigint
		  FROM mailboxes WHERE id = $2::bigint AND account_id = $1::bigint
		UNION ALL
		(SELECT m.uid, m.modseq, m.flags,
		        CASE WHEN cardinality(m.keywords) > 0 THEN array_to_string(m.keywords, ' ') END,
		        m.internal_date, m.size, m.crlf_size, m.content_id
		   FROM ` + from + `
		  WHERE ` + cond + `EXISTS (SELECT 1 FROM mailboxes WHERE id = $2::bigint AND account_id = $1::bigint)
		  ORDER BY m.uid)`
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, nil, mapErr("list messages", err)
	}
	defer conn.Release()
	rr := conn.Conn().PgConn().ExecParams(ctx, sql, params, nil, nil, []int16{1})
	var hms uint64
	var out []mailstore.MessageMeta
	header := true
	var derr error
	for rr.NextRow() {
		v := rr.Values()
		if header {
			header = false
			if len(v) != 8 || len(v[0]) != 8 || len(v[1]) != 8 {
				derr = fmt.Errorf("list messages: unexpected header row")
				break
			}
			hms = binary.BigEndian.Uint64(v[0])
			n := int64(binary.BigEndian.Uint64(v[1]))
			if starts == nil && n > 0 && n < 1<<24 {
				out = make([]mailstore.MessageMeta, 0, n)
			}
			continue
		}
		m, err := decodeMetaRow(v)
		if err != nil {
			derr = err
			break
		}
		out = append(out, m)
	}
	if _, err := rr.Close(); err != nil {
		return 0, nil, mapErr("list messages", err)
	}
	if derr != nil {
		return 0, nil, derr
	}
	if header {
		return 0, nil, fmt.Errorf("list messages: %w", mailstore.ErrNoSuchMailbox)
	}
	return hms, out, nil
}

// pgEpochMicros is 2000-01-01 00:00 UTC, PostgreSQL's timestamp epoch, in
// Unix microseconds.
const pgEpochMicros = 946684800 * 1000000

// decodeMetaRow decodes (uid int8, modseq int8, flags int2, keywords text,
// internal_date timestamptz, size int8, crlf_size int8, content_id int8)
// in the binary format.
func decodeMetaRow(v [][]byte) (mailstore.MessageMeta, error) {
	var m mailstore.MessageMeta
	if len(v) != 8 || len(v[0]) != 8 || len(v[1]) != 8 || len(v[2]) != 2 || len(v[4]) != 8 || len(v[5]) != 8 || len(v[6]) != 8 || len(v[7]) != 8 {
		return m, fmt.Errorf("list messages: unexpected row layout")
	}
	m.UID = uint32(binary.BigEndian.Uint64(v[0]))
	m.ModSeq = binary.BigEndian.Uint64(v[1])
	m.Flags.System = mailstore.SystemFlag(binary.BigEndian.Uint16(v[2]))
	if v[3] != nil {
		m.Flags.Keywords = strings.Fields(string(v[3]))
	}
	m.InternalDate = time.UnixMicro(int64(binary.BigEndian.Uint64(v[4])) + pgEpochMicros)
	m.Size = int64(binary.BigEndian.Uint64(v[5]))
	m.CRLFSize = int64(binary.BigEndian.Uint64(v[6]))
	m.ContentID = int64(binary.BigEndian.Uint64(v[7]))
	return m, nil
}

// int64Array renders an array parameter in the text format.
func int64Array(xs []int64) []byte {
	b := make([]byte, 0, 2+len(xs)*8)
	b = append(b, '{')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, x, 10)
	}
	return append(b, '}')
}
