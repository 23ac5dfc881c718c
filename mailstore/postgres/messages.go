package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postrider/postrider/mailstore"
	"github.com/postrider/postrider/mailstore/msgparse"
)

const metaCols = `m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' ') AS kw, m.internal_date, m.size, m.crlf_size, m.content_id`

// metaArrays receives message metadata as parallel arrays (pr_changes,
// migration 0003): uid, modseq, flags, internal_date, size, crlf_size, the
// non-empty keyword lists (space-joined) with their UIDs, and content_id. One row on the
// wire and binary array decoding instead of one protocol message per
// message; keywords are rare, so only non-empty ones are sent.
type metaArrays struct {
	uids, modseqs, sizes []int64
	crlfSizes            []int64
	flags                []int16
	dates                []time.Time
	kwUIDs               []int64
	kws                  []string
	contentIDs           []int64
}

func (a *metaArrays) dest() []any {
	return []any{&a.uids, &a.modseqs, &a.flags, &a.dates, &a.sizes, &a.crlfSizes, &a.kwUIDs, &a.kws, &a.contentIDs}
}

func (a *metaArrays) metas() []mailstore.MessageMeta {
	out := make([]mailstore.MessageMeta, len(a.uids))
	k := 0
	for i := range a.uids {
		m := &out[i]
		m.UID = uint32(a.uids[i])
		m.ModSeq = uint64(a.modseqs[i])
		m.Flags.System = mailstore.SystemFlag(a.flags[i])
		m.InternalDate = a.dates[i]
		m.Size = a.sizes[i]
		m.CRLFSize = a.crlfSizes[i]
		m.ContentID = a.contentIDs[i]
		if k < len(a.kwUIDs) && a.kwUIDs[k] == a.uids[i] {
			m.Flags.Keywords = strings.Fields(a.kws[k])
			k++
		}
	}
	return out
}

// ListMessages implements mailstore.Store. Large mailboxes are served from
// the node's list cache (see listcache.go), brought up to date first.
func (s *Store) ListMessages(ctx context.Context, accountID, mailboxID int64, uids mailstore.UIDSet) ([]mailstore.MessageMeta, error) {
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return nil, err
	}
	if uids != nil && len(starts) == 0 {
		return nil, s.checkMailbox(ctx, accountID, mailboxID)
	}
	_, ms, err := s.listMessages(ctx, accountID, mailboxID, starts, stops)
	return ms, err
}

// listMessages is ListMessages with the HIGHESTMODSEQ the list reflects.
func (s *Store) listMessages(ctx context.Context, accountID, mailboxID int64, starts, stops []int64) (uint64, []mailstore.MessageMeta, error) {
	if s.lists != nil {
		if e := s.lists.get(mailboxID); e != nil && e.account == accountID {
			return s.cachedList(ctx, e, starts, stops)
		}
	}
	hms, ms, err := s.listRows(ctx, accountID, mailboxID, starts, stops)
	if err != nil {
		return 0, nil, err
	}
	if s.lists != nil && starts == nil && len(ms) >= listCacheMin {
		s.lists.put(mailboxID, accountID, hms, ms)
	}
	return hms, ms, nil
}

