package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
)

// statusCols are a mailbox's MailboxStatus columns (mb: the mailboxes
// row). Recent: an index range scan of the messages at or above the
// watermark (few, once a session has claimed them); a watermark of 1
// (never claimed: no mailbox_recent row, migration 0009) covers every
// message, counted already.
const statusCols = `mb.id, mb.account_id, mb.name, mb.special_use, mb.uidvalidity, mb.uidnext, mb.highestmodseq,
	       ` + subscribedCol + `,
	       mb.msg_count, mb.msg_unseen, mb.msg_deleted, mb.msg_size,
	       (SELECT CASE WHEN w.u <= 1 THEN mb.msg_count
	                    WHEN w.u >= mb.uidnext THEN 0
	                    ELSE (SELECT count(*) FROM messages m WHERE m.mailbox_id = mb.id AND m.uid >= w.u) END
	          FROM (SELECT coalesce((SELECT r.recent_uid FROM mailbox_recent r WHERE r.mailbox_id = mb.id), 1) AS u) w)`

// statusRow receives statusCols.
type statusRow struct {
	st                            mailstore.MailboxStatus
	uidvalidity, uidnext, hms     int64
	msgs, unseen, deleted, recent int64
}

func (r *statusRow) dest() []any {
	st := &r.st
	return []any{&st.ID, &st.AccountID, &st.Name, &st.SpecialUse, &r.uidvalidity, &r.uidnext, &r.hms, &st.Subscribed,
		&r.msgs, &r.unseen, &r.deleted, &st.Size, &r.recent}
}

func (r *statusRow) status() mailstore.MailboxStatus {
	st := r.st
	st.UIDValidity, st.UIDNext, st.HighestModSeq = uint32(r.uidvalidity), uint32(r.uidnext), uint64(r.hms)
	st.Messages, st.Unseen, st.Deleted, st.Recent = uint32(r.msgs), uint32(r.unseen), uint32(r.deleted), uint32(r.recent)
	return st
}

func (s *Store) MailboxStatus(ctx context.Context, accountID, mailboxID int64) (mailstore.MailboxStatus, error) {
	var r statusRow
	err := s.pool.QueryRow(ctx, `SELECT `+statusCols+` FROM mailboxes mb WHERE mb.id = $2 AND mb.account_id = $1`,
		accountID, mailboxID).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return r.st, fmt.Errorf("mailbox status: %w", mailstore.ErrNoSuchMailbox)
	}
	if err != nil {
		return r.st, mapErr("mailbox status", err)
	}
	return r.status(), nil
}

// MailboxStatusByName implements mailstore.Store in one statement.
func (s *Store) MailboxStatusByName(ctx context.Context, accountID int64, name string) (mailstore.MailboxStatus, error) {
	n, err := mailstore.NormalizeMailboxName(name)
	if err != nil {
		return mailstore.MailboxStatus{}, err
	}
	var r statusRow
	err = s.pool.QueryRow(ctx, `SELECT `+statusCols+` FROM mailboxes mb WHERE mb.account_id = $1 AND mb.name = $2`,
		accountID, n).Scan(r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return r.st, fmt.Errorf("mailbox status %q: %w", n, mailstore.ErrNoSuchMailbox)
	}
	if err != nil {
		return r.st, mapErr("mailbox status", err)
	}
	return r.status(), nil
}

// selectSQL reads a mailbox's status and, unless it has $3 messages or
// more (listed through the list cache instead, see listcache.go), its
// messages as parallel arrays (metaArrays), in one snapshot.
const selectSQL = `
	SELECT ` + statusCols + `, l.*
	  FROM mailboxes mb
	 CROSS JOIN LATERAL (
	    SELECT array_agg(x.uid), array_agg(x.modseq), array_agg(x.flags), array_agg(x.internal_date), array_agg(x.size),
	           array_agg(x.crlf_size), array_agg(x.uid) FILTER (WHERE x.kw <> ''), array_agg(x.kw) FILTER (WHERE x.kw <> ''),
	           array_agg(x.content_id)
	      FROM (SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' ') AS kw, m.internal_date, m.size,
	                   m.crlf_size, m.content_id
	              FROM messages m WHERE m.mailbox_id = mb.id AND mb.msg_count < $3 ORDER BY m.uid) x) l
	 WHERE mb.account_id = $1 AND mb.name = $2`

// claimByNameSQL is ClaimRecent for a mailbox given by name.
const claimByNameSQL = `SELECT pr_claim_recent(p_account => $1,
	p_mailbox => (SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2))`

// SelectMailbox implements mailstore.Store: the status and message list
// in one statement and the claim after it, pipelined in one round trip. A
// large mailbox's list comes from the list cache, brought up to date with
// a second query.
func (s *Store) SelectMailbox(ctx context.Context, accountID int64, name string, claimRecent bool) (mailstore.Selection, error) {
	var sel mailstore.Selection
	n, err := mailstore.NormalizeMailboxName(name)
	if err != nil {
		return sel, err
	}
	listMax := int64(1) << 62
	if s.lists != nil {
		listMax = listCacheMin
	}
	var r statusRow
	var a metaArrays
	var claimed []int64
	b := &pgx.Batch{}
	b.Queue(selectSQL, accountID, n, listMax)
	if claimRecent {
		b.Queue(claimByNameSQL, accountID, n)
	}
	br := s.pool.SendBatch(ctx, b)
	err = br.QueryRow().Scan(append(r.dest(), a.dest()...)...)
	if err == nil && claimRecent {
		err = br.QueryRow().Scan(&claimed)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) || pgCode(err) == "PR001" {
		return sel, fmt.Errorf("select %q: %w", n, mailstore.ErrNoSuchMailbox)
	}
	if err != nil {
		return sel, mapErr("select", err)
	}
	sel.Status = r.status()
	if r.msgs < listMax || a.uids != nil {
		sel.Messages = a.metas()
	} else {
		// The list may reflect later changes than the status: the status's
		// HIGHESTMODSEQ is then lower than the list's, which only makes a
		// catch-up repeat them.
		_, sel.Messages, err = s.listMessages(ctx, accountID, sel.Status.ID, nil, nil)
		if err != nil {
			return sel, err
		}
	}
	if len(claimed) > 0 {
		sel.Recent = make([]uint32, len(claimed))
		for i, u := range claimed {
			sel.Recent[i] = uint32(u)
		}
	}
	return sel, nil
}
