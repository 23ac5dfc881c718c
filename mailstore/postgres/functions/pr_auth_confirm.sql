-- pr_auth_confirm marks the rows of one reservation (p_keys, p_at and
-- p_attempt as pr_auth_reserve recorded them; the (key, at) index finds
-- them) decided: the attempt's password was wrong, so from now on it counts
-- for the delay of later attempts too, not only for the refusal limits.
-- Rows already gone (released, forgotten by a successful login, pruned)
-- stay gone. It changes no count the limits use, but its rows may be the
-- ones a concurrent release deletes, so it takes the same advisory locks as
-- pr_auth_reserve and pr_auth_release (hash order) and cannot deadlock
-- with them.
--
-- Commits are asynchronous, as in pr_auth_reserve: a database crash may
-- forget the last fraction of a second of confirms, whose rows then stay in
-- flight. They still count for the refusal limits, the bound on guessing;
-- only their part in the delay, a slow-down, is lost. Visibility to the
-- other nodes does not wait for the WAL flush.
CREATE OR REPLACE FUNCTION pr_auth_confirm(p_keys text[], p_at timestamptz, p_attempt bigint) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_bitmapscan = off AS $$
DECLARE
    v_lock integer;
BEGIN
    FOR v_lock IN SELECT DISTINCT hashtext(k) FROM unnest(p_keys) k ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1635087464, v_lock);
    END LOOP;
    UPDATE auth_failures SET in_flight = false
     WHERE key = ANY (p_keys) AND at = p_at AND attempt = p_attempt AND in_flight;
    PERFORM set_config('synchronous_commit', 'off', true);
END
$$;
