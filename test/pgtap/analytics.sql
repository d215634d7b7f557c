-- Analytics (API.md, "Analytics"): every function equals a plain count
-- over the raw log, for many bounds; request_log filters and keyset
-- pagination; time zones; bad input; privileges; bulk import; views.
--
-- The history is logged through log_request with backdated requested_at
-- (relative to now(), inside the retention) and flushed.  Logging is not
-- transactional, so those rows stay after the ROLLBACK; the workspaces
-- are this file's own.  Comparisons with key_id NULL (every key in the
-- database) are made against the raw log with the same filter, in the
-- same statement (one snapshot), so rows of other files do not matter.
BEGIN;
SELECT plan(90);

-- everything other files logged is in the tables before we start
SELECT apikey_usage.flush() >= 0 AS flushed \gset

------------------------------------------------------------------------
-- History: 3 keys in two workspaces, about 40 days, every status class,
-- five methods (some lower case), six endpoints, resource ids, rows on
-- hour boundaries and just before them, bursts of rows with the same
-- requested_at (keyset ties), and a few rows in the coming hour.
------------------------------------------------------------------------
CREATE TEMP TABLE tk (n int PRIMARY KEY, key_id uuid NOT NULL);
INSERT INTO tk SELECT 1, key_id FROM apikey_usage.generate_key('pgtap-analytics-a', 'Zapier');
INSERT INTO tk SELECT 2, key_id FROM apikey_usage.generate_key('pgtap-analytics-a', 'PowerAutomate');
INSERT INTO tk SELECT 3, key_id FROM apikey_usage.generate_key('pgtap-analytics-b', 'Reports');

CREATE TEMP TABLE t0 AS SELECT date_trunc('hour', now()) - interval '40 days' AS t0;

CREATE TEMP TABLE hist AS
SELECT i,
	   (SELECT key_id FROM tk WHERE n = 1 + (i * 7 % 11) % 3) AS key_id,
	   (ARRAY['GET', 'post', 'PUT', 'DELETE', 'patch', 'get'])[1 + i % 6] AS method,
	   (ARRAY['/v1/documents', '/v1/documents/{id}', '/v1/users', '/v1/search', '/v2/reports/{id}',
			  '/health', '/v1/files', '/v1/files/{id}', '/v1/webhooks', '/v1/teams', '/v1/teams/{id}',
			  '/v1/audit'])[1 + (i * 5) % 12] AS endpoint,
	   (ARRAY[200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 503, 200, 429])[1 + (i * 3) % 14] AS response_code,
	   CASE WHEN i % 5 = 0 THEN NULL ELSE 'doc-' || (i % 13) END AS resource_id,
	   (SELECT t0 FROM t0) + make_interval(secs => (i::bigint * 1237 % 3456000) + (i % 1000) / 1000.0) AS requested_at
  FROM generate_series(1, 2500) AS i
UNION ALL	-- exactly on an hour boundary, and one microsecond before it
SELECT 10000 + h, (SELECT key_id FROM tk WHERE n = 1 + h % 3), 'GET', '/v1/users', 200, NULL,
	   (SELECT t0 FROM t0) + make_interval(hours => h) - CASE WHEN h % 2 = 0 THEN interval '0' ELSE interval '1 microsecond' END
  FROM generate_series(1, 950, 13) AS h
UNION ALL	-- bursts: four rows with one requested_at
SELECT 20000 + b * 4 + r, (SELECT key_id FROM tk WHERE n = 1), (ARRAY['GET', 'POST'])[1 + r % 2], '/v1/search',
	   (ARRAY[200, 429, 500, 201])[1 + r], 'doc-burst',
	   (SELECT t0 FROM t0) + make_interval(secs => b * 1.7 * 86400 + 0.123456)
  FROM generate_series(1, 20) AS b, generate_series(0, 3) AS r
UNION ALL	-- the coming hour: outside the default [now() - 30 days, now())
SELECT 30000 + f, (SELECT key_id FROM tk WHERE n = 1 + f % 3), 'GET', '/v1/documents', 200, NULL,
	   now() + make_interval(mins => 10 * f)
  FROM generate_series(1, 3) AS f;

SELECT count(apikey_usage.log_request(key_id, method, endpoint, response_code, resource_id, NULL, requested_at))
  FROM hist \gset logged_
SELECT apikey_usage.flush() >= 0 AS flushed \gset

CREATE TEMP VIEW rollup_mismatch AS
WITH raw AS (
	SELECT r.api_key_id, date_bin('1 hour', r.requested_at, 'epoch') AS bucket_start, r.method, r.endpoint,
		   r.response_code, count(*) AS requests
	  FROM apikey_usage.request_log_raw r JOIN tk ON tk.key_id = r.api_key_id
	 GROUP BY 1, 2, 3, 4, 5),
rollup AS (
	SELECT u.api_key_id, u.bucket_start, u.method, u.endpoint, u.response_code, u.requests
	  FROM apikey_usage.usage_hourly u JOIN tk ON tk.key_id = u.api_key_id)
(SELECT 'raw only' AS side, * FROM raw EXCEPT ALL SELECT 'raw only', * FROM rollup)
UNION ALL
(SELECT 'rollup only', * FROM rollup EXCEPT ALL SELECT 'rollup only', * FROM raw);

