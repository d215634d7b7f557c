-- Writer (0.2.0): the C bulk writer replaces _insert_batch;
-- import_requests becomes SECURITY INVOKER, in C, through the writer;
-- log_requests; the quarantine; runtime_stats gains outcome counters.
DROP FUNCTION apikey_usage._insert_batch(uuid[], timestamptz[], uuid[], text[], text[], smallint[], text[]);
DROP FUNCTION apikey_usage.import_requests(regclass);

------------------------------------------------------------------------
-- The log write path (0.2.0): batched logging, bulk import through the
-- one C writer, the quarantine.
------------------------------------------------------------------------

-- Entries the writer could not write: they failed the checks log_request
-- makes (re-applied to everything read back from the log buffer or a
-- spool file), their slot or file was damaged, or the tables refused
-- them.  Text fields are kept as raw bytes (they may not be valid text).
CREATE TABLE apikey_usage.quarantine (
	quarantine_id	bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	quarantined_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	source			text NOT NULL,
	reason			text NOT NULL,
	request_id		uuid,
	requested_at	timestamptz,
	api_key_id		uuid,
	response_code	integer,
	method			bytea,
	endpoint		bytea,
	resource_id		bytea
);
COMMENT ON TABLE apikey_usage.quarantine IS
	'Log entries the background worker could not write (invalid, damaged, or refused by the tables), with the reason; never written to the raw log. Readable by apikey_usage_admin.';
COMMENT ON COLUMN apikey_usage.quarantine.quarantine_id IS 'Order of arrival.';
COMMENT ON COLUMN apikey_usage.quarantine.quarantined_at IS 'When the entry was moved here.';
COMMENT ON COLUMN apikey_usage.quarantine.source IS 'Where it was read: ring (the log buffer) or spool (an overflow file).';
COMMENT ON COLUMN apikey_usage.quarantine.reason IS 'Why it could not be written.';
COMMENT ON COLUMN apikey_usage.quarantine.request_id IS 'The entry''s request id, as read.';
COMMENT ON COLUMN apikey_usage.quarantine.requested_at IS 'The entry''s time, as read (NULL when not a valid time).';
COMMENT ON COLUMN apikey_usage.quarantine.api_key_id IS 'The entry''s key id, as read.';
COMMENT ON COLUMN apikey_usage.quarantine.response_code IS 'The entry''s response code, as read.';
COMMENT ON COLUMN apikey_usage.quarantine.method IS 'The entry''s method bytes, as read (at most 32).';
COMMENT ON COLUMN apikey_usage.quarantine.endpoint IS 'The entry''s endpoint bytes, as read (at most 1024).';
COMMENT ON COLUMN apikey_usage.quarantine.resource_id IS 'The entry''s resource id bytes, as read (at most 256; NULL when none).';

CREATE FUNCTION apikey_usage.log_requests(key_ids uuid[], methods text[], endpoints text[],
	response_codes integer[], resource_ids text[] DEFAULT NULL, request_ids uuid[] DEFAULT NULL,
	requested_ats timestamptz[] DEFAULT NULL) RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_log_requests';
COMMENT ON FUNCTION apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) IS
	'Log a batch of served requests in one call: element i of every array is one log_request call; all elements are checked before any is logged (22004 / 22023 name the first bad element, 1-based). Returns the number logged.';

-- SECURITY INVOKER: the caller's relation is read with the caller's
-- rights; only plain values reach the writer, which runs as the owner.
CREATE FUNCTION apikey_usage.import_requests(source regclass) RETURNS bigint
	LANGUAGE c VOLATILE SECURITY INVOKER AS 'MODULE_PATHNAME', 'apikey_usage_import_requests';
COMMENT ON FUNCTION apikey_usage.import_requests(regclass) IS
	'Import request history from a table or view (request_id, requested_at, api_key_id, method, endpoint, response_code, resource_id), read with the caller''s rights, checked like log_request, all or nothing, through the log writer; rows already logged (same request_id and requested_at) are skipped. Returns the rows written.';

GRANT EXECUTE ON FUNCTION
	apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[])
	TO apikey_usage_app;
GRANT EXECUTE ON FUNCTION apikey_usage.import_requests(regclass) TO apikey_usage_admin;
GRANT SELECT ON apikey_usage.quarantine TO apikey_usage_admin;

-- runtime_stats: new columns at the end (result columns change: drop and
-- create again, with comments and grants)
DROP VIEW apikey_usage.runtime_stats;
DROP FUNCTION apikey_usage._runtime_stats();
CREATE FUNCTION apikey_usage._runtime_stats(
	OUT buffer_capacity bigint, OUT buffer_used bigint, OUT buffer_bytes bigint,
	OUT entries_logged bigint, OUT entries_flushed bigint, OUT sync_fallbacks bigint,
	OUT flush_errors bigint, OUT key_cache_capacity bigint, OUT key_cache_size bigint,
	OUT key_cache_hits bigint, OUT key_cache_misses bigint, OUT key_cache_evictions bigint,
	OUT last_flush_at timestamptz, OUT worker_pid integer, OUT recovered_entries bigint,
	OUT key_cache_bytes bigint, OUT duplicates_skipped bigint, OUT quarantined_entries bigint,
	OUT discarded_entries bigint)
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
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_evictions IS 'Keys evicted (least recently used) to make room.';
COMMENT ON COLUMN apikey_usage.runtime_stats.last_flush_at IS 'When the worker last wrote entries to the tables.';
COMMENT ON COLUMN apikey_usage.runtime_stats.worker_pid IS 'Process id of the background worker, NULL when it is not running.';
COMMENT ON COLUMN apikey_usage.runtime_stats.recovered_entries IS 'Entries found in the buffer file at start-up (after a restart or crash) and flushed.';
COMMENT ON COLUMN apikey_usage.runtime_stats.key_cache_bytes IS 'Shared memory reserved for the key cache, in bytes.';
COMMENT ON COLUMN apikey_usage.runtime_stats.duplicates_skipped IS 'Log entries not written because their (request_id, requested_at) was already logged.';
COMMENT ON COLUMN apikey_usage.runtime_stats.quarantined_entries IS 'Log entries moved to apikey_usage.quarantine (invalid, damaged or refused by the tables).';
COMMENT ON COLUMN apikey_usage.runtime_stats.discarded_entries IS 'Log entries lost or discarded: of a dropped installation, in slots never committed or damaged, in a log buffer file or spool file that could not be used (each also in a LOG line).';
REVOKE ALL ON FUNCTION apikey_usage._runtime_stats() FROM PUBLIC;
REVOKE ALL ON apikey_usage.runtime_stats FROM PUBLIC;
GRANT SELECT ON apikey_usage.runtime_stats TO apikey_usage_reader;
GRANT EXECUTE ON FUNCTION apikey_usage._runtime_stats() TO apikey_usage_reader;
REVOKE ALL ON FUNCTION apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_usage.import_requests(regclass) FROM PUBLIC;
REVOKE ALL ON apikey_usage.quarantine FROM PUBLIC;
