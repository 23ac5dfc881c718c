-- Version 3: cheaper message rows, and a cheaper multi-account delivery.
--
-- A delivery to many mailboxes inserted every message row into two indexes:
-- the primary key and (mailbox_id, modseq), which serves "what changed
-- since modseq N" (Changes: IMAP CONDSTORE/QRESYNC and the node's listing
-- cache). Measured, the second index was about an eighth of a 100-recipient
-- delivery's database time. It is replaced by a partial index that a new
-- row does not enter:
--
-- * created_modseq is the mod-sequence a row was given when it was created
--   (delivery, append, copy, move). UIDs and mod-sequences are allocated
--   together from the mailbox row under its lock, so created_modseq never
--   decreases as the UID grows.
-- * messages_changed indexes only rows changed since creation (modseq <>
--   created_modseq): rows whose flags were stored.
-- * The rows with modseq > N are then those in messages_changed with
--   modseq > N, plus those created after N, which are exactly the rows with
--   UID >= pr_first_new_uid(mailbox, N): a few primary-key probes.
--
-- Rows that exist before this migration get created_modseq 0: they count as
-- changed (they are all in messages_changed), and 0 precedes every value
-- given later, so the order above holds for them too.

ALTER TABLE messages ADD COLUMN created_modseq bigint NOT NULL DEFAULT 0;
ALTER TABLE messages ALTER COLUMN created_modseq DROP DEFAULT;
CREATE INDEX messages_changed ON messages (mailbox_id, modseq) WHERE modseq <> created_modseq;
DROP INDEX messages_modseq;

-- pr_first_new_uid finds that boundary; pr_deliver and pr_copy set
-- created_modseq (../functions/).

