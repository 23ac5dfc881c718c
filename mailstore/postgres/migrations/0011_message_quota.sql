-- Version 11: a message-count quota beside the storage quota (issue 13,
-- RFC 9208 §5.2 MESSAGE resource).
--
-- msg_used is kept exact the way quota_used is: every function that adds
-- or removes message rows (pr_deliver, pr_copy, pr_expunge,
-- pr_delete_mailboxes) changes it in the same statement that changes
-- quota_used, on the account row it already holds. Summing
-- mailboxes.msg_count instead would read every mailbox of the account on
-- every delivery. msg_limit 0 means unlimited, as quota_limit.
ALTER TABLE accounts
    ADD COLUMN msg_limit bigint NOT NULL DEFAULT 0 CHECK (msg_limit >= 0),
    ADD COLUMN msg_used  bigint NOT NULL DEFAULT 0;
UPDATE accounts a SET msg_used = m.n
  FROM (SELECT account_id, sum(msg_count) AS n FROM mailboxes GROUP BY account_id) m
 WHERE a.id = m.account_id AND m.n <> 0;