-- usage_daily = usage_hourly summed per UTC day, usage_hourly_codes =
-- usage_hourly summed over method and endpoint (for the keys of this file)
CREATE TEMP VIEW daily_mismatch AS
WITH hourly AS (
	SELECT u.api_key_id, date_bin('1 day', u.bucket_start, 'epoch') AS bucket_start, u.method, u.endpoint,
		   u.response_code, sum(u.requests)::bigint AS requests
	  FROM apikey_usage.usage_hourly u JOIN tk ON tk.key_id = u.api_key_id
	 GROUP BY 1, 2, 3, 4, 5),
daily AS (
	SELECT d.api_key_id, d.bucket_start, d.method, d.endpoint, d.response_code, d.requests
	  FROM apikey_usage.usage_daily d JOIN tk ON tk.key_id = d.api_key_id)
(SELECT 'hourly only' AS side, * FROM hourly EXCEPT ALL SELECT 'hourly only', * FROM daily)
UNION ALL
(SELECT 'daily only', * FROM daily EXCEPT ALL SELECT 'daily only', * FROM hourly)
UNION ALL	-- usage_hourly_codes = usage_hourly summed over method and endpoint
(SELECT 'hourly only (codes)', u.api_key_id, u.bucket_start, NULL, NULL, u.response_code, sum(u.requests)::bigint
   FROM apikey_usage.usage_hourly u JOIN tk ON tk.key_id = u.api_key_id GROUP BY 2, 3, 6
 EXCEPT ALL
 SELECT 'hourly only (codes)', c.api_key_id, c.bucket_start, NULL, NULL, c.response_code, c.requests
   FROM apikey_usage.usage_hourly_codes c JOIN tk ON tk.key_id = c.api_key_id)
UNION ALL
(SELECT 'codes only', c.api_key_id, c.bucket_start, NULL, NULL, c.response_code, c.requests
   FROM apikey_usage.usage_hourly_codes c JOIN tk ON tk.key_id = c.api_key_id
 EXCEPT ALL
 SELECT 'codes only', u.api_key_id, u.bucket_start, NULL, NULL, u.response_code, sum(u.requests)::bigint
   FROM apikey_usage.usage_hourly u JOIN tk ON tk.key_id = u.api_key_id GROUP BY 2, 3, 6);

SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw r JOIN tk ON tk.key_id = r.api_key_id),
		  (SELECT count(*) FROM hist), 'the whole history is in the raw log after flush()');
SELECT is_empty('SELECT * FROM rollup_mismatch', 'the hourly rollups agree with the raw log');
SELECT is_empty('SELECT * FROM daily_mismatch', 'the daily and per-code rollups are the hourly rollups summed per UTC day / over method and endpoint');

------------------------------------------------------------------------
-- 72 pseudo-random (key, since, until) triples: keys 1-3, NULL (every
-- key) and an unknown key; unaligned, hour-aligned, row-exact, NULL and
-- equal bounds; spans from seconds to 45 days.
------------------------------------------------------------------------
CREATE TEMP TABLE rows_by_time AS
SELECT row_number() OVER (ORDER BY requested_at) AS pos, requested_at FROM hist;

CREATE TEMP TABLE tr AS
WITH base AS (
	SELECT j,
		   CASE j % 5 WHEN 0 THEN NULL WHEN 4 THEN '00000000-0000-4000-8000-00000000abcd'::uuid
				ELSE (SELECT key_id FROM tk WHERE n = j % 5) END AS key_id,
		   CASE WHEN j % 4 = 1
				THEN (SELECT requested_at FROM rows_by_time WHERE pos = 1 + (j * 41) % 2500)
				ELSE (SELECT t0 FROM t0) - interval '2 days'
					 + make_interval(secs => (j::bigint * 7919 * 13) % 3800000 + (j * 137 % 1000) / 1000.0)
		   END AS since0,
		   CASE WHEN j % 6 = 0 THEN make_interval(secs => (j * 37) % 3000 + 0.5)
				WHEN j % 9 = 0 THEN interval '0'
				ELSE make_interval(secs => (j::bigint * 104729) % 2400000 + (j * 71 % 1000) / 1000.0)
		   END AS span
	  FROM generate_series(1, 72) AS j
)
SELECT j, key_id,
	   CASE WHEN j % 11 = 0 THEN NULL
			WHEN j % 7 = 0 THEN date_trunc('hour', since0)
			ELSE since0 END AS since,
	   CASE WHEN j % 13 = 0 THEN NULL
			WHEN j % 8 = 0 THEN (SELECT requested_at FROM rows_by_time WHERE pos = 1 + (j * 97) % 2500)
			WHEN j % 7 = 0 THEN date_trunc('hour', since0 + span) + interval '1 hour'
			ELSE since0 + span END AS until
  FROM base;
-- bounds must be ordered; swap the few that are not
UPDATE tr SET since = until, until = since WHERE since > until;

SELECT ok((SELECT count(*) FROM tr WHERE since IS NOT NULL AND until IS NOT NULL
			 AND since <> date_bin('1 hour', since, 'epoch') AND until <> date_bin('1 hour', until, 'epoch')) >= 30
		  AND (SELECT count(*) FROM tr WHERE key_id IS NULL) >= 10
		  AND (SELECT count(*) FROM tr WHERE since IS NULL OR until IS NULL) >= 5
		  AND (SELECT count(*) FROM tr WHERE since = until) >= 2,
		  'the triples cover unaligned, NULL-key, unbounded and empty ranges');

