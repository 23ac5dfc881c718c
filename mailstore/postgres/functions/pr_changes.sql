-- pr_changes answers Changes in one statement (one snapshot): the mailbox's
-- highest modseq, UIDNEXT and vanished_floor, the tombstones and the
-- messages with modseq > p_since, the latter as parallel arrays in UID
-- order with their content ids (messages.go's metaArrays). No row when the mailbox is not the
-- account's. The messages are those created after p_since, which are the
-- UIDs from pr_first_new_uid on (primary key), and older ones changed after
-- p_since (partial index messages_changed). A function, so that the
-- statement keeps one generic plan: the planner would otherwise re-plan it
-- for every call.
CREATE OR REPLACE FUNCTION pr_changes(p_account bigint, p_mailbox bigint, p_since bigint)
RETURNS TABLE (r_highestmodseq bigint, r_uidnext bigint, r_vanished_floor bigint, r_vanished bigint[],
               r_uids bigint[], r_modseqs bigint[], r_flags smallint[], r_dates timestamptz[], r_sizes bigint[],
               r_crlf_sizes bigint[], r_kw_uids bigint[], r_kws text[], r_content_ids bigint[])
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
               array_agg(x.crlf_size), array_agg(x.uid) FILTER (WHERE x.kw <> ''), array_agg(x.kw) FILTER (WHERE x.kw <> ''),
               array_agg(x.content_id)
          FROM (SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' ') AS kw, m.internal_date, m.size, m.crlf_size,
                       m.content_id
                  FROM messages m WHERE m.mailbox_id = mb.id AND m.uid >= f.uid
                UNION ALL
                SELECT m.uid, m.modseq, m.flags, array_to_string(m.keywords, ' '), m.internal_date, m.size, m.crlf_size,
                       m.content_id
                  FROM messages m
                 WHERE m.mailbox_id = mb.id AND m.modseq > p_since AND m.modseq <> m.created_modseq AND m.uid < f.uid
                 ORDER BY 1) x) u
     WHERE mb.id = p_mailbox AND mb.account_id = p_account;
END
$$;
