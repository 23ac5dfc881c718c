-- Postrider schema, version 1. Applied by Migrate inside one transaction.
-- Conventions: UIDs, UIDVALIDITY and UIDNEXT are bigint holding uint32
-- values; mod-sequences are bigint (RFC 7162 allows 63 bits).

CREATE TABLE domains (
    name       text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    address       text NOT NULL UNIQUE,
    domain        text NOT NULL REFERENCES domains (name),
    password_hash text NOT NULL,
    quota_limit   bigint NOT NULL DEFAULT 0 CHECK (quota_limit >= 0),
    quota_used    bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70);
CREATE INDEX accounts_domain ON accounts (domain);

-- One row per (alias, target). alias is "local@domain" or "@domain".
CREATE TABLE aliases (
    alias      text NOT NULL,
    domain     text NOT NULL REFERENCES domains (name),
    target_id  bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alias, target_id)
);
CREATE INDEX aliases_domain ON aliases (domain);
CREATE INDEX aliases_target ON aliases (target_id);

-- UIDVALIDITY values come from one sequence, so a recreated name never
-- gets a value used before (RFC 9051 §2.3.1.1). It starts at the epoch
-- seconds of the migration, like most servers' values.
CREATE SEQUENCE uidvalidity_seq MINVALUE 1 MAXVALUE 4294967295 CYCLE;
SELECT setval('uidvalidity_seq', greatest(1, extract(epoch FROM now())::bigint % 4294967295));

CREATE TABLE mailboxes (
    id            bigserial PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id),
    name          text NOT NULL,
    special_use   text NOT NULL DEFAULT '',
    uidvalidity   bigint NOT NULL,
    uidnext       bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
    highestmodseq bigint NOT NULL DEFAULT 1,
    -- \Recent watermark (RFC 3501 §2.3.2): messages with uid >= recent_uid
    -- are recent and not yet claimed by any session; pr_claim_recent moves
    -- it to uidnext. New messages (append, delivery, copy, move) are recent
    -- until claimed.
    recent_uid    bigint NOT NULL DEFAULT 1,
    -- STATUS counters, kept exact by every write of the mailbox's messages
    -- (which updates this row anyway), so STATUS never scans messages.
    msg_count     bigint NOT NULL DEFAULT 0,
    msg_unseen    bigint NOT NULL DEFAULT 0,
    msg_deleted   bigint NOT NULL DEFAULT 0,
    msg_size      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, name)
) WITH (fillfactor = 50);
-- Prefix searches for children ("name/%").
CREATE INDEX mailboxes_name_prefix ON mailboxes (account_id, name text_pattern_ops);

CREATE TABLE subscriptions (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       text NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- Message contents, stored once and shared (refcount = number of message
-- rows pointing here). sha256 is NULL while a large content is streamed in.
CREATE TABLE contents (
    id             bigserial PRIMARY KEY,
    sha256         bytea UNIQUE,
    size           bigint NOT NULL,
    header_size    bigint NOT NULL DEFAULT 0,
    chunk_size     integer NOT NULL,
    refcount       bigint NOT NULL DEFAULT 0,
    sent_day       date,
    parsed         json,            -- msgparse.Message without SearchHeaders/Text (json: cheap to store, accepts \u0000)
    search_headers text NOT NULL DEFAULT '',
    -- The lower-cased body text of a small content (one chunk). A large
    -- (streamed) content keeps it in content_text instead, text_pieces rows;
    -- search_text is then ''.
    search_text    text NOT NULL DEFAULT '',
    text_pieces    integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The lower-cased body text of a large content, in pieces streamed in with
-- COPY during delivery (so no node ever holds the whole text). Each piece
-- but the first starts with the last 256 octets or fewer (cut at a
-- character boundary) of the previous piece's text, so a search string of
-- up to 254 octets (lower-cased UTF-8) is found even where it spans two
-- pieces; a longer one that spans a piece boundary is not (textspool.go).
CREATE TABLE content_text (
    content_id bigint NOT NULL,
    seq        integer NOT NULL,
    text       text NOT NULL,
    PRIMARY KEY (content_id, seq)
);

-- The header search text and text piece count of a large content while it
-- is being delivered: streamed in with COPY (so the Go side never holds them
-- in a query buffer) and moved into contents by pr_deliver in the same
-- transaction. Unlogged: rows live only inside one transaction.
CREATE UNLOGGED TABLE content_stage (
    content_id     bigint PRIMARY KEY,
    search_headers text NOT NULL,
    text_pieces    integer NOT NULL
);

-- No foreign keys from chunks, content_text, messages, expunged and
-- deliveries: each would cost a lookup (and a row lock) per inserted row on
-- the hottest paths. The write functions (0002) keep them consistent:
-- message rows are written only by them, under the mailbox lock, and
-- contents, chunks, content_text and deliveries are deleted together by
-- pr_release_contents when the last reference goes.
CREATE TABLE chunks (
    content_id bigint NOT NULL,
    seq        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (content_id, seq)
);
-- lz4 where the server has it: far cheaper than the default pglz for the
-- same saving on text mail. Without lz4, chunks are stored uncompressed
-- (pglz would cost more CPU per delivery than it saves).
DO $$
BEGIN
    ALTER TABLE chunks ALTER COLUMN data SET COMPRESSION lz4;
    ALTER TABLE contents ALTER COLUMN search_text SET COMPRESSION lz4;
    ALTER TABLE content_text ALTER COLUMN text SET COMPRESSION lz4;
    ALTER TABLE contents ALTER COLUMN search_headers SET COMPRESSION lz4;
    ALTER TABLE contents ALTER COLUMN parsed SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    ALTER TABLE chunks ALTER COLUMN data SET STORAGE EXTERNAL;
END
$$;

CREATE TABLE messages (
    mailbox_id    bigint NOT NULL,
    uid           bigint NOT NULL,
    modseq        bigint NOT NULL,
    flags         smallint NOT NULL DEFAULT 0,
    keywords      text[] NOT NULL DEFAULT '{}',
    internal_date timestamptz NOT NULL,
    save_date     timestamptz NOT NULL DEFAULT now(),
    size          bigint NOT NULL,
    -- The size with every line ending as CRLF (msgparse.Message.CRLFSize):
    -- what POP3 RETR sends, so that STAT and LIST never read a body.
    crlf_size     bigint NOT NULL,
    content_id    bigint NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

-- Tombstones of expunged messages (RFC 7162 VANISHED).
CREATE TABLE expunged (
    mailbox_id bigint NOT NULL,
    uid        bigint NOT NULL,
    modseq     bigint NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);

-- Protocol parameters kept with a delivery (e.g. SMTP DSN).
CREATE TABLE deliveries (
    id         bigserial PRIMARY KEY,
    content_id bigint NOT NULL,
    mail_from  text NOT NULL,
    params     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_content ON deliveries (content_id);

CREATE TABLE auth_failures (
    key text NOT NULL,
    at  timestamptz NOT NULL
);
CREATE INDEX auth_failures_key_at ON auth_failures (key, at);
CREATE INDEX auth_failures_at ON auth_failures (at);

CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);
