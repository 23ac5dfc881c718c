-- pr_claim_recent takes the \Recent status of the mailbox's messages (RFC
-- 3501 §2.3.2): it returns the UIDs at or above the recent watermark and
-- below uidnext, ascending, and moves the watermark to uidnext, so that
-- each UID goes to exactly one caller. Like StoreFlags it locks only the
-- mailbox row. The messages are read by a statement that starts after the
-- lock is held, so every message below the uidnext it saw is visible.
CREATE OR REPLACE FUNCTION pr_claim_recent(p_account bigint, p_mailbox bigint) RETURNS bigint[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_lo bigint;
    v_hi bigint;
BEGIN
    SELECT recent_uid, uidnext INTO v_lo, v_hi FROM mailboxes
     WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF v_lo >= v_hi THEN
        RETURN '{}';
    END IF;
    UPDATE mailboxes SET recent_uid = v_hi WHERE id = p_mailbox;
    RETURN ARRAY(SELECT uid FROM messages WHERE mailbox_id = p_mailbox AND uid >= v_lo AND uid < v_hi ORDER BY uid);
END
$$;
