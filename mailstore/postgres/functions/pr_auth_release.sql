-- pr_auth_release deletes the rows of one reservation (p_keys, p_at and
-- p_attempt as pr_auth_reserve recorded them; the (key, at) index finds
-- them), in flight or decided, and every row of the p_forget keys.
-- Deleting only lowers counts, so a concurrent reservation that still
-- counts the rows errs on the strict side; but two releases that forget the
-- same keys (concurrent successful logins of one user from one address)
-- delete overlapping rows, in whatever order their scans meet them, and
-- deadlocked (seen under imaptest's stress mode: the losing release's
-- reservation then stayed in flight for the whole window, and ten such
-- leaks refused the user). So it takes pr_auth_reserve's advisory locks, in
-- the same hash order, for every key it touches: deletes of one key never
-- run concurrently, and the lock order is the one every auth function uses.
CREATE OR REPLACE FUNCTION pr_auth_release(p_keys text[], p_at timestamptz, p_attempt bigint, p_forget text[]) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_bitmapscan = off AS $$
DECLARE
    v_lock integer;
BEGIN
    FOR v_lock IN SELECT DISTINCT hashtext(k) FROM unnest(CASE WHEN p_attempt IS NULL THEN '{}' ELSE p_keys END || p_forget) k ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1635087464, v_lock);
    END LOOP;
    IF p_attempt IS NOT NULL THEN
        DELETE FROM auth_failures WHERE key = ANY (p_keys) AND at = p_at AND attempt = p_attempt;
    END IF;
    IF cardinality(p_forget) > 0 THEN
        DELETE FROM auth_failures WHERE key = ANY (p_forget);
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
END
$$;
