-- Run by test/shell/tenant_leak.sh on its seeded cluster (see there).
-- Expected values are computed as the superuser, restricted to acme by
-- explicit key lists, before switching to the tenant.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
SELECT plan(52);

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

-- analytics: NULL = the tenant's keys; another workspace's key = an unknown key
SELECT is((SELECT sum(requests) FROM apikey_usage.hourly_usage), (SELECT hourly FROM exp), 'hourly_usage: the acme total');
SELECT is((SELECT count(*) FROM apikey_usage.hourly_usage WHERE key_id IN (SELECT key_id FROM globex_keys) OR workspace = 'globex'), 0::bigint,
	'hourly_usage: no globex row');
SELECT is((SELECT sum(requests) FROM apikey_usage.daily_usage), (SELECT daily FROM exp), 'daily_usage: the acme total');
SELECT is((SELECT count(*) FROM apikey_usage.daily_usage WHERE key_id IN (SELECT key_id FROM globex_keys) OR workspace = 'globex'), 0::bigint,
	'daily_usage: no globex row');
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.hourly_usage WHERE pg_temp.leak(coalesce(workspace, '?') || ' ' || key_id)$$, 'leaky filter on hourly_usage');
SELECT lives_ok($$SELECT count(*) FROM apikey_usage.daily_usage WHERE pg_temp.leak(coalesce(workspace, '?') || ' ' || key_id)$$, 'leaky filter on daily_usage');
-- analytics: NULL = the tenant's keys; another workspace's key = an unknown key
SELECT is((SELECT row(total_requests, completed, failed, rate_limited)::text FROM bounds, LATERAL apikey_usage.usage_summary(NULL, since, until)),
	(SELECT summary FROM exp), 'usage_summary(NULL): the acme totals');
SELECT is((SELECT row(total_requests, completed, failed, rate_limited)::text FROM apikey_usage.usage_summary((SELECT key_id FROM globex_keys WHERE n = 'Production'))),
	(SELECT row(total_requests, completed, failed, rate_limited)::text FROM apikey_usage.usage_summary(gen_random_uuid())),
	'usage_summary(globex key) = an unknown key');
SELECT is((SELECT array_agg(row(method, requests)::text ORDER BY row(method, requests)::text) FROM bounds, LATERAL apikey_usage.usage_by_method(NULL, since, until)),
	(SELECT by_method FROM exp), 'usage_by_method(NULL): acme only');
SELECT is((SELECT count(*) FROM apikey_usage.usage_by_method((SELECT key_id FROM globex_keys WHERE n = 'Production'))), 0::bigint,
	'usage_by_method(globex key): no rows');
SELECT is((SELECT array_agg(row(response_code, requests)::text ORDER BY row(response_code, requests)::text) FROM bounds, LATERAL apikey_usage.usage_by_response_status(NULL, since, until)),
	(SELECT by_status FROM exp), 'usage_by_response_status(NULL): acme only');
SELECT is((SELECT count(*) FROM apikey_usage.usage_by_response_status((SELECT key_id FROM globex_keys WHERE n = 'Zapier Integration'))), 0::bigint,
	'usage_by_response_status(globex key): no rows');
SELECT is((SELECT array_agg(row(endpoint, requests)::text ORDER BY row(endpoint, requests)::text) FROM bounds, LATERAL apikey_usage.top_endpoints(NULL, since, until)),
	(SELECT endpoints FROM exp), 'top_endpoints(NULL): acme only');
SELECT is((SELECT count(*) FROM apikey_usage.top_endpoints((SELECT key_id FROM globex_keys WHERE n = 'Old'))), 0::bigint,
	'top_endpoints(deleted globex key): no rows');
SELECT is((SELECT array_agg(row(bucket_start, total_requests, failed)::text ORDER BY row(bucket_start, total_requests, failed)::text)
			 FROM bounds, LATERAL apikey_usage.usage_timeseries(NULL, since, until, '1 day')),
	(SELECT timeseries FROM exp), 'usage_timeseries(NULL): acme only');
SELECT is((SELECT array_agg(row(bucket_start, total_requests, failed)::text ORDER BY row(bucket_start, total_requests, failed)::text)
			 FROM bounds, LATERAL apikey_usage.usage_timeseries((SELECT key_id FROM globex_keys WHERE n = 'Production'), since, until, '1 day')),
	(SELECT timeseries_unknown FROM exp), 'usage_timeseries(globex key) = an unknown key (zeros)');

-- request_log: pagination by keyset cursors walks exactly the acme log
CREATE TEMP TABLE pages (request_id uuid, requested_at timestamptz, api_key_id uuid);
DO $$
DECLARE
	cur_at	timestamptz;
	cur_id	uuid;
	got		integer;
BEGIN
	LOOP
		INSERT INTO pages
		SELECT r.request_id, r.requested_at, r.api_key_id
		  FROM apikey_usage.request_log(since => NULL, max_rows => 7,
										before_requested_at => cur_at, before_request_id => cur_id) r;
		GET DIAGNOSTICS got = ROW_COUNT;
		EXIT WHEN got < 7;
		SELECT p.requested_at, p.request_id INTO cur_at, cur_id FROM pages p
		 ORDER BY p.requested_at, p.request_id LIMIT 1;
	END LOOP;
END $$;
SELECT is((SELECT row(count(*), count(DISTINCT request_id), count(*) FILTER (WHERE request_id <> ALL ((SELECT request_ids FROM exp)::uuid[])))::text FROM pages),
	(SELECT row(requests, requests, 0)::text FROM exp), 'request_log pages: exactly the acme requests, each once');
SELECT is((SELECT count(*) FROM apikey_usage.request_log((SELECT key_id FROM globex_keys WHERE n = 'Production'), since => NULL)), 0::bigint,
	'request_log(globex key): no rows');
SELECT is((SELECT count(*) FROM apikey_usage.request_log(resource_id => 'doc-1', since => NULL, max_rows => 10000)), (SELECT doc1 FROM exp),
	'request_log by resource id: the acme requests only');
SELECT is((SELECT count(*) FROM apikey_usage.request_log(since => NULL, status => 'failed', method => 'POST', endpoint => '/v1/documents/{id}',
			response_code => 500, max_rows => 10000) r WHERE r.api_key_id NOT IN (SELECT key_id FROM acme_keys)), 0::bigint,
	'request_log with every filter: acme only');
SELECT is((SELECT count(*) FROM exp, LATERAL apikey_usage.request_log(since => NULL, max_rows => 10000,
			before_requested_at => exp.globex_cursor_at, before_request_id => exp.globex_cursor_id) r
		   WHERE r.api_key_id NOT IN (SELECT key_id FROM acme_keys)), 0::bigint,
	'request_log from a cursor taken in globex''s log: acme rows only');

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
