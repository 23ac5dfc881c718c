-- pr_queue_remove deletes queue item p_id with its recipients and releases
-- its reference on the content (deleting the content when it was the last).
-- Returns false when there is no such item. Lock order: the item row, then
-- the content row (README.md).
CREATE OR REPLACE FUNCTION pr_queue_remove(p_id bigint) RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cid bigint;
BEGIN
    DELETE FROM queue_items WHERE id = p_id RETURNING content_id INTO v_cid;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM queue_recipients WHERE item_id = p_id;
    PERFORM pr_release_contents(ARRAY[v_cid]);
    RETURN true;
END
$$;
