-- pr_prune_expunged deletes the tombstones of one mailbox expunged before
-- p_before and returns how many. It locks only that mailbox's row (and
-- waits for nothing while holding it), so it cannot take part in a
-- deadlock; the floor and the deletion commit together, so a Changes
-- snapshot sees both or neither.
CREATE OR REPLACE FUNCTION pr_prune_expunged(p_mailbox bigint, p_before timestamptz) RETURNS integer
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
