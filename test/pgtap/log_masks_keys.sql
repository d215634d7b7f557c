-- An API key written into a logged endpoint (say, in a query string) or
-- resource_id is stored masked, keeping its prefix, by every path into the
-- log: log_request, log_requests, a refusal that check_request logs, and
-- import_requests.  A string that only looks like a key (its checksum is
-- wrong) is stored as given.  Workspace pgtap_log_masks is used by this
-- file only; its key is committed (check_request sees committed keys
-- only) and deleted at the end, and the log is not transactional anyway.
SELECT key_id AS kid, api_key AS k FROM apikey_usage.generate_key('pgtap_log_masks', 'logged', 1, '1 day') \gset
BEGIN;
SELECT plan(9);

SELECT 'ak_' || repeat('*', 49) AS masked \gset
-- the same shape with its last checksum character changed: not a key
SELECT left(:'k', -1) || CASE WHEN right(:'k', 1) = 'A' THEN 'B' ELSE 'A' END AS lookalike \gset

SELECT ok(apikey_usage.log_request(:'kid', 'GET', '/v1/items?api_key=' || :'k' || '&x=1', 200, :'k') IS NOT NULL,
	'log_request with a key in the endpoint and as resource_id');
SELECT ok(apikey_usage.log_request(:'kid', 'GET', '/v1/lookalike', 200, :'lookalike') IS NOT NULL,
	'log_request with a look-alike resource_id');
-- a refused call of check_request is logged under the key, with its
-- endpoint (the key allows one request a day)
SELECT allowed FROM apikey_usage.check_request(:'k', 'GET', '/v1/limited/' || :'k') \gset
SELECT allowed FROM apikey_usage.check_request(:'k', 'GET', '/v1/limited/' || :'k') \gset
SELECT is(:'allowed'::boolean, false, 'the second check is refused (and logged)');
-- flushed before the import: the import's rollup rows stay locked by this
-- transaction until it ends, and the worker would wait for them
SELECT ok(apikey_usage.flush() >= 0, 'flush()');

CREATE TEMP TABLE src AS
SELECT apikey_usage._uuid_v7(now() - interval '1 hour') AS request_id, now() - interval '1 hour' AS requested_at,
	   :'kid'::uuid AS api_key_id, 'POST' AS method, '/v1/import/' || :'k' AS endpoint,
	   201 AS response_code, 'r-' || :'k' AS resource_id;
SELECT is(apikey_usage.import_requests('src'), 1::bigint, 'import_requests with a key in endpoint and resource_id');

SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw
			WHERE api_key_id = :'kid' AND (strpos(endpoint, :'k') > 0 OR strpos(resource_id, :'k') > 0)),
	0::bigint, 'no logged endpoint or resource_id holds the key');
SELECT is((SELECT array_agg(endpoint || ' ' || coalesce(resource_id, '-') ORDER BY endpoint)
			 FROM apikey_usage.request_log_raw WHERE api_key_id = :'kid' AND endpoint <> '/v1/lookalike'),
	ARRAY['/v1/import/' || :'masked' || ' r-' || :'masked',
		  '/v1/items?api_key=' || :'masked' || '&x=1 ' || :'masked',
		  '/v1/limited/' || :'masked' || ' -'],
	'each is stored masked, prefix kept, length kept');
SELECT is((SELECT resource_id FROM apikey_usage.request_log_raw WHERE api_key_id = :'kid' AND endpoint = '/v1/lookalike'),
	:'lookalike', 'a look-alike with a wrong checksum is stored as given');
SELECT is((SELECT count(*) FROM apikey_usage.usage_hourly_endpoints
			WHERE api_key_id = :'kid' AND strpos(endpoint, :'k') > 0),
	0::bigint, 'the endpoint rollup holds no key either');

SELECT * FROM finish();
ROLLBACK;
SELECT apikey_usage.delete_key(:'kid');
