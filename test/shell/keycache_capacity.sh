#!/usr/bin/env bash
# The shared-memory key cache at capacity: apikey_usage.max_keys = 100 and
# 1,000 live keys (plus 100 deleted ones) used round robin, so nearly every
# lookup is a miss that evicts.  Every answer must still be right (valid
# with the right key_id, deleted keys revoked with theirs), also with two backends
# filling and evicting at once, and a key's limiter state must survive its
# eviction (never more allowed than the limit).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start keycap "fsync = off" "apikey_usage.flush_interval = 50" "apikey_usage.max_keys = 100"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

source scripts/check.sh

# g % 11 = 0: deleted (100 keys); even g: 2 requests per day; odd: unlimited
cluster_psql >/dev/null <<'SQL'
CREATE TABLE public.ck AS
	SELECT g, g % 11 = 0 AS deleted, k.key_id, k.api_key
	  FROM generate_series(1, 1100) g,
	       LATERAL apikey_usage.generate_key('keycap', 'key ' || g,
	                                         CASE WHEN g % 2 = 0 THEN 2 END, '1 day') k;
SELECT count(apikey_usage.delete_key(key_id)) FROM public.ck WHERE deleted;
CREATE TABLE public.answers (session int, round int, g int, ok boolean);
CREATE TABLE public.checks (round int, g int, allowed boolean, key_id uuid,
	response_code int, remaining int);
SQL
check "1000 live keys" test "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.keys WHERE workspace = 'keycap'")" -eq 1000
check "capacity is 100" test "$(cluster_psql -c "SELECT key_cache_capacity FROM apikey_usage.runtime_stats")" -eq 100

verify_rounds() { # session rounds
	local r
	for r in $(seq 1 "$2"); do
		cluster_psql -c "
			INSERT INTO public.answers
			SELECT $1, $r, ck.g,
			       CASE WHEN ck.deleted
			            THEN NOT v.valid AND v.reason = 'revoked' AND v.key_id = ck.key_id AND v.workspace = 'keycap'
			            ELSE v.valid AND v.reason = 'valid' AND v.key_id = ck.key_id AND v.workspace = 'keycap'
			       END IS TRUE
			  FROM public.ck, LATERAL apikey_usage.verify_key(ck.api_key) v"
	done
}

# two backends verifying round robin at once (each in its own order)
verify_rounds 1 3 &
pid1=$!
cluster_psql -c "SELECT 1" >/dev/null
verify_rounds 2 3 &
pid2=$!
rc1=0; wait "$pid1" || rc1=$?
rc2=0; wait "$pid2" || rc2=$?
check "both verifying backends finished" test "$rc1" -eq 0 -a "$rc2" -eq 0

read -r answers wrong < <(cluster_psql -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE NOT ok) FROM public.answers")
check "verify_key: $answers answers from two backends, $wrong wrong" test "$answers" -eq 6600 -a "$wrong" -eq 0

# the limiter across evictions: 4 rounds of check_request
for r in 1 2 3 4; do
	cluster_psql -c "
		INSERT INTO public.checks
		SELECT $r, ck.g, c.allowed, c.key_id, c.response_code, c.remaining
		  FROM public.ck, LATERAL apikey_usage.check_request(ck.api_key, 'GET', '/cap') c"
done

check "check_request: live keys answered with their own key_id" test "$(cluster_psql -c "
	SELECT count(*) FROM public.checks c JOIN public.ck USING (g)
	 WHERE NOT ck.deleted AND c.key_id IS DISTINCT FROM ck.key_id")" -eq 0
check "check_request: deleted keys 401 revoked with their own key_id" test "$(cluster_psql -c "
	SELECT count(*) FROM public.checks c JOIN public.ck USING (g)
	 WHERE ck.deleted AND (c.allowed OR c.response_code <> 401 OR c.key_id IS DISTINCT FROM ck.key_id)")" -eq 0
check "check_request: unlimited keys always allowed" test "$(cluster_psql -c "
	SELECT count(*) FROM public.checks c JOIN public.ck USING (g)
	 WHERE NOT ck.deleted AND ck.g % 2 = 1 AND NOT c.allowed IS TRUE")" -eq 0
# An evicted key leaves its limiter state in a slot shared by hash with
# other keys (the max of their states), so a refilled key may be refused
# more than its own history warrants, never less: only upper bounds hold.
# The very first limited key checked cannot meet a used slot, though.
first=$(cluster_psql -c "
	SELECT count(*) FILTER (WHERE c.allowed) FROM public.checks c JOIN public.ck USING (g)
	 WHERE NOT ck.deleted AND ck.g % 2 = 0 AND c.round = 1")
cluster_psql -c "
	SELECT '# 2 per day keys, allowed per round: ' || string_agg(format('round %s: %s', round, n), ', ' ORDER BY round)
	  FROM (SELECT c.round, count(*) FILTER (WHERE c.allowed) n FROM public.checks c JOIN public.ck USING (g)
	         WHERE NOT ck.deleted AND ck.g % 2 = 0 GROUP BY c.round) s"
check "check_request: some 2 per day keys allowed on their first request ($first of 500)" test "$first" -ge 1
over=$(cluster_psql -c "
	SELECT count(*) FROM (
		SELECT g FROM public.checks c JOIN public.ck USING (g)
		 WHERE NOT ck.deleted AND ck.g % 2 = 0
		 GROUP BY g HAVING count(*) FILTER (WHERE c.allowed) > 2) s")
check "check_request: no 2 per day key allowed more than twice in 4 rounds (evicted in between): $over over" \
	test "$over" -eq 0
check "check_request: refusals are 429" test "$(cluster_psql -c "
	SELECT count(*) FROM public.checks c JOIN public.ck USING (g)
	 WHERE NOT ck.deleted AND NOT c.allowed AND c.response_code IS DISTINCT FROM 429")" -eq 0

read -r size evictions hits misses < <(cluster_psql -F ' ' -c \
	"SELECT key_cache_size, key_cache_evictions, key_cache_hits, key_cache_misses FROM apikey_usage.runtime_stats")
echo "# key cache: size $size, evictions $evictions, hits $hits, misses $misses"
check "key_cache_size ($size) <= 100" test "$size" -le 100
check "key_cache_evictions ($evictions) > 0" test "$evictions" -gt 0
exit $fail
