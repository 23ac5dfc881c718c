-- pr_set_metadata sets and removes METADATA entries (RFC 5464 §4.3) of a
-- mailbox (p_mailbox = '': the server) of an account, all or none: a
-- NULL in p_values removes that entry. Raises PR001 when the mailbox does
-- not exist, PR005 when an object would hold more than p_max_object
-- entries or the account more than p_max_account (the caller checks
-- names and value sizes).
--
-- Writers of one account's entries take turns on a transaction-level
-- advisory lock keyed by the account (so that the counts hold), never on
-- the account row, which deliveries lock for its quota: setting entries
-- never waits for mail nor mail for entries. The mailbox row is only
-- read (a key-share lock by the foreign key of an inserted row keeps it
-- from being deleted until commit).
CREATE OR REPLACE FUNCTION pr_set_metadata(p_account bigint, p_mailbox text, p_names text[], p_values bytea[],
                                           p_max_object integer, p_max_account integer) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_mid bigint;
    v_n   bigint;
BEGIN
    IF p_mailbox <> '' THEN
        SELECT id INTO v_mid FROM mailboxes WHERE account_id = p_account AND name = p_mailbox;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('pr_metadata', p_account));
    DELETE FROM metadata m
     USING unnest(p_names, p_values) AS e(name, value)
     WHERE m.account_id = p_account AND coalesce(m.mailbox_id, 0) = coalesce(v_mid, 0) AND m.name = e.name
       AND e.value IS NULL;
    BEGIN
        INSERT INTO metadata (account_id, mailbox_id, name, value)
        SELECT p_account, v_mid, e.name, e.value FROM unnest(p_names, p_values) AS e(name, value)
         WHERE e.value IS NOT NULL
        ON CONFLICT (account_id, coalesce(mailbox_id, 0), name) DO UPDATE SET value = excluded.value;
    EXCEPTION WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001'; -- deleted meanwhile
    END;
    SELECT count(*) INTO v_n FROM metadata WHERE account_id = p_account AND coalesce(mailbox_id, 0) = coalesce(v_mid, 0);
    IF v_n > p_max_object THEN
        RAISE EXCEPTION 'too many metadata entries' USING ERRCODE = 'PR005';
    END IF;
    SELECT count(*) INTO v_n FROM metadata WHERE account_id = p_account;
    IF v_n > p_max_account THEN
        RAISE EXCEPTION 'too many metadata entries' USING ERRCODE = 'PR005';
    END IF;
END
$$;
