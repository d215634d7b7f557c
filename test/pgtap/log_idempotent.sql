-- Idempotent logging and batches: log_request logs a (request_id,
-- requested_at) once, whether the duplicate is still in the buffer or
-- already in the tables, and after check_request logged a 429 for it;
-- log_requests checks every element before logging any; import_requests
-- goes through the same writer.  Workspace pgtap_idem is used by this
-- file only.  (The crash case is test/shell/log_idempotent_crash.sh.)
-- the request path sees committed keys only: this one is committed first
SELECT key_id, api_key FROM apikey_usage.generate_key('pgtap_idem', 'limited', rate_limit => 1, rate_window => '1 day') \gset limited_
BEGIN;
SELECT plan(23);

SELECT key_id AS k FROM apikey_usage.generate_key('pgtap_idem', 'idempotent') \gset
SELECT entries_flushed AS flushed0, duplicates_skipped AS dup0 FROM apikey_usage.runtime_stats \gset

-- ---- twice in the buffer, then again after a flush ----
SELECT apikey_usage.log_request(:'k', 'GET', '/v1/idem', 200, 'r1') AS id1 \gset
SELECT is(apikey_usage.log_request(:'k', 'GET', '/v1/idem', 200, 'r1', :'id1'), :'id1'::uuid,
	'logging a request id again returns it');
SELECT apikey_usage.log_request(:'k', 'GET', '/v1/idem', 200, 'r1', :'id1');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE request_id = :'id1'), 1::bigint,
	'three calls with one request id (two still in the buffer together): one row');
SELECT apikey_usage.log_request(:'k', 'GET', '/v1/idem', 200, 'r1', :'id1');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE request_id = :'id1'), 1::bigint,
	'logged again after it reached the tables: still one row');
SELECT is((SELECT sum(requests) FROM apikey_usage.usage_hourly WHERE api_key_id = :'k'), 1::numeric,
	'the rollups count it once');
SELECT is((SELECT duplicates_skipped FROM apikey_usage.runtime_stats) - :dup0, 3::bigint,
	'runtime_stats counts the three duplicates');

-- ---- after check_request logged a 429 for the request ----
SELECT ok((SELECT allowed FROM apikey_usage.check_request(:'limited_api_key', 'GET', '/v1/limited')), 'first request allowed');
SELECT request_id AS refused_id, response_code AS refused_code
  FROM apikey_usage.check_request(:'limited_api_key', 'GET', '/v1/limited') \gset
SELECT is(:refused_code, 429, 'second request refused with 429 (and logged)');
SELECT is(apikey_usage.log_request(:'limited_key_id', 'GET', '/v1/limited', 429, NULL, :'refused_id'), :'refused_id'::uuid,
	'the gateway logs the 429 again with its request id');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE request_id = :'refused_id'), 1::bigint,
	'the 429 is in the log once');
SELECT is((SELECT rate_limited FROM apikey_usage.usage_summary(:'limited_key_id', NULL, NULL)), 1::bigint,
	'and counted once as rate_limited');

-- ---- log_requests: all or nothing ----
SELECT throws_ok(format($$SELECT apikey_usage.log_requests(ARRAY[%L, %L, %L]::uuid[],
		ARRAY['GET', 'POST', 'PUT'], ARRAY['/v1/batch', '/v1/batch', 'no-slash'], ARRAY[200, 201, 202])$$, :'k', :'k', :'k'),
	'22023', 'element 3: endpoint must start with "/" and be 1 to 1024 bytes long',
	'a bad third element: 22023 naming element 3');
SELECT throws_ok(format($$SELECT apikey_usage.log_requests(ARRAY[%L, %L]::uuid[],
		ARRAY['GET', NULL], ARRAY['/v1/batch', '/v1/batch'], ARRAY[200, 201])$$, :'k', :'k'),
	'22004', 'element 2: method must not be NULL', 'a NULL method in element 2: 22004');
SELECT throws_ok(format($$SELECT apikey_usage.log_requests(ARRAY[%L, %L]::uuid[],
		ARRAY['GET', 'GET'], ARRAY['/v1/batch'], ARRAY[200, 201])$$, :'k', :'k'),
	'22023', NULL, 'arrays of different lengths: 22023');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint = '/v1/batch'), 0::bigint,
	'a refused batch logged nothing');
SELECT is(apikey_usage.log_requests(array_fill(:'k'::uuid, ARRAY[3]), ARRAY['get', 'POST', 'PUT'],
		ARRAY['/v1/batch', '/v1/batch', '/v1/batch'], ARRAY[200, 201, 503], ARRAY['a', NULL, 'c'],
		ARRAY[:'id1', NULL, NULL]::uuid[]),
	3::bigint, 'a good batch of three (one of them a duplicate) is accepted');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT string_agg(method || ' ' || response_code || ' ' || coalesce(resource_id, '-'), ', ' ORDER BY response_code)
		FROM apikey_usage.request_log_raw WHERE api_key_id = :'k' AND endpoint = '/v1/batch'),
	'POST 201 -, PUT 503 c',
	'the two new elements are logged, the duplicate is not');

-- ---- synchronous mode: a batch is in the tables when log_requests returns ----
SET LOCAL apikey_usage.log_mode = 'synchronous';
SELECT is(apikey_usage.log_requests(array_fill(:'k'::uuid, ARRAY[4]), array_fill('GET'::text, ARRAY[4]),
		array_fill('/v1/sync-batch'::text, ARRAY[4]), ARRAY[200, 201, 202, 203]),
	4::bigint, 'synchronous mode: a batch of four');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint = '/v1/sync-batch'), 4::bigint,
	'synchronous mode: all four are in the tables when log_requests returns (no flush())');
RESET apikey_usage.log_mode;

SELECT * FROM finish();
ROLLBACK;
