-- The analytics functions and views on a small fixed history (API.md,
-- "Analytics").  Times are offsets from h, a whole UTC hour two days ago,
-- so the output does not depend on when the test runs: only counts and
-- offsets from h (in hours or minutes) are printed.
SET client_min_messages = warning;	-- no NOTICE when an earlier file created it
CREATE EXTENSION IF NOT EXISTS apikey_usage;
RESET client_min_messages;
\set VERBOSITY terse

-- errors as 'SQLSTATE: message'
CREATE FUNCTION pg_temp.err(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE query;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE TEMP TABLE k AS
SELECT 'reports' AS tag, key_id FROM apikey_usage.generate_key('regress-analytics', 'Reports')
UNION ALL
SELECT 'sync', key_id FROM apikey_usage.generate_key('regress-analytics', 'Sync');
CREATE TEMP TABLE h AS SELECT date_bin('1 hour', now(), 'epoch') - interval '48 hours' AS h;

-- the history: minutes after h (negative = before)
CREATE TEMP TABLE hist (tag text, minutes numeric, method text, endpoint text, code int, resource text);
INSERT INTO hist VALUES
	('reports', -90,   'GET',    '/v1/reports',      200, NULL),
	('reports', -61,   'get',    '/v1/reports/{id}', 200, 'rep-1'),
	('reports', -30.5, 'POST',   '/v1/reports',      201, 'rep-2'),
	('reports', -0.01, 'GET',    '/v1/reports/{id}', 404, 'rep-9'),
	('reports', 0,     'GET',    '/v1/reports/{id}', 200, 'rep-1'),
	('reports', 5,     'DELETE', '/v1/reports/{id}', 204, 'rep-2'),
	('reports', 20,    'GET',    '/v1/reports',      429, NULL),
	('reports', 21,    'GET',    '/v1/reports',      429, NULL),
	('reports', 59.99, 'PUT',    '/v1/reports/{id}', 500, 'rep-1'),
	('reports', 60,    'GET',    '/v1/reports/{id}', 304, 'rep-1'),
	('reports', 95,    'GET',    '/v1/exports',      200, NULL),
	('reports', 130,   'POST',   '/v1/exports',      503, NULL),
	('sync',    10,    'GET',    '/v1/sync',         200, NULL),
	('sync',    70,    'GET',    '/v1/sync',         401, NULL);

SELECT count(apikey_usage.log_request(k.key_id, hist.method, hist.endpoint, hist.code, hist.resource,
									  NULL, h.h + hist.minutes * interval '1 minute')) AS logged
  FROM hist JOIN k USING (tag), h;
SELECT apikey_usage.flush() >= 0 AS flushed;

-- totals per status: whole hours [h-1h, h+2h) from the rollups, the
-- partial hours at both ends from the raw log
SELECT s.* FROM k, h, apikey_usage.usage_summary(k.key_id, h.h - interval '75 minutes', h.h + interval '130 minutes') s
 WHERE k.tag = 'reports';
-- half open: a request at exactly until is not counted, one at since is
SELECT s.* FROM k, h, apikey_usage.usage_summary(k.key_id, h.h, h.h + interval '60 minutes') s
 WHERE k.tag = 'reports';
-- NULL bounds are unbounded; the default is the last 30 days
SELECT s.* FROM k, apikey_usage.usage_summary(k.key_id, NULL, NULL) s WHERE k.tag = 'reports';
SELECT s.* FROM k, apikey_usage.usage_summary(k.key_id) s WHERE k.tag = 'sync';
-- an unknown key: one row of zeros
SELECT * FROM apikey_usage.usage_summary('00000000-0000-4000-8000-000000000000');

SELECT m.* FROM k, apikey_usage.usage_by_method(k.key_id) m WHERE k.tag = 'reports';
SELECT c.* FROM k, apikey_usage.usage_by_response_status(k.key_id) c WHERE k.tag = 'reports';
SELECT e.* FROM k, apikey_usage.top_endpoints(k.key_id, max_rows => 2) e WHERE k.tag = 'reports';

-- hourly buckets (rollups), then 45-minute buckets (raw log): every
-- bucket overlapping [since, until) is there, counting only requests
-- inside; the first bucket starts before since
SELECT (extract(epoch FROM t.bucket_start - h.h) / 3600)::integer AS hour, t.total_requests, t.completed, t.failed, t.rate_limited
  FROM k, h, apikey_usage.usage_timeseries(k.key_id, h.h - interval '75 minutes', h.h + interval '130 minutes') t
 WHERE k.tag = 'reports';
SELECT bool_and(extract(epoch FROM t.bucket_start)::numeric % 2700 = 0) AS aligned_to_epoch,
	   min(t.bucket_start) <= h.h - interval '75 minutes' AS first_starts_before_since,
	   max(t.bucket_start) < h.h + interval '130 minutes' AS last_starts_before_until,
	   sum(t.total_requests) AS total
  FROM k, h, apikey_usage.usage_timeseries(k.key_id, h.h - interval '75 minutes', h.h + interval '130 minutes', '45 minutes') t
 WHERE k.tag = 'reports'
 GROUP BY h.h;

-- the request log, newest first, three at a time
SELECT round(extract(epoch FROM r.requested_at - h.h) / 60, 2) AS minute, r.method, r.endpoint, r.status, r.response_code, r.resource_id
  FROM k, h, apikey_usage.request_log(k.key_id, max_rows => 3) r WHERE k.tag = 'reports';
SELECT round(extract(epoch FROM r.requested_at - h.h) / 60, 2) AS minute, r.method, r.endpoint, r.status, r.response_code, r.resource_id
  FROM k, h,
	   LATERAL (SELECT * FROM apikey_usage.request_log(k.key_id, max_rows => 3) OFFSET 2) AS last_row,
	   apikey_usage.request_log(k.key_id, max_rows => 3, before_requested_at => last_row.requested_at,
								before_request_id => last_row.request_id) r
 WHERE k.tag = 'reports';
-- filters: method compared upper-cased, status by response code class
SELECT round(extract(epoch FROM r.requested_at - h.h) / 60, 2) AS minute, r.method, r.status, r.resource_id
  FROM k, h, apikey_usage.request_log(k.key_id, method => 'get', status => 'completed') r WHERE k.tag = 'reports';
SELECT count(*) AS rep_1 FROM k, apikey_usage.request_log(k.key_id, resource_id => 'rep-1') WHERE k.tag = 'reports';
SELECT round(extract(epoch FROM r.requested_at - h.h) / 60, 2) AS minute, r.endpoint, r.response_code
  FROM k, h, apikey_usage.request_log(k.key_id, status => 'rate_limited', since => h.h, until => h.h + interval '1 hour') r
 WHERE k.tag = 'reports';

-- the views over the rollups (for Metabase)
SELECT v.key_name, (extract(epoch FROM v.bucket_start - h.h) / 3600)::integer AS hour, v.method, v.endpoint, v.response_code, v.status, v.requests
  FROM apikey_usage.hourly_usage v, h
 WHERE v.workspace = 'regress-analytics'
 ORDER BY v.key_name, 2, v.method, v.endpoint, v.response_code;
SELECT d.key_name, sum(d.requests) AS requests
  FROM apikey_usage.daily_usage d WHERE d.workspace = 'regress-analytics' GROUP BY 1 ORDER BY 1;

-- bulk import of history: checked, then raw log and rollups together
CREATE TEMP TABLE staging AS
SELECT NULL::uuid AS request_id, h.h - i * interval '1 hour' AS requested_at, k.key_id AS api_key_id,
	   'get' AS method, '/v1/sync' AS endpoint, 200 AS response_code, NULL::text AS resource_id
  FROM k, h, generate_series(1, 5) AS i WHERE k.tag = 'sync';
SELECT apikey_usage.import_requests('staging') AS imported;
SELECT s.* FROM k, apikey_usage.usage_summary(k.key_id) s WHERE k.tag = 'sync';
UPDATE staging SET endpoint = 'v1/sync';
SELECT pg_temp.err($$SELECT apikey_usage.import_requests('staging')$$);

-- bad input
SELECT pg_temp.err($$SELECT * FROM apikey_usage.usage_summary(NULL, now(), now() - interval '1 hour')$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.top_endpoints(NULL, max_rows => 0)$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.usage_timeseries(NULL, now() - interval '1 day', now(), '10 seconds')$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.usage_timeseries(NULL, date_bin('1 hour', now(), 'epoch') - interval '720 hours', date_bin('1 hour', now(), 'epoch'), '1 minute')$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.usage_timeseries(NULL, NULL, now())$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.request_log(status => 'ok')$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.request_log(max_rows => 10001)$$);
SELECT pg_temp.err($$SELECT * FROM apikey_usage.request_log(before_requested_at => now())$$);
