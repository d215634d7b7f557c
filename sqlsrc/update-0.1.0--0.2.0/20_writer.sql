-- Writer (0.2.0): the C bulk writer replaces _insert_batch;
-- import_requests becomes SECURITY INVOKER, in C, through the writer;
-- log_requests; the quarantine.
DROP FUNCTION apikey_usage._insert_batch(uuid[], timestamptz[], uuid[], text[], text[], smallint[], text[]);
DROP FUNCTION apikey_usage.import_requests(regclass);

-- The resource filter is an equality on ids that arrive in no order: a
-- hash index (one bucket page per insert, no tree descent) costs the
-- writer far less than the (resource_id, requested_at, request_id) btree
-- of 0.1.0 (COPY of 300,000 rows of the live mix: +0.7 s against +1.9 s
-- over a bare table).  The ops part builds every partition's indexes
-- once, with the hash index (_index_partition).

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

-- runtime_stats gains duplicates_skipped, quarantined_entries and
-- discarded_entries at the end: its one re-creation in the upgrade is in
-- 50_keycache.sql (the last part that changes its columns).
REVOKE ALL ON FUNCTION apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION apikey_usage.import_requests(regclass) FROM PUBLIC;
REVOKE ALL ON apikey_usage.quarantine FROM PUBLIC;