-- the plain counts, written independently of the extension
-- (PL/pgSQL, so that each call is planned with its bounds: partitions pruned)
CREATE FUNCTION pg_temp.raw(k uuid, s timestamptz, u timestamptz)
	RETURNS SETOF apikey_usage.request_log_raw LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY
	SELECT * FROM apikey_usage.request_log_raw r
	 WHERE r.api_key_id = coalesce(k, r.api_key_id)
	   AND r.requested_at >= coalesce(s, '-infinity')
	   AND r.requested_at < coalesce(u, 'infinity');
END
$$;
CREATE FUNCTION pg_temp.raw_summary(k uuid, s timestamptz, u timestamptz,
	OUT total bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	LANGUAGE sql STABLE AS $$
	SELECT count(*),
		   count(*) FILTER (WHERE response_code >= 100 AND response_code < 400),
		   count(*) FILTER (WHERE response_code >= 400 AND response_code <> 429),
		   count(*) FILTER (WHERE response_code = 429)
	  FROM pg_temp.raw(k, s, u)
$$;

-- Each mismatch query returns the triples whose answer differs from the
-- plain count (function output and expectation as text, for diagnosis).
CREATE TEMP VIEW summary_mismatch AS
SELECT t.j, f::text AS got, e::text AS expected
  FROM tr t, apikey_usage.usage_summary(t.key_id, t.since, t.until) f,
	   pg_temp.raw_summary(t.key_id, t.since, t.until) e
 WHERE (f.total_requests, f.completed, f.failed, f.rate_limited) IS DISTINCT FROM
	   (e.total, e.completed, e.failed, e.rate_limited);

CREATE TEMP VIEW by_method_mismatch AS
SELECT t.j, f.got, e.expected
  FROM tr t,
	   LATERAL (SELECT array_agg(ROW(x.method, x.requests)::text ORDER BY o) AS got
				  FROM apikey_usage.usage_by_method(t.key_id, t.since, t.until) WITH ORDINALITY AS x(method, requests, o)) f,
	   LATERAL (SELECT array_agg(ROW(method, n)::text ORDER BY n DESC, method) AS expected
				  FROM (SELECT method, count(*) AS n FROM pg_temp.raw(t.key_id, t.since, t.until) GROUP BY method) g) e
 WHERE f.got IS DISTINCT FROM e.expected;

CREATE TEMP VIEW by_status_mismatch AS
SELECT t.j, f.got, e.expected
  FROM tr t,
	   LATERAL (SELECT array_agg(ROW(x.response_code, x.requests)::text ORDER BY o) AS got
				  FROM apikey_usage.usage_by_response_status(t.key_id, t.since, t.until) WITH ORDINALITY AS x(response_code, requests, o)) f,
	   LATERAL (SELECT array_agg(ROW(code, n)::text ORDER BY n DESC, code) AS expected
				  FROM (SELECT response_code::integer AS code, count(*) AS n FROM pg_temp.raw(t.key_id, t.since, t.until) GROUP BY 1) g) e
 WHERE f.got IS DISTINCT FROM e.expected;

CREATE TEMP VIEW top_endpoints_mismatch AS
SELECT t.j, f.got, e.expected
  FROM tr t,
	   LATERAL (SELECT array_agg(ROW(x.endpoint, x.requests)::text ORDER BY o) AS got
				  FROM apikey_usage.top_endpoints(t.key_id, t.since, t.until, 1 + t.j % 7) WITH ORDINALITY AS x(endpoint, requests, o)) f,
	   LATERAL (SELECT array_agg(ROW(endpoint, n)::text ORDER BY n DESC, endpoint) AS expected
				  FROM (SELECT endpoint, count(*) AS n FROM pg_temp.raw(t.key_id, t.since, t.until)
						 GROUP BY 1 ORDER BY n DESC, endpoint LIMIT 1 + t.j % 7) g) e
 WHERE f.got IS DISTINCT FROM e.expected;

-- time series: buckets computed from epoch seconds, not with date_bin;
-- a bucket per triple that keeps the count of buckets under 10000, both
-- multiples of an hour (rollups) and not (raw log)
CREATE TEMP VIEW ts_cases AS
SELECT t.j, t.key_id, t.since, t.until,
	   CASE WHEN t.until - t.since < interval '1 day' THEN
				(ARRAY['1 minute', '5 minutes', '1 hour', '7 minutes 30 seconds'])[1 + t.j % 4]
			ELSE (ARRAY['1 hour', '6 hours', '1 day', '90 minutes', '7 hours', '2 days 1 hour', '2 days'])[1 + t.j % 7]
	   END::interval AS bucket
  FROM tr t
 WHERE t.since IS NOT NULL AND t.until IS NOT NULL;

CREATE TEMP VIEW timeseries_mismatch AS
SELECT c.j, c.bucket, f.got, e.expected
  FROM ts_cases c,
	   LATERAL (SELECT array_agg(x::text ORDER BY x.bucket_start) AS got
				  FROM apikey_usage.usage_timeseries(c.key_id, c.since, c.until, c.bucket) x) f,
	   LATERAL (
		WITH p AS (SELECT extract(epoch FROM c.bucket) AS secs),
		starts AS (
			SELECT to_timestamp(b * p.secs) AS bucket_start
			  FROM p, generate_series(floor(extract(epoch FROM c.since) / p.secs)::bigint,
									  ceil(extract(epoch FROM c.until) / p.secs)::bigint - 1) AS b
			 WHERE c.since < c.until),
		counted AS (
			SELECT to_timestamp(floor(extract(epoch FROM r.requested_at) / p.secs) * p.secs) AS bucket_start,
				   count(*) AS total,
				   count(*) FILTER (WHERE r.response_code < 400) AS completed,
				   count(*) FILTER (WHERE r.response_code >= 400 AND r.response_code <> 429) AS failed,
				   count(*) FILTER (WHERE r.response_code = 429) AS rate_limited
			  FROM p, pg_temp.raw(c.key_id, c.since, c.until) r GROUP BY 1)
		SELECT array_agg(ROW(s.bucket_start, coalesce(n.total, 0), coalesce(n.completed, 0),
							 coalesce(n.failed, 0), coalesce(n.rate_limited, 0))::text
						 ORDER BY s.bucket_start) AS expected
		  FROM starts s LEFT JOIN counted n USING (bucket_start)) e
 WHERE f.got IS DISTINCT FROM e.expected;

CREATE TEMP VIEW timeseries_sum_mismatch AS
SELECT c.j
  FROM ts_cases c, apikey_usage.usage_summary(c.key_id, c.since, c.until) s,
	   LATERAL (SELECT coalesce(sum(x.total_requests), 0) AS total, coalesce(sum(x.completed), 0) AS completed,
					   coalesce(sum(x.failed), 0) AS failed, coalesce(sum(x.rate_limited), 0) AS rate_limited
				  FROM apikey_usage.usage_timeseries(c.key_id, c.since, c.until, c.bucket) x) ts
 WHERE (ts.total, ts.completed, ts.failed, ts.rate_limited)
	   IS DISTINCT FROM (s.total_requests, s.completed, s.failed, s.rate_limited);

SELECT is_empty('SELECT * FROM summary_mismatch', 'usage_summary equals the plain count for every triple');
SELECT is_empty('SELECT * FROM by_method_mismatch', 'usage_by_method equals the plain count (and order) for every triple');
SELECT is_empty('SELECT * FROM by_status_mismatch', 'usage_by_response_status equals the plain count (and order) for every triple');
SELECT is_empty('SELECT * FROM top_endpoints_mismatch', 'top_endpoints equals the plain count (order, max_rows) for every triple');
SELECT is_empty('SELECT * FROM timeseries_mismatch', 'usage_timeseries equals the plain count per bucket for every bounded triple');
SELECT is_empty('SELECT * FROM timeseries_sum_mismatch', 'the buckets of usage_timeseries sum to usage_summary');
SELECT ok((SELECT count(*) FROM ts_cases WHERE extract(epoch FROM bucket)::numeric % 3600 <> 0) >= 10
		  AND (SELECT count(*) FROM ts_cases WHERE extract(epoch FROM bucket)::numeric % 3600 = 0) >= 10,
		  'time series cases use both hour multiples (rollups) and other buckets (raw log)');
SELECT ok((SELECT sum(total_requests) FROM tr, apikey_usage.usage_summary(tr.key_id, tr.since, tr.until)
			WHERE tr.key_id IS NOT NULL) > 10000,
		  'the triples count many requests (the comparisons are not vacuous)');

-- defaults: the last 30 days, until now() (rows of the coming hour are out)
SELECT is((SELECT s::text FROM apikey_usage.usage_summary(k.key_id) s),
		  (SELECT e::text FROM pg_temp.raw_summary(k.key_id, now() - interval '30 days', now()) e),
		  'usage_summary defaults to [now() - 30 days, now())')
  FROM tk k WHERE k.n = 1;
SELECT is((SELECT total_requests FROM apikey_usage.usage_summary(k.key_id, NULL, NULL)),
		  (SELECT count(*) FROM hist WHERE hist.key_id = k.key_id),
		  'NULL bounds are unbounded: every row of the key, the coming hour included')
  FROM tk k WHERE k.n = 1;
SELECT is((SELECT sum(total_requests)::bigint FROM apikey_usage.usage_timeseries(k.key_id)),
		  (SELECT total_requests FROM apikey_usage.usage_summary(k.key_id)),
		  'usage_timeseries defaults: hourly buckets over the last 30 days')
  FROM tk k WHERE k.n = 2;
SELECT is((SELECT count(*) FROM apikey_usage.usage_timeseries(k.key_id)),
		  721::bigint, 'the default time series has 721 hourly buckets (30 days, unaligned edges)')
  FROM tk k WHERE k.n = 2;
SELECT is((SELECT array_agg(ROW(m, n)::text ORDER BY o) FROM apikey_usage.usage_by_method(k.key_id) WITH ORDINALITY x(m, n, o)),
		  (SELECT array_agg(ROW(m, n)::text ORDER BY o) FROM apikey_usage.usage_by_method(k.key_id, now() - interval '30 days', now()) WITH ORDINALITY x(m, n, o)),
		  'usage_by_method defaults to the last 30 days')
  FROM tk k WHERE k.n = 3;
SELECT is((SELECT count(*) FROM apikey_usage.top_endpoints(NULL, NULL, NULL)), 10::bigint,
		  'top_endpoints returns 10 rows by default');

-- unknown key: zeros, no rows, no error
SELECT results_eq($$SELECT * FROM apikey_usage.usage_summary('00000000-0000-4000-8000-00000000abcd')$$,
				  $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint)$$,
				  'usage_summary of an unknown key is one row of zeros');
