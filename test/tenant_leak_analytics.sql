-- Analytics part of the leak test (test/shell/tenant_leak.sql), waiting for
-- the analytics functions and rollup views to filter through the
-- visibility functions; it goes back into tenant_leak.sql (before "-- no
-- direct access") once they do.  Not run by make test.
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

