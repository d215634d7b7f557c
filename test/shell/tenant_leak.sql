-- Run by test/shell/tenant_leak.sh on its seeded cluster (see there).
-- Expected values are computed as the superuser, restricted to acme by
-- explicit key lists, before switching to the tenant.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
SELECT plan(31);

CREATE TEMP TABLE acme_keys AS SELECT key_id, n FROM public.lk WHERE ws = 'acme';
CREATE TEMP TABLE globex_keys AS SELECT key_id, n FROM public.lk WHERE ws = 'globex';
CREATE TEMP TABLE bounds AS SELECT now() - interval '3 days' AS since, now() + interval '1 minute' AS until;
CREATE TEMP TABLE exp AS SELECT
	(SELECT array_agg(key_id ORDER BY key_id) FROM public.lk WHERE ws = 'acme' AND n <> 'Old') AS live_keys,
	(SELECT count(*) FROM apikey_usage.requests WHERE workspace = 'acme') AS requests,
	(SELECT array_agg(request_id ORDER BY request_id) FROM apikey_usage.requests WHERE workspace = 'acme') AS request_ids,
	(SELECT count(*) FROM apikey_usage.requests r JOIN apikey_usage.keys k ON k.key_id = r.api_key_id
	  WHERE r.workspace = 'acme' AND r.key_name = 'Zapier Integration' AND r.status = 'failed' AND r.endpoint = '/v1/documents/{id}') AS filtered,
	(SELECT sum(requests) FROM apikey_usage.hourly_usage WHERE workspace = 'acme') AS hourly,
	(SELECT sum(requests) FROM apikey_usage.daily_usage WHERE workspace = 'acme') AS daily,
	(SELECT row(sum(s.total_requests), sum(s.completed), sum(s.failed), sum(s.rate_limited))::text
	   FROM acme_keys, bounds, LATERAL apikey_usage.usage_summary(acme_keys.key_id, since, until) s) AS summary,
	(SELECT array_agg(x ORDER BY x) FROM (SELECT row(m.method, sum(m.requests))::text x
	   FROM acme_keys, bounds, LATERAL apikey_usage.usage_by_method(acme_keys.key_id, since, until) m GROUP BY m.method) s) AS by_method,
	(SELECT array_agg(x ORDER BY x) FROM (SELECT row(m.response_code, sum(m.requests))::text x
	   FROM acme_keys, bounds, LATERAL apikey_usage.usage_by_response_status(acme_keys.key_id, since, until) m GROUP BY m.response_code) s) AS by_status,
	(SELECT array_agg(x ORDER BY x) FROM (SELECT row(m.endpoint, sum(m.requests))::text x
	   FROM acme_keys, bounds, LATERAL apikey_usage.top_endpoints(acme_keys.key_id, since, until) m GROUP BY m.endpoint) s) AS endpoints,
	(SELECT array_agg(x ORDER BY x) FROM (SELECT row(t.bucket_start, sum(t.total_requests), sum(t.failed))::text x
	   FROM acme_keys, bounds, LATERAL apikey_usage.usage_timeseries(acme_keys.key_id, since, until, '1 day') t GROUP BY t.bucket_start) s) AS timeseries,
	(SELECT array_agg(x ORDER BY x) FROM (SELECT row(t.bucket_start, t.total_requests, t.failed)::text x
	   FROM bounds, LATERAL apikey_usage.usage_timeseries(gen_random_uuid(), since, until, '1 day') t) s) AS timeseries_unknown,
	(SELECT count(*) FROM apikey_usage.requests WHERE workspace = 'acme' AND resource_id = 'doc-1') AS doc1,
	(SELECT requested_at FROM apikey_usage.requests WHERE workspace = 'globex'
	  ORDER BY requested_at DESC, request_id DESC OFFSET 40 LIMIT 1) AS globex_cursor_at,
	(SELECT request_id FROM apikey_usage.requests WHERE workspace = 'globex'
	  ORDER BY requested_at DESC, request_id DESC OFFSET 40 LIMIT 1) AS globex_cursor_id,
	(SELECT rule_id FROM apikey_usage.alert_rules WHERE workspace = 'globex') AS globex_rule;
-- the cache's live last_used values of both workspaces
SELECT count(apikey_usage.verify_key(api_key)) FROM public.lk;
GRANT SELECT ON acme_keys, globex_keys, bounds, exp TO PUBLIC;
CREATE TEMP TABLE leaked (value text);
GRANT INSERT, SELECT ON leaked TO PUBLIC;
-- a function that leaks every argument it sees; very cheap, so the
-- planner would evaluate it first if the views let it
CREATE FUNCTION pg_temp.leak(value text) RETURNS boolean
	LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	INSERT INTO pg_temp.leaked VALUES (value);
	RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.leak(text) TO PUBLIC;

SET ROLE acme_t;

-- views
SELECT is((SELECT array_agg(key_id ORDER BY key_id) FROM apikey_usage.keys), (SELECT live_keys FROM exp), 'keys: exactly the live acme keys');
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE name = 'Zapier Integration'), 1::bigint, 'keys: one Zapier Integration, not two');
SELECT is((SELECT count(*) FROM apikey_usage.requests), (SELECT requests FROM exp), 'requests: the acme count');
SELECT is((SELECT count(*) FROM apikey_usage.requests r WHERE r.request_id <> ALL ((SELECT request_ids FROM exp)::uuid[])), 0::bigint,
	'requests: no request id outside the acme log');
