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
SELECT plan(122);

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

-- Every rollup grain equals the raw log of this file's keys counted at
-- that grain (rows of grain, key, UTC unit, dimension, code)
CREATE TEMP VIEW grain_mismatch AS
WITH raw AS (
	SELECT r.api_key_id, r.requested_at AS ts, r.method::text AS method, r.endpoint::text AS endpoint, r.response_code
	  FROM apikey_usage.request_log_raw r JOIN tk ON tk.key_id = r.api_key_id
), expected AS (
	SELECT 'hourly' AS grain, api_key_id, date_bin('1 hour', ts, 'epoch') AS b, method, endpoint, response_code, count(*) AS n FROM raw GROUP BY 1, 2, 3, 4, 5, 6
	UNION ALL SELECT 'daily', api_key_id, date_bin('1 day', ts, 'epoch'), method, endpoint, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 4, 5, 6
	UNION ALL SELECT 'minute_codes', api_key_id, date_bin('1 minute', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'hourly_codes', api_key_id, date_bin('1 hour', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'daily_codes', api_key_id, date_bin('1 day', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'hourly_methods', api_key_id, date_bin('1 hour', ts, 'epoch'), method, NULL, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 4
	UNION ALL SELECT 'daily_methods', api_key_id, date_bin('1 day', ts, 'epoch'), method, NULL, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 4
	UNION ALL SELECT 'hourly_endpoints', api_key_id, date_bin('1 hour', ts, 'epoch'), NULL, endpoint, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 5
	UNION ALL SELECT 'daily_endpoints', api_key_id, date_bin('1 day', ts, 'epoch'), NULL, endpoint, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 5
), rollup AS (
	SELECT 'hourly' AS grain, u.api_key_id, u.bucket_start AS b, u.method::text AS method, u.endpoint::text AS endpoint, u.response_code, u.requests AS n FROM apikey_usage.usage_hourly u
	UNION ALL SELECT 'daily', u.api_key_id, u.bucket_start, u.method, u.endpoint, u.response_code, u.requests FROM apikey_usage.usage_daily u
	UNION ALL SELECT 'minute_codes', u.api_key_id, u.bucket_start, NULL, NULL, u.response_code, u.requests FROM apikey_usage.usage_minute_codes u
	UNION ALL SELECT 'hourly_codes', u.api_key_id, u.bucket_start, NULL, NULL, u.response_code, u.requests FROM apikey_usage.usage_hourly_codes u
	UNION ALL SELECT 'daily_codes', u.api_key_id, u.bucket_start, NULL, NULL, u.response_code, u.requests FROM apikey_usage.usage_daily_codes u
	UNION ALL SELECT 'hourly_methods', u.api_key_id, u.bucket_start, u.method, NULL, NULL, u.requests FROM apikey_usage.usage_hourly_methods u
	UNION ALL SELECT 'daily_methods', u.api_key_id, u.bucket_start, u.method, NULL, NULL, u.requests FROM apikey_usage.usage_daily_methods u
	UNION ALL SELECT 'hourly_endpoints', u.api_key_id, u.bucket_start, NULL, u.endpoint, NULL, u.requests FROM apikey_usage.usage_hourly_endpoints u
	UNION ALL SELECT 'daily_endpoints', u.api_key_id, u.bucket_start, NULL, u.endpoint, NULL, u.requests FROM apikey_usage.usage_daily_endpoints u
), ours AS (
	SELECT r.* FROM rollup r JOIN tk ON tk.key_id = r.api_key_id
)
(SELECT 'raw only' AS side, * FROM expected EXCEPT ALL SELECT 'raw only', * FROM ours)
UNION ALL
(SELECT 'rollup only', * FROM ours EXCEPT ALL SELECT 'rollup only', * FROM expected);

SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw r JOIN tk ON tk.key_id = r.api_key_id),
		  (SELECT count(*) FROM hist), 'the whole history is in the raw log after flush()');
SELECT is_empty('SELECT * FROM grain_mismatch', 'every rollup grain (minute, hour, day; codes, methods, endpoints, all four) agrees with the raw log');
SELECT ok((SELECT count(DISTINCT grain) FROM grain_mismatch) = 0
		  AND (SELECT count(*) FROM apikey_usage.usage_minute_codes u JOIN tk ON tk.key_id = u.api_key_id) > 1000,
		  'the grain comparison covers many rows');

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

-- retention: _rollup_forget(cutoff) empties every grain before a UTC
-- midnight, and what remains still agrees with the raw log
SAVEPOINT before_forget;
CREATE TEMP TABLE forget_at AS SELECT date_bin('1 day', (SELECT t0 FROM t0) + interval '12 days', 'epoch') AS cutoff;
SELECT apikey_usage._rollup_forget((SELECT cutoff FROM forget_at));
DELETE FROM apikey_usage.request_log_raw WHERE requested_at < (SELECT cutoff FROM forget_at);
SELECT (SELECT count(*) FROM apikey_usage.usage_hourly WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_daily WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_minute_codes WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_hourly_codes WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_daily_codes WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_hourly_methods WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_daily_methods WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_hourly_endpoints WHERE bucket_start < f.cutoff)
	 + (SELECT count(*) FROM apikey_usage.usage_daily_endpoints WHERE bucket_start < f.cutoff) AS forget_left,
	   (SELECT count(*) FROM grain_mismatch) AS forget_bad,
	   (SELECT count(*) FROM summary_mismatch) AS forget_summary_bad
  FROM forget_at f \gset
ROLLBACK TO SAVEPOINT before_forget;	-- (also rolls back pgTAP's record of tests run here)
SELECT is(:forget_left::bigint, 0::bigint, '_rollup_forget deletes the rows of every grain before the cutoff');
SELECT is(:forget_bad::bigint + :forget_summary_bad::bigint, 0::bigint,
		  'after _rollup_forget (and the raw rows of those days dropped) the grains and usage_summary still agree with the raw log');
SELECT throws_ok($$SELECT apikey_usage._rollup_forget('2026-01-01 10:00:00+00')$$, '22023', NULL,
				 '_rollup_forget refuses a cutoff that is not a UTC midnight');

------------------------------------------------------------------------
-- The live edge: rows in the current hour, on minute boundaries, at
-- exactly now(), and future-dated within the coming hour; bounds inside
-- the current hour, equal to now(), open; rows flushed between two calls
------------------------------------------------------------------------
CREATE TEMP TABLE live AS
SELECT i, (SELECT key_id FROM tk WHERE n = 1 + i % 2) AS key_id,
	   (ARRAY['GET', 'POST', 'PUT'])[1 + i % 3] AS method,
	   (ARRAY['/live/a', '/live/b', '/live/c', '/live/d'])[1 + (i * 7) % 4] AS endpoint,
	   (ARRAY[200, 201, 404, 429, 500, 302])[1 + (i * 5) % 6] AS response_code,
	   CASE WHEN i % 50 = 0 THEN now()
			WHEN i % 37 = 0 THEN date_bin('1 minute', now() - make_interval(mins => i % 70), 'epoch')
			WHEN i % 10 = 0 THEN now() + make_interval(secs => (i * 7919) % 3500 + 0.25)
			ELSE now() - make_interval(secs => (i::bigint * 104729) % 4000 + (i % 1000) / 1000.0)
	   END AS requested_at
  FROM generate_series(1, 3000) AS i;
SELECT count(apikey_usage.log_request(key_id, method, endpoint, response_code, NULL, NULL, requested_at))
  FROM live \gset live_logged_
SELECT apikey_usage.flush() >= 0 AS flushed \gset

CREATE TEMP TABLE tr_hist AS SELECT * FROM tr;
DELETE FROM tr;
INSERT INTO tr (j, key_id, since, until)
SELECT j,
	   CASE j % 4 WHEN 0 THEN NULL WHEN 3 THEN '00000000-0000-4000-8000-00000000abcd'::uuid
			ELSE (SELECT key_id FROM tk WHERE n = j % 4) END,
	   CASE j % 6
			WHEN 0 THEN date_trunc('hour', now()) + make_interval(secs => (j * 7919) % 3600 + (j % 997) / 1000.0)
			WHEN 1 THEN now() - interval '30 days'
			WHEN 2 THEN now() - make_interval(secs => (j * 104729) % 3000 + (j % 991) / 1000.0)
			WHEN 3 THEN now()
			WHEN 4 THEN date_trunc('hour', now())
			ELSE date_bin('1 minute', now(), 'epoch') - make_interval(mins => j % 5) END,
	   CASE j % 6
			WHEN 0 THEN now()
			WHEN 1 THEN now()
			WHEN 2 THEN now() + make_interval(secs => (j * 613) % 3600 - 1200 + (j % 13) / 100.0)
			WHEN 3 THEN now() + make_interval(secs => 1 + (j * 389) % 3599)
			WHEN 4 THEN now()
			ELSE NULL END
  FROM generate_series(1, 48) AS j;
UPDATE tr SET since = until, until = since WHERE since > until;

SELECT ok((SELECT count(*) FROM tr WHERE until = now()) >= 16
		  AND (SELECT count(*) FROM tr WHERE since = now()) >= 4
		  AND (SELECT count(*) FROM tr WHERE since >= date_trunc('hour', now()) AND until < date_trunc('hour', now()) + interval '1 hour') >= 8
		  AND (SELECT count(*) FROM tr WHERE until > now() OR until IS NULL) >= 10
		  AND (SELECT count(*) FROM live l WHERE l.requested_at > now()) >= 200
		  AND (SELECT count(*) FROM live l WHERE l.requested_at = now()) >= 50,
		  'live triples: bounds inside the current hour, until = now(), since = now(), future and open ends; future-dated rows and rows at now()');
SELECT is_empty('SELECT * FROM summary_mismatch', 'live edge: usage_summary equals the plain count for every triple');
SELECT is_empty('SELECT * FROM by_method_mismatch', 'live edge: usage_by_method equals the plain count for every triple');
SELECT is_empty('SELECT * FROM by_status_mismatch', 'live edge: usage_by_response_status equals the plain count for every triple');
SELECT is_empty('SELECT * FROM top_endpoints_mismatch', 'live edge: top_endpoints equals the plain count for every triple');
SELECT is_empty('SELECT * FROM timeseries_mismatch', 'live edge: usage_timeseries (1, 5, 7.5 and 60 minute buckets) equals the plain count per bucket');
SELECT is_empty('SELECT * FROM timeseries_sum_mismatch', 'live edge: the buckets of usage_timeseries sum to usage_summary');
SELECT ok((SELECT sum(total_requests) FROM tr, apikey_usage.usage_summary(tr.key_id, tr.since, tr.until)
			WHERE tr.key_id IS NOT NULL) > 5000,
		  'the live triples count many requests (the comparisons are not vacuous)');

-- the live dashboard: default bounds and the last hour per minute
CREATE TEMP TABLE live_before AS
SELECT (SELECT s::text FROM apikey_usage.usage_summary(k.key_id) s) AS summary,
	   (SELECT array_agg(x::text ORDER BY x.bucket_start) FROM apikey_usage.usage_timeseries(k.key_id, now() - interval '1 hour', now(), '1 minute') x) AS series
  FROM tk k WHERE k.n = 1;
SELECT count(apikey_usage.log_request((SELECT key_id FROM tk WHERE n = 1), 'GET', '/live/late', 200 + (i % 2) * 229, NULL, NULL,
									  now() - make_interval(secs => i * 2.5)))
  FROM generate_series(1, 25) AS i \gset late_
SELECT apikey_usage.flush() >= 0 AS flushed \gset
SELECT is((SELECT s::text FROM apikey_usage.usage_summary(k.key_id) s),
		  (SELECT e::text FROM pg_temp.raw_summary(k.key_id, now() - interval '30 days', now()) e),
		  'rows flushed between two calls: the second usage_summary with default bounds counts them')
  FROM tk k WHERE k.n = 1;
SELECT is((SELECT total_requests FROM apikey_usage.usage_summary(k.key_id)) - split_part(trim(both '()' FROM b.summary), ',', 1)::bigint,
		  25::bigint, 'the second call counts exactly the 25 rows flushed in between')
  FROM tk k, live_before b WHERE k.n = 1;
SELECT isnt((SELECT array_agg(x::text ORDER BY x.bucket_start) FROM apikey_usage.usage_timeseries(k.key_id, now() - interval '1 hour', now(), '1 minute') x),
			b.series, 'the last hour per minute changes after the flush')
  FROM tk k, live_before b WHERE k.n = 1;
DELETE FROM tr;
INSERT INTO tr VALUES (1, (SELECT key_id FROM tk WHERE n = 1), now() - interval '1 hour', now()),
					  (2, NULL, now() - interval '1 hour', now()),
					  (3, (SELECT key_id FROM tk WHERE n = 1), now() - interval '30 days', now());
SELECT is_empty('SELECT * FROM timeseries_mismatch UNION ALL SELECT j, NULL, NULL, NULL FROM summary_mismatch
				 UNION ALL SELECT j, NULL, NULL, NULL FROM by_method_mismatch UNION ALL SELECT j, NULL, NULL, NULL FROM top_endpoints_mismatch',
				'after the flush: the last hour per minute, default summary, by method and top endpoints equal the plain counts');

------------------------------------------------------------------------
-- request_count: the rows request_log pages through, same filters
------------------------------------------------------------------------
CREATE TEMP TABLE rc_cases AS
SELECT c.*, row_number() OVER () AS j FROM (VALUES
	(1, NULL::text, NULL::interval, NULL::interval, NULL::text, NULL::text, NULL::text, NULL::integer),
	(2, NULL, interval '20 days', NULL, 'failed', NULL, NULL, NULL),
	(3, NULL, interval '29 days 7 hours', interval '1 day 13 seconds', NULL, NULL, NULL, 429),
	(NULL, NULL, interval '2 days', NULL, 'completed', NULL, NULL, NULL),
	(1, 'doc-3', NULL, NULL, NULL, NULL, NULL, NULL),
	(2, NULL, interval '35 days', interval '5 hours', 'completed', 'get', NULL, NULL),
	(3, NULL, NULL, NULL, NULL, NULL, '/v1/users', 200),
	(NULL, NULL, interval '1 hour', NULL, 'rate_limited', NULL, NULL, NULL),
	(1, NULL, interval '50 minutes', interval '0', NULL, NULL, NULL, NULL)
) AS c(kn, res, since_ago, until_ago, st, m, e, code);
SELECT is_empty($$
	SELECT c.j FROM rc_cases c LEFT JOIN tk ON tk.n = c.kn
	 WHERE apikey_usage.request_count(tk.key_id, c.res, now() - c.since_ago, now() - c.until_ago, c.st, c.m, c.e, c.code)
		   IS DISTINCT FROM
		   (SELECT count(*) FROM pg_temp.raw_log(tk.key_id, c.res, now() - c.since_ago, now() - c.until_ago, c.st, c.m, c.e, c.code, 100000000))$$,
	'request_count equals the number of rows request_log pages through, for nine filter combinations');
SELECT ok((SELECT min(apikey_usage.request_count(tk.key_id, c.res, now() - c.since_ago, now() - c.until_ago, c.st, c.m, c.e, c.code))
			 FROM rc_cases c LEFT JOIN tk ON tk.n = c.kn) > 0,
		  'every request_count case counts rows (not vacuous)');
SELECT is(apikey_usage.request_count('00000000-0000-4000-8000-00000000abcd'), 0::bigint, 'request_count of an unknown key is 0');
SELECT throws_ok($$SELECT apikey_usage.request_count(status => 'succeeded')$$, '22023', NULL, 'request_count: unknown status');
SELECT throws_ok($$SELECT apikey_usage.request_count(since => now(), until => now() - interval '1 second')$$, '22023', NULL, 'request_count: since > until');

------------------------------------------------------------------------
-- Local-time buckets (time_zone): rows put straight into the raw log and
-- the rollups (as the writer does) around fixed dates, so the cases do
-- not depend on today: Europe/Berlin changes to summer time on
-- 2025-03-30 01:00 UTC (a 23-hour day) and back on 2025-10-26 01:00 UTC
-- (a 25-hour day, local 02:00-03:00 twice); Asia/Kolkata is +05:30.
------------------------------------------------------------------------
INSERT INTO tk SELECT 4, key_id FROM apikey_usage.generate_key('pgtap-analytics-tz', 'Local');
CREATE TEMP TABLE tzrows AS
SELECT gen_random_uuid() AS request_id, (SELECT key_id FROM tk WHERE n = 4) AS key_id,
	   (ARRAY['GET', 'POST'])[1 + i % 2] AS method, '/tz/' || (i % 3) AS endpoint,
	   (ARRAY[200, 404, 429, 503, 201])[1 + (i * 3) % 5]::smallint AS response_code,
	   b.base + make_interval(secs => (i::bigint * 7919) % 345600 + (i % 1000) / 1000.0) AS requested_at
  FROM (VALUES (timestamptz '2025-03-28 00:00:00+00'), (timestamptz '2025-10-24 00:00:00+00')) AS b(base),
	   generate_series(1, 3000) AS i
UNION ALL	-- on and just before local midnights and local hours
SELECT gen_random_uuid(), (SELECT key_id FROM tk WHERE n = 4), 'GET', '/tz/edge', 200::smallint, t.t - d.d
  FROM unnest(ARRAY['2025-03-29 18:30:00+00', '2025-03-29 23:00:00+00', '2025-03-30 00:00:00+00', '2025-03-30 01:00:00+00',
					'2025-03-30 22:00:00+00', '2025-10-25 22:00:00+00', '2025-10-26 00:00:00+00', '2025-10-26 01:00:00+00',
					'2025-10-26 23:00:00+00', '2025-10-25 18:30:00+00', '2025-10-26 02:30:00+00']::timestamptz[]) AS t(t),
	   unnest(ARRAY[interval '0', interval '1 microsecond']) AS d(d);
SELECT count(apikey_usage._ensure_partition(d))
  FROM (SELECT DISTINCT date_bin('1 day', requested_at, 'epoch') AS d FROM tzrows) x \gset
INSERT INTO apikey_usage.request_log_raw (requested_at, request_id, api_key_id, method, endpoint, response_code)
SELECT requested_at, request_id, key_id, method, endpoint, response_code FROM tzrows;
SELECT count(*) FROM (
	SELECT apikey_usage._rollup_apply(array_agg(key_id), array_agg(m), array_agg(method), array_agg(endpoint),
									  array_agg(response_code), array_agg(n))
	  FROM (SELECT key_id, date_bin('1 minute', requested_at, 'epoch') AS m, method, endpoint, response_code, count(*) AS n
			  FROM tzrows GROUP BY 1, 2, 3, 4, 5) g) x \gset

-- cases: zone, bucket, bounds, and the expected bucket of a time,
-- written independently of the extension
CREATE TEMP TABLE tz_cases (j int, tz text, bucket interval, since timestamptz, until timestamptz, rule text);
INSERT INTO tz_cases VALUES
	(1, 'Europe/Berlin', '1 day', '2025-10-23 13:17:05.5+00', '2025-10-28 02:00:00+00', 'berlin_day'),
	(2, 'Europe/Berlin', '1 hour', '2025-10-25 20:10:00+00', '2025-10-26 05:00:07+00', 'utc_hour'),
	(3, 'Europe/Berlin', '1 day', '2025-03-28 10:00:00+00', '2025-04-01 00:00:00+00', 'berlin_day'),
	(4, 'Europe/Berlin', '1 hour', '2025-03-29 22:00:00+00', '2025-03-30 04:30:00+00', 'utc_hour'),
	(5, 'Asia/Kolkata', '1 day', '2025-03-28 05:00:01+00', '2025-03-31 19:00:00+00', 'kolkata_day'),
	(6, 'Asia/Kolkata', '1 hour', '2025-03-29 16:45:30+00', '2025-03-30 03:10:00+00', 'kolkata_hour'),
	(7, 'Asia/Kolkata', '1 day', '2025-10-24 00:00:00+00', '2025-10-28 00:00:00+00', 'kolkata_day'),
	(8, 'Asia/Kolkata', '30 minutes', '2025-10-25 17:59:59+00', '2025-10-26 03:00:00+00', 'utc_half_hour'),
	(9, 'Europe/Berlin', '2 days', '2025-10-22 00:00:00+00', '2025-10-28 00:00:00+00', 'berlin_2days');
CREATE FUNCTION pg_temp.local_bucket(rule text, ts timestamptz) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE rule
		WHEN 'berlin_day' THEN date_trunc('day', ts AT TIME ZONE 'Europe/Berlin') AT TIME ZONE 'Europe/Berlin'
		WHEN 'berlin_2days' THEN (date_trunc('day', ts AT TIME ZONE 'Europe/Berlin')
								  - make_interval(days => ((ts AT TIME ZONE 'Europe/Berlin')::date - date '1970-01-01') % 2))
								 AT TIME ZONE 'Europe/Berlin'
		WHEN 'utc_hour' THEN date_bin('1 hour', ts, timestamptz '1970-01-01 00:00:00+00')
		WHEN 'utc_half_hour' THEN date_bin('30 minutes', ts, timestamptz '1970-01-01 00:00:00+00')
		WHEN 'kolkata_day' THEN date_bin('1 day', ts, timestamptz '1970-01-01 18:30:00+00')
		WHEN 'kolkata_hour' THEN date_bin('1 hour', ts, timestamptz '1970-01-01 00:30:00+00')
	END
$$;
CREATE TEMP VIEW tz_mismatch AS
SELECT c.j, k.key_id, f.got, e.expected
  FROM tz_cases c, (SELECT key_id FROM tk WHERE n = 4 UNION ALL SELECT NULL) k,
	   LATERAL (SELECT array_agg(x::text ORDER BY x.bucket_start) AS got
				  FROM apikey_usage.usage_timeseries(k.key_id, c.since, c.until, c.bucket, c.tz) x) f,
	   LATERAL (
		WITH starts AS (	-- every bucket overlapping [since, until): the buckets of its microseconds
			SELECT DISTINCT pg_temp.local_bucket(c.rule, t) AS bucket_start
			  FROM generate_series(c.since, c.until - interval '1 microsecond', interval '15 minutes') AS t
			UNION SELECT pg_temp.local_bucket(c.rule, c.until - interval '1 microsecond')),
		counted AS (
			SELECT pg_temp.local_bucket(c.rule, r.requested_at) AS bucket_start, count(*) AS total,
				   count(*) FILTER (WHERE r.response_code < 400) AS completed,
				   count(*) FILTER (WHERE r.response_code >= 400 AND r.response_code <> 429) AS failed,
				   count(*) FILTER (WHERE r.response_code = 429) AS rate_limited
			  FROM pg_temp.raw(k.key_id, c.since, c.until) r GROUP BY 1)
		SELECT array_agg(ROW(s.bucket_start, coalesce(n.total, 0), coalesce(n.completed, 0),
							 coalesce(n.failed, 0), coalesce(n.rate_limited, 0))::text
						 ORDER BY s.bucket_start) AS expected
		  FROM starts s LEFT JOIN counted n USING (bucket_start)) e
 WHERE f.got IS DISTINCT FROM e.expected;
SELECT is_empty('SELECT * FROM tz_mismatch',
				'local-day and local-hour buckets in Europe/Berlin (both DST changes) and Asia/Kolkata (+05:30) equal the plain counts per local bucket');
SELECT ok((SELECT count(*) FROM apikey_usage.request_log_raw r JOIN tk ON tk.n = 4 AND tk.key_id = r.api_key_id) >= 6000
		  AND (SELECT min(x.total_requests) FROM tz_cases c, apikey_usage.usage_timeseries((SELECT key_id FROM tk WHERE n = 4),
				c.since, c.until, c.bucket, c.tz) x WHERE c.bucket = '1 day' AND x.bucket_start > c.since AND x.bucket_start < c.until - interval '1 day') > 0,
		  'the local-time cases count many requests (not vacuous)');
SELECT is((SELECT array_agg(h ORDER BY b) FROM (
			 SELECT x.bucket_start AS b, EXTRACT(epoch FROM lead(x.bucket_start) OVER (ORDER BY x.bucket_start) - x.bucket_start)::integer / 3600 AS h
			   FROM apikey_usage.usage_timeseries(NULL, '2025-10-24 12:00:00+00', '2025-10-28 00:00:00+00', '1 day', 'Europe/Berlin') x) d)::text,
		  '{24,24,25,24,NULL}', 'Berlin local days: the day of the change back to winter time is 25 hours long');
SELECT is((SELECT array_agg(to_char(x.bucket_start AT TIME ZONE 'Europe/Berlin', 'DD HH24:MI') ORDER BY x.bucket_start)
			 FROM apikey_usage.usage_timeseries(NULL, '2025-10-25 23:00:00+00', '2025-10-26 03:00:00+00', '1 hour', 'Europe/Berlin') x)::text,
		  '{"26 01:00","26 02:00","26 02:00","26 03:00"}', 'Berlin local hours: the repeated local hour 02:00 has two buckets');
SELECT is((SELECT array_agg(to_char(x.bucket_start AT TIME ZONE 'Asia/Kolkata', 'DD HH24:MI') ORDER BY x.bucket_start)
			 FROM apikey_usage.usage_timeseries(NULL, '2025-03-28 05:00:01+00', '2025-03-30 00:00:00+00', '1 day', 'Asia/Kolkata') x)::text,
		  '{"28 00:00","29 00:00","30 00:00"}', 'Kolkata local days start at local midnight (18:30 UTC)');
SELECT is_empty($$
	SELECT c.j FROM tz_cases c, apikey_usage.usage_summary((SELECT key_id FROM tk WHERE n = 4), c.since, c.until) s,
		   LATERAL (SELECT sum(x.total_requests) AS t FROM apikey_usage.usage_timeseries((SELECT key_id FROM tk WHERE n = 4),
					c.since, c.until, c.bucket, c.tz) x) ts
	 WHERE ts.t <> s.total_requests$$, 'local-time buckets sum to usage_summary');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 day', now(), '1 hour', 'Mars/Olympus_Mons')$$,
				 '22023', NULL, 'usage_timeseries: an unknown time zone is 22023');
SELECT throws_ok($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 day', now(), '7 hours', 'Europe/Berlin')$$,
				 '22023', NULL, 'usage_timeseries: with a time zone, a bucket that neither divides a day nor is whole days is 22023');
SELECT results_eq($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '3 days', now(), '1 hour', 'UTC')$$,
				  $$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '3 days', now(), '1 hour')$$,
				  'time_zone UTC gives the buckets of no time zone');

