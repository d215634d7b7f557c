-- import_requests counts the same whatever the order of its source: rows
-- spread over days and two keys, interleaved and in reverse time order
-- (each writer chunk spans many days and both keys, its rollup groups
-- pre-aggregated per minute), land in the raw log and every rollup grain
-- exactly once; a bad row anywhere writes nothing.  Workspace
-- pgtap_import_order is used by this file only.
BEGIN;
SELECT plan(8);

SELECT key_id AS k1 FROM apikey_usage.generate_key('pgtap_import_order', 'first') \gset
SELECT key_id AS k2 FROM apikey_usage.generate_key('pgtap_import_order', 'second') \gset

-- 3,000 rows over the last 3 days, newest first, the two keys interleaved
CREATE TEMP TABLE src AS
SELECT apikey_usage._uuid_v7(t) AS request_id, t AS requested_at,
	   CASE WHEN i % 2 = 0 THEN :'k1'::uuid ELSE :'k2'::uuid END AS api_key_id,
	   (ARRAY['GET', 'POST'])[1 + i % 2] AS method, '/v1/order/' || i % 7 AS endpoint,
	   (ARRAY[200, 404, 500])[1 + i % 3] AS response_code, 'o-' || i % 11 AS resource_id
  FROM generate_series(1, 3000) i,
	   LATERAL (SELECT date_trunc('minute', now()) - interval '1 minute' - i * interval '85 seconds' AS t) x
 ORDER BY i;

SELECT is(apikey_usage.import_requests('src'), 3000::bigint, 'imported 3,000 rows in reverse time order');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id IN (:'k1', :'k2')),
	3000::bigint, 'the raw log holds each once');
SELECT is((SELECT sum(requests) FROM apikey_usage.usage_hourly WHERE api_key_id IN (:'k1', :'k2')),
	3000::numeric, 'usage_hourly counts each once');
SELECT is((SELECT sum(requests) FROM apikey_usage.usage_daily_codes WHERE api_key_id IN (:'k1', :'k2')),
	3000::numeric, 'usage_daily_codes counts each once');
SELECT is((SELECT array_agg(n ORDER BY k) FROM (
			SELECT api_key_id AS k, sum(requests) AS n FROM apikey_usage.usage_minute_codes
			 WHERE api_key_id IN (:'k1', :'k2') GROUP BY 1) m),
		  (SELECT array_agg(n ORDER BY k) FROM (
			SELECT api_key_id AS k, count(*)::numeric AS n FROM src GROUP BY 1) s),
	'per key, the minute rollups equal the source');
SELECT is(apikey_usage.import_requests('src'), 0::bigint, 'importing it again adds nothing');

-- a bad row among good ones
CREATE TEMP TABLE bad (request_id uuid, requested_at timestamptz, api_key_id uuid,
	method text, endpoint text, response_code integer, resource_id text);
INSERT INTO bad VALUES
	(NULL, now() - interval '1 minute', :'k1', 'GET', 'no-slash', 200, NULL),
	(NULL, now() - interval '3 minutes', :'k1', 'GET', '/ok', 200, NULL),
	(NULL, now() - interval '2 minutes', :'k1', 'GET', '/ok', 200, NULL);
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad')$$, '22023', NULL,
	'a bad row fails the import');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = :'k1' AND endpoint = '/ok'),
	0::bigint, 'and nothing of that import was written');

SELECT * FROM finish();
ROLLBACK;
