-- pr_delete_mailboxes deletes mailboxes of one account with their messages
-- and tombstones, releasing contents and quota.
CREATE OR REPLACE FUNCTION pr_delete_mailboxes(p_account bigint, p_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cids bigint[];
    v_bytes bigint;
    v_msgs bigint;
    v_n integer;
BEGIN
    PERFORM 1 FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    PERFORM 1 FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account ORDER BY id FOR UPDATE;
    WITH d AS (
        DELETE FROM messages m USING mailboxes mb
         WHERE m.mailbox_id = mb.id AND mb.id = ANY (p_ids) AND mb.account_id = p_account
        RETURNING m.content_id, m.size
    )
    SELECT array_agg(content_id), coalesce(sum(size), 0), count(*) INTO v_cids, v_bytes, v_msgs FROM d;
    DELETE FROM expunged WHERE mailbox_id = ANY (ARRAY(SELECT id FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account));
    DELETE FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_msgs <> 0 THEN
        UPDATE accounts SET quota_used = quota_used - v_bytes, msg_used = msg_used - v_msgs WHERE id = p_account;
    END IF;
    PERFORM pr_release_contents(v_cids);
    RETURN v_n;
END
$$;
