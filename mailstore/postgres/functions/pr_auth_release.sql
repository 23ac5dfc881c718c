-- pr_auth_release deletes the rows of one reservation (p_keys, p_at and
-- p_attempt as pr_auth_reserve recorded them; the (key, at) index finds
-- them), in flight or decided, and every row of the p_forget keys. It needs
-- no lock: deleting only lowers counts, so a concurrent reservation that
-- still counts the rows errs on the strict side.
CREATE OR REPLACE FUNCTION pr_auth_release(p_keys text[], p_at timestamptz, p_attempt bigint, p_forget text[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_bitmapscan = off AS $$
BEGIN
    IF p_attempt IS NOT NULL THEN
        DELETE FROM auth_failures WHERE key = ANY (p_keys) AND at = p_at AND attempt = p_attempt;
    END IF;
    IF cardinality(p_forget) > 0 THEN
        DELETE FROM auth_failures WHERE key = ANY (p_forget);
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
END
$$;
