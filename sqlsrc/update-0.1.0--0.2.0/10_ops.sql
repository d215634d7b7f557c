-- ops (issue 11): backup and restore.  The same objects as in
-- sqlsrc/10_core.sql (partition indexes, _maintain) and sqlsrc/12_ops.sql.

-- The raw log's indexes move from the parent to each day partition
-- (a partitioned index breaks pg_restore of the partitions).  Dropping the
-- parent's indexes drops the partitions' too; they are built again below,
-- one partition at a time.
DROP INDEX apikey_usage.request_log_raw_key_time_idx;
DROP INDEX apikey_usage.request_log_raw_time_idx;
DROP INDEX apikey_usage.request_log_raw_resource_idx;
-- (the resource index becomes a BRIN bloom index: see the writer's part
-- and sqlsrc/10_core.sql; each partition's indexes are built once, below)
CREATE FUNCTION apikey_usage._index_partition(part regclass) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	name	text;
BEGIN
	SELECT c.relname INTO STRICT name
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
	 WHERE c.oid = part AND i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass;
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I (api_key_id, requested_at, request_id)',
							  name || '_key_time_idx', name);
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I (requested_at, request_id)',
							  name || '_time_idx', name);
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I USING brin'
							  ' (resource_id text_bloom_ops (n_distinct_per_range = 2500, false_positive_rate = 0.01))'
							  ' WITH (pages_per_range = 32) WHERE resource_id IS NOT NULL',
							  name || '_resource_idx', name);
	-- an empty partition: building summarized its (empty) first range;
	-- leave it to _summarize_log like every other range
	IF pg_catalog.pg_relation_size(part) = 0 THEN
		PERFORM pg_catalog.brin_desummarize_range(
			pg_catalog.format('apikey_usage.%I', name || '_resource_idx')::pg_catalog.regclass, 0);
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._index_partition(regclass) IS
	'Internal: create the indexes of a day partition of request_log_raw (by key and time, by time, by resource).';

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage._ensure_partition(ts timestamptz) RETURNS void

DO $$
DECLARE
	part	regclass;
BEGIN
	FOR part IN
		SELECT i.inhrelid::pg_catalog.regclass
		  FROM pg_catalog.pg_inherits i
		 WHERE i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass
	LOOP
		PERFORM apikey_usage._index_partition(part);
	END LOOP;
END
$$;


--@include 12_ops.sql SELECT pg_catalog.pg_extension_config_dump('apikey_usage.api_keys', '');

-- How this installation was created (see sqlsrc/12_ops.sql): an updated
-- installation has its keys and partitions, so it is not restoring.
CREATE TABLE apikey_usage.install_state (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	restoring		boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.install_state IS
	'Internal: one row; restoring is true from CREATE EXTENSION until the first key exists (a restore creates its tables before its keys arrive).';
INSERT INTO apikey_usage.install_state (restoring)
	VALUES (false);

--@include 12_ops.sql CREATE FUNCTION apikey_usage._restore_pending() RETURNS boolean

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage._maintain(retention interval DEFAULT NULL) RETURNS integer
