-- Version 8: a DKIM key is published before it signs (issue 11 follow-up).
--
-- `postrider dkim rotate` used to make the new keys sign at once, before
-- their DNS records could exist anywhere: until the admin had published
-- them and resolvers' caches had caught up, receivers could not verify our
-- signatures and DMARC rested on SPF alone (forwarded mail failed it). A
-- key now carries the time from which it may sign; rotate sets it some
-- days ahead, and the older key keeps signing until then.
--
-- NULL means "from created_at": the keys of version 6, which signed from
-- their creation, and keys added without a time. A nullable column without
-- default is added without rewriting the table.

ALTER TABLE dkim_keys ADD COLUMN sign_from timestamptz;
