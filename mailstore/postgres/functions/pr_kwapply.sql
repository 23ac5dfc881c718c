-- pr_kwapply computes a message's new keywords for a STORE (p_op 0 replace,
-- 1 add, 2 remove); keywords compare case-insensitively and keep the case
-- first used.
CREATE OR REPLACE FUNCTION pr_kwapply(p_op integer, p_old text[], p_kw text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_op
        WHEN 0 THEN p_kw
        WHEN 1 THEN p_old || ARRAY(
            SELECT k FROM unnest(p_kw) WITH ORDINALITY AS u(k, i)
             WHERE lower(k) <> ALL (SELECT lower(x) FROM unnest(p_old) x) ORDER BY i)
        ELSE ARRAY(
            SELECT x FROM unnest(p_old) WITH ORDINALITY AS u(x, i)
             WHERE lower(x) <> ALL (SELECT lower(k) FROM unnest(p_kw) k) ORDER BY i)
    END
$$;
