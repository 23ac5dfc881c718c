-- pr_kwnorm: a keyword list as a sorted set of lower-cased atoms.
CREATE OR REPLACE FUNCTION pr_kwnorm(kw text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT lower(x) ORDER BY lower(x)), '{}') FROM unnest(kw) x
$$;
