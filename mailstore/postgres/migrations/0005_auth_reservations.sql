-- Version 5: a login attempt is decided and counted in one atomic step.
--
-- auth used to read the failures of a login's keys, sleep the delay, verify
-- the password and only then record the failure, so attempts running at once
-- all read the same count: one address with 40 connections got 49 password
-- verdicts on one account whose limit is 10 (issue 9). pr_auth_reserve
-- counts and, when no limit is reached, records the attempt as a failure in
-- the same statement, under a transaction advisory lock per key; the next
-- attempt on any node waits for that lock and counts the reservation. A
-- successful login, or one that ends without a verdict (client gone, context
-- cancelled), deletes its rows again by attempt id (pr_auth_release); a
-- failure keeps them.
--
-- attempt is NULL for rows written before this version. A nullable column
-- without default is added without rewriting the table.

ALTER TABLE auth_failures ADD COLUMN attempt bigint;
CREATE SEQUENCE auth_attempt_ids;
-- pr_auth_reserve and pr_auth_release are in ../functions/.
