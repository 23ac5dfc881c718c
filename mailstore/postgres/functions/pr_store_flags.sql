-- pr_store_flags changes flags (p_op 0 replace, 1 add, 2 remove) of the
-- messages in the ranges (all when p_starts is NULL). Messages whose modseq
-- exceeds p_unchanged (when > 0) are left alone and returned with
-- r_modified (RFC 7162 §3.1.3). Changed messages share one new modseq;
-- messages whose flags do not change are not returned.
--
-- A STORE that changes nothing (+FLAGS \Seen on seen messages, say) is
-- answered from one plain snapshot read: no row lock, no transaction id,
-- no commit record. It takes effect at that snapshot, where applying it
-- changed no message; a change committed after the snapshot is simply
-- ordered after this STORE. (One that finds UNCHANGEDSINCE conflicts takes
-- the locked path, which reports them.)
--
-- A STORE that changes flags commits without waiting for the WAL flush:
-- it sets synchronous_commit off for the calling transaction (a
-- transaction-local setting made inside the function outlives it, as the
-- function has no SET clause for synchronous_commit), so it holds the
-- mailbox row only while it runs, not for a disk flush, and deliveries are
-- not queued behind flag changes. A database crash can lose the last
-- fraction of a second of flag changes (at most about 3 x wal_writer_delay),
-- never a message: everything that creates or removes messages commits
-- synchronously, and its commit flushes the WAL written before it, flag
-- changes included. Call it in a transaction of its own.
--
-- The messages are read by UID range, each range an index range scan of
-- the primary key (a LATERAL subquery kept apart by OFFSET 0: as a plain
-- join, the generic plan read every message of the mailbox to pick the
-- few in the ranges, while holding the mailbox row).
CREATE OR REPLACE FUNCTION pr_store_flags(p_account bigint, p_mailbox bigint, p_starts bigint[], p_stops bigint[],
                               p_op integer, p_flags smallint, p_keywords text[], p_unchanged bigint)
RETURNS TABLE (r_uid bigint, r_modseq bigint, r_flags smallint, r_keywords text[],
               r_internal_date timestamptz, r_size bigint, r_crlf_size bigint, r_modified boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_any boolean;
BEGIN
    -- 1. No lock: would the STORE change (or report) any message?
    SELECT EXISTS (
        SELECT 1 FROM (
            SELECT m.modseq, m.flags, m.keywords FROM messages m WHERE p_starts IS NULL AND m.mailbox_id = p_mailbox
            UNION ALL
            SELECT m.modseq, m.flags, m.keywords FROM unnest(p_starts, p_stops) r(s, e)
             CROSS JOIN LATERAL (SELECT * FROM messages m
                                  WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e OFFSET 0) m
        ) m
        CROSS JOIN LATERAL (
            SELECT CASE p_op WHEN 0 THEN p_flags WHEN 1 THEN m.flags | p_flags ELSE m.flags & ~p_flags END AS nf,
                   CASE WHEN p_op <> 0 AND cardinality(p_keywords) = 0 THEN m.keywords
                        ELSE pr_kwapply(p_op, m.keywords, p_keywords) END AS nk) n
         WHERE (p_unchanged > 0 AND m.modseq > p_unchanged) OR n.nf <> m.flags
            OR (n.nk IS DISTINCT FROM m.keywords AND pr_kwnorm(n.nk) <> pr_kwnorm(m.keywords)))
      INTO v_any FROM mailboxes mb WHERE mb.id = p_mailbox AND mb.account_id = p_account;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF NOT v_any THEN
        RETURN;
    END IF;

    -- 2. A flag change: asynchronous commit (see above), then the mailbox lock.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM mailboxes WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    -- MaxKeywords: checked exactly only when the cheap bound says it may be hit.
    IF p_op = 1 AND cardinality(p_keywords) > 0 AND EXISTS (
        SELECT 1 FROM (
            SELECT m.keywords FROM messages m WHERE p_starts IS NULL AND m.mailbox_id = p_mailbox
            UNION ALL
            SELECT m.keywords FROM unnest(p_starts, p_stops) r(s, e)
             CROSS JOIN LATERAL (SELECT * FROM messages m
                                  WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e OFFSET 0) m
        ) m
         WHERE cardinality(m.keywords) + cardinality(p_keywords) > 100
           AND cardinality(pr_kwapply(1, m.keywords, p_keywords)) > 100) THEN
        RAISE EXCEPTION 'too many keywords' USING ERRCODE = 'PR004';
    END IF;
    -- This statement starts after the mailbox lock is held, so its snapshot
    -- includes every committed change to the mailbox's messages.
    RETURN QUERY
    WITH sel AS (
        -- All messages, or the (disjoint) ranges, each an index range scan.
        SELECT m.* FROM messages m WHERE p_starts IS NULL AND m.mailbox_id = p_mailbox
        UNION ALL
        SELECT m.* FROM unnest(p_starts, p_stops) r(s, e)
         CROSS JOIN LATERAL (SELECT * FROM messages m
                              WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e OFFSET 0) m
    ), cur AS (
        SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size,
               n.nf, n.nk, (p_unchanged > 0 AND m.modseq > p_unchanged) AS modified
          FROM sel m
         CROSS JOIN LATERAL (
            SELECT CASE p_op WHEN 0 THEN p_flags WHEN 1 THEN m.flags | p_flags ELSE m.flags & ~p_flags END AS nf,
                   CASE WHEN p_op <> 0 AND cardinality(p_keywords) = 0 THEN m.keywords
                        ELSE pr_kwapply(p_op, m.keywords, p_keywords) END AS nk) n
    ), chg AS (
        SELECT * FROM cur
         WHERE NOT modified AND (nf <> flags OR (nk IS DISTINCT FROM keywords AND pr_kwnorm(nk) <> pr_kwnorm(keywords)))
    ), bump AS (
        UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
               msg_unseen = msg_unseen + (SELECT sum((nf & 1 = 0)::int - (flags & 1 = 0)::int) FROM chg),
               msg_deleted = msg_deleted + (SELECT sum((nf & 8 <> 0)::int - (flags & 8 <> 0)::int) FROM chg)
         WHERE id = p_mailbox AND EXISTS (SELECT 1 FROM chg)
        RETURNING highestmodseq
    ), upd AS (
        -- (uid = ANY: primary-key probes; a join to chg hashed the whole
        -- mailbox, and with the statistics of a freshly filled mailbox the
        -- generic plan scanned chg once per message: 3 s for 3,000 \Seen
        -- marks at a POP3 QUIT.) The new flags are computed again from the
        -- row, as in cur: under the mailbox lock the row is the one cur
        -- read, so they are the same, and no join is needed.
        UPDATE messages m
           SET flags = CASE p_op WHEN 0 THEN p_flags WHEN 1 THEN m.flags | p_flags ELSE m.flags & ~p_flags END,
               keywords = CASE WHEN p_op <> 0 AND cardinality(p_keywords) = 0 THEN m.keywords
                               ELSE pr_kwapply(p_op, m.keywords, p_keywords) END,
               modseq = bump.highestmodseq
          FROM bump
         WHERE m.mailbox_id = p_mailbox AND m.uid = ANY (ARRAY(SELECT uid FROM chg))
        RETURNING m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size
    )
    SELECT upd.uid, upd.modseq, upd.flags, upd.keywords, upd.internal_date, upd.size, upd.crlf_size, false FROM upd
    UNION ALL
    SELECT cur.uid, cur.modseq, cur.flags, cur.keywords, cur.internal_date, cur.size, cur.crlf_size, true FROM cur WHERE cur.modified
    ORDER BY 1;
END
$$;
