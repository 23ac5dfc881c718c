-- pr_queue_remove deletes queue item p_id with its recipients and releases
-- its reference on the content (deleting the content when it was the last).
-- Returns false when there is no such item. Lock order: the item row, then
-- the content row (README.md).
--
-- When the item holds the content's last reference (always so for a
-- queue-only content, deliver.go: queueOnly) the content is deleted at
-- once, without the refcount update pr_release_contents writes first (a
-- new version of the row, and WAL, for a row deleted right after). A
-- concurrent writer that takes a reference first makes the DELETE see
-- refcount 2 once it commits (READ COMMITTED re-checks the new version),
-- and the reference is then released as usual; one that comes after
-- finds the row gone, as after any release (pr_deliver stores it anew).
CREATE OR REPLACE FUNCTION pr_queue_remove(p_id bigint) RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cid bigint;
    v_pieces integer;
BEGIN
    DELETE FROM queue_items WHERE id = p_id RETURNING content_id INTO v_cid;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM queue_recipients WHERE item_id = p_id;
    DELETE FROM contents WHERE id = v_cid AND refcount = 1 RETURNING text_pieces INTO v_pieces;
    IF NOT FOUND THEN
        PERFORM pr_release_contents(ARRAY[v_cid]);
        RETURN true;
    END IF;
    -- What pr_delete_contents deletes; a committed content has no
    -- content_stage row, and text pieces only when it says so.
    DELETE FROM chunks WHERE content_id = v_cid;
    IF v_pieces > 0 THEN
        DELETE FROM content_text WHERE content_id = v_cid;
    END IF;
    DELETE FROM deliveries WHERE content_id = v_cid;
    RETURN true;
END
$$;
