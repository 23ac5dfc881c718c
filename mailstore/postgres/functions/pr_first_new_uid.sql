-- pr_first_new_uid returns the lowest UID from which every message of the
-- mailbox was created after p_since (created_modseq > p_since); p_uidnext
-- when there is none. created_modseq never decreases with the UID, so the
-- boundary is found by probing the primary key: the newest message first
-- (nothing new: one probe), then downward in doubling steps and a binary
-- search between the last two, about 2·log2(k) probes for k new messages.
-- STABLE, so it reads with the snapshot of the statement that calls it.
CREATE OR REPLACE FUNCTION pr_first_new_uid(p_mailbox bigint, p_since bigint, p_uidnext bigint) RETURNS bigint
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_uid bigint;
    v_cm bigint;
    v_lo bigint := 1;       -- every message below v_lo is old
    v_hi bigint;            -- every message from v_hi on is new
    v_step bigint := 1;
    v_mid bigint;
BEGIN
    SELECT uid, created_modseq INTO v_uid, v_cm FROM messages WHERE mailbox_id = p_mailbox ORDER BY uid DESC LIMIT 1;
    IF NOT FOUND OR v_cm <= p_since THEN
        RETURN p_uidnext;
    END IF;
    v_hi := v_uid;
    -- Gallop down from the newest message.
    LOOP
        v_mid := v_hi - v_step;
        IF v_mid <= v_lo THEN
            EXIT;
        END IF;
        SELECT uid, created_modseq INTO v_uid, v_cm FROM messages
         WHERE mailbox_id = p_mailbox AND uid >= v_mid ORDER BY uid LIMIT 1;
        IF v_cm > p_since THEN
            v_hi := v_mid;          -- no message lies in [v_mid, v_uid)
            v_step := v_step * 2;
        ELSE
            v_lo := v_uid + 1;
            EXIT;
        END IF;
    END LOOP;
    -- Binary search in [v_lo, v_hi].
    WHILE v_lo < v_hi LOOP
        v_mid := v_lo + (v_hi - v_lo) / 2;
        SELECT uid, created_modseq INTO v_uid, v_cm FROM messages
         WHERE mailbox_id = p_mailbox AND uid >= v_mid ORDER BY uid LIMIT 1;
        IF v_cm > p_since THEN
            v_hi := v_mid;
        ELSE
            v_lo := v_uid + 1;
        END IF;
    END LOOP;
    RETURN v_lo;
END
$$;
