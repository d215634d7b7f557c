-- log_request: bad input is refused with 22023 / 22004 and logs nothing;
-- good input is normalised (method upper-cased), gets a UUIDv7 request_id
-- when none is given, takes requested_at from a given UUIDv7, derives the
-- status from the response code, and is non-transactional.
-- Workspace pgtap_log_request is used by this file only.
BEGIN;
SELECT plan(51);

SELECT key_id AS bad_key FROM apikey_usage.generate_key('pgtap_log_request', 'bad input') \gset
SELECT key_id AS good_key FROM apikey_usage.generate_key('pgtap_log_request', 'good input') \gset
SELECT key_id AS gone_key FROM apikey_usage.generate_key('pgtap_log_request', 'deleted') \gset
SELECT '8f2d3c1e-5a4b-4c6d-9e8f-0a1b2c3d4e5f'::uuid AS unknown_key \gset

-- ---- bad input: method ----
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GE T', '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method with a space: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, '', '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'empty method: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, repeat('A', 33), '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method of 33 bytes: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET/', '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method with "/" (not a tchar): 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'G(E)T', '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method with parentheses: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GÉT', '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method with a non-ASCII letter: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET' || chr(9), '/v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'method with a tab: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, NULL, '/v1/x', 200)$$, :'bad_key'),
	'22004', NULL, 'NULL method: 22004');

-- ---- bad input: endpoint ----
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', 'v1/x', 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint without a leading "/": 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '', 200)$$, :'bad_key'),
	'22023', NULL, 'empty endpoint: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/' || repeat('a', 1024), 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint of 1025 bytes: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/' || repeat('é', 512), 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint of 513 characters but 1025 bytes: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x' || chr(10), 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint with a newline: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/' || chr(1) || 'x', 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint with \x01: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x' || chr(127), 200)$$, :'bad_key'),
	'22023', NULL, 'endpoint with DEL: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', NULL, 200)$$, :'bad_key'),
	'22004', NULL, 'NULL endpoint: 22004');

-- ---- bad input: response code, resource, key, time ----
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 99)$$, :'bad_key'),
	'22023', NULL, 'response code 99: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 600)$$, :'bad_key'),
	'22023', NULL, 'response code 600: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', -200)$$, :'bad_key'),
	'22023', NULL, 'response code -200: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', NULL)$$, :'bad_key'),
	'22004', NULL, 'NULL response code: 22004');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 200, repeat('r', 257))$$, :'bad_key'),
	'22023', NULL, 'resource_id of 257 bytes: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 200)$$, :'unknown_key'),
	'22023', NULL, 'a key_id that never existed: 22023');
SELECT throws_ok($$SELECT apikey_usage.log_request(NULL, 'GET', '/v1/x', 200)$$,
	'22004', NULL, 'NULL key_id: 22004');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 200, NULL, NULL,
		now() - current_setting('apikey_usage.retention')::interval - interval '1 minute')$$, :'bad_key'),
	'22023', NULL, 'requested_at before now() - retention: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 200, NULL, NULL,
		now() + interval '1 hour 1 minute')$$, :'bad_key'),
	'22023', NULL, 'requested_at after now() + 1 hour: 22023');
SELECT throws_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/x', 200, NULL, NULL, 'infinity')$$, :'bad_key'),
	'22023', NULL, 'requested_at infinity: 22023');

SELECT ok(apikey_usage.flush() >= 0, 'flush() after the bad calls');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'bad_key'), 0::bigint,
	'no bad call logged anything for the key');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'unknown_key'), 0::bigint,
	'nothing logged under the unknown key_id');

-- ---- good input ----
-- method upper-cased; generated request_id is a UUIDv7 whose time is requested_at
SELECT apikey_usage.log_request(:'good_key', 'get', '/v1/upper', 200) AS upper_id \gset
SELECT apikey_usage.log_request(:'good_key', 'm-search', '/v1/upper', 200, 'doc-1') AS token_id \gset
-- boundaries accepted: method 32 bytes, endpoint 1024 bytes, resource_id 256 bytes, codes 100 / 599
SELECT lives_ok(format($$SELECT apikey_usage.log_request(%L, repeat('x', 32), '/' || repeat('e', 1023), 100, repeat('r', 256))$$,
	:'good_key'), 'method of 32 bytes, endpoint of 1024 bytes, resource_id of 256 bytes, code 100 accepted');
-- status from the response code
SELECT is((SELECT count(apikey_usage.log_request(:'good_key', 'POST', '/v1/status', c))
	FROM unnest(ARRAY[101, 204, 399, 400, 401, 429, 500, 599]) c), 8::bigint, 'eight response codes logged');
