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
--
-- The commit is asynchronous (synchronous_commit off for this
-- transaction): the attempt already happened, and a commit lost in a
-- crash of the database only means the item is tried again when its lease
-- ends: a message delivered twice, never one lost (at-least-once, as
-- Postfix after a crash between a delivery and the removal of its queue
-- file). The lease still keeps every other worker off the item until
-- then. Anything that must not be lost (a DSN, a new queue item) is
-- committed before, synchronously, by Deliver. So a finish costs no disk
-- flush to wait for. Only FinishAttempt calls this function, alone in its
-- transaction.
--
-- An attempt whose results are all final (delivered or failed) and name
-- every pending recipient ends the item: its rows are deleted without
-- being updated first.
CREATE OR REPLACE FUNCTION pr_finish_attempt(
    p_item bigint, p_holder text, p_at timestamptz, p_rcpts bigint[], p_states text[], p_codes text[],
    p_replies text[], p_mtas text[], p_next timestamptz, p_warned timestamptz)
RETURNS text
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_holder text;
    v_n integer := coalesce(cardinality(p_rcpts), 0);
    v_rows integer;
    v_pending integer;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT lease_holder INTO v_holder FROM queue_items WHERE id = p_item FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF v_holder IS DISTINCT FROM p_holder THEN
        RETURN 'lost';
    END IF;
    IF v_n > 0 AND NOT ('pending' = ANY (p_states)) THEN
        -- Ids listed twice, or not pending here, match fewer rows than
        -- there are results.
        SELECT count(*), count(*) FILTER (WHERE id = ANY (p_rcpts)) INTO v_pending, v_rows
          FROM queue_recipients WHERE item_id = p_item AND state = 'pending';
        IF v_rows <> v_n THEN
            RAISE EXCEPTION 'attempt results name recipients not pending in queue item %, or one twice', p_item
                USING ERRCODE = 'PR004';
        END IF;
        IF v_pending = v_n THEN
            PERFORM pr_queue_remove(p_id => p_item);
            RETURN 'done';
        END IF;
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
