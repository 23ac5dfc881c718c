-- Version 4: tombstones are kept for a retention period, not forever.
--
-- Every expunge leaves a tombstone (expunged) so that a client can learn
-- which of the messages it knew vanished after a mod-sequence (RFC 7162
-- VANISHED). Kept forever, they grow without bound. pr_prune_expunged
-- deletes a mailbox's tombstones older than a time and raises the mailbox's
-- vanished_floor to the highest mod-sequence it deleted. Changes since a
-- mod-sequence below the floor then cannot list every vanished UID; the
-- caller compares the UIDs it knows with the messages that exist instead.
-- RFC 7162 §4.1 allows a server that does not remember the mod-sequences of
-- expunged messages to report every expunged UID of the requested set.

ALTER TABLE expunged ADD COLUMN expunged_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX expunged_at ON expunged (expunged_at);
ALTER TABLE mailboxes ADD COLUMN vanished_floor bigint NOT NULL DEFAULT 0;