SELECT is_empty($$SELECT * FROM apikey_usage.usage_by_method('00000000-0000-4000-8000-00000000abcd')
				  UNION ALL SELECT endpoint, requests FROM apikey_usage.top_endpoints('00000000-0000-4000-8000-00000000abcd')
				  UNION ALL SELECT response_code::text, requests FROM apikey_usage.usage_by_response_status('00000000-0000-4000-8000-00000000abcd')
				  UNION ALL SELECT request_id::text, 0 FROM apikey_usage.request_log('00000000-0000-4000-8000-00000000abcd')$$,
				'an unknown key has no rows');
SELECT is((SELECT count(*) FILTER (WHERE total_requests = 0) || '/' || count(*)
			 FROM apikey_usage.usage_timeseries('00000000-0000-4000-8000-00000000abcd', now() - interval '1 day', now())),
		  '25/25', 'usage_timeseries of an unknown key: every bucket, all zeros');
SELECT results_eq($$SELECT count(*) FROM apikey_usage.usage_summary(NULL, now(), now())$$,
				  ARRAY[1::bigint], 'usage_summary of an empty range is exactly one row');

------------------------------------------------------------------------
-- Time zones change how timestamps print, never what is counted
------------------------------------------------------------------------
CREATE TEMP TABLE utc_series AS
SELECT k.n, x.* FROM tk k, apikey_usage.usage_timeseries(k.key_id, (SELECT t0 FROM t0) + interval '3 days 0.5 seconds',
														 now(), '1 day') x;
