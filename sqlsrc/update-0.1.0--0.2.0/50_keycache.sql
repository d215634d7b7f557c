------------------------------------------------------------------------
-- Key cache at scale (0.2.0): runtime_stats gains, at the end, the miss
-- ratio, the lock partitions and the last_used_at queue counters.  A
-- view's columns cannot be appended through its function, so both are
-- dropped and created again (with their comments and grants).
------------------------------------------------------------------------
DROP VIEW apikey_usage.runtime_stats;
DROP FUNCTION apikey_usage._runtime_stats();
CREATE FUNCTION apikey_usage._runtime_stats(
	OUT buffer_capacity bigint, OUT buffer_used bigint, OUT buffer_bytes bigint,
	OUT entries_logged bigint, OUT entries_flushed bigint, OUT sync_fallbacks bigint,
	OUT flush_errors bigint, OUT key_cache_capacity bigint, OUT key_cache_size bigint,
	OUT key_cache_hits bigint, OUT key_cache_misses bigint, OUT key_cache_evictions bigint,
	OUT last_flush_at timestamptz, OUT worker_pid integer, OUT recovered_entries bigint,
	OUT key_cache_bytes bigint, OUT key_cache_miss_ratio double precision,
	OUT key_cache_partitions integer, OUT last_used_queued bigint,
	OUT last_used_dropped bigint, OUT last_used_pending bigint,
	OUT duplicates_skipped bigint, OUT quarantined_entries bigint, OUT discarded_entries bigint)
	RETURNS record
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_runtime_stats';
COMMENT ON FUNCTION apikey_usage._runtime_stats() IS 'Internal: the counters behind the runtime_stats view.';

CREATE VIEW apikey_usage.runtime_stats AS SELECT * FROM apikey_usage._runtime_stats();
COMMENT ON VIEW apikey_usage.runtime_stats IS 'One row of the extension''s own counters (since the last server start unless noted).';
COMMENT ON COLUMN apikey_usage.runtime_stats.buffer_capacity IS 'Entries the log buffer holds (apikey_usage.log_buffer_entries).';
COMMENT ON COLUMN apikey_usage.runtime_stats.buffer_used IS 'Entries in the log buffer not yet in the tables.';
COMMENT ON COLUMN apikey_usage.runtime_stats.buffer_bytes IS 'Size of the memory-mapped log buffer file in bytes.';
COMMENT ON COLUMN apikey_usage.runtime_stats.entries_logged IS 'Entries appended to the log buffer.';
COMMENT ON COLUMN apikey_usage.runtime_stats.entries_flushed IS 'Entries the background worker wrote to the tables.';
COMMENT ON COLUMN apikey_usage.runtime_stats.sync_fallbacks IS 'Entries written synchronously by their caller because the buffer stayed full.';
COMMENT ON COLUMN apikey_usage.runtime_stats.flush_errors IS 'Flush transactions that failed (and were retried).';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_capacity IS 'Keys the shared-memory cache holds (apikey_usage.max_keys).';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_size IS 'Keys in the cache now.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_hits IS 'Lookups answered from the cache.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_misses IS 'Lookups that read the key table.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_evictions IS 'Keys evicted (clock sweep: not used since the hand last passed) to make room.';
COMMENT ON COLUMN apikey_usage.runtime_stats.last_flush_at IS 'When the worker last wrote entries to the tables.';
COMMENT ON COLUMN apikey_usage.runtime_stats.worker_pid IS 'Process id of the background worker, NULL when it is not running.';
COMMENT ON COLUMN apikey_usage.runtime_stats.recovered_entries IS 'Entries found in the buffer file at start-up (after a restart or crash) and flushed.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_bytes IS 'Shared memory reserved for the key cache, in bytes.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_miss_ratio IS 'key_cache_misses / (hits + misses): above a few percent, more keys are in use than apikey_usage.max_keys holds.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_partitions IS 'Lock partitions of the key cache (by key hash; up to 64).';
COMMENT ON COLUMN apikey_usage.runtime_stats.last_used_queued IS 'last_used_at values queued for the worker to write to the key table.';
COMMENT ON COLUMN apikey_usage.runtime_stats.last_used_dropped IS 'last_used_at values not queued because the queue was full (retried at the key''s next use).';
COMMENT ON COLUMN apikey_usage.runtime_stats.last_used_pending IS 'last_used_at values queued and not yet written.';
COMMENT ON COLUMN apikey_usage.runtime_stats.duplicates_skipped IS 'Log entries not written because their (request_id, requested_at) was already logged.';
COMMENT ON COLUMN apikey_usage.runtime_stats.quarantined_entries IS 'Log entries moved to apikey_usage.quarantine (invalid, damaged or refused by the tables).';
COMMENT ON COLUMN apikey_usage.runtime_stats.discarded_entries IS 'Log entries lost or discarded: of a dropped installation, in slots never committed or damaged, in a log buffer file or spool file that could not be used (each also in a LOG line).';
GRANT SELECT ON apikey_usage.runtime_stats TO apikey_usage_reader;
GRANT EXECUTE ON FUNCTION apikey_usage._runtime_stats() TO apikey_usage_reader;

-- last_used_at updates HOT: a fifth of each page kept free (pages written
-- from now on; VACUUM FULL apikey_usage.api_keys applies it to all).
ALTER TABLE apikey_usage.api_keys SET (fillfactor = 80);

-- The request path's miss probes the key table by hash: a hash index
-- answers that equality with fewer page visits than the unique btree.
CREATE INDEX api_keys_key_hash_hash_idx ON apikey_usage.api_keys USING hash (key_hash);

-- verify_key and check_request return a composite type (the same columns
-- as their OUT parameters had): the executor takes its descriptor from the
-- type cache instead of building it from pg_proc on every execution.
-- The result type of a function cannot be changed in place: dropped and
-- created again, with their comments and grants.
DROP FUNCTION apikey_usage.verify_key(text);
DROP FUNCTION apikey_usage.check_request(text, text, text, text);

--@include 10_core.sql CREATE TYPE apikey_usage.verify_key_result AS (

--@include 10_core.sql CREATE TYPE apikey_usage.check_request_result AS (

REVOKE ALL ON FUNCTION apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text) TO apikey_usage_app;
