-- pr_enqueue queues content p_content for remote recipients: one queue item,
-- due at once, holding one reference on the content (the caller has taken
-- it: pr_deliver counts the item among the content's references), and one
-- pending recipient row per address, their ids ascending in array order.
-- Returns the item's id. Both rows are new: nothing here waits for a lock.
CREATE OR REPLACE FUNCTION pr_enqueue(
    p_content bigint, p_size bigint, p_mail_from text, p_sender_account bigint, p_params jsonb,
    p_addresses text[], p_domains text[], p_orcpts text[], p_notifies text[])
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_id bigint;
    v_n integer := coalesce(cardinality(p_addresses), 0);
BEGIN
    IF v_n = 0 OR cardinality(p_domains) IS DISTINCT FROM v_n OR cardinality(p_orcpts) IS DISTINCT FROM v_n
       OR cardinality(p_notifies) IS DISTINCT FROM v_n THEN
        RAISE EXCEPTION 'remote recipients: arrays of unequal length' USING ERRCODE = 'PR004';
    END IF;
    INSERT INTO queue_items (content_id, mail_from, sender_account, params, size)
    VALUES (p_content, coalesce(p_mail_from, ''), coalesce(p_sender_account, 0), coalesce(p_params, '{}'), p_size)
    RETURNING id INTO v_id;
    INSERT INTO queue_recipients (item_id, address, domain, orcpt, notify)
    SELECT v_id, t.a, t.d, coalesce(t.o, ''), coalesce(t.n, '')
      FROM unnest(p_addresses, p_domains, p_orcpts, p_notifies) WITH ORDINALITY AS t(a, d, o, n, i)
     ORDER BY t.i;
    RETURN v_id;
END
$$;