SET LOCAL TimeZone = 'Asia/Kolkata';
SELECT is_empty('SELECT * FROM summary_mismatch UNION ALL SELECT j, NULL, NULL FROM timeseries_mismatch',
				'under TimeZone Asia/Kolkata (+05:30) usage_summary and usage_timeseries still equal the plain counts');
SELECT set_eq($$SELECT k.n, x.* FROM tk k, apikey_usage.usage_timeseries(k.key_id, (SELECT t0 FROM t0) + interval '3 days 0.5 seconds', now(), '1 day') x$$,
			  'SELECT * FROM utc_series',
			  'daily buckets are the same instants under +05:30 as under UTC');
SELECT is((SELECT min(bucket_start) FROM utc_series)::text,
		  to_char(date_trunc('day', ((SELECT t0 FROM t0) + interval '3 days') AT TIME ZONE 'UTC') + interval '5 hours 30 minutes',
				  'YYYY-MM-DD HH24:MI:SS') || '+05:30',
		  'bucket starts print in the session time zone (a UTC midnight shown as 05:30+05:30)');
SET LOCAL TimeZone = 'America/St_Johns';
SELECT set_eq($$SELECT k.n, x.* FROM tk k, apikey_usage.usage_timeseries(k.key_id, (SELECT t0 FROM t0) + interval '3 days 0.5 seconds', now(), '1 day') x$$,
			  'SELECT * FROM utc_series',
			  'daily buckets are the same instants under -03:30 (with DST) as under UTC');
SELECT is_empty('SELECT * FROM by_method_mismatch UNION ALL SELECT j, NULL, NULL FROM top_endpoints_mismatch',
				'under TimeZone America/St_Johns usage_by_method and top_endpoints still equal the plain counts');
RESET TimeZone;

------------------------------------------------------------------------
-- request_log: each filter alone and combined equals the same filter
-- over the raw log, newest first
------------------------------------------------------------------------
CREATE FUNCTION pg_temp.raw_log(k uuid DEFAULT NULL, res text DEFAULT NULL, s timestamptz DEFAULT NULL,
	u timestamptz DEFAULT NULL, st text DEFAULT NULL, m text DEFAULT NULL, e text DEFAULT NULL,
	code integer DEFAULT NULL, lim integer DEFAULT 50)
	RETURNS TABLE (request_id uuid, requested_at timestamptz, api_key_id uuid, method text,
				   endpoint text, status text, response_code integer, resource_id text)
	LANGUAGE sql STABLE AS $$
	SELECT r.request_id, r.requested_at, r.api_key_id, r.method COLLATE "default", r.endpoint COLLATE "default",
		   CASE WHEN r.response_code < 400 THEN 'completed' WHEN r.response_code = 429 THEN 'rate_limited'
				ELSE 'failed' END,
		   r.response_code, r.resource_id COLLATE "default"
	  FROM pg_temp.raw(k, s, u) r
	 WHERE (res IS NULL OR r.resource_id = res)
	   AND (st IS NULL OR st = CASE WHEN r.response_code < 400 THEN 'completed'
									WHEN r.response_code = 429 THEN 'rate_limited' ELSE 'failed' END)
	   AND (m IS NULL OR r.method = upper(m))
	   AND (e IS NULL OR r.endpoint = e)
	   AND (code IS NULL OR r.response_code = code)
	 ORDER BY r.requested_at DESC, r.request_id DESC
	 LIMIT lim
$$;

SELECT results_eq('SELECT * FROM apikey_usage.request_log()', 'SELECT * FROM pg_temp.raw_log()',
				  'request_log() without filters: the newest 50 rows');
SELECT results_eq(format('SELECT * FROM apikey_usage.request_log(%L, max_rows => 10000)', key_id),
				  format('SELECT * FROM pg_temp.raw_log(%L, lim => 10000)', key_id),
				  'request_log: key_id alone')
  FROM tk WHERE n = 2;
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(resource_id => 'doc-7', max_rows => 10000)$$,
				  $$SELECT * FROM pg_temp.raw_log(res => 'doc-7', lim => 10000)$$,
				  'request_log: resource_id alone');
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(since => now() - interval '20 hours', max_rows => 10000)$$,
				  $$SELECT * FROM pg_temp.raw_log(s => now() - interval '20 hours', lim => 10000)$$,
				  'request_log: since alone');
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(until => (SELECT t0 FROM t0) + interval '1 day 17 minutes', max_rows => 300)$$,
				  $$SELECT * FROM pg_temp.raw_log(u => (SELECT t0 FROM t0) + interval '1 day 17 minutes', lim => 300)$$,
				  'request_log: until alone');
