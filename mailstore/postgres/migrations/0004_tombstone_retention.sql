-- Version 4: tombstones are kept for a retention period, not forever.
--
-- Every expunge leaves a tombstone (expunged) so that a client can learn
-- which of the messages it knew vanished after a mod-sequence (RFC 7162
-- VANISHED). Kept forever, they grow without bound. pr_prune_expunged
-- deletes a mailbox's tombstones older than a time and raises the mailbox's
-- vanished_floor to the highest mod-sequence it deleted. Changes since a
-- mod-sequence below the floor then cannot list every vanished UID; the
-- caller compares the UIDs it knows with the messages that exist instead.
-- RFC 7162 §4.1 allows a server that does not remember the mod-sequences of
-- expunged messages to report every expunged UID of the requested set.

ALTER TABLE expunged ADD COLUMN expunged_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX expunged_at ON expunged (expunged_at);
ALTER TABLE mailboxes ADD COLUMN vanished_floor bigint NOT NULL DEFAULT 0;

-- pr_prune_expunged deletes the tombstones of one mailbox expunged before
-- p_before and returns how many. It locks only that mailbox's row (and
-- waits for nothing while holding it), so it cannot take part in a
-- deadlock; the floor and the deletion commit together, so a Changes
-- snapshot sees both or neither.
CREATE FUNCTION pr_prune_expunged(p_mailbox bigint, p_before timestamptz) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_n integer;
    v_max bigint;
BEGIN
    PERFORM 1 FROM mailboxes WHERE id = p_mailbox FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        -- Orphans (the mailbox is gone): nobody can ask about them.
        DELETE FROM expunged WHERE mailbox_id = p_mailbox;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        RETURN v_n;
    END IF;
    WITH d AS (
        DELETE FROM expunged WHERE mailbox_id = p_mailbox AND expunged_at < p_before RETURNING modseq
    )
    SELECT count(*), max(modseq) INTO v_n, v_max FROM d;
    IF v_n > 0 THEN
        UPDATE mailboxes SET vanished_floor = greatest(vanished_floor, v_max) WHERE id = p_mailbox;
    END IF;
    RETURN v_n;
END
$$;

-- pr_changes answers Changes in one statement (one snapshot): the mailbox's
-- highest modseq, UIDNEXT and vanished_floor, the tombstones and the
-- messages with modseq > p_since, the latter as parallel arrays in UID
-- order (messages.go's metaArrays). No row when the mailbox is not the
-- account's. The messages are those created after p_since, which are the
-- UIDs from pr_first_new_uid on (primary key), and older ones changed after
-- p_since (partial index messages_changed). A function, so that the
-- statement keeps one generic plan: the planner would otherwise re-plan it
-- for every call.
CREATE FUNCTION pr_changes(p_account bigint, p_mailbox bigint, p_since bigint)
RETURNS TABLE (r_highestmodseq bigint, r_uidnext bigint, r_vanished_floor bigint, r_vanished bigint[],
               r_uids bigint[], r_modseqs bigint[], r_flags smallint[], r_dates timestamptz[], r_sizes bigint[],
               r_crlf_sizes bigint[], r_kw_uids bigint[], r_kws text[])
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    SELECT mb.highestmodseq, mb.uidnext, mb.vanished_floor,
           (SELECT array_agg(e.uid ORDER BY e.uid) FROM expunged e WHERE e.mailbox_id = mb.id AND e.modseq > p_since),
           u.*
      FROM mailboxes mb
     -- OFFSET 0: the boundary is computed once, not inlined into both scans.
     CROSS JOIN LATERAL (SELECT CASE WHEN mb.highestmodseq <= p_since THEN mb.uidnext
                                     ELSE pr_first_new_uid(mb.id, p_since, mb.uidnext) END AS uid OFFSET 0) f
     CROSS JOIN LATERAL (
        SELECT array_agg(x.uid), array_agg(x.modseq), array_agg(x.flags), array_agg(x.internal_date), array_agg(x.size),
               array_agg(x.crlf_size), array_agg(x.uid) FILTER (WHERE x.kw <> ''), array_agg(x.kw) FILTER (WHERE x.kw <> '')
          FROM (SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' ') AS kw, m.internal_date, m.size, m.crlf_size
                  FROM messages m WHERE m.mailbox_id = mb.id AND m.uid >= f.uid
                UNION ALL
                SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' '), m.internal_date, m.size, m.crlf_size
                  FROM messages m
                 WHERE m.mailbox_id = mb.id AND m.modseq > p_since AND m.modseq <> m.created_modseq AND m.uid < f.uid
                 ORDER BY 1) x) u
     WHERE mb.id = p_mailbox AND mb.account_id = p_account;
END
$$;

