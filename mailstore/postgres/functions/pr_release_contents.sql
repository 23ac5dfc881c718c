-- pr_release_contents drops one reference per listed content id (ids repeat
-- once per message) and deletes contents nobody references any more.
CREATE OR REPLACE FUNCTION pr_release_contents(p_ids bigint[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF p_ids IS NULL OR cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;
    PERFORM 1 FROM contents WHERE id = ANY (p_ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE contents c SET refcount = c.refcount - d.n
      FROM (SELECT x AS id, count(*) AS n FROM unnest(p_ids) x GROUP BY x) d
     WHERE c.id = d.id;
    PERFORM pr_delete_contents(ARRAY(SELECT id FROM contents WHERE id = ANY (p_ids) AND refcount <= 0));
END
$$;
