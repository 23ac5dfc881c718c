-- pr_store_content stores a content with p_refs references and returns its
-- id. Small contents (one chunk) come with their octets (p_data) and search
-- text and are always stored anew (0010: shared only within a delivery and
-- by copies). Large ones were streamed into the pending row p_pending
-- (chunks and content_text) and content_stage, which this finalises; it
-- returns NULL when a large content with that SHA-256 exists (the caller
-- then takes references on it: contents_sha256_large).
CREATE OR REPLACE FUNCTION pr_store_content(
    p_pending bigint, p_sha bytea, p_size bigint, p_header_size bigint, p_chunk_size integer,
    p_sent_day date, p_parsed json, p_search_headers text, p_search_text text, p_data bytea, p_refs integer)
RETURNS bigint
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cid bigint;
BEGIN
    IF p_pending IS NULL THEN
        WITH c AS (
            INSERT INTO contents (sha256, size, header_size, chunk_size, refcount, sent_day, parsed, search_headers, search_text)
            VALUES (p_sha, p_size, p_header_size, p_chunk_size, p_refs, p_sent_day, p_parsed, p_search_headers, p_search_text)
            RETURNING id
        ), k AS (
            INSERT INTO chunks (content_id, seq, data) SELECT c.id, 0, p_data FROM c WHERE p_size > 0
        )
        SELECT c.id INTO v_cid FROM c;
        RETURN v_cid;
    END IF;
    BEGIN
        UPDATE contents c
           SET sha256 = p_sha, size = p_size, header_size = p_header_size, chunk_size = p_chunk_size,
               refcount = p_refs, sent_day = p_sent_day, parsed = p_parsed,
               search_headers = s.search_headers, search_text = '', text_pieces = s.text_pieces
          FROM content_stage s
         WHERE c.id = p_pending AND s.content_id = p_pending;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'pending content % has no staged search text', p_pending;
        END IF;
        RETURN p_pending;
    EXCEPTION WHEN unique_violation THEN
        RETURN NULL;
    END;
END
$$;
