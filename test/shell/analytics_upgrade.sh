#!/usr/bin/env bash
# Analytics across ALTER EXTENSION apikey_usage UPDATE (0.1.0 -> 0.2.0):
# traffic written by 0.1.0's write path (two keys, three days, the current hour and
# future-dated rows), every analytics function called with fixed bounds
# (unaligned, hour-aligned, open, live) before the update and after it:
# the answers are identical; every new rollup grain agrees with the raw
# log; traffic logged after the update is counted in every grain too.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap "${KEEP_CLUSTER:+:} cluster_stop" EXIT
fail() { echo "FAIL analytics_upgrade: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 20 "$CLUSTER_LOG" >&2; exit 1; }

cluster_start upgrade "fsync = off" "apikey_usage.flush_interval = 50"
cluster_psql -c "CREATE EXTENSION apikey_usage VERSION '0.1.0'"
cluster_wait_worker

cluster_psql <<'SQL' >/dev/null
CREATE TABLE t AS SELECT now() AS t;
CREATE TABLE k AS
SELECT 1 AS n, key_id FROM apikey_usage.generate_key('shell_upgrade', 'a')
UNION ALL SELECT 2, key_id FROM apikey_usage.generate_key('shell_upgrade', 'b');
-- 0.1.0's write path (the 0.2.0 library's writer needs 0.2.0's SQL):
-- _insert_batch, raw rows and usage_hourly, whose triggers keep the
-- daily and per-code rollups
CREATE TABLE rows AS
SELECT gen_random_uuid() AS request_id,
	   CASE WHEN i % 10 = 0 THEN (SELECT t FROM t) + make_interval(secs => (i * 13) % 3000)
			ELSE (SELECT t FROM t) - make_interval(secs => (i::bigint * 7919) % 259200 + (i % 1000) / 1000.0) END AS requested_at,
	   (SELECT key_id FROM k WHERE n = 1 + i % 2) AS key_id, upper((ARRAY['GET', 'POST', 'put'])[1 + i % 3]) AS method,
	   '/v1/' || (i * 7) % 9 AS endpoint, (ARRAY[200, 201, 404, 429, 500, 302, 503])[1 + (i * 5) % 7]::smallint AS response_code
  FROM generate_series(1, 4000) AS i;
SELECT apikey_usage._insert_batch(array_agg(request_id), array_agg(requested_at), array_agg(key_id), array_agg(method),
								  array_agg(endpoint), array_agg(response_code), array_agg(NULL::text))
  FROM rows;
SQL

# every analytics answer for a set of bounds, as text
cat >"$CLUSTER_DIR/answers.sql" <<'SQL'
WITH b(j, key_id, since, until) AS (
	SELECT j, CASE WHEN j % 3 = 0 THEN NULL ELSE (SELECT key_id FROM k WHERE n = 1 + j % 2) END,
		   CASE j % 4 WHEN 0 THEN t - interval '30 days' WHEN 1 THEN t - make_interval(secs => j * 3217.25)
					  WHEN 2 THEN date_trunc('hour', t) - interval '5 hours' ELSE t - interval '20 minutes' END,
		   CASE j % 5 WHEN 0 THEN t WHEN 1 THEN t + interval '1 hour' WHEN 2 THEN t - make_interval(secs => j * 611.5)
					  WHEN 3 THEN date_trunc('hour', t) ELSE t END
	  FROM t, generate_series(1, 24) AS j)
SELECT b.j, 'summary', s::text FROM b, apikey_usage.usage_summary(b.key_id, b.since, b.until) s WHERE b.since <= b.until
UNION ALL
SELECT b.j, 'method', (SELECT array_agg(x::text ORDER BY o)::text FROM apikey_usage.usage_by_method(b.key_id, b.since, b.until) WITH ORDINALITY x(m, n, o))
  FROM b WHERE b.since <= b.until
UNION ALL
SELECT b.j, 'status', (SELECT array_agg(x::text ORDER BY o)::text FROM apikey_usage.usage_by_response_status(b.key_id, b.since, b.until) WITH ORDINALITY x(c, n, o))
  FROM b WHERE b.since <= b.until
UNION ALL
SELECT b.j, 'endpoints', (SELECT array_agg(x::text ORDER BY o)::text FROM apikey_usage.top_endpoints(b.key_id, b.since, b.until, 5) WITH ORDINALITY x(e, n, o))
  FROM b WHERE b.since <= b.until
UNION ALL
SELECT b.j, 'series ' || bucket, (SELECT array_agg(x::text ORDER BY x.bucket_start)::text FROM apikey_usage.usage_timeseries(b.key_id, b.since, b.until, bucket) x)
  FROM b, unnest(ARRAY[interval '1 hour', interval '1 day', interval '10 minutes']) AS bucket
 WHERE b.since <= b.until AND b.until - b.since < interval '20 days'
UNION ALL
SELECT 0, 'request_log', (SELECT array_agg(l.request_id ORDER BY l.requested_at DESC, l.request_id DESC)::text
						   FROM apikey_usage.request_log((SELECT key_id FROM k WHERE n = 1), status => 'failed', max_rows => 500) l)
ORDER BY 1, 2;
SQL
cluster_psql -f "$CLUSTER_DIR/answers.sql" >"$CLUSTER_DIR/before.txt"
[ "$(wc -l <"$CLUSTER_DIR/before.txt")" -gt 100 ] || fail "too few answers before the update"
grep -q '^1|summary|(0,0,0,0)$' "$CLUSTER_DIR/before.txt" && fail "the answers are vacuous"

cluster_psql -c "ALTER EXTENSION apikey_usage UPDATE TO '0.2.0'"
[ "$(cluster_psql -c "SELECT extversion FROM pg_extension WHERE extname = 'apikey_usage'")" = 0.2.0 ] || fail "not updated"
cluster_psql -f "$CLUSTER_DIR/answers.sql" >"$CLUSTER_DIR/after.txt"
diff "$CLUSTER_DIR/before.txt" "$CLUSTER_DIR/after.txt" >&2 || fail "answers differ after the update"
echo "ok - $(wc -l <"$CLUSTER_DIR/after.txt") analytics answers identical before and after ALTER EXTENSION UPDATE"

# every grain agrees with the raw log: after the migration, and after
# more traffic through the 0.2.0 write path
grains_mismatch() {
	cluster_psql <<'SQL'
WITH raw AS (SELECT api_key_id, requested_at AS ts, method::text AS method, endpoint::text AS endpoint, response_code FROM apikey_usage.request_log_raw),
expected AS (
	SELECT 'hourly' AS g, api_key_id, date_bin('1 hour', ts, 'epoch') AS b, method, endpoint, response_code, count(*) AS n FROM raw GROUP BY 1, 2, 3, 4, 5, 6
	UNION ALL SELECT 'daily', api_key_id, date_bin('1 day', ts, 'epoch'), method, endpoint, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 4, 5, 6
	UNION ALL SELECT 'minute_codes', api_key_id, date_bin('1 minute', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'hourly_codes', api_key_id, date_bin('1 hour', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'daily_codes', api_key_id, date_bin('1 day', ts, 'epoch'), NULL, NULL, response_code, count(*) FROM raw GROUP BY 1, 2, 3, 6
	UNION ALL SELECT 'hourly_methods', api_key_id, date_bin('1 hour', ts, 'epoch'), method, NULL, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 4
	UNION ALL SELECT 'daily_methods', api_key_id, date_bin('1 day', ts, 'epoch'), method, NULL, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 4
	UNION ALL SELECT 'hourly_endpoints', api_key_id, date_bin('1 hour', ts, 'epoch'), NULL, endpoint, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 5
	UNION ALL SELECT 'daily_endpoints', api_key_id, date_bin('1 day', ts, 'epoch'), NULL, endpoint, NULL::smallint, count(*) FROM raw GROUP BY 1, 2, 3, 5),
rollup AS (
	SELECT 'hourly' AS g, api_key_id, bucket_start AS b, method::text AS method, endpoint::text AS endpoint, response_code, requests AS n FROM apikey_usage.usage_hourly
	UNION ALL SELECT 'daily', api_key_id, bucket_start, method, endpoint, response_code, requests FROM apikey_usage.usage_daily
	UNION ALL SELECT 'minute_codes', api_key_id, bucket_start, NULL, NULL, response_code, requests FROM apikey_usage.usage_minute_codes
	UNION ALL SELECT 'hourly_codes', api_key_id, bucket_start, NULL, NULL, response_code, requests FROM apikey_usage.usage_hourly_codes
	UNION ALL SELECT 'daily_codes', api_key_id, bucket_start, NULL, NULL, response_code, requests FROM apikey_usage.usage_daily_codes
	UNION ALL SELECT 'hourly_methods', api_key_id, bucket_start, method, NULL, NULL, requests FROM apikey_usage.usage_hourly_methods
	UNION ALL SELECT 'daily_methods', api_key_id, bucket_start, method, NULL, NULL, requests FROM apikey_usage.usage_daily_methods
	UNION ALL SELECT 'hourly_endpoints', api_key_id, bucket_start, NULL, endpoint, NULL, requests FROM apikey_usage.usage_hourly_endpoints
	UNION ALL SELECT 'daily_endpoints', api_key_id, bucket_start, NULL, endpoint, NULL, requests FROM apikey_usage.usage_daily_endpoints)
SELECT count(*) FROM ((SELECT * FROM expected EXCEPT ALL SELECT * FROM rollup) UNION ALL (SELECT * FROM rollup EXCEPT ALL SELECT * FROM expected)) d;
SQL
}
[ "$(grains_mismatch)" -eq 0 ] || fail "a rollup grain disagrees with the raw log after the migration"
echo "ok - every rollup grain equals the raw log after the migration"

cluster_psql -c "SELECT count(apikey_usage.log_request((SELECT key_id FROM k WHERE n = 1 + i % 2), 'DELETE', '/v2/new', 204, NULL, NULL,
					now() - make_interval(secs => i * 37))) FROM generate_series(1, 500) AS i" \
	-c "SELECT apikey_usage.flush()" >/dev/null
[ "$(grains_mismatch)" -eq 0 ] || fail "a rollup grain disagrees with the raw log after traffic under 0.2.0"
[ "$(cluster_psql -c "SELECT sum(requests) FROM apikey_usage.usage_by_method(NULL, NULL, NULL) WHERE method = 'DELETE'")" -eq 500 ] \
	|| fail "traffic after the update is not counted"
echo "ok - traffic after the update is in every grain and counted"
