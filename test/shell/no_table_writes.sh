#!/usr/bin/env bash
# Verification and rate limiting write no table: 2,000 allowed
# check_request calls (and 1,000 verify_key calls) leave the row counters
# of every apikey_usage table unchanged and read the key table once (the
# one cache miss).  last_used_at lives in shared memory meanwhile (the keys
# view shows it; the table does not have it yet): the flush interval is a
# minute, so the worker does not write it during the test.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start notabw "fsync = off" "apikey_usage.flush_interval = '60s'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

source scripts/check.sh

# Every session below ends with pg_stat_force_next_flush(), so its table
# statistics are reported before psql gets its last answer.
read -r key_id api_key < <(cluster_psql -F ' ' \
	-c "SELECT key_id, api_key FROM apikey_usage.generate_key('notabw', 'hot key', 1000000)" \
	-c "SELECT pg_stat_force_next_flush()")

# Let the worker finish a round (wake it with one logged request) and go
# back to sleep for the flush interval before measuring.
cluster_psql -c "SELECT apikey_usage.log_request('$key_id', 'GET', '/warm-up', 200)" \
	-c "SELECT apikey_usage.flush()" -c "SELECT pg_stat_force_next_flush()" >/dev/null
for _ in $(seq 1 100); do
	[ "$(cluster_psql -c "SELECT wait_event FROM pg_stat_activity
		WHERE pid = (SELECT worker_pid FROM apikey_usage.runtime_stats)")" = "Extension" ] && break
	sleep 0.1
done

stats() {
	cluster_psql -F ' ' -c "
		SELECT sum(n_tup_ins + n_tup_upd + n_tup_del),
		       sum(coalesce(idx_scan, 0)) FILTER (WHERE relname = 'api_keys'),
		       (SELECT xmin::text FROM apikey_usage.api_keys WHERE key_id::text = '$key_id')  -- no index scan
		  FROM pg_stat_user_tables WHERE schemaname = 'apikey_usage'"
}
read -r writes_before idx_before xmin_before < <(stats)

read -r allowed verified < <(cluster_psql -F ' ' -c "
	SELECT (SELECT count(*) FILTER (WHERE c.allowed)
	          FROM generate_series(1, 2000) g,
	               LATERAL apikey_usage.check_request(CASE WHEN g > 0 THEN '$api_key' END, 'GET', '/x') c),
	       (SELECT count(*) FILTER (WHERE v.valid)
	          FROM generate_series(1, 1000) g,
	               LATERAL apikey_usage.verify_key(CASE WHEN g > 0 THEN '$api_key' END) v)" \
	-c "SELECT pg_stat_force_next_flush()")
check "2000 check_request calls allowed ($allowed)" test "$allowed" -eq 2000
check "1000 verify_key calls valid ($verified)" test "$verified" -eq 1000

read -r writes_after idx_after xmin_after < <(stats)
echo "# rows inserted+updated+deleted in apikey_usage tables: $writes_before -> $writes_after;" \
	"api_keys index scans: $idx_before -> $idx_after"
check "no rows inserted, updated or deleted" test "$writes_after" -eq "$writes_before"
check "the key table was read at most once (index scans $idx_before -> $idx_after)" \
	test "$((idx_after - idx_before))" -le 1
check "the key's row was not rewritten (xmin $xmin_before)" test "$xmin_after" = "$xmin_before"
check "last_used_at is not in the table yet" \
	test "$(cluster_psql -c "SELECT last_used_at IS NULL FROM apikey_usage.api_keys WHERE key_id = '$key_id'")" = t
check "the keys view shows the live last_used_at" \
	test "$(cluster_psql -c "SELECT last_used_at > now() - interval '1 minute' FROM apikey_usage.keys WHERE key_id = '$key_id'")" = t

# control: the measurement does see a write
cluster_psql -c "SELECT apikey_usage.rename_key('$key_id', 'renamed')" -c "SELECT pg_stat_force_next_flush()" >/dev/null
read -r writes_control _ _ < <(stats)
check "control: a rename_key is counted ($writes_after -> $writes_control)" test "$writes_control" -gt "$writes_after"
exit $fail
