-- Writer (0.2.0): the C bulk writer replaces _insert_batch;
-- import_requests becomes SECURITY INVOKER, in C, through the writer;
-- log_requests; the quarantine.
DROP FUNCTION apikey_usage._insert_batch(uuid[], timestamptz[], uuid[], text[], text[], smallint[], text[]);
DROP FUNCTION apikey_usage.import_requests(regclass);

-- The resource filter is an equality on ids that arrive in no order: the
-- (resource_id, requested_at, request_id) btree of 0.1.0 becomes a BRIN
-- bloom index whose trailing ranges the writer leaves unsummarized (an
-- insert costs a revmap lookup); the worker summarizes closed ranges
-- (_summarize_log).  The ops part builds every partition's indexes once,
-- with the bloom index (_index_partition, as in sqlsrc/10_core.sql).

--@include 10_core.sql CREATE FUNCTION apikey_usage._summarize_log(since timestamptz DEFAULT NULL) RETURNS bigint

--@include 25_log.sql -- The log write path (0.2.0): batched logging, bulk import through the

--@include 25_log.sql CREATE TABLE apikey_usage.quarantine (

--@include 25_log.sql CREATE FUNCTION apikey_usage.log_requests(key_ids uuid[], methods text[], endpoints text[],

--@include 25_log.sql CREATE FUNCTION apikey_usage.import_requests(source regclass) RETURNS bigint

--@include 25_log.sql GRANT EXECUTE ON FUNCTION

-- runtime_stats gains duplicates_skipped, quarantined_entries and
-- discarded_entries at the end: its one re-creation in the upgrade is in
-- 50_keycache.sql (the last part that changes its columns).
REVOKE ALL ON FUNCTION apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_usage.import_requests(regclass) FROM PUBLIC;
REVOKE ALL ON apikey_usage.quarantine FROM PUBLIC;