SELECT results_eq(format('SELECT * FROM apikey_usage.request_log(status => %L, max_rows => 500)', st),
				  format('SELECT * FROM pg_temp.raw_log(st => %L, lim => 500)', st),
				  'request_log: status ' || st || ' alone')
  FROM unnest(ARRAY['completed', 'failed', 'rate_limited']) AS st;
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(method => 'patch', max_rows => 500)$$,
				  $$SELECT * FROM pg_temp.raw_log(m => 'PATCH', lim => 500)$$,
				  'request_log: method alone, compared upper-cased');
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(endpoint => '/v2/reports/{id}', max_rows => 500)$$,
				  $$SELECT * FROM pg_temp.raw_log(e => '/v2/reports/{id}', lim => 500)$$,
				  'request_log: endpoint alone');
SELECT results_eq($$SELECT * FROM apikey_usage.request_log(response_code => 503, max_rows => 500)$$,
				  $$SELECT * FROM pg_temp.raw_log(code => 503, lim => 500)$$,
				  'request_log: response_code alone');
SELECT results_eq(format($$SELECT * FROM apikey_usage.request_log(%L, 'doc-3', (SELECT t0 FROM t0) + interval '2 days 3.3 seconds',
							now() - interval '1 day 2 hours', 'completed', 'Get', '/v1/documents/{id}', NULL, 10000)$$, key_id),
				  format($$SELECT * FROM pg_temp.raw_log(%L, 'doc-3', (SELECT t0 FROM t0) + interval '2 days 3.3 seconds',
							now() - interval '1 day 2 hours', 'completed', 'GET', '/v1/documents/{id}', NULL, 10000)$$, key_id),
				  'request_log: key, resource, since, until, status, method and endpoint together')
  FROM tk WHERE n = 1;
SELECT ok((SELECT count(*) FROM apikey_usage.request_log(k.key_id, 'doc-3', (SELECT t0 FROM t0) + interval '2 days 3.3 seconds',
			now() - interval '1 day 2 hours', 'completed', 'Get', '/v1/documents/{id}', NULL, 10000)) > 0,
		  'request_log: the seven filters together still select rows (the comparison is not vacuous)')
  FROM tk k WHERE n = 1;
SELECT results_eq(format($$SELECT * FROM apikey_usage.request_log(%L, status => 'failed', response_code => 500, max_rows => 10000)$$, key_id),
				  format($$SELECT * FROM pg_temp.raw_log(%L, st => 'failed', code => 500, lim => 10000)$$, key_id),
				  'request_log: key, status and response_code together')
  FROM tk WHERE n = 3;
SELECT is((SELECT count(*) FROM apikey_usage.request_log(status => 'completed', response_code => 429)), 0::bigint,
		  'request_log: contradictory status and response_code give no rows');
SELECT ok((SELECT count(*) FROM apikey_usage.request_log(k.key_id, max_rows => 10000)) BETWEEN 100 AND 9999,
		  'request_log: the key_id comparison is over a real, complete set')
  FROM tk k WHERE n = 2;

-- keyset pagination: walk a whole filtered set, 7 rows a page (the bursts
-- of rows sharing one requested_at straddle pages)
CREATE FUNCTION pg_temp.walk(k uuid, st text, page_size integer)
	RETURNS TABLE (seq bigint, request_id uuid) LANGUAGE plpgsql AS $$
DECLARE
	last_at		timestamptz;
	last_id		uuid;
	n			bigint := 0;
	got			integer;
	r			record;
BEGIN
	FOR pages IN 1..10000 LOOP
		got := 0;
		FOR r IN SELECT * FROM apikey_usage.request_log(k, status => st, max_rows => page_size,
					before_requested_at => last_at, before_request_id => last_id) LOOP
			n := n + 1; got := got + 1;
			seq := n; request_id := r.request_id; RETURN NEXT;
			last_at := r.requested_at; last_id := r.request_id;
		END LOOP;
		EXIT WHEN got < page_size;
	END LOOP;
END
$$;
SELECT results_eq(format('SELECT request_id FROM pg_temp.walk(%L, NULL, 7) ORDER BY seq', key_id),
				  format('SELECT request_id FROM pg_temp.raw_log(%L, lim => 10000)', key_id),
				  'a keyset walk (7 a page) returns every row of the key once, newest first')
  FROM tk WHERE n = 1;
SELECT results_eq(format($$SELECT request_id FROM pg_temp.walk(%L, 'rate_limited', 3) ORDER BY seq$$, key_id),
				  format($$SELECT request_id FROM pg_temp.raw_log(%L, st => 'rate_limited', lim => 10000)$$, key_id),
				  'a keyset walk over a filtered set (rate_limited, 3 a page) returns every row once, in order')
  FROM tk WHERE n = 1;
SELECT ok((SELECT count(*) FROM (SELECT requested_at FROM hist WHERE resource_id = 'doc-burst'
								 GROUP BY requested_at HAVING count(*) = 4) b) = 20,
		  'the history has rows sharing one requested_at (keyset ties)');