// checkMailbox returns ErrNoSuchMailbox unless the mailbox is the account's.
func (s *Store) checkMailbox(ctx context.Context, accountID, mailboxID int64) error {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mailboxes WHERE id = $2 AND account_id = $1)`,
		accountID, mailboxID).Scan(&ok)
	if err != nil {
		return mapErr("check mailbox", err)
	}
	if !ok {
		return fmt.Errorf("mailbox %d: %w", mailboxID, mailstore.ErrNoSuchMailbox)
	}
	return nil
}

// Changes implements mailstore.Store with one statement (one snapshot,
// pr_changes, migration 0004): the mailbox row, messages with modseq >
// since and tombstones with modseq > since, incomplete when since is below
// the mailbox's vanished_floor (tombstones pruned, see PruneTombstones).
func (s *Store) Changes(ctx context.Context, accountID, mailboxID int64, sinceModSeq uint64) (mailstore.Changes, error) {
	var ch mailstore.Changes
	var hms, uidnext, floor int64
	var vanished []int64
	var a metaArrays
	dest := append([]any{&hms, &uidnext, &floor, &vanished}, a.dest()...)
	err := s.pool.QueryRow(ctx, `SELECT * FROM pr_changes(p_account => $1, p_mailbox => $2, p_since => $3)`, accountID, mailboxID, int64(sinceModSeq)).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return ch, fmt.Errorf("changes: %w", mailstore.ErrNoSuchMailbox)
	}
	if err != nil {
		return ch, mapErr("changes", err)
	}
	ch.HighestModSeq, ch.UIDNext = uint64(hms), uint32(uidnext)
	ch.VanishedIncomplete = int64(sinceModSeq) < floor
	ch.Updated = a.metas()
	if len(vanished) > 0 {
		ch.Vanished = make([]uint32, len(vanished))
		for i, u := range vanished {
			ch.Vanished[i] = uint32(u)
		}
	}
	return ch, nil
}

// FetchDetails implements mailstore.Store.
func (s *Store) FetchDetails(ctx context.Context, accountID, mailboxID int64, uids mailstore.UIDSet) ([]mailstore.MessageDetail, error) {
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return nil, err
	}
	if starts == nil {
		starts, stops = []int64{0}, []int64{1<<32 - 1}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+metaCols+`, c.parsed
		  FROM mailboxes mb
		  JOIN unnest($3::bigint[], $4::bigint[]) r(s, e) ON true
		  JOIN messages m ON m.mailbox_id = mb.id AND m.uid BETWEEN r.s AND r.e
		  JOIN contents c ON c.id = m.content_id
		 WHERE mb.id = $2 AND mb.account_id = $1
		 ORDER BY m.uid`, accountID, mailboxID, starts, stops)
	if err != nil {
		return nil, mapErr("fetch details", err)
	}
	var out []mailstore.MessageDetail
	for rows.Next() {
		var d mailstore.MessageDetail
		var uid, modseq int64
		var flags int16
		var kw string
		var parsed []byte
		if err := rows.Scan(&uid, &modseq, &flags, &kw, &d.InternalDate, &d.Size, &d.CRLFSize, &d.ContentID, &parsed); err != nil {
			rows.Close()
			return nil, mapErr("fetch details", err)
		}
		d.UID, d.ModSeq, d.Flags.System = uint32(uid), uint64(modseq), mailstore.SystemFlag(flags)
		if kw != "" {
			d.Flags.Keywords = strings.Fields(kw)
		}
		d.Parsed = &msgparse.Message{}
		if len(parsed) > 0 {
			if err := json.Unmarshal(parsed, d.Parsed); err != nil {
				rows.Close()
				return nil, fmt.Errorf("fetch details: decode parsed message %d: %w", uid, err)
			}
		}
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, mapErr("fetch details", err)
	}
	if len(out) == 0 {
		return nil, s.checkMailbox(ctx, accountID, mailboxID)
	}
	return out, nil
}

// StoreFlags implements mailstore.Store via pr_store_flags: one statement.
// A STORE that changes nothing takes no lock and writes nothing; one that
// changes flags commits asynchronously (see the function). Sessions are
// woken only when a flag changed.
func (s *Store) StoreFlags(ctx context.Context, accountID, mailboxID int64, uids mailstore.UIDSet, op mailstore.FlagOp, flags mailstore.Flags, unchangedSince uint64) (mailstore.StoreResult, error) {
	var res mailstore.StoreResult
	if op != mailstore.FlagsReplace && op != mailstore.FlagsAdd && op != mailstore.FlagsRemove {
		return res, fmt.Errorf("%w: flag operation %d", mailstore.ErrInvalidArgument, op)
	}
	sys, kws, err := normFlags(flags)
	if err != nil {
		return res, err
	}
	if kws == nil {
		kws = []string{}
	}
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return res, err
	}
	if uids != nil && len(starts) == 0 {
		return res, s.checkMailbox(ctx, accountID, mailboxID)
	}
	args := []any{accountID, mailboxID, starts, stops, int32(op), sys, kws, int64(unchangedSince)}
	for attempt := 0; ; attempt++ {
		res = mailstore.StoreResult{}
		err = s.writeBatch(ctx, nil, `SELECT * FROM pr_store_flags(p_account => $1, p_mailbox => $2,
			p_starts => $3, p_stops => $4, p_op => $5, p_flags => $6, p_keywords => $7, p_unchanged => $8)`, args,
			func(rows pgx.Rows) error {
				for rows.Next() {
					var uid, modseq int64
					var fl int16
					var kw []string
					var m mailstore.MessageMeta
					var modified bool
					if err := rows.Scan(&uid, &modseq, &fl, &kw, &m.InternalDate, &m.Size, &m.CRLFSize, &modified); err != nil {
						return err
					}
					if modified {
						res.Modified = append(res.Modified, uint32(uid))
						continue
					}
					m.UID, m.ModSeq, m.Flags.System = uint32(uid), uint64(modseq), mailstore.SystemFlag(fl)
					if len(kw) > 0 {
						m.Flags.Keywords = kw
					}
					res.Updated = append(res.Updated, m)
				}
				return rows.Err()
			})
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		if err == nil && len(res.Updated) > 0 {
			s.notifyChanges(mailboxChange(accountID, mailboxID, res.Updated[0].ModSeq)) // one new modseq for all
		}
		s.notifyUncertain(err, accountID)
		return res, mapErr("store flags", err)
	}
}

// Expunge implements mailstore.Store via pr_expunge: one statement. An
// expunge that finds nothing to remove takes no lock and writes nothing;
// sessions are woken only when messages went. The contents of the removed
// messages are released after the commit, in the background (releases.go).
func (s *Store) Expunge(ctx context.Context, accountID, mailboxID int64, uids mailstore.UIDSet, onlyDeleted bool) (mailstore.ExpungeResult, error) {
	var res mailstore.ExpungeResult
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return res, err
	}
	if uids != nil && len(starts) == 0 {
		var hms int64
		err := s.pool.QueryRow(ctx, `SELECT highestmodseq FROM mailboxes WHERE id = $2 AND account_id = $1`,
			accountID, mailboxID).Scan(&hms)
		if errors.Is(err, pgx.ErrNoRows) {
			return res, fmt.Errorf("expunge: %w", mailstore.ErrNoSuchMailbox)
		}
		res.HighestModSeq = uint64(hms)
		return res, mapErr("expunge", err)
	}
	for attempt := 0; ; attempt++ {
		res = mailstore.ExpungeResult{}
		err = s.writeBatch(ctx, nil, `SELECT o_uids, o_highestmodseq FROM pr_expunge(p_account => $1, p_mailbox => $2,
			p_starts => $3, p_stops => $4, p_only_deleted => $5)`,
			[]any{accountID, mailboxID, starts, stops, onlyDeleted}, func(rows pgx.Rows) error {
				for rows.Next() {
					var us []int64
					var hms int64
					if err := rows.Scan(&us, &hms); err != nil {
						return err
					}
					res.HighestModSeq = uint64(hms)
					for _, u := range us {
						res.UIDs = append(res.UIDs, uint32(u))
					}
				}
				return rows.Err()
			})
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		if err == nil && len(res.UIDs) > 0 {
			s.notifyChanges(mailboxChange(accountID, mailboxID, res.HighestModSeq))
			s.signalRelease() // their contents (releases.go)
		}
		s.notifyUncertain(err, accountID)
		return res, mapErr("expunge", err)
	}
}

// Copy implements mailstore.Store via pr_copy.
func (s *Store) Copy(ctx context.Context, accountID, srcMailboxID int64, uids mailstore.UIDSet, dstMailboxID int64) (mailstore.CopyResult, error) {
	return s.copyMove(ctx, accountID, srcMailboxID, uids, dstMailboxID, false)
}

// Move implements mailstore.Store via pr_copy (RFC 6851): copy and expunge
// from the source in one transaction.
func (s *Store) Move(ctx context.Context, accountID, srcMailboxID int64, uids mailstore.UIDSet, dstMailboxID int64) (mailstore.CopyResult, error) {
	return s.copyMove(ctx, accountID, srcMailboxID, uids, dstMailboxID, true)
}

func (s *Store) copyMove(ctx context.Context, accountID, src int64, uids mailstore.UIDSet, dst int64, move bool) (mailstore.CopyResult, error) {
	var res mailstore.CopyResult
	op := "copy"
	if move {
		op = "move"
	}
	starts, stops, err := uidRanges(uids)
	if err != nil {
		return res, err
	}
	if starts == nil {
		starts, stops = []int64{0}, []int64{1<<32 - 1}
	}
	for attempt := 0; ; attempt++ {
		res = mailstore.CopyResult{}
		err = s.writeBatch(ctx, nil, `SELECT r_src, r_dst, r_uidvalidity, r_modseq, r_src_modseq FROM pr_copy(p_account => $1,
			p_src => $2, p_dst => $3, p_starts => $4, p_stops => $5, p_move => $6)`,
			[]any{accountID, src, dst, starts, stops, move}, func(rows pgx.Rows) error {
				for rows.Next() {
					var a, b, v, m, sm int64
					if err := rows.Scan(&a, &b, &v, &m, &sm); err != nil {
						return err
					}
					res.UIDValidity, res.ModSeq, res.SrcModSeq = uint32(v), uint64(m), uint64(sm)
					res.SrcUIDs = append(res.SrcUIDs, uint32(a))
					res.DstUIDs = append(res.DstUIDs, uint32(b))
				}
				return rows.Err()
			})
		if err != nil && retryable(err) && attempt < 3 {
			continue
		}
		break
	}
	if err != nil {
		s.notifyUncertain(err, accountID)
		return mailstore.CopyResult{}, mapErr(op, err)
	}
	if len(res.SrcUIDs) > 0 {
		cs := mailboxChange(accountID, dst, res.ModSeq)
		if move {
			cs = append(cs, mailboxChange(accountID, src, res.SrcModSeq)...)
		}
		s.notifyChanges(cs)
	} else {
		var v int64
		err := s.pool.QueryRow(ctx, `SELECT uidvalidity FROM mailboxes WHERE id = $2 AND account_id = $1`, accountID, dst).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return res, fmt.Errorf("%s: %w", op, mailstore.ErrNoSuchMailbox)
		}
		if err != nil {
			return res, mapErr(op, err)
		}
		res.UIDValidity = uint32(v)
	}
	return res, nil
}

// PruneTombstones implements mailstore.Store: mailbox by mailbox, each in
// its own short transaction (pr_prune_expunged), so that no mailbox is
// locked for long and the pruning never waits for a second lock.
func (s *Store) PruneTombstones(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		rows, err := s.pool.Query(ctx, `SELECT DISTINCT mailbox_id FROM expunged WHERE expunged_at < $1 LIMIT 500`, before)
		if err != nil {
			return total, mapErr("prune tombstones", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return total, mapErr("prune tombstones", err)
		}
		if len(ids) == 0 {
			return total, nil
		}
		pass := 0
		for _, id := range ids {
			var n int
			if err := s.pool.QueryRow(ctx, `SELECT pr_prune_expunged(p_mailbox => $1, p_before => $2)`, id, before).Scan(&n); err != nil {
				return total, mapErr("prune tombstones", err)
			}
			pass += n
		}
		total += pass
		if pass == 0 {
			return total, nil // no progress (cannot happen; never loop on it)
		}
	}
}
