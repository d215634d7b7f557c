#!/usr/bin/env bash
# Issue 3: 4 concurrent writers x 25,000 log_request calls with varied
# method / endpoint / response code / resource / hour, then flush():
# exactly 100,000 raw rows for the key, no duplicate request_id, and the
# hourly rollups equal the raw rows grouped by every rollup dimension.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
PGBENCH=$(command -v pgbench || echo "$PGBIN/pgbench")
WORK=$(mktemp -d /tmp/aku-exact.XXXXXX)
trap 'cluster_stop; rm -rf "$WORK"' EXIT
fail() { echo "FAIL log_exactness: $*" >&2; exit 1; }

CLIENTS=4 PER_CLIENT=25000
EXPECTED=$((CLIENTS * PER_CLIENT))

cluster_start exact "fsync = off" "synchronous_commit = off"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
KEY=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_exactness', 'writer')")
OTHER=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_exactness', 'bystander')")

# Varied dimensions; requested_at spread over the last 30 hours so that
# rows land in several hourly buckets and at least two day partitions.
cat >"$WORK/log.sql" <<'SQL'
\set m random(1, 5)
\set e random(1, 6)
\set c random(1, 8)
\set r random(0, 300)
\set h random(0, 29)
\set s random(0, 3599)
SELECT apikey_usage.log_request(:key::uuid,
	(ARRAY['get', 'POST', 'Put', 'DELETE', 'patch'])[:m],
	'/v1/things/' || :e::text,
	(ARRAY[200, 201, 204, 304, 400, 404, 429, 503])[:c],
	CASE WHEN :r = 0 THEN NULL ELSE 'res-' || :r::text END,
	NULL,
	now() - make_interval(hours => :h, secs => :s));
SQL
# one entry under another key, which must not be counted for KEY
cluster_psql -c "SELECT apikey_usage.log_request('$OTHER', 'GET', '/v1/other', 200)" >/dev/null

"$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -t "$PER_CLIENT" -D key="$KEY" -f "$WORK/log.sql" \
	>"$WORK/pgbench.out" 2>&1 || { cat "$WORK/pgbench.out" >&2; fail "pgbench failed"; }
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.out")
[ "$processed" = "$EXPECTED" ] || { cat "$WORK/pgbench.out" >&2; fail "pgbench processed '$processed', expected $EXPECTED"; }

cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null

read -r rows distinct_ids <<<"$(cluster_psql -F ' ' -c "SELECT count(*), count(DISTINCT request_id)
	FROM apikey_usage.request_log_raw WHERE api_key_id = '$KEY'")"
[ "$rows" -eq "$EXPECTED" ] || fail "request_log_raw has $rows rows for the key, expected $EXPECTED"
[ "$distinct_ids" -eq "$EXPECTED" ] || fail "$distinct_ids distinct request_ids, expected $EXPECTED (duplicates)"
other=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$OTHER'")
[ "$other" -eq 1 ] || fail "bystander key has $other rows, expected 1"

# the dimensions really varied (else the rollup comparison proves little)
read -r methods endpoints codes hours partitions <<<"$(cluster_psql -F ' ' -c "
	SELECT count(DISTINCT method), count(DISTINCT endpoint), count(DISTINCT response_code),
		   count(DISTINCT date_trunc('hour', requested_at)), count(DISTINCT tableoid)
	  FROM apikey_usage.request_log_raw WHERE api_key_id = '$KEY'")"
[ "$methods" -eq 5 ] && [ "$endpoints" -eq 6 ] && [ "$codes" -eq 8 ] || \
	fail "dimensions did not vary: $methods methods, $endpoints endpoints, $codes codes"
[ "$hours" -ge 29 ] && [ "$partitions" -ge 2 ] || fail "only $hours hours / $partitions partitions"
bad_methods=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw
	WHERE api_key_id = '$KEY' AND method <> upper(method)")
[ "$bad_methods" -eq 0 ] || fail "$bad_methods rows with a method not upper-cased"

# rollups == raw grouped the same way, both directions
diff_sql="
WITH raw AS (
	SELECT api_key_id, date_trunc('hour', requested_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket_start,
		   method, endpoint, response_code, count(*) AS requests
	  FROM apikey_usage.request_log_raw GROUP BY 1, 2, 3, 4, 5
), roll AS (
	SELECT api_key_id, bucket_start, method, endpoint, response_code, requests
	  FROM apikey_usage.usage_hourly
)
SELECT (SELECT count(*) FROM (TABLE raw EXCEPT TABLE roll) a),
	   (SELECT count(*) FROM (TABLE roll EXCEPT TABLE raw) b),
	   (SELECT count(*) FROM roll),
	   (SELECT coalesce(sum(requests), 0) FROM roll WHERE api_key_id = '$KEY')"
read -r raw_not_roll roll_not_raw roll_rows roll_sum <<<"$(cluster_psql -F ' ' -c "$diff_sql")"
[ "$raw_not_roll" -eq 0 ] || fail "$raw_not_roll raw groups missing or different in usage_hourly"
[ "$roll_not_raw" -eq 0 ] || fail "$roll_not_raw usage_hourly rows not matching the raw log"
[ "$roll_sum" -eq "$EXPECTED" ] || fail "usage_hourly sums to $roll_sum for the key, expected $EXPECTED"

read -r logged flushed fallbacks errors <<<"$(cluster_psql -F ' ' -c "SELECT entries_logged, entries_flushed,
	sync_fallbacks, flush_errors FROM apikey_usage.runtime_stats")"
[ "$errors" -eq 0 ] || fail "runtime_stats.flush_errors = $errors"
[ $((flushed + fallbacks)) -ge $((EXPECTED + 1)) ] || fail "runtime_stats: flushed $flushed + fallbacks $fallbacks < $((EXPECTED + 1))"

tps=$(sed -n 's/^tps = \([0-9.]*\) (without.*/\1/p' "$WORK/pgbench.out")
echo "log_exactness: ok — $rows rows ($distinct_ids distinct ids) for $CLIENTS x $PER_CLIENT calls;" \
	"$roll_rows rollup rows over $hours hours / $partitions partitions equal the raw groups;" \
	"logged=$logged flushed=$flushed fallbacks=$fallbacks; ~${tps%.*} calls/s"
