-- pr_expunge removes messages of one mailbox (all when p_starts is NULL;
-- else those in the ranges; with p_only_deleted only those with \Deleted),
-- leaving tombstones and releasing quota. Their contents are released after
-- the commit, outside the mailbox lock: the function records them in
-- content_releases, and the caller runs pr_release_pending (0009).
--
-- An expunge that finds nothing to remove (half of the EXPUNGEs under
-- imaptest stress; every CLOSE of a mailbox without \Deleted messages) is
-- answered from one plain snapshot read: no row lock, no transaction id,
-- no commit record to flush, nothing for a delivery to wait behind. That
-- is exact: the snapshot saw no message to remove, so the expunge takes
-- effect at that snapshot; a \Deleted stored by a transaction that commits
-- after it is ordered after this expunge, and the next expunge removes the
-- message. The mailbox's msg_deleted counter (kept exact in the same
-- transactions as the flags, same snapshot) answers the common \Deleted
-- case without reading a message, and the partial index messages_deleted
-- the others.
CREATE OR REPLACE FUNCTION pr_expunge(p_account bigint, p_mailbox bigint, p_starts bigint[], p_stops bigint[],
                           p_only_deleted boolean, OUT o_uids bigint[], OUT o_highestmodseq bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cids bigint[];
    v_bytes bigint;
    v_unseen bigint;
    v_deleted bigint;
    v_any boolean;
    v_sel bigint[];
BEGIN
    SELECT mb.highestmodseq,
           CASE WHEN p_only_deleted THEN
                    mb.msg_deleted > 0 AND EXISTS (
                        SELECT 1 FROM messages m WHERE m.mailbox_id = p_mailbox AND m.flags & 8 <> 0
                           AND (p_starts IS NULL OR EXISTS (
                                SELECT 1 FROM unnest(p_starts, p_stops) r(s, e) WHERE m.uid BETWEEN r.s AND r.e)))
                WHEN p_starts IS NULL THEN mb.msg_count > 0
                ELSE EXISTS (SELECT 1 FROM unnest(p_starts, p_stops) r(s, e)
                              CROSS JOIN LATERAL (SELECT 1 FROM messages m
                                                   WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e
                                                   LIMIT 1) m) END
      INTO o_highestmodseq, v_any
      FROM mailboxes mb WHERE mb.id = p_mailbox AND mb.account_id = p_account;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF NOT v_any THEN
        o_uids := '{}';
        RETURN;
    END IF;

    -- Something to remove: lock order account, mailbox, contents (README.md).
    PERFORM 1 FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    SELECT highestmodseq INTO o_highestmodseq FROM mailboxes
     WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF p_starts IS NULL AND NOT p_only_deleted THEN
        WITH d AS (
            DELETE FROM messages m WHERE m.mailbox_id = p_mailbox
            RETURNING m.uid, m.content_id, m.size, m.flags
        )
        SELECT array_agg(uid ORDER BY uid), array_agg(content_id), sum(size),
               count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
          INTO o_uids, v_cids, v_bytes, v_unseen, v_deleted FROM d;
    ELSE
        -- The UIDs to remove, read by index while the mailbox is locked:
        -- \Deleted messages through the partial index messages_deleted
        -- (0009), as many rows as there are \Deleted messages, not the
        -- whole mailbox, each tested against the ranges; otherwise the
        -- ranges as index range scans (a LATERAL subquery kept apart by
        -- OFFSET 0: as a plain join, the generic plan read every message
        -- of the mailbox).
        IF p_only_deleted THEN
            v_sel := ARRAY(SELECT m.uid FROM messages m WHERE m.mailbox_id = p_mailbox AND m.flags & 8 <> 0
                              AND (p_starts IS NULL OR EXISTS (
                                   SELECT 1 FROM unnest(p_starts, p_stops) r(s, e) WHERE m.uid BETWEEN r.s AND r.e)));
        ELSE
            v_sel := ARRAY(SELECT m.uid FROM unnest(p_starts, p_stops) r(s, e)
                            CROSS JOIN LATERAL (SELECT m.uid FROM messages m
                                                 WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e OFFSET 0) m);
        END IF;
        WITH d AS (
            DELETE FROM messages m WHERE m.mailbox_id = p_mailbox AND m.uid = ANY (v_sel)
            RETURNING m.uid, m.content_id, m.size, m.flags
        )
        SELECT array_agg(uid ORDER BY uid), array_agg(content_id), sum(size),
               count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
          INTO o_uids, v_cids, v_bytes, v_unseen, v_deleted FROM d;
    END IF;
    IF o_uids IS NULL THEN
        -- Removed meanwhile by another expunge: this one took effect then.
        o_uids := '{}';
        RETURN;
    END IF;
    UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
           msg_count = msg_count - cardinality(o_uids), msg_size = msg_size - v_bytes,
           msg_unseen = msg_unseen - v_unseen, msg_deleted = msg_deleted - v_deleted
     WHERE id = p_mailbox
    RETURNING highestmodseq INTO o_highestmodseq;
    INSERT INTO expunged (mailbox_id, uid, modseq)
    SELECT p_mailbox, u, o_highestmodseq FROM unnest(o_uids) u
    ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq;
    UPDATE accounts SET quota_used = quota_used - v_bytes, msg_used = msg_used - cardinality(o_uids)
     WHERE id = p_account;
    -- The contents are released after the commit (pr_release_pending).
    INSERT INTO content_releases (content_ids) VALUES (v_cids);
END
$$;