------------------------------------------------------------------------
-- Bad input: 22023 (22004 for the NULL bounds of usage_timeseries)
------------------------------------------------------------------------
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_summary(NULL, now(), now() - interval '1 second')$$, '22023', NULL, 'usage_summary: since > until');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_by_method(NULL, now(), now() - interval '1 second')$$, '22023', NULL, 'usage_by_method: since > until');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_by_response_status(NULL, now(), now() - interval '1 second')$$, '22023', NULL, 'usage_by_response_status: since > until');
SELECT throws_ok($$SELECT * FROM apikey_usage.top_endpoints(NULL, now(), now() - interval '1 second')$$, '22023', NULL, 'top_endpoints: since > until');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now(), now() - interval '1 second')$$, '22023', NULL, 'usage_timeseries: since > until');
SELECT throws_ok($$SELECT * FROM apikey_usage.request_log(since => now(), until => now() - interval '1 second')$$, '22023', NULL, 'request_log: since > until');
SELECT throws_ok(format('SELECT * FROM apikey_usage.top_endpoints(NULL, max_rows => %s)', m), '22023', NULL,
				 'top_endpoints: max_rows ' || m)
  FROM unnest(ARRAY[0, -1, 10001]) AS m;
SELECT throws_ok(format('SELECT * FROM apikey_usage.request_log(max_rows => %s)', m), '22023', NULL,
				 'request_log: max_rows ' || m)
  FROM unnest(ARRAY[0, -5, 10001]) AS m;
SELECT throws_ok($$SELECT * FROM apikey_usage.request_log(status => 'succeeded')$$, '22023', NULL, 'request_log: unknown status');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 hour', now(), '59 seconds')$$, '22023', NULL, 'usage_timeseries: bucket under 1 minute');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 hour', now(), '-1 hour')$$, '22023', NULL, 'usage_timeseries: negative bucket');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '7 days', now(), '1 minute')$$, '22023', NULL, 'usage_timeseries: more than 10000 buckets');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '2 years', now(), '1 month')$$, '22023', NULL, 'usage_timeseries: a bucket in months');
SELECT lives_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, '2026-01-01 00:00:00+00', '2026-01-07 22:39:00+00', '1 minute')$$,
				'usage_timeseries: exactly 9999 one-minute buckets are allowed');
SELECT throws_ok($$SELECT * FROM apikey_usage.request_log(before_requested_at => now())$$, '22023', NULL, 'request_log: before_requested_at alone');
SELECT throws_ok($$SELECT * FROM apikey_usage.request_log(before_request_id => gen_random_uuid())$$, '22023', NULL, 'request_log: before_request_id alone');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, NULL, now())$$, '22004', NULL, 'usage_timeseries: NULL since');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 day', NULL)$$, '22004', NULL, 'usage_timeseries: NULL until');

------------------------------------------------------------------------
-- Privileges: the reader role calls every analytics function and reads
-- the views; the app role reads nothing
------------------------------------------------------------------------
CREATE ROLE aku_pgtap_reader NOLOGIN;
GRANT apikey_usage_reader TO aku_pgtap_reader;
CREATE ROLE aku_pgtap_app NOLOGIN;
GRANT apikey_usage_app TO aku_pgtap_app;
GRANT SELECT ON tk TO aku_pgtap_reader, aku_pgtap_app;

SET LOCAL ROLE aku_pgtap_reader;
SELECT lives_ok($$
	SELECT (SELECT count(*) FROM apikey_usage.usage_summary(NULL))
		 + (SELECT count(*) FROM apikey_usage.usage_by_method(NULL))
		 + (SELECT count(*) FROM apikey_usage.usage_by_response_status(NULL))
		 + (SELECT count(*) FROM apikey_usage.top_endpoints(NULL))
		 + (SELECT count(*) FROM apikey_usage.usage_timeseries(NULL))
		 + (SELECT count(*) FROM apikey_usage.request_log())
		 + (SELECT count(*) FROM apikey_usage.hourly_usage)
		 + (SELECT count(*) FROM apikey_usage.daily_usage)$$,
	'a member of apikey_usage_reader calls every analytics function and reads the views');
SELECT is((SELECT sum(requests) FROM apikey_usage.hourly_usage h JOIN tk ON tk.key_id = h.key_id),
		  (SELECT sum(total_requests) FROM tk, apikey_usage.usage_summary(tk.key_id, NULL, NULL))::numeric,
		  'hourly_usage, read as a reader, sums to the history of the keys');
SELECT throws_ok('SELECT count(*) FROM apikey_usage.request_log_raw', '42501', NULL,
				 'a reader cannot read the raw log table directly');
SELECT throws_ok($$SELECT apikey_usage.import_requests('pg_catalog.pg_class')$$, '42501', NULL,
				 'a reader cannot import');
RESET ROLE;

SET LOCAL ROLE aku_pgtap_app;
SELECT throws_ok('SELECT * FROM apikey_usage.request_log()', '42501', NULL, 'the app role cannot read the log');
SELECT throws_ok('SELECT * FROM apikey_usage.usage_summary(NULL)', '42501', NULL, 'the app role cannot call usage_summary');
SELECT throws_ok('SELECT * FROM apikey_usage.usage_timeseries(NULL)', '42501', NULL, 'the app role cannot call usage_timeseries');
SELECT throws_ok('SELECT count(*) FROM apikey_usage.hourly_usage', '42501', NULL, 'the app role cannot read hourly_usage');
RESET ROLE;

------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------
SELECT is_empty($$
	SELECT c.relname, a.attname FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
	 WHERE c.relnamespace = 'apikey_usage'::regnamespace AND c.relname IN ('hourly_usage', 'daily_usage')
	   AND (obj_description(c.oid, 'pg_class') IS NULL OR col_description(c.oid, a.attnum) IS NULL)$$,
	'every analytics view and column has a COMMENT');
