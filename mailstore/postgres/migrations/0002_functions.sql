-- Server-side write paths. Each runs as one statement, so a write costs one
-- round trip and holds the hot row locks (account quota row, mailbox UIDNEXT
-- row) only for the few statements between taking them and commit.
--
-- Lock order, everywhere: accounts (ascending id), then mailboxes and
-- contents. Every write that locks more than one mailbox or content row,
-- or a mailbox and a content row, first locks the account, so such writes
-- of one account are serialised by the account row and writes of different
-- accounts never wait for each other in a cycle (a mailbox belongs to one
-- account). StoreFlags locks only its mailbox. Multiple rows of a table are
-- locked in ascending id order, with one exception: a delivery that targets
-- at most one mailbox per account locks those mailboxes in any order (by
-- the UPDATE that allocates their UIDs; see pr_deliver). That cannot close a
-- cycle: it holds every one of those accounts' locks first, so each of its
-- mailboxes can be held only by a writer that waits for no row (StoreFlags,
-- pr_claim_recent) or for other mailboxes of that same account only (a
-- rename of a tree), and of those the delivery holds none.
-- Every write of a mailbox's messages holds that mailbox's row lock, so a
-- statement run after taking it sees a stable set of messages.
--
-- Every plpgsql function runs with plan_cache_mode = force_generic_plan:
-- custom plans would re-plan every statement on every call, which measured
-- as most of the database CPU of a delivery; the generic plans are as good
-- here (UID ranges always arrive as arrays joined to the primary key).
--
-- Errors raised for the Go side (SQLSTATE class PR):
--   PR001 no such mailbox, PR002 no such account, PR003 over quota (DETAIL:
--   account ids), PR004 invalid argument.

-- pr_kwnorm: a keyword list as a sorted set of lower-cased atoms.
CREATE FUNCTION pr_kwnorm(kw text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT lower(x) ORDER BY lower(x)), '{}') FROM unnest(kw) x
$$;

-- pr_delete_contents deletes contents with their chunks, text pieces and
-- deliveries.
CREATE FUNCTION pr_delete_contents(p_ids bigint[]) RETURNS void
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

-- pr_release_contents drops one reference per listed content id (ids repeat
-- once per message) and deletes contents nobody references any more.
CREATE FUNCTION pr_release_contents(p_ids bigint[]) RETURNS void
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

