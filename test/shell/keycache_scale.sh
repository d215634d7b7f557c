#!/usr/bin/env bash
# The key cache at scale: lock partitions, last_used_at written back only
# for keys used (also for keys evicted meanwhile), no work when idle, the
# sizing WARNING when misses dominate, and an empty cache after DROP /
# CREATE EXTENSION.  apikey_usage.max_keys = 100 (2 partitions of 50) and
# 1,000 keys, so most lookups miss and evict.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start kcscale "fsync = off" "apikey_usage.flush_interval = 50" \
	"apikey_usage.max_keys = 100" "apikey_usage.last_used_resolution = '1s'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

source scripts/check.sh
stat() { cluster_psql -c "SELECT $1 FROM apikey_usage.runtime_stats"; }
# wait until the worker has written every queued last_used_at
wait_written() {
	local i
	for i in $(seq 1 100); do
		[ "$(stat last_used_pending)" = 0 ] && sleep 0.3 && [ "$(stat last_used_pending)" = 0 ] && return 0
		sleep 0.1
	done
	return 1
}

check "2 lock partitions for 100 keys" test "$(stat key_cache_partitions)" -eq 2

cluster_psql >/dev/null <<'SQL'
CREATE TABLE public.ks AS
	SELECT g, k.key_id, k.api_key
	  FROM generate_series(1, 1000) g,
	       LATERAL apikey_usage.generate_key('kcscale', 'key ' || g, CASE WHEN g % 2 = 0 THEN 5 END) k;
SQL

# keys 1..500 used once each: 400 of them are evicted again at once
valid=$(cluster_psql -c "SELECT count(*) FILTER (WHERE v.valid)
	FROM public.ks, LATERAL apikey_usage.verify_key(ks.api_key) v WHERE g <= 500")
check "500 keys valid through a 100-key cache ($valid)" test "$valid" -eq 500
check "the worker wrote the queued last uses" wait_written
read -r written unused < <(cluster_psql -F ' ' -c "
	SELECT count(*) FILTER (WHERE ks.g <= 500 AND k.last_used_at > now() - interval '1 minute'),
	       count(*) FILTER (WHERE ks.g > 500 AND k.last_used_at IS NOT NULL)
	  FROM public.ks JOIN apikey_usage.api_keys k USING (key_id)")
check "last_used_at of all 500 used keys is in the table, evicted ones included ($written)" test "$written" -eq 500
check "no last_used_at for the 500 unused keys ($unused)" test "$unused" -eq 0
check "nothing dropped from the last_used queue" test "$(stat last_used_dropped)" -eq 0

# within the resolution (1 s) a key used 1,000 times is queued once (its
# refill, the stored value being older), not once per use
queued0=$(stat last_used_queued)
cluster_psql -c "SELECT count(*) FROM public.ks, generate_series(1, 1000),
	LATERAL apikey_usage.verify_key(ks.api_key) v WHERE g = 1" >/dev/null
queued1=$(stat last_used_queued)
check "a key used 1000 times at once is queued at most twice ($queued0 -> $queued1)" \
	test $((queued1 - queued0)) -ge 1 -a $((queued1 - queued0)) -le 2

# idle: the worker does nothing.  Its table statistics reach pg_stat up to
# a second after its last write: wait until they stand still first.
wait_written
updates() { cluster_psql -c "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'apikey_usage.api_keys'::regclass"; }
upd0=$(updates)
for _ in $(seq 1 10); do
	sleep 1.5
	upd1=$(updates)
	[ "$upd1" = "$upd0" ] && break
	upd0=$upd1
done
queued0=$(stat last_used_queued)
sleep 2
upd1=$(updates)
check "idle: nothing queued ($queued0 -> $(stat last_used_queued))" test "$(stat last_used_queued)" -eq "$queued0"
check "idle: no key row updated ($upd0 -> $upd1)" test "$upd1" -eq "$upd0"

# the keys view: live value for cached keys, the table's for the others
check "keys view: every used key has a last_used_at" test "$(cluster_psql -c "
	SELECT count(*) FROM public.ks JOIN apikey_usage.keys k USING (key_id)
	 WHERE ks.g <= 500 AND k.last_used_at IS NULL")" -eq 0

# sizing warning: misses dominate for more than the 10 s window
warnings=$(cluster_psql -c "
	DO \$\$
	DECLARE t0 timestamptz := clock_timestamp();
	BEGIN
		WHILE clock_timestamp() < t0 + interval '11.5 seconds' LOOP
			PERFORM apikey_usage.verify_key(api_key) FROM public.ks;
			PERFORM pg_sleep(0.5);
		END LOOP;
	END
	\$\$" 2>&1 >/dev/null | grep -c 'missed the cache' || true)
check "a WARNING when misses dominate ($warnings)" test "$warnings" -ge 1
check "the WARNING is in the server log, without a statement" \
	test "$(grep -c 'WARNING:  apikey_usage key cache: .* missed the cache' "$CLUSTER_LOG")" -ge 1 -a \
	"$(grep -A2 'missed the cache' "$CLUSTER_LOG" | grep -c 'STATEMENT' || true)" -eq 0
ratio=$(stat "round(key_cache_miss_ratio::numeric, 2)")
check "key_cache_miss_ratio reflects it ($ratio)" awk -v r="$ratio" 'BEGIN { exit !(r > 0.5 && r <= 1) }'

# DROP / CREATE EXTENSION empties the cache
key=$(cluster_psql -c "SELECT api_key FROM public.ks WHERE g = 1")
cluster_psql -c "SELECT apikey_usage.verify_key('$key')" >/dev/null
cluster_psql -c "DROP EXTENSION apikey_usage CASCADE" -c "CREATE EXTENSION apikey_usage" >/dev/null
check "after DROP/CREATE EXTENSION the cache is empty" test "$(stat key_cache_size)" -eq 0
check "a key of the dropped installation is unknown" \
	test "$(cluster_psql -c "SELECT reason FROM apikey_usage.verify_key('$key')")" = unknown
exit $fail
