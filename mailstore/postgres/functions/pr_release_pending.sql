-- pr_release_pending releases the contents of up to p_limit pending
-- releases (content_releases, 0009: one row per expunge, written in its
-- transaction) and deletes those rows; it returns how many it took. Rows
-- another caller holds are skipped, so any number of nodes may drain at
-- once. Lock order: the pending rows, then the content rows in id order
-- (pr_release_contents); nothing that holds a content row waits for a
-- pending row (pr_expunge only inserts them).
--
-- The commit is asynchronous (synchronous_commit off for this transaction):
-- the messages are gone already, committed synchronously by the expunge;
-- this frees storage nobody references. A commit lost in a database crash
-- is undone whole (the pending rows come back with the references) and is
-- redone by the next drain.
CREATE OR REPLACE FUNCTION pr_release_pending(p_limit integer) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_rows tid[];
    v_ids bigint[];
BEGIN
    v_rows := ARRAY(SELECT ctid FROM content_releases LIMIT p_limit FOR UPDATE SKIP LOCKED);
    IF cardinality(v_rows) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH d AS (
        DELETE FROM content_releases WHERE ctid = ANY (v_rows) RETURNING content_ids
    )
    SELECT array_agg(x) INTO v_ids FROM d, unnest(d.content_ids) x;
    PERFORM pr_release_contents(v_ids);
    RETURN cardinality(v_rows);
END
$$;
