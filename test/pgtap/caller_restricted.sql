-- A tenant's code run by someone else's maintenance command, or called by
-- someone else as a SECURITY DEFINER function, is not that someone.  ANALYZE, VACUUM, REINDEX, CREATE INDEX and REFRESH evaluate a
-- table's index expressions as the table's owner, inside a
-- security-restricted operation, while the session (or autovacuum) is a
-- superuser: the extension must not take the superuser for the caller.
-- The attack: a tenant admin owns a table indexed on a function that
-- copies every key it can see into a stash; a superuser's ANALYZE (or
-- autovacuum's) evaluates it.
CREATE TEMP TABLE rk AS
SELECT 'mine' AS ws, g.* FROM apikey_usage.generate_key('rs-mine', 'own key') g
UNION ALL
SELECT 'other', g.* FROM apikey_usage.generate_key('rs-other', 'victim key') g;
GRANT SELECT ON rk TO PUBLIC;

BEGIN;
SELECT plan(19);

CREATE ROLE rs_tenant LOGIN;
SELECT apikey_usage.grant_workspace('rs_tenant', 'rs-mine', 'admin');
CREATE SCHEMA rs_tenant AUTHORIZATION rs_tenant;

SET ROLE rs_tenant;
CREATE TABLE rs_tenant.stash (api_key text);
CREATE FUNCTION rs_tenant.stash_keys() RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	INSERT INTO rs_tenant.stash
	SELECT apikey_usage.copy_key(k.key_id) FROM apikey_usage.keys k WHERE k.workspace LIKE 'rs-%';
	RETURN 1;
END$$;
CREATE FUNCTION rs_tenant.f(integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	RETURN rs_tenant.stash_keys() + $1;
END$$;
CREATE TABLE rs_tenant.t (i integer);
CREATE INDEX ON rs_tenant.t (rs_tenant.f(i));
-- the tenant's own inserts run its function as itself: its workspace only
INSERT INTO rs_tenant.t VALUES (1);
SELECT is((SELECT count(*) FROM rs_tenant.stash), 1::bigint, 'run by the tenant itself, the function sees its own key');
SELECT is((SELECT api_key FROM rs_tenant.stash), (SELECT api_key FROM rk WHERE ws = 'mine'), '...and copies only that one');
RESET ROLE;

-- a superuser's maintenance evaluates the index function as the tenant,
-- in a security-restricted operation: refused, nothing copied
SELECT throws_ok($$ANALYZE rs_tenant.t$$, '42501', NULL, 'ANALYZE by a superuser: the function is refused');
SELECT throws_ok($$REINDEX TABLE rs_tenant.t$$, '42501', NULL, 'REINDEX by a superuser: refused');
SELECT is((SELECT count(*) FROM rs_tenant.stash), 1::bigint, 'nothing more was copied');
SELECT is((SELECT count(*) FROM rs_tenant.stash WHERE api_key = (SELECT api_key FROM rk WHERE ws = 'other')), 0::bigint,
	'the other workspace''s key never reached the stash');
-- refused, not blinded: the restricted operation itself gets the error
SELECT throws_ok($$CREATE INDEX ON rs_tenant.t ((rs_tenant.f(i) + 0))$$, '42501',
	'apikey_usage cannot be used inside a security-restricted operation',
	'CREATE INDEX over existing rows: the message says why');
-- entered through a view, the caller of a restricted operation is the role
-- whose code runs: a tenant's materialized view refreshed by a superuser
-- holds the tenant's rows, not everyone's
SET ROLE rs_tenant;
CREATE MATERIALIZED VIEW rs_tenant.mv AS
SELECT workspace, name FROM apikey_usage.keys WHERE workspace LIKE 'rs-%' WITH NO DATA;
RESET ROLE;
SELECT lives_ok($$REFRESH MATERIALIZED VIEW rs_tenant.mv$$, 'a superuser refreshes a tenant''s materialized view over keys');
SELECT is(ARRAY(SELECT workspace FROM rs_tenant.mv), ARRAY['rs-mine'], '...which holds the tenant''s keys only');
-- a tenant cannot borrow a global role's SECURITY DEFINER function inside a
-- materialized view of its own: the less privileged role counts there
CREATE ROLE rs_reporting NOLOGIN IN ROLE apikey_usage_reader;
CREATE SCHEMA rs_reporting AUTHORIZATION rs_reporting;
SET ROLE rs_reporting;
CREATE FUNCTION rs_reporting.key_workspaces() RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog AS $$SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'rs-%'$$;
GRANT USAGE ON SCHEMA rs_reporting TO rs_tenant;
GRANT EXECUTE ON FUNCTION rs_reporting.key_workspaces() TO rs_tenant;
RESET ROLE;
SET ROLE rs_tenant;
SELECT is(ARRAY(SELECT rs_reporting.key_workspaces()), ARRAY['rs-mine'], 'called by a tenant, a global role''s definer function shows the tenant''s keys');
CREATE MATERIALIZED VIEW rs_tenant.borrowed AS SELECT rs_reporting.key_workspaces() AS workspace;
SELECT is(ARRAY(SELECT workspace FROM rs_tenant.borrowed), ARRAY['rs-mine'], '...and the same inside the tenant''s materialized view');
RESET ROLE;
-- refreshed by a superuser, both roles are global, and the definer function
-- hides who called it: refused rather than answered with everything
SELECT throws_ok($$REFRESH MATERIALIZED VIEW rs_tenant.borrowed$$, '42501', NULL,
	'a superuser''s refresh of it is refused');
SELECT is(ARRAY(SELECT workspace FROM rs_tenant.borrowed), ARRAY['rs-mine'], '...and the view still holds the tenant''s rows only');
-- the extension's owner (a superuser) may materialize the views
SELECT lives_ok($$CREATE MATERIALIZED VIEW rs_tenant.all_keys AS SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'rs-%'$$,
	'the extension owner creates a materialized view over keys');
SELECT is(ARRAY(SELECT workspace FROM rs_tenant.all_keys ORDER BY 1), ARRAY['rs-mine', 'rs-other'], '...holding every workspace');
-- outside maintenance too, the less privileged role counts when another
-- role's definer function runs: a superuser calling a tenant's definer
-- function gets the tenant's view, not its own
SET ROLE rs_tenant;
CREATE FUNCTION rs_tenant.peek() RETURNS SETOF text LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog AS $$SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'rs-%'$$;
RESET ROLE;
SELECT is(ARRAY(SELECT rs_tenant.peek()), ARRAY['rs-mine'], 'a superuser calling a tenant''s definer function sees what the tenant sees');
SELECT is(ARRAY(SELECT workspace FROM apikey_usage.keys WHERE workspace LIKE 'rs-%' ORDER BY 1), ARRAY['rs-mine', 'rs-other'],
	'...and everything in its own statements');
-- outside maintenance a superuser still acts as itself
SELECT ok(apikey_usage._caller_is_global(), 'a superuser session is global outside restricted operations');
SELECT ok((SELECT count(*) FROM apikey_usage.keys WHERE workspace LIKE 'rs-%') = 2, 'and sees both workspaces');

SELECT * FROM finish();
ROLLBACK;

SELECT apikey_usage.delete_key(key_id) FROM rk;
DROP TABLE rk;
