#!/usr/bin/env bash
# The GCRA bound holds under concurrency: 8 clients hammer one key limited
# to 200 per 10 s for 4 seconds.  Over any interval of length L at most
# 200 + floor(L * 200 / 10 s) requests may be allowed; the interval is
# bounded from above by the wall-clock time around the whole pgbench run,
# which keeps the assertion sound whatever the machine's speed.  Every
# check_request is accounted for: allowed ones are logged by the script
# (200), refused ones by check_request itself (429).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start lstress "fsync = off" "apikey_usage.flush_interval = 50"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

read -r key_id api_key < <(cluster_psql -F ' ' -c \
	"SELECT key_id, api_key FROM apikey_usage.generate_key('stress', 'stress', 200, '10 seconds')")

script=$CLUSTER_DIR/check.sql
cat >"$script" <<'SQL'
SELECT CASE WHEN c.allowed THEN apikey_usage.log_request(c.key_id, 'GET', '/x', 200, NULL, c.request_id) END
  FROM apikey_usage.check_request(:key, 'GET', '/x') c;
SQL

start_ns=$(date +%s%N)
pgbench -n -c 8 -j 2 -T 4 -M prepared -f "$script" -D key="$api_key" >"$CLUSTER_DIR/pgbench.log" 2>&1 || {
	cat "$CLUSTER_DIR/pgbench.log"; exit 1; }
end_ns=$(date +%s%N)

total=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$CLUSTER_DIR/pgbench.log")
failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$CLUSTER_DIR/pgbench.log")
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
read -r allowed refused other log_span_ms < <(cluster_psql -F ' ' -c "
	SELECT count(*) FILTER (WHERE response_code = 200),
	       count(*) FILTER (WHERE response_code = 429),
	       count(*) FILTER (WHERE response_code NOT IN (200, 429)),
	       coalesce(round(extract(epoch FROM max(requested_at) FILTER (WHERE response_code = 200)
	                                     - min(requested_at) FILTER (WHERE response_code = 200)) * 1000), 0)
	  FROM apikey_usage.request_log_raw WHERE api_key_id = '$key_id'")

wall_ms=$(( (end_ns - start_ns) / 1000000 ))
# 200 + floor(L * 200 / 10 s) with L <= wall_ms (rounded up to whole ms)
bound=$(( 200 + (wall_ms + 1) * 200 / 10000 ))
log_bound=$(( 200 + log_span_ms * 200 / 10000 ))
echo "transactions $total (failed ${failed_tx:-0}), allowed $allowed, refused $refused;" \
	"wall clock ${wall_ms} ms -> bound $bound; span of allowed admissions ${log_span_ms} ms -> $log_bound"

source scripts/check.sh
check "pgbench ran transactions" test "${total:-0}" -gt 0
check "no failed transactions" test "${failed_tx:-0}" -eq 0
check "allowed ($allowed) <= 200 + floor(wall clock x 20/s) ($bound)" test "$allowed" -le "$bound"
check "allowed ($allowed) >= the burst of 200" test "$allowed" -ge 200
check "every request accounted for: allowed + refused ($((allowed + refused))) = transactions ($total)" \
	test "$((allowed + refused))" -eq "$total"
check "no other response codes logged" test "$other" -eq 0
check "some requests were refused" test "$refused" -gt 0
exit $fail