-- a given UUIDv7 request_id: requested_at = the time inside it
SELECT date_trunc('milliseconds', greatest(now() - interval '10 minutes',
		date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')) AS v7_time \gset
SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7abc-8def-0123456789ab')::uuid AS v7_id
  FROM (SELECT lpad(to_hex((extract(epoch FROM :'v7_time'::timestamptz) * 1000)::bigint), 12, '0') AS h) s \gset
SELECT is(apikey_usage.log_request(:'good_key', 'GET', '/v1/v7', 200, NULL, :'v7_id'), :'v7_id'::uuid,
	'a given request_id is returned as is');
-- a given non-v7 request_id: requested_at = now
SELECT '3b241101-e2bb-4255-8caf-4136c566a962'::uuid AS v4_id \gset
SELECT clock_timestamp() AS before_v4 \gset
SELECT is(apikey_usage.log_request(:'good_key', 'GET', '/v1/v4', 200, NULL, :'v4_id'), :'v4_id'::uuid,
	'a given UUIDv4 request_id is returned as is');
SELECT clock_timestamp() AS after_v4 \gset
-- an explicit requested_at wins over the time inside a UUIDv7
SELECT apikey_usage.log_request(:'good_key', 'GET', '/v1/explicit', 200, NULL,
	'01890a5d-ac96-7000-8000-000000000001', now() - interval '1 minute') AS explicit_id \gset
-- a deleted key's id is accepted (requests in flight when it was deleted)
SELECT ok(apikey_usage.delete_key(:'gone_key'), 'key deleted');
SELECT lives_ok(format($$SELECT apikey_usage.log_request(%L, 'GET', '/v1/late', 200)$$, :'gone_key'),
	'a deleted key''s id is accepted');
-- non-transactional: logged inside a subtransaction that rolls back
SAVEPOINT before_rollback;
SELECT apikey_usage.log_request(:'good_key', 'DELETE', '/v1/rolled-back', 204) AS rolled_back_id \gset
ROLLBACK TO SAVEPOINT before_rollback;

SELECT ok(apikey_usage.flush() >= 0, 'flush() after the good calls');

SELECT is((SELECT method FROM apikey_usage.request_log_raw WHERE request_id = :'upper_id'), 'GET',
	'method get stored as GET');
SELECT is((SELECT method || ' ' || resource_id FROM apikey_usage.request_log_raw WHERE request_id = :'token_id'),
	'M-SEARCH doc-1', 'method m-search stored as M-SEARCH, resource_id kept');
SELECT is(substr(:'upper_id', 15, 1), '7', 'generated request_id has version 7');
SELECT ok(substr(:'upper_id', 20, 1) IN ('8', '9', 'a', 'b'), 'generated request_id has the RFC 9562 variant');
SELECT is((SELECT date_trunc('milliseconds', requested_at) FROM apikey_usage.request_log_raw WHERE request_id = :'upper_id'),
	to_timestamp(('x' || lpad(replace(left(:'upper_id', 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0),
	'generated request_id carries requested_at (milliseconds)');
SELECT ok((SELECT requested_at BETWEEN now() AND clock_timestamp() FROM apikey_usage.request_log_raw WHERE request_id = :'upper_id'),
	'requested_at of a generated request_id is the time of the call');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw
	WHERE api_key_id = :'good_key' AND octet_length(method) = 32 AND octet_length(endpoint) = 1024
	  AND octet_length(resource_id) = 256 AND response_code = 100), 1::bigint, 'the boundary entry is stored whole');
SELECT is((SELECT string_agg(response_code || '=' || status, ' ' ORDER BY response_code)
	FROM apikey_usage.requests WHERE api_key_id = :'good_key' AND endpoint = '/v1/status'),
	'101=completed 204=completed 399=completed 400=failed 401=failed 429=rate_limited 500=failed 599=failed',
	'status derived from the response code');
SELECT is((SELECT requested_at FROM apikey_usage.request_log_raw WHERE request_id = :'v7_id'), :'v7_time'::timestamptz,
	'requested_at defaults to the time inside a given UUIDv7');
SELECT ok((SELECT requested_at BETWEEN :'before_v4'::timestamptz AND :'after_v4'::timestamptz
	FROM apikey_usage.request_log_raw WHERE request_id = :'v4_id'),
	'requested_at defaults to now for a given non-v7 request_id');
SELECT is((SELECT requested_at FROM apikey_usage.request_log_raw WHERE request_id = :'explicit_id'),
	now() - interval '1 minute', 'an explicit requested_at wins over the UUIDv7 time');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'gone_key'), 1::bigint,
	'the deleted key''s entry is logged');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE request_id = :'rolled_back_id'), 1::bigint,
	'non-transactional: the entry logged in a rolled-back subtransaction is in the table');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'good_key'), 15::bigint,
	'exactly the 15 good calls of the key are logged');
SELECT is((SELECT sum(requests) FROM apikey_usage.usage_hourly WHERE api_key_id = :'good_key'), 15::numeric,
	'the rollups count them');

SELECT * FROM finish();
ROLLBACK;