------------------------------------------------------------------------
-- Bulk import: validated, all or nothing, raw log and rollups agree.
-- (Last before the visibility cases: import_requests goes through the
-- log writer, whose lock the transaction then holds, so no flush()
-- can follow it.)  The 72 triples are back in tr.
------------------------------------------------------------------------
DELETE FROM tr;
INSERT INTO tr SELECT * FROM tr_hist;
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
SELECT is_empty('SELECT * FROM grain_mismatch',
				'after the import every rollup grain still agrees with the raw log (merged into existing units)');
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

------------------------------------------------------------------------
-- Visibility: a key the caller may not see counts as an unknown key
-- (the stub is replaced for this transaction only)
------------------------------------------------------------------------
DO $$
BEGIN
	EXECUTE format('CREATE OR REPLACE FUNCTION apikey_usage._visible_key_ids() RETURNS uuid[]'
				   ' LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp'
				   ' AS $f$ SELECT %L::uuid[] $f$',
				   (SELECT array_agg(key_id) FROM tk WHERE n IN (1, 2)));
END
$$;
SELECT results_eq(format('SELECT * FROM apikey_usage.usage_summary(%L, NULL, NULL)', key_id),
				  $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint)$$,
				  'an invisible key: usage_summary is zeros')
  FROM tk WHERE n = 3;
