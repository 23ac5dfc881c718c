-- pr_finish_attempt records one delivery attempt of queue item p_item by
-- its lease holder p_holder, in one transaction: each result (p_rcpts[i]
-- with p_states[i], p_codes[i], p_replies[i], p_mtas[i]) updates one
-- pending recipient of the item and counts an attempt at p_at. If some
-- recipient is still pending, the item is due again at p_next, its warning
-- mark is set to p_warned (unless NULL) and its lease released: 'pending'.
-- Otherwise the item is done: pr_queue_remove deletes it and releases its
-- content: 'done'. Nothing is recorded when the item is gone ('gone') or
-- leased to another holder ('lost'). A result for a recipient that is not
-- pending in the item, or twice, fails the call (PR004), as does a missing
-- p_next while recipients stay pending. Lock order: the item row, then the
-- content row (README.md).
CREATE OR REPLACE FUNCTION pr_finish_attempt(
    p_item bigint, p_holder text, p_at timestamptz, p_rcpts bigint[], p_states text[], p_codes text[],
    p_replies text[], p_mtas text[], p_next timestamptz, p_warned timestamptz)
RETURNS text
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_holder text;
    v_n integer := coalesce(cardinality(p_rcpts), 0);
    v_rows integer;
BEGIN
    SELECT lease_holder INTO v_holder FROM queue_items WHERE id = p_item FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF v_holder IS DISTINCT FROM p_holder THEN
        RETURN 'lost';
    END IF;
    IF v_n > 0 THEN
        UPDATE queue_recipients r
           SET state = t.s, attempts = r.attempts + 1, last_attempt = p_at,
               last_code = t.c, last_reply = t.rp, remote_mta = t.m
          FROM unnest(p_rcpts, p_states, p_codes, p_replies, p_mtas) AS t(id, s, c, rp, m)
         WHERE r.id = t.id AND r.item_id = p_item AND r.state = 'pending';
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        IF v_rows <> v_n THEN
            RAISE EXCEPTION 'attempt results name recipients not pending in queue item %, or one twice', p_item
                USING ERRCODE = 'PR004';
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM queue_recipients WHERE item_id = p_item AND state = 'pending') THEN
        IF p_next IS NULL THEN
            RAISE EXCEPTION 'queue item % has pending recipients and no next attempt time', p_item
                USING ERRCODE = 'PR004';
        END IF;
        UPDATE queue_items
           SET next_attempt = p_next, warned_at = coalesce(p_warned, warned_at), lease_holder = NULL, lease_until = NULL
         WHERE id = p_item;
        RETURN 'pending';
    END IF;
    PERFORM pr_queue_remove(p_id => p_item);
    RETURN 'done';
END
$$;
