-- Version 9: shorter and fewer holds of the mailbox row (issue 12).
--
-- 1. The \Recent watermark leaves the mailbox row. The mailbox row is the
-- allocation point of UIDs and mod-sequences: every delivery, append, flag
-- change and expunge of the mailbox locks it. A
-- \Recent claim (RFC 3501 §2.3.2) locked it too, only to move recent_uid,
-- and claims are the most frequent writes of a mailbox that receives mail
-- while sessions are open: every session that sees new mail claims it.
-- Under imaptest with deliveries into the same mailbox they were the
-- commonest waiters on the mailbox row, queued with and ahead of the
-- deliveries. The watermark now has a row of its own, locked only by the
-- claims; the mailbox row is only read (a plain snapshot) by them.
--
-- A mailbox without a row here has watermark 1: nothing claimed yet
-- (pr_claim_recent creates the row on the first claim). The row goes with
-- its mailbox (ON DELETE CASCADE); the foreign key's check on the first
-- claim takes a key-share lock on the mailbox row, which conflicts with
-- no lock that deliveries, flag changes or expunges take.

CREATE TABLE mailbox_recent (
    mailbox_id bigint PRIMARY KEY REFERENCES mailboxes (id) ON DELETE CASCADE,
    recent_uid bigint NOT NULL
) WITH (fillfactor = 50);
INSERT INTO mailbox_recent (mailbox_id, recent_uid) SELECT id, recent_uid FROM mailboxes WHERE recent_uid > 1;
ALTER TABLE mailboxes DROP COLUMN recent_uid;

-- 2. The \Deleted messages of a mailbox, indexed apart. An EXPUNGE
-- (pr_expunge) holds the mailbox row while it finds the messages to
-- remove; it read every message of the mailbox for that (in a mailbox
-- that receives mail faster than it is cleaned, thousands), with every
-- delivery to the mailbox waiting. Through this index it reads as many
-- rows as there are \Deleted messages. A flag change already updates
-- every index of its message (its modseq, in messages_changed, changes),
-- so this one costs an entry only for rows that carry \Deleted.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid) WHERE flags & 8 <> 0;

-- 3. Contents are released after the expunge that frees them. Releasing
-- the contents of the removed messages (reference counts, and for the
-- last reference the content row, its chunks and text, most of it in
-- TOAST) was two thirds of the blocks an expunge touched and half its WAL,
-- all of it while the account and mailbox rows were held. pr_expunge now
-- records the content ids here, in its transaction (one row, no index),
-- and pr_release_pending releases them in a transaction of its own after
-- the commit (mailstore/postgres/releases.go). A content's refcount counts
-- its messages, its queue items and its occurrences here.
CREATE TABLE content_releases (
    content_ids bigint[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
