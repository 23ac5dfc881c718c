-- Version 2 added the server-side write paths as functions. They live in
-- ../functions/, one file each, and are (re)applied by Migrate after the
-- migrations; see functions/README.md for the lock order they keep.
SELECT 1;