SELECT is_empty(format($$SELECT method, requests FROM apikey_usage.usage_by_method(%1$L, NULL, NULL)
						 UNION ALL SELECT endpoint, requests FROM apikey_usage.top_endpoints(%1$L, NULL, NULL)
						 UNION ALL SELECT response_code::text, requests FROM apikey_usage.usage_by_response_status(%1$L, NULL, NULL)
						 UNION ALL SELECT request_id::text, 0 FROM apikey_usage.request_log(%1$L)
						 UNION ALL SELECT key_name, requests FROM apikey_usage.hourly_usage WHERE key_id = %1$L
						 UNION ALL SELECT key_name, requests FROM apikey_usage.daily_usage WHERE key_id = %1$L
						 UNION ALL SELECT 'ts', total_requests FROM apikey_usage.usage_timeseries(%1$L) WHERE total_requests > 0
						 UNION ALL SELECT 'count', apikey_usage.request_count(%1$L) WHERE apikey_usage.request_count(%1$L) > 0$$, key_id),
				'an invisible key: no rows in any analytics function or view, request_count 0')
  FROM tk WHERE n = 3;
SELECT is((SELECT total_requests FROM apikey_usage.usage_summary(NULL, NULL, NULL)),
		  (SELECT count(*) FROM apikey_usage.request_log_raw r JOIN tk ON tk.key_id = r.api_key_id AND tk.n IN (1, 2)),
		  'key NULL counts exactly the visible keys');
SELECT is((SELECT count(*) FROM apikey_usage.request_log(max_rows => 10000) l JOIN tk ON tk.key_id = l.api_key_id AND tk.n NOT IN (1, 2)),
		  0::bigint, 'request_log without a key shows only visible keys');

SELECT * FROM finish();
ROLLBACK;
