-- pr_delete_contents deletes contents with their chunks, text pieces and
-- deliveries.
CREATE OR REPLACE FUNCTION pr_delete_contents(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;
    DELETE FROM chunks WHERE content_id = ANY (p_ids);
    DELETE FROM content_text WHERE content_id = ANY (p_ids);
    DELETE FROM deliveries WHERE content_id = ANY (p_ids);
    DELETE FROM content_stage WHERE content_id = ANY (p_ids);
    DELETE FROM contents WHERE id = ANY (p_ids);
END
$$;
