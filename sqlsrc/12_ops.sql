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

-- How this installation was created.  A restore (pg_restore, or psql on a
-- plain dump) runs CREATE EXTENSION and then creates the dumped day
-- partitions itself, before any table's data arrives.  CREATE EXTENSION
-- cannot tell a restore from a fresh install (PostgreSQL runs every
-- extension script with check_function_bodies off, as dumps do), so every
-- installation starts "restoring": until the first key exists (the dump's
-- keys, or the first generate_key), the worker creates no partition ahead
-- of time, or the restore would find its tables existing.  Writing a
-- request still creates the partition it needs.  An update from 0.1.0
-- starts as not restoring.
CREATE TABLE apikey_usage.install_state (
	singleton		boolean PRIMARY KEY DEFAULT true CHECK (singleton),
	restoring		boolean NOT NULL,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.install_state IS
	'Internal: one row; restoring is true from CREATE EXTENSION until the first key exists (a restore creates its tables before its keys arrive).';
INSERT INTO apikey_usage.install_state (restoring)
	VALUES (true);

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