SELECT is((SELECT count(*) FROM apikey_usage.requests r JOIN apikey_usage.keys k ON k.key_id = r.api_key_id
			WHERE r.key_name = 'Zapier Integration' AND r.status = 'failed' AND r.endpoint = '/v1/documents/{id}'),
	(SELECT filtered FROM exp), 'requests joined to keys, filtered by name, status and endpoint');
SELECT is((SELECT count(*) FROM apikey_usage.requests WHERE api_key_id IN (SELECT key_id FROM globex_keys)), 0::bigint,
	'requests: nothing under another workspace''s key ids');
SELECT is((SELECT count(*) FROM apikey_usage.requests WHERE workspace = 'globex'), 0::bigint, 'requests: asking for globex gives nothing');
SELECT is((SELECT array_agg(DISTINCT workspace) FROM apikey_usage.alert_rules), ARRAY['acme'], 'alert_rules: acme only');
SELECT is((SELECT array_agg(DISTINCT workspace) FROM apikey_usage.alert_events), ARRAY['acme'], 'alert_events: acme only');
SELECT is((SELECT count(*) FROM apikey_usage._visible_last_used() WHERE key_id IN (SELECT key_id FROM globex_keys)), 0::bigint,
	'live last_used values: none of globex');
SELECT is((SELECT count(*) FROM apikey_usage.unused_keys('0') WHERE workspace <> 'acme'), 0::bigint, 'unused_keys: acme only');

-- a leaky function in the WHERE clause sees only acme rows
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.keys WHERE pg_temp.leak(workspace || ' ' || key_id)$$, 'leaky filter on keys');
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.requests WHERE pg_temp.leak(workspace || ' ' || api_key_id)$$, 'leaky filter on requests');
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.alert_rules WHERE pg_temp.leak(workspace)$$, 'leaky filter on alert_rules');
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.alert_events WHERE pg_temp.leak(workspace)$$, 'leaky filter on alert_events');
SELECT is((SELECT count(*) FROM leaked WHERE value NOT LIKE 'acme %' AND value <> 'acme'), 0::bigint,
	'the leaky function never saw another workspace''s row');

-- no direct access to anything behind the views
SELECT throws_ok($$SELECT count(*) FROM apikey_usage.request_log_raw$$, '42501', NULL, 'tenant cannot read the raw log');
SELECT throws_ok($$SELECT count(*) FROM apikey_usage.usage_hourly$$, '42501', NULL, 'tenant cannot read the rollups');
SELECT throws_ok($$SELECT count(*) FROM apikey_usage.api_keys$$, '42501', NULL, 'tenant cannot read the key table');
SELECT throws_ok($$SELECT count(*) FROM apikey_usage.alert_rule$$, '42501', NULL, 'tenant cannot read the alert tables');
SELECT throws_ok($$SELECT * FROM apikey_usage._alert_counts('globex', NULL, now() - interval '1 day', now())$$, '42501', NULL,
	'tenant cannot call the internal counters');
SELECT throws_ok($$SELECT * FROM apikey_usage.generate_key('acme', 'x')$$, '42501', NULL, 'a reader tenant manages no keys');
RESET ROLE;

-- an admin tenant: its workspace's keys and rules, 42501 for globex's
SET ROLE acme_adm;
SELECT ok(apikey_usage.copy_key((SELECT key_id FROM acme_keys WHERE n = 'Production')) IS NOT NULL, 'admin tenant copies its own key');
SELECT throws_ok($$SELECT apikey_usage.copy_key((SELECT key_id FROM globex_keys WHERE n = 'Production'))$$, '42501', NULL, 'copy_key(globex key): 42501');
SELECT throws_ok($$SELECT apikey_usage.rename_key((SELECT key_id FROM globex_keys WHERE n = 'Production'), 'x')$$, '42501', NULL, 'rename_key(globex key): 42501');
SELECT throws_ok($$SELECT apikey_usage.set_rate_limit((SELECT key_id FROM globex_keys WHERE n = 'Production'), 1)$$, '42501', NULL, 'set_rate_limit(globex key): 42501');
SELECT throws_ok($$SELECT apikey_usage.roll_key((SELECT key_id FROM globex_keys WHERE n = 'Production'))$$, '42501', NULL, 'roll_key(globex key): 42501');
SELECT throws_ok($$SELECT apikey_usage.delete_key((SELECT key_id FROM globex_keys WHERE n = 'Production'))$$, '42501', NULL, 'delete_key(globex key): 42501');
SELECT throws_ok($$SELECT apikey_usage.create_alert_rule('globex', 'failed', 1)$$, '42501', NULL, 'create_alert_rule(globex): 42501');
SELECT throws_ok($$SELECT apikey_usage.drop_alert_rule((SELECT globex_rule FROM exp))$$, '42501', NULL, 'drop_alert_rule(globex rule): 42501');
RESET ROLE;
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE workspace = 'globex' AND name IN ('Zapier Integration', 'Production')), 2::bigint,
	'globex''s keys are untouched');

SELECT * FROM finish();
ROLLBACK;
