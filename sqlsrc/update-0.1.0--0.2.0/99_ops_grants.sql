-- ops: as at the end of the fresh install script (sqlsrc/90_grants.sql),
-- nothing created by the update is left to PUBLIC; each part grants
-- explicitly what its objects need.
REVOKE ALL ON ALL TABLES IN SCHEMA apikey_usage FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apikey_usage FROM PUBLIC;
------------------------------------------------------------------------
-- The definer functions' owner (ops, issue 10): every SECURITY DEFINER
-- function in SQL or PL/pgSQL runs as apikey_usage_owner, a NOLOGIN role
-- that is not a superuser and holds only what those functions need: the
-- extension's tables (DML), its functions (EXECUTE), CREATE in the schema
-- and ownership of the raw log (its day partitions are created and
-- dropped by _ensure_partition and _maintain), and the right to grant
-- the tenant roles (grant_workspace).  A mistake in one of them cannot
-- become superuser.  Views, tables and C functions keep their owner.
------------------------------------------------------------------------
DO $owner$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_owner') THEN
		CREATE ROLE apikey_usage_owner NOLOGIN;
	END IF;
END
$owner$;
GRANT USAGE, CREATE ON SCHEMA apikey_usage TO apikey_usage_owner;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA apikey_usage TO apikey_usage_owner;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA apikey_usage TO apikey_usage_owner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apikey_usage TO apikey_usage_owner;
DO $owner$
DECLARE
	r		record;
BEGIN
	-- grant_workspace / revoke_workspace manage membership in these
	FOR r IN SELECT rolname FROM pg_catalog.pg_roles
			  WHERE rolname IN ('apikey_usage_tenant', 'apikey_usage_tenant_admin')
	LOOP
		EXECUTE pg_catalog.format('GRANT %I TO apikey_usage_owner WITH ADMIN OPTION', r.rolname);
	END LOOP;
	FOR r IN SELECT p.oid::pg_catalog.regprocedure AS fn
			   FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang
			  WHERE p.pronamespace = 'apikey_usage'::pg_catalog.regnamespace AND p.prosecdef
				AND l.lanname IN ('sql', 'plpgsql')
	LOOP
		EXECUTE pg_catalog.format('ALTER FUNCTION %s OWNER TO apikey_usage_owner', r.fn);
	END LOOP;
	-- the raw log and its day partitions (existing ones after an update)
	FOR r IN SELECT 'apikey_usage.request_log_raw'::pg_catalog.regclass AS rel
			 UNION ALL
			 SELECT i.inhrelid::pg_catalog.regclass
			   FROM pg_catalog.pg_inherits i
			  WHERE i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass
	LOOP
		EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO apikey_usage_owner', r.rel);
	END LOOP;
END
$owner$;
