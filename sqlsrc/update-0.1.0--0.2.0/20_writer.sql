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

-- Summarize the closed block ranges of the raw log's resource indexes
-- (BRIN bloom, see _index_partition): the ranges wholly below the one the
-- last heap page is in, newest first, down to the first one already
-- summarized (ranges are summarized in order: by this function, by
-- autovacuum, or when an index is built).  Only partitions that end after
-- since (NULL: all).  A partition locked by autovacuum or DDL (even
-- against reading its size) is skipped until the next call, so a session
-- holding a lock on the log never makes the worker's cycle fail.  Returns the number of ranges summarized.
CREATE FUNCTION apikey_usage._summarize_log(since timestamptz DEFAULT NULL) RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp SET lock_timeout = '10ms' AS $$
DECLARE
	r		record;
	done	bigint := 0;
	top		bigint;
	n		integer;
BEGIN
	FOR r IN
		SELECT x.indexrelid::pg_catalog.regclass AS idx, x.indrelid AS part,
			   COALESCE((SELECT o.option_value::integer
						   FROM pg_catalog.pg_options_to_table(ic.reloptions) o
						  WHERE o.option_name = 'pages_per_range'), 128) AS per_range
		  FROM pg_catalog.pg_inherits i
		  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		  JOIN pg_catalog.pg_index x ON x.indrelid = i.inhrelid
		  JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
		  JOIN pg_catalog.pg_am a ON a.oid = ic.relam
		 WHERE i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass
		   AND a.amname = 'brin'
		   -- the bound from the name (pg_get_expr would wait for a lock)
		   AND CASE WHEN since IS NULL OR c.relname !~ '^request_log_raw_p[0-9]{8}$' THEN true
					ELSE ((pg_catalog.to_date(pg_catalog.right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp
						  AT TIME ZONE 'UTC') > since END
	LOOP
		BEGIN
			top := pg_catalog.pg_relation_size(r.part) / pg_catalog.current_setting('block_size')::integer;
			top := (top - 1) / r.per_range - 1;		-- the newest closed range
			WHILE top >= 0 LOOP
				n := pg_catalog.brin_summarize_range(r.idx, top * r.per_range);
				EXIT WHEN n = 0;
				done := done + n;
				top := top - 1;
			END LOOP;
		EXCEPTION WHEN lock_not_available OR undefined_table OR undefined_object THEN
			NULL;	-- locked (autovacuum, DDL) or just dropped: next time
		END;
	END LOOP;
	RETURN done;
END
$$;
COMMENT ON FUNCTION apikey_usage._summarize_log(timestamptz) IS
	'Internal: summarize the closed block ranges of the raw log''s resource indexes (partitions ending after since; NULL: all); returns how many.';

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
