-- Version 10: a small content is stored once per delivery, not once per
-- octet string (issue 12).
--
-- Contents were shared by SHA-256 across deliveries: a message whose octets
-- were already stored took one more reference on the stored row. For a
-- message of one chunk (up to 256 KiB, nearly all mail) that saves little
-- space and costs a hot row: every delivery and APPEND of the same octets
-- updated the reference count of one row, and every expunge of any copy
-- updated it again (pr_release_pending), so writers in unrelated accounts
-- queued on each other's row locks. Dovecot's single-instance storage makes
-- the same cut (mail_attachment_min_size, 128 KiB by default).
--
-- Now a content of one chunk (size <= chunk_size) is shared only by the
-- recipients of one delivery and by the copies COPY and MOVE make; a
-- streamed content (size > chunk_size) is still stored once across
-- deliveries, through the partial unique index below. Contents stored
-- before this version keep their references.
ALTER TABLE contents DROP CONSTRAINT contents_sha256_key;
CREATE UNIQUE INDEX contents_sha256_large ON contents (sha256) WHERE size > chunk_size;
