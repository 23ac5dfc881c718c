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
-- Remote recipients (p_remote_addresses, normalised by the caller) are
-- queued by pr_enqueue in the same transaction: the queue item takes one
-- more reference on the content and r_queue_id is its id (NULL without
-- remote recipients, whose deliveries run no further statement). A
-- delivery may have remote recipients only (p_accounts empty): it then
-- locks no account and no mailbox, only the content row it shares.
-- r_modseqs[i] is target i's new highest modseq (that of its message;
-- each target's is raised by exactly one) and r_content_id the content.
CREATE OR REPLACE FUNCTION pr_deliver(
    p_pending bigint, p_sha bytea, p_size bigint, p_crlf_size bigint, p_header_size bigint, p_chunk_size integer,
    p_sent_day date, p_parsed json, p_search_headers text, p_search_text text, p_data bytea,
    p_accounts bigint[], p_mailboxes bigint[], p_names text[], p_flags smallint[], p_keywords text[],
    p_internal_date timestamptz, p_mail_from text, p_params jsonb,
    p_remote_addresses text[] DEFAULT NULL, p_remote_domains text[] DEFAULT NULL,
    p_remote_orcpts text[] DEFAULT NULL, p_remote_notifies text[] DEFAULT NULL, p_sender_account bigint DEFAULT 0,
    OUT r_accounts bigint[], OUT r_mailboxes bigint[], OUT r_uids bigint[], OUT r_uidvalidities bigint[],
    OUT r_queue_id bigint,
    OUT r_modseqs bigint[], OUT r_content_id bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off SET enable_bitmapscan = off AS $$
#variable_conflict use_column
DECLARE
    v_n integer := coalesce(cardinality(p_accounts), 0);
    v_remote boolean := coalesce(cardinality(p_remote_addresses), 0) > 0;
    v_refs integer := v_n + (coalesce(cardinality(p_remote_addresses), 0) > 0)::int;
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
    IF v_refs = 0 THEN
        RAISE EXCEPTION 'delivery without recipients' USING ERRCODE = 'PR004';
    END IF;
    -- 1. New content needs no lock anyone else waits for: store it before
    -- taking the hot locks. (A concurrent insert of the same content makes
    -- us wait for that transaction while we hold nothing.)
    v_cid := pr_store_content(p_pending, p_sha, p_size, p_header_size, p_chunk_size, p_sent_day, p_parsed,
                              p_search_headers, p_search_text, p_data, v_refs);

    -- 2. Accounts: lock in id order, charge and check quota, octets and
    -- messages (0011; remote recipients have no quota).
    IF v_n = 0 THEN
        NULL;
    ELSIF v_n = 1 THEN
        UPDATE accounts SET quota_used = quota_used + p_size, msg_used = msg_used + 1 WHERE id = p_accounts[1]
        RETURNING (quota_limit > 0 AND quota_used > quota_limit) OR (msg_limit > 0 AND msg_used > msg_limit)
        INTO v_over1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
        END IF;
        IF v_over1 THEN
            RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = p_accounts[1]::text;
        END IF;
    ELSE
        -- One UPDATE charges every distinct account once and reports which
        -- are over quota (an UPDATE works on each row's newest version, so
        -- quota_used is exact). Its index scan of the primary key takes the
        -- row locks in id order: a btree scan for id = ANY (array) visits
        -- the sorted array keys in index order (the function disables seq
        -- and bitmap scans, which would lock in physical order).
        WITH u AS (
            UPDATE accounts SET quota_used = quota_used + p_size, msg_used = msg_used + 1 WHERE id = ANY (p_accounts)
            RETURNING id, (quota_limit > 0 AND quota_used > quota_limit) OR (msg_limit > 0 AND msg_used > msg_limit) AS over
        )
        SELECT count(*), array_agg(u.id ORDER BY u.id) FILTER (WHERE u.over) INTO v_naccounts, v_over FROM u;
        IF v_naccounts < v_n THEN
            -- Several targets in one account, or a missing account.
            IF v_naccounts <> (SELECT count(DISTINCT a) FROM unnest(p_accounts) a) THEN
                RAISE EXCEPTION 'no such account' USING ERRCODE = 'PR002';
            END IF;
            -- Charge each account once more per further target it has, on
            -- rows this transaction already holds.
            WITH need AS (
                SELECT a, count(*) - 1 AS n FROM unnest(p_accounts) a GROUP BY a HAVING count(*) > 1
            ), u AS (
                UPDATE accounts ac SET quota_used = ac.quota_used + need.n * p_size, msg_used = ac.msg_used + need.n
                  FROM need WHERE ac.id = need.a
                RETURNING ac.id, (ac.quota_limit > 0 AND ac.quota_used > ac.quota_limit)
                              OR (ac.msg_limit > 0 AND ac.msg_used > ac.msg_limit) AS over
            )
            SELECT array_agg(DISTINCT x ORDER BY x) INTO v_over
              FROM (SELECT unnest(v_over) UNION ALL SELECT u.id FROM u WHERE u.over) o(x);
        END IF;
        IF v_over IS NOT NULL THEN
            RAISE EXCEPTION 'over quota' USING ERRCODE = 'PR003', DETAIL = array_to_string(v_over, ',');
        END IF;
    END IF;

    -- 3. Known (large) content: one more reference per target (and one for the
    -- queue item), under the account locks (an expunge of the same account
    -- releases contents under them). Without accounts the loop below is
    -- still safe: the UPDATE waits for a concurrent release of the row and
    -- then finds it deleted, or takes its reference first.
    IF v_cid IS NULL THEN
        LOOP
            UPDATE contents SET refcount = refcount + v_refs WHERE sha256 = p_sha AND size > chunk_size RETURNING id INTO v_cid;
            IF FOUND THEN
                IF p_pending IS NOT NULL THEN
                    PERFORM pr_delete_contents(ARRAY[p_pending]);
                END IF;
                EXIT;
            END IF;
            -- Deleted meanwhile by an expunge elsewhere: store it after all.
            v_cid := pr_store_content(p_pending, p_sha, p_size, p_header_size, p_chunk_size, p_sent_day, p_parsed,
                                      p_search_headers, p_search_text, p_data, v_refs);
            EXIT WHEN v_cid IS NOT NULL;
        END LOOP;
    END IF;
    IF p_pending IS NOT NULL THEN
        DELETE FROM content_stage WHERE content_id = p_pending;
    END IF;
    IF p_params IS NOT NULL THEN
        INSERT INTO deliveries (content_id, mail_from, params) VALUES (v_cid, coalesce(p_mail_from, ''), p_params);
    END IF;
    IF v_remote THEN
        -- A new row: it waits for no lock (lock order: see README.md).
        r_queue_id := pr_enqueue(p_content => v_cid, p_size => p_size, p_mail_from => p_mail_from,
                                 p_sender_account => p_sender_account, p_params => p_params,
                                 p_addresses => p_remote_addresses, p_domains => p_remote_domains,
                                 p_orcpts => p_remote_orcpts, p_notifies => p_remote_notifies);
    END IF;
    r_content_id := v_cid;
    IF v_n = 0 THEN
        r_modseqs := '{}';
        r_accounts := '{}';
        r_mailboxes := '{}';
        r_uids := '{}';
        r_uidvalidities := '{}';
        RETURN;
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
        INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
        VALUES (v_mid, v_uid, v_modseq, v_modseq, p_flags[1],
                CASE WHEN p_keywords[1] = '' THEN '{}'::text[] ELSE string_to_array(p_keywords[1], ' ') END,
                p_internal_date, p_size, p_crlf_size, v_cid);
        r_accounts := p_accounts;
        r_mailboxes := ARRAY[v_mid];
        r_uids := ARRAY[v_uid];
        r_uidvalidities := ARRAY[v_uidvalidity];
        r_modseqs := ARRAY[v_modseq];
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
            INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
            SELECT mb.id, mb.uid, mb.modseq, mb.modseq, mb.f,
                   CASE WHEN mb.kw = '' THEN '{}'::text[] ELSE string_to_array(mb.kw, ' ') END,
                   p_internal_date, p_size, p_crlf_size, v_cid
              FROM mb
        )
        SELECT count(*), array_agg(s.id), array_agg(s.uid), array_agg(s.uidvalidity), array_agg(s.modseq)
          INTO v_rows, r_mailboxes, r_uids, r_uidvalidities, r_modseqs FROM (SELECT * FROM mb ORDER BY mb.i) s;
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
            INSERT INTO messages (mailbox_id, uid, modseq, created_modseq, flags, keywords, internal_date, size, crlf_size, content_id)
            SELECT mb.id, mb.uid, mb.modseq, mb.modseq, mb.f,
                   CASE WHEN mb.kw = '' THEN '{}'::text[] ELSE string_to_array(mb.kw, ' ') END,
                   p_internal_date, p_size, p_crlf_size, v_cid
              FROM mb
        )
        SELECT count(*), array_agg(s.id), array_agg(s.uid), array_agg(s.uidvalidity), array_agg(s.modseq)
          INTO v_rows, r_mailboxes, r_uids, r_uidvalidities, r_modseqs FROM (SELECT * FROM mb ORDER BY mb.i) s;
    END IF;
    IF v_rows <> v_n THEN
        RAISE EXCEPTION 'no such mailbox' USING ERRCODE = 'PR001';
    END IF;
    r_accounts := p_accounts;
END
$$;