SELECT results_eq($$SELECT key_name, workspace, sum(requests)::bigint FROM apikey_usage.daily_usage d JOIN tk ON tk.key_id = d.key_id
					 GROUP BY 1, 2 ORDER BY 1$$,
				  $$SELECT k.name, k.workspace, count(*) FROM apikey_usage.request_log_raw r
					  JOIN tk ON tk.key_id = r.api_key_id JOIN apikey_usage.api_keys k ON k.key_id = r.api_key_id
					 GROUP BY 1, 2 ORDER BY 1$$,
				  'daily_usage sums per key equal the raw log, labelled with name and workspace');

------------------------------------------------------------------------
-- Bulk import: validated, all or nothing, raw log and rollups agree
------------------------------------------------------------------------
CREATE TEMP TABLE staging AS
SELECT CASE WHEN i % 4 = 0 THEN NULL ELSE gen_random_uuid() END AS request_id,
	   ((SELECT t0 FROM t0) + make_interval(secs => i * 523.25))::text AS requested_at,	-- text columns cast
	   (SELECT key_id FROM tk WHERE n = 3)::text AS api_key_id,
	   (ARRAY['get', 'POST', 'options'])[1 + i % 3] AS method,
	   '/import/' || (i % 4) AS endpoint,
	   (ARRAY[200, 404, 429, 503, 302])[1 + i % 5]::text AS response_code,
	   CASE WHEN i % 2 = 0 THEN 'imp-' || (i % 9) END AS resource_id
  FROM generate_series(1, 5000) AS i;

SELECT is(apikey_usage.import_requests('staging'), 5000::bigint, 'import_requests imports every row');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = (SELECT key_id FROM tk WHERE n = 3)
			 AND endpoint LIKE '/import/%' AND method IN ('GET', 'POST', 'OPTIONS')), 5000::bigint,
		  'the imported rows are in the raw log, methods upper-cased');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint LIKE '/import/%'
			 AND substr(request_id::text, 15, 1) = '7'
			 AND abs(extract(epoch FROM requested_at) * 1000
					 - ('x' || substr(replace(request_id::text, '-', ''), 1, 12))::bit(48)::bigint) < 1), 1250::bigint,
		  'rows without a request_id get a UUIDv7 of their requested_at');
SELECT is_empty('SELECT * FROM rollup_mismatch UNION ALL SELECT side, api_key_id, bucket_start, method, endpoint, response_code, requests FROM daily_mismatch',
				'after the import the hourly and daily rollups still agree with the raw log (merged into existing hours)');
SELECT is_empty('SELECT * FROM summary_mismatch UNION ALL SELECT j, NULL, NULL FROM timeseries_mismatch',
				'after the import the analytics still equal the plain counts');

CREATE TEMP TABLE bad_staging AS SELECT * FROM staging LIMIT 10;
UPDATE bad_staging SET method = 'GET /x' WHERE ctid = (SELECT min(ctid) FROM bad_staging);
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad_staging')$$, '22023', NULL, 'import: a bad method is 22023');
UPDATE bad_staging SET method = 'GET';
UPDATE bad_staging SET api_key_id = '00000000-0000-4000-8000-00000000abcd' WHERE ctid = (SELECT min(ctid) FROM bad_staging);
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad_staging')$$, '22023', NULL, 'import: an unknown key is 22023');
UPDATE bad_staging SET api_key_id = (SELECT key_id FROM tk WHERE n = 3);
UPDATE bad_staging SET requested_at = (now() - interval '200 days')::text WHERE ctid = (SELECT min(ctid) FROM bad_staging);
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad_staging')$$, '22023', NULL, 'import: a time outside the retention is 22023');
UPDATE bad_staging SET requested_at = now()::text;
UPDATE bad_staging SET endpoint = NULL WHERE ctid = (SELECT min(ctid) FROM bad_staging);
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad_staging')$$, '22004', NULL, 'import: a NULL endpoint is 22004');
UPDATE bad_staging SET endpoint = '/ok', response_code = '600';
SELECT throws_ok($$SELECT apikey_usage.import_requests('bad_staging')$$, '22023', NULL, 'import: a response code of 600 is 22023');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw WHERE endpoint LIKE '/import/%' OR endpoint = '/ok'), 5000::bigint,
		  'a rejected import imports nothing');

-- the derived rollups follow deletes (retention), decreases and increases of hourly rows
SAVEPOINT before_delete;
DELETE FROM apikey_usage.usage_hourly
 WHERE api_key_id = (SELECT key_id FROM tk WHERE n = 2) AND bucket_start < (SELECT t0 FROM t0) + interval '10 days 5 hours';
UPDATE apikey_usage.usage_hourly SET requests = requests - 1
 WHERE api_key_id = (SELECT key_id FROM tk WHERE n = 1) AND bucket_start < (SELECT t0 FROM t0) + interval '20 days';
UPDATE apikey_usage.usage_hourly SET requests = requests + 2
 WHERE api_key_id = (SELECT key_id FROM tk WHERE n = 3) AND method = 'GET';
SELECT count(*) AS daily_bad FROM daily_mismatch \gset
ROLLBACK TO SAVEPOINT before_delete;	-- (also rolls back pgTAP's record of tests run here)
SELECT is(:daily_bad::bigint, 0::bigint, 'the derived rollups follow deletes, decreases and increases of hourly rows');

SELECT * FROM finish();
ROLLBACK;
