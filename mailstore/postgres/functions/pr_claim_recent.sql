-- pr_claim_recent takes the \Recent status of the mailbox's messages (RFC
-- 3501 §2.3.2): it returns the UIDs at or above the recent watermark and
-- below uidnext, ascending, and moves the watermark to uidnext, so that
-- each UID goes to exactly one caller.
--
-- The watermark is the mailbox's mailbox_recent row (1 without one;
-- migration 0009), locked only by claims: a claim never locks the mailbox
-- row, which deliveries, flag changes and expunges queue for. With nothing
-- to claim (every SELECT and NOOP of a mailbox that got no new mail since
-- the last claim) it answers from one plain snapshot read: no lock, no
-- transaction id, no commit record. A claim commits without waiting for
-- the WAL flush (synchronous_commit off for the calling transaction, see
-- pr_store_flags): a database crash can at worst give the same messages'
-- \Recent to a second session, never lose a message.
CREATE OR REPLACE FUNCTION pr_claim_recent(p_account bigint, p_mailbox bigint) RETURNS bigint[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_lo bigint;
    v_hi bigint;
BEGIN
    SELECT coalesce(r.recent_uid, 1), mb.uidnext INTO v_lo, v_hi
      FROM mailboxes mb LEFT JOIN mailbox_recent r ON r.mailbox_id = mb.id
     WHERE mb.id = p_mailbox AND mb.account_id = p_account;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF v_lo >= v_hi THEN
        RETURN '{}';
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    -- The watermark row, locked: claims of the mailbox take turns here.
    -- (A locking read returns the newest version: the previous claim's.)
    SELECT recent_uid INTO v_lo FROM mailbox_recent WHERE mailbox_id = p_mailbox FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        BEGIN
            INSERT INTO mailbox_recent (mailbox_id, recent_uid) VALUES (p_mailbox, 1) ON CONFLICT (mailbox_id) DO NOTHING;
        EXCEPTION WHEN foreign_key_violation THEN
            RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001'; -- deleted meanwhile
        END;
        SELECT recent_uid INTO v_lo FROM mailbox_recent WHERE mailbox_id = p_mailbox FOR NO KEY UPDATE;
    END IF;
    -- A statement that starts after the lock is held: it sees the uidnext
    -- of every delivery committed before, and the messages below it.
    SELECT uidnext INTO v_hi FROM mailboxes WHERE id = p_mailbox;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF v_lo >= v_hi THEN
        RETURN '{}';
    END IF;
    UPDATE mailbox_recent SET recent_uid = v_hi WHERE mailbox_id = p_mailbox;
    RETURN ARRAY(SELECT uid FROM messages WHERE mailbox_id = p_mailbox AND uid >= v_lo AND uid < v_hi ORDER BY uid);
END
$$;