-- pr_store_content stores a content that is not stored yet, with p_refs
-- references, and returns its id; NULL when a content with that SHA-256
-- exists (the caller then takes references on it). Small contents come
-- with their octets (p_data) and search text; large ones were streamed into
-- the pending row p_pending (chunks and content_text) and content_stage,
-- which this finalises.
CREATE FUNCTION pr_store_content(
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
            ON CONFLICT (sha256) DO NOTHING
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

-- pr_deliver stores one content for several target mailboxes.
-- Targets: p_accounts[i] with either p_mailboxes[i] (an id, checked to
-- belong to the account) or, when p_mailboxes is NULL, p_names[i]. Targets
-- must be distinct. Keywords per target are space-separated atoms. The
-- result is one row of arrays, element i for target i (one row of arrays
-- costs the caller far less than a row per target).
-- The content is either p_data (small, one chunk, p_pending NULL) or an
-- already streamed pending row p_pending (chunks and text pieces written,
-- sha256 NULL, its header search text in content_stage). p_crlf_size goes
-- to every message row. The common single-target case with new content runs
-- three statements; a delivery to many accounts runs five (content, account
-- locks with the quota check, quota charge, then one statement that
-- allocates UIDs in every mailbox and inserts every message row), each
-- set-based, so a recipient costs a few rows' work, not statements.
CREATE FUNCTION pr_deliver(
    p_pending bigint, p_sha bytea, p_size bigint, p_crlf_size bigint, p_header_size bigint, p_chunk_size integer,
    p_sent_day date, p_parsed json, p_search_headers text, p_search_text text, p_data bytea,
    p_accounts bigint[], p_mailboxes bigint[], p_names text[], p_flags smallint[], p_keywords text[],
    p_internal_date timestamptz, p_mail_from text, p_params jsonb,
    OUT r_accounts bigint[], OUT r_mailboxes bigint[], OUT r_uids bigint[], OUT r_uidvalidities bigint[])
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_n integer := cardinality(p_accounts);
    v_cid bigint;
    v_naccounts integer;
    v_over bigint[];
    v_rows integer;
    v_over1 boolean;
    v_mid bigint;
    v_uid bigint;
    v_modseq bigint;
    v_uidvalidity bigint;
BEGIN
    -- 1. New content needs no lock anyone else waits for: store it before
    -- taking the hot locks. (A concurrent insert of the same content makes
    -- us wait for that transaction while we hold nothing.)
    v_cid := pr_store_content(p_pending, p_sha, p_size, p_header_size, p_chunk_size, p_sent_day, p_parsed,
                              p_search_headers, p_search_text, p_data, v_n);

    -- 2. Accounts: lock in id order, charge and check quota.
    IF v_n = 1 THEN
        UPDATE accounts SET quota_used = quota_used + p_size WHERE id = p_accounts[1]
        RETURNING quota_limit > 0 AND quota_used > quota_limit INTO v_over1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
        END IF;
        IF v_over1 THEN
            RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = p_accounts[1]::text;
        END IF;
    ELSE
        -- One statement locks the accounts in id order and checks their
        -- quota: a locking read returns each row's newest version, so
        -- quota_used is exact. When the accounts are distinct and all exist
        -- (the common case) the charge is then one plain UPDATE of rows
        -- this transaction already holds.
        SELECT count(*), array_agg(l.id ORDER BY l.id) FILTER (WHERE l.quota_limit > 0 AND l.quota_used + p_size > l.quota_limit)
          INTO v_naccounts, v_over
          FROM (SELECT id, quota_limit, quota_used FROM accounts WHERE id = ANY (p_accounts) ORDER BY id FOR NO KEY UPDATE) l;
        IF v_naccounts = v_n THEN
            IF v_over IS NOT NULL THEN
                RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = array_to_string(v_over, ',');
            END IF;
            UPDATE accounts SET quota_used = quota_used + p_size WHERE id = ANY (p_accounts);
        ELSE
            -- Several targets in one account (or a missing account): charge
            -- each account once per target it has.
            WITH need AS (
                SELECT a, count(*) * p_size AS bytes FROM unnest(p_accounts) a GROUP BY a
            ), u AS (
                UPDATE accounts ac SET quota_used = ac.quota_used + need.bytes FROM need WHERE ac.id = need.a
                RETURNING ac.id, ac.quota_limit > 0 AND ac.quota_used > ac.quota_limit AS over
            )
            SELECT count(*), array_agg(u.id ORDER BY u.id) FILTER (WHERE u.over) INTO v_naccounts, v_over FROM u;
            IF v_naccounts <> (SELECT count(DISTINCT a) FROM unnest(p_accounts) a) THEN
                RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
            END IF;
            IF v_over IS NOT NULL THEN
                RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = array_to_string(v_over, ',');
            END IF;
        END IF;
    END IF;

    -- 3. Known content: one more reference per target, under the account
    -- locks (an expunge of the same account releases contents under them).
    IF v_cid IS NULL THEN
        LOOP
            UPDATE contents SET refcount = refcount + v_n WHERE sha256 = p_sha RETURNING id INTO v_cid;
            IF FOUND THEN
                IF p_pending IS NOT NULL THEN
                    PERFORM pr_delete_contents(ARRAY[p_pending]);
                END IF;
                EXIT;
            END IF;
            -- Deleted meanwhile by an expunge elsewhere: store it after all.
            v_cid := pr_store_content(p_pending, p_sha, p_size, p_header_size, p_chunk_size, p_sent_day, p_parsed,
                                      p_search_headers, p_search_text, p_data, v_n);
            EXIT WHEN v_cid IS NOT NULL;
        END LOOP;
    END IF;
    IF p_pending IS NOT NULL THEN
        DELETE FROM content_stage WHERE content_id = p_pending;
    END IF;
    IF p_params IS NOT NULL THEN
        INSERT INTO deliveries (content_id, mail_from, params) VALUES (v_cid, coalesce(p_mail_from, ''), p_params);
    END IF;

    -- 4. Mailboxes: allocate UIDs and mod-sequences, insert the message
    -- rows. Ownership: the account id is in every join. With several
    -- targets, the mailboxes are first locked in id order only when some
    -- account has more than one of them (v_naccounts < v_n); otherwise the
    -- UPDATE takes their locks in any order, which cannot deadlock (see the
    -- top of this file) and saves a locking pass over every mailbox.
    IF v_n = 1 THEN
        IF p_mailboxes IS NULL THEN
            UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
                   msg_count = msg_count + 1, msg_size = msg_size + p_size,
                   msg_unseen = msg_unseen + (p_flags[1] & 1 = 0)::int,
                   msg_deleted = msg_deleted + (p_flags[1] & 8 <> 0)::int
             WHERE account_id = p_accounts[1] AND name = p_names[1]
            RETURNING id, uidnext - 1, highestmodseq, uidvalidity INTO v_mid, v_uid, v_modseq, v_uidvalidity;
        ELSE
            UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1,
                   msg_count = msg_count + 1, msg_size = msg_size + p_size,
                   msg_unseen = msg_unseen + (p_flags[1] & 1 = 0)::int,
                   msg_deleted = msg_deleted + (p_flags[1] & 8 <> 0)::int
             WHERE id = p_mailboxes[1] AND account_id = p_accounts[1]
            RETURNING id, uidnext - 1, highestmodseq, uidvalidity INTO v_mid, v_uid, v_modseq, v_uidvalidity;
        END IF;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
        END IF;
        INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, crlf_size, content_id)
        VALUES (v_mid, v_uid, v_modseq, p_flags[1],
                CASE WHEN p_keywords[1] = '' THEN '{}'::text[] ELSE string_to_array(p_keywords[1], ' ') END,
                p_internal_date, p_size, p_crlf_size, v_cid);
        r_accounts := p_accounts;
        r_mailboxes := ARRAY[v_mid];
        r_uids := ARRAY[v_uid];
        r_uidvalidities := ARRAY[v_uidvalidity];
        RETURN;
    END IF;
    IF p_mailboxes IS NULL THEN
        IF v_naccounts < v_n THEN
            PERFORM 1 FROM mailboxes m JOIN unnest(p_accounts, p_names) AS t(a, n) ON m.account_id = t.a AND m.name = t.n
             ORDER BY m.id FOR NO KEY UPDATE OF m;
        END IF;
        WITH t AS (
            SELECT * FROM unnest(p_accounts, p_names, p_flags, p_keywords) WITH ORDINALITY AS t(a, n, f, kw, i)
        ), mb AS (
            UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = m.highestmodseq + 1,
                   msg_count = m.msg_count + 1, msg_size = m.msg_size + p_size,
                   msg_unseen = m.msg_unseen + (t.f & 1 = 0)::int, msg_deleted = m.msg_deleted + (t.f & 8 <> 0)::int
              FROM t WHERE m.account_id = t.a AND m.name = t.n
            RETURNING m.id, m.uidnext - 1 AS uid, m.highestmodseq AS modseq, m.uidvalidity, t.a, t.f, t.kw, t.i
        ), ins AS (
            INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, crlf_size, content_id)
            SELECT mb.id, mb.uid, mb.modseq, mb.f,
                   CASE WHEN mb.kw = '' THEN '{}'::text[] ELSE string_to_array(mb.kw, ' ') END,
                   p_internal_date, p_size, p_crlf_size, v_cid
              FROM mb
        )
        SELECT count(*), array_agg(mb.id ORDER BY mb.i), array_agg(mb.uid ORDER BY mb.i),
               array_agg(mb.uidvalidity ORDER BY mb.i)
          INTO v_rows, r_mailboxes, r_uids, r_uidvalidities FROM mb;
    ELSE
        IF v_naccounts < v_n THEN
            PERFORM 1 FROM mailboxes m JOIN unnest(p_accounts, p_mailboxes) AS t(a, mid) ON m.account_id = t.a AND m.id = t.mid
             ORDER BY m.id FOR NO KEY UPDATE OF m;
        END IF;
        WITH t AS (
            SELECT * FROM unnest(p_accounts, p_mailboxes, p_flags, p_keywords) WITH ORDINALITY AS t(a, mid, f, kw, i)
        ), mb AS (
            UPDATE mailboxes m SET uidnext = m.uidnext + 1, highestmodseq = m.highestmodseq + 1,
                   msg_count = m.msg_count + 1, msg_size = m.msg_size + p_size,
                   msg_unseen = m.msg_unseen + (t.f & 1 = 0)::int, msg_deleted = m.msg_deleted + (t.f & 8 <> 0)::int
              FROM t WHERE m.id = t.mid AND m.account_id = t.a
            RETURNING m.id, m.uidnext - 1 AS uid, m.highestmodseq AS modseq, m.uidvalidity, t.a, t.f, t.kw, t.i
        ), ins AS (
            INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, crlf_size, content_id)
            SELECT mb.id, mb.uid, mb.modseq, mb.f,
                   CASE WHEN mb.kw = '' THEN '{}'::text[] ELSE string_to_array(mb.kw, ' ') END,
                   p_internal_date, p_size, p_crlf_size, v_cid
              FROM mb
        )
        SELECT count(*), array_agg(mb.id ORDER BY mb.i), array_agg(mb.uid ORDER BY mb.i),
               array_agg(mb.uidvalidity ORDER BY mb.i)
          INTO v_rows, r_mailboxes, r_uids, r_uidvalidities FROM mb;
    END IF;
    IF v_rows <> v_n THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    r_accounts := p_accounts;
