------------------------------------------------------------------------
-- Backup and restore (ops)
------------------------------------------------------------------------

-- pg_dump: the keys and the rollups are data, not part of the
-- extension's definition (usage_hourly here, every other rollup grain in
-- the analytics part).  The raw log's day partitions are ordinary tables and are dumped
-- with their rows.  flush_state and spool_done describe this cluster's
-- log buffer file, which a restored database does not have.
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.api_keys', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_hourly', '');

-- How this installation was created.  pg_restore and a plain dump run
-- CREATE EXTENSION with check_function_bodies off and then create the
-- dumped day partitions themselves: until the dump's data arrives (keys
-- present), the worker creates no partition ahead of time, or the
-- restore would find its tables existing.  Writing a request still
-- creates the partition it needs.
CREATE TABLE apikey_usage.install_state (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	restoring		boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.install_state IS
	'Internal: one row; restoring is true while a pg_dump restore is creating the tables of this installation.';
INSERT INTO apikey_usage.install_state (restoring)
	VALUES (NOT pg_catalog.current_setting('check_function_bodies')::boolean);

-- True while a restore is still under way (see install_state); clears the
-- mark once the restored keys are there.
CREATE FUNCTION apikey_usage._restore_pending() RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM apikey_usage.install_state WHERE restoring) THEN
		RETURN false;
	END IF;
	IF NOT EXISTS (SELECT FROM apikey_usage.api_keys) THEN
		RETURN true;
	END IF;
	UPDATE apikey_usage.install_state SET restoring = false;
	RETURN false;
END
$$;
COMMENT ON FUNCTION apikey_usage._restore_pending() IS
	'Internal: true while this installation is being restored from a dump and the keys have not arrived yet.';
