-- unused_keys() and keys.requests_30d: which live keys count as unused
-- for a given idle interval, exact 30-day request counts, and tenants
-- seeing only their own keys.  Keys are committed first (the log path sees
-- committed keys only); the ages are set inside the rolled-back test.
CREATE TEMP TABLE uk AS
SELECT n, g.* FROM unnest(ARRAY['fresh', 'old_never', 'old_recent', 'old_stale', 'deleted']) n,
	LATERAL apikey_usage.generate_key('uk-ws', 'unused ' || n) g;
CREATE TEMP TABLE uk_other AS SELECT * FROM apikey_usage.generate_key('uk-other', 'other never used');
GRANT SELECT ON uk, uk_other TO PUBLIC;

BEGIN;
SELECT plan(12);

UPDATE apikey_usage.api_keys a SET created_at = now() - interval '40 days',
	   last_used_at = CASE uk.n WHEN 'old_recent' THEN now() - interval '1 day'
								 WHEN 'old_stale' THEN now() - interval '31 days' END
  FROM uk WHERE a.key_id = uk.key_id AND uk.n <> 'fresh';
UPDATE apikey_usage.api_keys a SET created_at = now() - interval '40 days'
 WHERE a.key_id = (SELECT key_id FROM uk_other);
SELECT ok(apikey_usage.delete_key((SELECT key_id FROM uk WHERE n = 'deleted')), 'a deleted key');

SELECT is(ARRAY(SELECT name FROM apikey_usage.unused_keys() WHERE workspace = 'uk-ws'),
	ARRAY['unused old_never', 'unused old_stale'],
	'unused for 30 days: never used and older, or last used before; never-used first');
SELECT is(ARRAY(SELECT name FROM apikey_usage.unused_keys('2 days') WHERE workspace = 'uk-ws'),
	ARRAY['unused old_never', 'unused old_stale'], 'idle 2 days: the key used yesterday is still in use');
SELECT is(ARRAY(SELECT name FROM apikey_usage.unused_keys('12 hours') WHERE workspace = 'uk-ws'),
	ARRAY['unused old_never', 'unused old_stale', 'unused old_recent'], 'idle 12 hours: the key used yesterday is unused');
SELECT is(ARRAY(SELECT name FROM apikey_usage.unused_keys('60 days') WHERE workspace = 'uk-ws'),
	'{}'::text[], 'idle 60 days: nothing');
SELECT is((SELECT count(*) FROM apikey_usage.unused_keys() u JOIN uk USING (key_id)
			WHERE u.key_prefix IS NULL OR u.created_at IS NULL), 0::bigint, 'prefix and creation time are listed');
SELECT throws_ok($$SELECT * FROM apikey_usage.unused_keys(NULL)$$, '22004', NULL, 'NULL idle is 22004');
SELECT throws_ok($$SELECT * FROM apikey_usage.unused_keys('-1 day')$$, '22023', NULL, 'negative idle is 22023');

-- requests_30d: exact over [now() - 30 days, now())
SELECT is(count(apikey_usage.log_request((SELECT key_id FROM uk WHERE n = 'fresh'), 'GET', '/r30', 200,
		requested_at => now() - make_interval(hours => h))), 4::bigint, 'four requests logged')
  FROM unnest(ARRAY[1, 25, 29 * 24, 31 * 24]) h;
SELECT ok(apikey_usage.flush() >= 0, 'flushed');
SELECT is((SELECT requests_30d FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM uk WHERE n = 'fresh')), 3::bigint,
	'requests_30d counts the requests of the last 30 days exactly');

-- a tenant's unused keys are its own
CREATE ROLE uk_tenant LOGIN;
SELECT apikey_usage.grant_workspace('uk_tenant', 'uk-other');
SET ROLE uk_tenant;
SELECT is(ARRAY(SELECT name FROM apikey_usage.unused_keys()), ARRAY['other never used'], 'a tenant lists only its unused keys');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;

DO $$ BEGIN PERFORM apikey_usage.delete_key(key_id) FROM uk WHERE n <> 'deleted'; PERFORM apikey_usage.delete_key(key_id) FROM uk_other; END $$;
