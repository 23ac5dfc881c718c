-- pr_copy copies (p_move: moves) the messages of src in the ranges to dst,
-- in ascending UID order, returning the UID pairs with dst's new highest
-- modseq (that of the copies) and, for a move, src's (that of the
-- tombstones; 0 for a copy). Each raises its mailbox's highest modseq by
-- exactly one, so a session that knew the mailbox at that value minus one
-- knows it still. The source messages are read by index, range by range and
-- UID by UID (LATERAL subqueries kept apart by OFFSET 0: as plain joins, the
-- generic plans read the whole source mailbox while holding both mailboxes
-- and the account).
CREATE OR REPLACE FUNCTION pr_copy(p_account bigint, p_src bigint, p_dst bigint, p_starts bigint[], p_stops bigint[],
                        p_move boolean)
RETURNS TABLE (r_src bigint, r_dst bigint, r_uidvalidity bigint, r_modseq bigint, r_src_modseq bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_uids bigint[];
    v_cids bigint[];
    v_bytes bigint;
    v_first bigint;
    v_modseq bigint;
    v_src_modseq bigint := 0;
    v_uidvalidity bigint;
    v_limit bigint;
    v_used bigint;
    v_mlimit bigint;
    v_mused bigint;
    v_unseen bigint;
    v_deleted bigint;
BEGIN
    SELECT quota_limit, quota_used, msg_limit, msg_used INTO v_limit, v_used, v_mlimit, v_mused
      FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
    END IF;
    IF (SELECT count(*) FROM (SELECT 1 FROM mailboxes WHERE id IN (p_src, p_dst) AND account_id = p_account
                               ORDER BY id FOR NO KEY UPDATE) l) <> (CASE WHEN p_src = p_dst THEN 1 ELSE 2 END) THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    SELECT array_agg(uid ORDER BY uid), array_agg(content_id ORDER BY uid), sum(size),
           count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
      INTO v_uids, v_cids, v_bytes, v_unseen, v_deleted
      FROM unnest(p_starts, p_stops) r(s, e)
     CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.mailbox_id = p_src AND m.uid BETWEEN r.s AND r.e OFFSET 0) m;
    IF v_uids IS NULL THEN
        RETURN;
    END IF;
    IF NOT p_move THEN
        -- A copy is charged in octets and messages (RFC 9208 §5.1, §5.2); a
        -- move stays in the account's one quota root and changes neither.
        IF (v_limit > 0 AND v_used + v_bytes > v_limit)
           OR (v_mlimit > 0 AND v_mused + cardinality(v_uids) > v_mlimit) THEN
            RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = p_account::text;
        END IF;
        PERFORM 1 FROM contents WHERE id = ANY (v_cids) ORDER BY id FOR NO KEY UPDATE;
        UPDATE contents c SET refcount = c.refcount + d.n
          FROM (SELECT x AS id, count(*) AS n FROM unnest(v_cids) x GROUP BY x) d
         WHERE c.id = d.id;
        UPDATE accounts SET quota_used = quota_used + v_bytes, msg_used = msg_used + cardinality(v_uids)
         WHERE id = p_account;
    END IF;
    UPDATE mailboxes SET uidnext = uidnext + cardinality(v_uids), highestmodseq = highestmodseq + 1,
           msg_count = msg_count + cardinality(v_uids), msg_size = msg_size + v_bytes,
           msg_unseen = msg_unseen + v_unseen, msg_deleted = msg_deleted + v_deleted
     WHERE id = p_dst
    RETURNING uidnext - cardinality(v_uids), highestmodseq, uidvalidity INTO v_first, v_modseq, v_uidvalidity;
    INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
    SELECT p_dst, v_first + s.i - 1, v_modseq, v_modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size, m.content_id
      FROM unnest(v_uids) WITH ORDINALITY AS s(uid, i)
     CROSS JOIN LATERAL (SELECT * FROM messages m WHERE m.mailbox_id = p_src AND m.uid = s.uid OFFSET 0) m;
    IF p_move THEN
        DELETE FROM messages WHERE mailbox_id = p_src AND uid = ANY (v_uids);
        UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
               msg_count = msg_count - cardinality(v_uids), msg_size = msg_size - v_bytes,
               msg_unseen = msg_unseen - v_unseen, msg_deleted = msg_deleted - v_deleted
         WHERE id = p_src RETURNING highestmodseq INTO v_src_modseq;
        INSERT INTO expunged (mailbox_id, uid, modseq)
        SELECT p_src, u, v_src_modseq FROM unnest(v_uids) u
        ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq;
    END IF;
    RETURN QUERY SELECT s.uid, v_first + s.i - 1, v_uidvalidity, v_modseq, v_src_modseq
                   FROM unnest(v_uids) WITH ORDINALITY AS s(uid, i) ORDER BY s.i;
END
$$;
