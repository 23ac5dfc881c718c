package postgres

import (
	"context"

	"github.com/postrider/postrider/mailstore"
)

// SaveDates implements mailstore.Store: one index range scan of the
// mailbox's message rows (save_date is in the narrow row, set to now() by
// every statement that inserts one: delivery, APPEND, COPY, MOVE).
func (s *Store) SaveDates(ctx context.Context, accountID, mailboxID int64, uids mailstore.UIDSet) ([]mailstore.SaveDate, error) {
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return nil, err
	}
	if starts == nil {
		starts, stops = []int64{0}, []int64{1<<32 - 1}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT m.uid, m.save_date
		  FROM mailboxes mb
		  JOIN unnest($3::bigint[], $4::bigint[]) r(s, e) ON true
		  JOIN LATERAL (SELECT uid, save_date FROM messages m
		                 WHERE m.mailbox_id = mb.id AND m.uid BETWEEN r.s AND r.e OFFSET 0) m ON true
		 WHERE mb.id = $2 AND mb.account_id = $1
		 ORDER BY m.uid`, accountID, mailboxID, starts, stops)
	if err != nil {
		return nil, mapErr("save dates", err)
	}
	var out []mailstore.SaveDate
	for rows.Next() {
		var d mailstore.SaveDate
		var uid int64
		if err := rows.Scan(&uid, &d.At); err != nil {
			rows.Close()
			return nil, mapErr("save dates", err)
		}
		d.UID = uint32(uid)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapErr("save dates", err)
	}
	if len(out) == 0 {
		return nil, s.checkMailbox(ctx, accountID, mailboxID)
	}
	return out, nil
}
