-- Version 12: IMAP METADATA (RFC 5464) entries of mailboxes and of the
-- server.
--
-- One row per entry: mailbox_id is the mailbox's, or NULL for a server
-- entry. Server entries belong to the account that set them: Postrider
-- shares no mailbox between accounts and has no ACL, so "/shared" entries
-- are seen by their account only, like "/private" ones (RFC 5464 §3.3
-- lets a server restrict who sets server entries; here each account has
-- its own). Names are stored lower-cased (§3.2: case-insensitive) with
-- their "/private" or "/shared" prefix. The foreign keys remove a deleted
-- mailbox's entries (§4.1) and a deleted account's; they cost nothing on
-- the delivery path, which never touches this table. Sizes and counts are
-- bounded by pr_set_metadata.
CREATE TABLE metadata (
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    mailbox_id bigint REFERENCES mailboxes (id) ON DELETE CASCADE,
    name       text NOT NULL,
    value      bytea NOT NULL
);
CREATE UNIQUE INDEX metadata_entry ON metadata (account_id, coalesce(mailbox_id, 0), name);
CREATE INDEX metadata_mailbox ON metadata (mailbox_id) WHERE mailbox_id IS NOT NULL;