END
$$;

-- pr_expunge removes messages of one mailbox (all when p_starts is NULL;
-- else those in the ranges; with p_only_deleted only those with \Deleted),
-- leaving tombstones, releasing contents and quota.
CREATE FUNCTION pr_expunge(p_account bigint, p_mailbox bigint, p_starts bigint[], p_stops bigint[],
                           p_only_deleted boolean, OUT o_uids bigint[], OUT o_highestmodseq bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cids bigint[];
    v_bytes bigint;
    v_unseen bigint;
    v_deleted bigint;
BEGIN
    PERFORM 1 FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    SELECT highestmodseq INTO o_highestmodseq FROM mailboxes
     WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF p_starts IS NULL THEN
        WITH d AS (
            DELETE FROM messages m
             WHERE m.mailbox_id = p_mailbox AND (NOT p_only_deleted OR m.flags & 8 <> 0)
            RETURNING m.uid, m.content_id, m.size, m.flags
        )
        SELECT array_agg(uid ORDER BY uid), array_agg(content_id), sum(size),
               count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
          INTO o_uids, v_cids, v_bytes, v_unseen, v_deleted FROM d;
    ELSE
        -- Ranges (disjoint) joined to the primary key: index range scans.
        WITH d AS (
            DELETE FROM messages m USING unnest(p_starts, p_stops) r(s, e)
             WHERE m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e
               AND (NOT p_only_deleted OR m.flags & 8 <> 0)
            RETURNING m.uid, m.content_id, m.size, m.flags
        )
        SELECT array_agg(uid ORDER BY uid), array_agg(content_id), sum(size),
               count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
          INTO o_uids, v_cids, v_bytes, v_unseen, v_deleted FROM d;
    END IF;
    IF o_uids IS NULL THEN
        o_uids := '{}';
        RETURN;
    END IF;
    UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
           msg_count = msg_count - cardinality(o_uids), msg_size = msg_size - v_bytes,
           msg_unseen = msg_unseen - v_unseen, msg_deleted = msg_deleted - v_deleted
     WHERE id = p_mailbox
    RETURNING highestmodseq INTO o_highestmodseq;
    INSERT INTO expunged (mailbox_id, uid, modseq)
    SELECT p_mailbox, u, o_highestmodseq FROM unnest(o_uids) u
    ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq;
    UPDATE accounts SET quota_used = quota_used - v_bytes WHERE id = p_account;
    PERFORM pr_release_contents(v_cids);
END
$$;

-- pr_delete_mailboxes deletes mailboxes of one account with their messages
-- and tombstones, releasing contents and quota.
CREATE FUNCTION pr_delete_mailboxes(p_account bigint, p_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_cids bigint[];
    v_bytes bigint;
    v_n integer;
BEGIN
    PERFORM 1 FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    PERFORM 1 FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account ORDER BY id FOR UPDATE;
    WITH d AS (
        DELETE FROM messages m USING mailboxes mb
         WHERE m.mailbox_id = mb.id AND mb.id = ANY (p_ids) AND mb.account_id = p_account
        RETURNING m.content_id, m.size
    )
    SELECT array_agg(content_id), coalesce(sum(size), 0) INTO v_cids, v_bytes FROM d;
    DELETE FROM expunged WHERE mailbox_id = ANY (ARRAY(SELECT id FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account));
    DELETE FROM mailboxes WHERE id = ANY (p_ids) AND account_id = p_account;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    IF v_bytes <> 0 THEN
        UPDATE accounts SET quota_used = quota_used - v_bytes WHERE id = p_account;
    END IF;
    PERFORM pr_release_contents(v_cids);
    RETURN v_n;
END
$$;

-- pr_copy copies (p_move: moves) the messages of src in the ranges to dst,
-- in ascending UID order, returning the UID pairs.
CREATE FUNCTION pr_copy(p_account bigint, p_src bigint, p_dst bigint, p_starts bigint[], p_stops bigint[],
                        p_move boolean)
RETURNS TABLE (r_src bigint, r_dst bigint, r_uidvalidity bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_uids bigint[];
    v_cids bigint[];
    v_bytes bigint;
    v_first bigint;
    v_modseq bigint;
    v_uidvalidity bigint;
    v_limit bigint;
    v_used bigint;
    v_unseen bigint;
    v_deleted bigint;
BEGIN
    SELECT quota_limit, quota_used INTO v_limit, v_used FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
    END IF;
    IF (SELECT count(*) FROM (SELECT 1 FROM mailboxes WHERE id IN (p_src, p_dst) AND account_id = p_account
                               ORDER BY id FOR NO KEY UPDATE) l) <> (CASE WHEN p_src = p_dst THEN 1 ELSE 2 END) THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    SELECT array_agg(uid ORDER BY uid), array_agg(content_id ORDER BY uid), sum(size),
           count(*) FILTER (WHERE flags & 1 = 0), count(*) FILTER (WHERE flags & 8 <> 0)
      INTO v_uids, v_cids, v_bytes, v_unseen, v_deleted
      FROM unnest(p_starts, p_stops) r(s, e)
      JOIN messages m ON m.mailbox_id = p_src AND m.uid BETWEEN r.s AND r.e;
    IF v_uids IS NULL THEN
        RETURN;
    END IF;
    IF NOT p_move THEN
        IF v_limit > 0 AND v_used + v_bytes > v_limit THEN
            RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = p_account::text;
        END IF;
        PERFORM 1 FROM contents WHERE id = ANY (v_cids) ORDER BY id FOR NO KEY UPDATE;
        UPDATE contents c SET refcount = c.refcount + d.n
          FROM (SELECT x AS id, count(*) AS n FROM unnest(v_cids) x GROUP BY x) d
         WHERE c.id = d.id;
        UPDATE accounts SET quota_used = quota_used + v_bytes WHERE id = p_account;
    END IF;
    UPDATE mailboxes SET uidnext = uidnext + cardinality(v_uids), highestmodseq = highestmodseq + 1,
           msg_count = msg_count + cardinality(v_uids), msg_size = msg_size + v_bytes,
           msg_unseen = msg_unseen + v_unseen, msg_deleted = msg_deleted + v_deleted
     WHERE id = p_dst
    RETURNING uidnext - cardinality(v_uids), highestmodseq, uidvalidity INTO v_first, v_modseq, v_uidvalidity;
    INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internal_date, size, crlf_size, content_id)
    SELECT p_dst, v_first + s.i - 1, v_modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size, m.content_id
      FROM unnest(v_uids) WITH ORDINALITY AS s(uid, i)
      JOIN messages m ON m.mailbox_id = p_src AND m.uid = s.uid;
    IF p_move THEN
        DELETE FROM messages WHERE mailbox_id = p_src AND uid = ANY (v_uids);
        UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
               msg_count = msg_count - cardinality(v_uids), msg_size = msg_size - v_bytes,
               msg_unseen = msg_unseen - v_unseen, msg_deleted = msg_deleted - v_deleted
         WHERE id = p_src RETURNING highestmodseq INTO v_modseq;
        INSERT INTO expunged (mailbox_id, uid, modseq)
        SELECT p_src, u, v_modseq FROM unnest(v_uids) u
        ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq;
    END IF;
    RETURN QUERY SELECT s.uid, v_first + s.i - 1, v_uidvalidity FROM unnest(v_uids) WITH ORDINALITY AS s(uid, i) ORDER BY s.i;
END
$$;

-- pr_kwapply computes a message's new keywords for a STORE (p_op 0 replace,
-- 1 add, 2 remove); keywords compare case-insensitively and keep the case
-- first used.
CREATE FUNCTION pr_kwapply(p_op integer, p_old text[], p_kw text[]) RETURNS text[]
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

-- pr_store_flags changes flags (p_op 0 replace, 1 add, 2 remove) of the
-- messages in the ranges (all when p_starts is NULL). Messages whose modseq
-- exceeds p_unchanged (when > 0) are left alone and returned with
-- r_modified (RFC 7162 §3.1.3). Changed messages share one new modseq;
-- messages whose flags do not change are not returned.
CREATE FUNCTION pr_store_flags(p_account bigint, p_mailbox bigint, p_starts bigint[], p_stops bigint[],
                               p_op integer, p_flags smallint, p_keywords text[], p_unchanged bigint)
RETURNS TABLE (r_uid bigint, r_modseq bigint, r_flags smallint, r_keywords text[],
               r_internal_date timestamptz, r_size bigint, r_crlf_size bigint, r_modified boolean)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM mailboxes WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    -- MaxKeywords: checked exactly only when the cheap bound says it may be hit.
    IF p_op = 1 AND cardinality(p_keywords) > 0 AND EXISTS (
        SELECT 1 FROM messages m
         WHERE m.mailbox_id = p_mailbox AND cardinality(m.keywords) + cardinality(p_keywords) > 100
           AND (p_starts IS NULL OR EXISTS (
                SELECT 1 FROM unnest(p_starts, p_stops) r(s, e) WHERE m.uid BETWEEN r.s AND r.e))
           AND cardinality(pr_kwapply(1, m.keywords, p_keywords)) > 100) THEN
        RAISE EXCEPTION 'too many keywords' USING ERRCODE = 'PR004';
    END IF;
    -- This statement starts after the mailbox lock is held, so its snapshot
    -- includes every committed change to the mailbox's messages.
    RETURN QUERY
    WITH sel AS (
        -- All messages, or the (disjoint) ranges joined to the primary key.
        SELECT m.* FROM messages m WHERE p_starts IS NULL AND m.mailbox_id = p_mailbox
        UNION ALL
        SELECT m.* FROM unnest(p_starts, p_stops) r(s, e)
          JOIN messages m ON m.mailbox_id = p_mailbox AND m.uid BETWEEN r.s AND r.e
    ), cur AS (
        SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size,
               n.nf, n.nk, (p_unchanged > 0 AND m.modseq > p_unchanged) AS modified
          FROM sel m
         CROSS JOIN LATERAL (
            SELECT CASE p_op WHEN 0 THEN p_flags WHEN 1 THEN m.flags | p_flags ELSE m.flags & ~p_flags END AS nf,
                   CASE WHEN p_op <> 0 AND cardinality(p_keywords) = 0 THEN m.keywords
                        ELSE pr_kwapply(p_op, m.keywords, p_keywords) END AS nk) n
    ), chg AS (
        SELECT * FROM cur
         WHERE NOT modified AND (nf <> flags OR (nk IS DISTINCT FROM keywords AND pr_kwnorm(nk) <> pr_kwnorm(keywords)))
    ), bump AS (
        UPDATE mailboxes SET highestmodseq = highestmodseq + 1,
               msg_unseen = msg_unseen + (SELECT sum((nf & 1 = 0)::int - (flags & 1 = 0)::int) FROM chg),
               msg_deleted = msg_deleted + (SELECT sum((nf & 8 <> 0)::int - (flags & 8 <> 0)::int) FROM chg)
         WHERE id = p_mailbox AND EXISTS (SELECT 1 FROM chg)
        RETURNING highestmodseq
    ), upd AS (
        UPDATE messages m SET flags = chg.nf, keywords = chg.nk, modseq = bump.highestmodseq
          FROM chg, bump
         WHERE m.mailbox_id = p_mailbox AND m.uid = chg.uid
        RETURNING m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.crlf_size
    )
    SELECT upd.uid, upd.modseq, upd.flags, upd.keywords, upd.internal_date, upd.size, upd.crlf_size, false FROM upd
    UNION ALL
    SELECT cur.uid, cur.modseq, cur.flags, cur.keywords, cur.internal_date, cur.size, cur.crlf_size, true FROM cur WHERE cur.modified
    ORDER BY 1;
END
$$;

-- pr_claim_recent takes the \Recent status of the mailbox's messages (RFC
-- 3501 §2.3.2): it returns the UIDs at or above the recent watermark and
-- below uidnext, ascending, and moves the watermark to uidnext, so that
-- each UID goes to exactly one caller. Like StoreFlags it locks only the
-- mailbox row. The messages are read by a statement that starts after the
-- lock is held, so every message below the uidnext it saw is visible.
CREATE FUNCTION pr_claim_recent(p_account bigint, p_mailbox bigint) RETURNS bigint[]
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_lo bigint;
    v_hi bigint;
BEGIN
    SELECT recent_uid, uidnext INTO v_lo, v_hi FROM mailboxes
     WHERE id = p_mailbox AND account_id = p_account FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    IF v_lo >= v_hi THEN
        RETURN '{}';
    END IF;
    UPDATE mailboxes SET recent_uid = v_hi WHERE id = p_mailbox;
    RETURN ARRAY(SELECT uid FROM messages WHERE mailbox_id = p_mailbox AND uid >= v_lo AND uid < v_hi ORDER BY uid);
END
$$;
