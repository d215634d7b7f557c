-- Issue 10, item 1: import_requests cannot make apikey_usage_admin a
-- superuser.  A member of apikey_usage_admin plants code that tries
-- ALTER ROLE ... SUPERUSER (which only succeeds when run as a superuser)
-- everywhere the import could reach: a temporary view and a permanent view
-- whose columns call it, a table with column defaults and a trigger that
-- call it, and functions and operators named like the ones the writer uses,
-- in public and pg_temp, first on its search_path.  Every import runs the
-- planted code with the caller's own rights (so it fails quietly), and no
-- role ends up a superuser.  Workspace pgtap_import_sec is used by this
-- file only.
BEGIN;
SELECT plan(10);

SELECT count(*) AS supers_before FROM pg_roles WHERE rolsuper \gset
CREATE ROLE aku_mallory NOLOGIN;
GRANT apikey_usage_admin TO aku_mallory;
GRANT CREATE ON SCHEMA public TO aku_mallory;
SELECT key_id AS k FROM apikey_usage.generate_key('pgtap_import_sec', 'import security') \gset

SET ROLE aku_mallory;
-- the payload: becomes superuser when a superuser runs it
CREATE FUNCTION public.aku_escalate(x text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	BEGIN
		EXECUTE 'ALTER ROLE aku_mallory SUPERUSER';
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	RETURN x;
END $$;
CREATE FUNCTION pg_temp.aku_escalate(x text) RETURNS text LANGUAGE sql AS $$ SELECT public.aku_escalate(x) $$;
CREATE FUNCTION public.aku_escalate_eq(a uuid, b uuid) RETURNS boolean LANGUAGE sql AS $$
	SELECT public.aku_escalate('x') IS NOT NULL AND a OPERATOR(pg_catalog.=) b $$;
CREATE FUNCTION public.aku_escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM public.aku_escalate('x'); RETURN NEW; END $$;
-- operators and functions the writer's SQL might resolve unqualified
CREATE OPERATOR public.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.aku_escalate_eq);
CREATE OPERATOR pg_temp.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = public.aku_escalate_eq);
CREATE FUNCTION public.unnest(anyarray, anyarray) RETURNS SETOF record LANGUAGE sql AS $$ SELECT NULL::record WHERE public.aku_escalate('x') IS NULL $$;
CREATE FUNCTION public.upper(text) RETURNS text LANGUAGE sql AS $$ SELECT public.aku_escalate($1) $$;
CREATE FUNCTION public.date_trunc(text, timestamptz, text) RETURNS timestamptz LANGUAGE sql AS $$ SELECT now() WHERE public.aku_escalate('x') IS NOT NULL $$;
SET search_path = public, pg_temp, pg_catalog;

-- sources whose reading runs the payload
CREATE TEMP VIEW aku_temp_view AS
	SELECT now() AS requested_at, :'k'::uuid AS api_key_id, pg_temp.aku_escalate('GET') AS method,
		   '/v1/temp-view' AS endpoint, 200 AS response_code;
CREATE VIEW public.aku_view AS
	SELECT now() AS requested_at, :'k'::uuid AS api_key_id, public.aku_escalate('GET') AS method,
		   '/v1/view' AS endpoint, 200 AS response_code, public.aku_escalate('r') AS resource_id;
CREATE TABLE public.aku_table (
	requested_at timestamptz DEFAULT now(), api_key_id uuid, method text DEFAULT public.aku_escalate('GET'),
	endpoint text DEFAULT '/v1/table', response_code integer DEFAULT 200);
CREATE TRIGGER aku_table_trigger BEFORE INSERT OR UPDATE ON public.aku_table
	FOR EACH ROW EXECUTE FUNCTION public.aku_escalate_trigger();
INSERT INTO public.aku_table (api_key_id) VALUES (:'k');

SELECT is(apikey_usage.import_requests('aku_temp_view'), 1::bigint, 'import from a temporary view whose column calls the payload');
SELECT is(apikey_usage.import_requests('public.aku_view'), 1::bigint, 'import from a permanent view whose columns call the payload');
SELECT is(apikey_usage.import_requests('public.aku_table'), 1::bigint, 'import from a table with a payload default and trigger');
SELECT is(apikey_usage.import_requests('public.aku_table'), 1::bigint, 'again (a table row has no request_id, so it is new)');
SELECT throws_ok($$SELECT apikey_usage.import_requests('apikey_usage.request_log_raw')$$, '42501', NULL,
	'the source is read with the caller''s rights: the raw log (no SELECT for admin) is refused');
RESET ROLE;
RESET search_path;

SELECT is((SELECT rolsuper FROM pg_roles WHERE rolname = 'aku_mallory'), false, 'aku_mallory is not a superuser');
SELECT is((SELECT count(*) FROM pg_roles WHERE rolsuper), :supers_before::bigint, 'no role became a superuser');
SELECT is_empty($$SELECT rolname FROM pg_roles WHERE rolsuper AND rolname LIKE 'apikey_usage%'$$,
	'no extension role is a superuser');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'k'), 4::bigint,
	'the four imports wrote their rows');
SELECT is((SELECT prosecdef FROM pg_proc WHERE oid = 'apikey_usage.import_requests(regclass)'::regprocedure), false,
	'import_requests is SECURITY INVOKER');

SELECT * FROM finish();
ROLLBACK;
