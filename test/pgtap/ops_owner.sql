-- Issue 10: the SECURITY DEFINER functions run as apikey_usage_owner, a
-- role that is not a superuser and holds only the extension's tables,
-- functions and raw-log partitions (README "Roles and security model").
BEGIN;
SELECT plan(7);

SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls OR rolcanlogin
			 FROM pg_roles WHERE rolname = 'apikey_usage_owner'), false,
	'apikey_usage_owner exists and is no superuser, cannot create roles or databases, log in, replicate or bypass RLS');
SELECT ok((SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
			WHERE p.pronamespace = 'apikey_usage'::regnamespace AND p.prosecdef
			  AND l.lanname IN ('sql', 'plpgsql')) >= 10,
	'there are SQL and PL/pgSQL definer functions to check');
SELECT is((SELECT string_agg(p.oid::regprocedure::text, ', ')
			 FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
			WHERE p.pronamespace = 'apikey_usage'::regnamespace AND p.prosecdef
			  AND l.lanname IN ('sql', 'plpgsql')
			  AND p.proowner <> 'apikey_usage_owner'::regrole), NULL,
	'every SQL and PL/pgSQL definer function is owned by apikey_usage_owner');
SELECT is((SELECT count(*) FROM pg_proc p
			WHERE p.pronamespace = 'apikey_usage'::regnamespace AND p.prosecdef
			  AND pg_catalog.array_to_string(p.proconfig, ',') NOT LIKE '%search_path=pg_catalog, pg_temp%'), 0::bigint,
	'every definer function pins search_path = pg_catalog, pg_temp');

-- the definer functions really run as the owner: partitions made by
-- _maintain belong to it, and it may drop them at retention
SELECT apikey_usage._ensure_partition('2099-01-01 12:00+00');
SELECT is((SELECT relowner::regrole::text FROM pg_class WHERE oid = 'apikey_usage.request_log_raw_p20990101'::regclass),
	'apikey_usage_owner', 'a partition created by _ensure_partition belongs to apikey_usage_owner');
SELECT is((SELECT count(*) FROM pg_index WHERE indrelid = 'apikey_usage.request_log_raw_p20990101'::regclass), 3::bigint,
	'with its three indexes');
SELECT is((SELECT string_agg(c.relname, ', ')
			 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass
			  AND c.relowner <> 'apikey_usage_owner'::regrole), NULL,
	'every day partition belongs to apikey_usage_owner (retention can drop it)');

SELECT * FROM finish();
ROLLBACK;
