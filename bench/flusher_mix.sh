#!/usr/bin/env bash
# The flusher on the live mix, against COPY into a bare table (part of
# `make bench`; also runs alone: `bash bench/flusher_mix.sh [quick] [OUTDIR]`).
#
# The live mix: 100 keys, 4 methods, 40 endpoints, 8 response codes,
# 100,000 resource ids, requested_at = now().  Interleaved A B A B ...:
#   A  flusher: one backend logs FM_N entries (300,000; quick: 100,000)
#      with log_request in one statement; then flush(); rows/s = FM_N /
#      (time from the first call until flush() returned: end to end)
#   B  the same FM_N entries from one backend in statements of FM_CHUNK
#      (1,000) calls each, then flush(): the shape of live traffic, whose
#      statements are short; in A the one logging statement's snapshot
#      keeps every version of the rollup rows the worker updates meanwhile
#      (nothing can be pruned until it ends), which the worker's
#      INSERT ... ON CONFLICT then walks
#   C  COPY of the same rows (written to a file once) into a bare copy of
#      request_log_raw (same columns, no index, not partitioned)
# and prints the ratios of the medians.  Then log_request ÷ SELECT 1 at 2
# clients (pgbench -M prepared, FM_T seconds each, interleaved, the worker
# running and flushing what is logged), also with a request id per call
# (log_id, the gateway flow).  The worker's CPU time (user + system, from
# /proc) is recorded per run: the rates move with other load on the
# machine, the CPU per entry much less.
# Last, the request path apart from the worker: after a restart with a
# ring of 1,048,576 entries, SELECT 1 against log_request with the worker
# stopped (SIGSTOP) for the run (FM_T_ALONE seconds, at most 5: the ring
# must hold every entry logged meanwhile, or callers spool), then resumed
# and the ring flushed; interleaved.  It shows what the call costs when
# the worker does not share the two vCPUs with the clients.
# Cluster: fsync on, synchronous_commit on, shared_buffers 1GB, the
# extension's defaults (ring of 65,536 entries, flush_interval 200 ms).
#
# Writes OUTDIR/flusher_mix.csv and OUTDIR/flusher_mix.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-full}
OUT=${2:-$ROOT/bench/results/$(date -u +%Y-%m-%d)-flusher}
case $MODE in
quick) N=${FM_N:-100000}; REPS=${FM_REPS:-2}; T=${FM_T:-5} ;;
*) N=${FM_N:-300000}; REPS=${FM_REPS:-3}; T=${FM_T:-10} ;;
esac
T_ALONE=${FM_T_ALONE:-$((T < 5 ? T : 5))}
CHUNK=${FM_CHUNK:-1000}
mkdir -p "$OUT"
CSV=$OUT/flusher_mix.csv
echo "scenario,repeat,rows,seconds,rows_per_s,spooled,worker_cpu_s" >"$CSV"

make -s >/dev/null && make -s install >/dev/null
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-fm.XXXXXX)
chmod 755 "$WORK"; chown postgres:postgres "$WORK"
STOPPED=""	# the worker's pid while it is stopped
cleanup() { [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null; cluster_stop; rm -rf "$WORK"; }
trap cleanup EXIT
cluster_start flmix "shared_buffers = 1GB" "fsync = on" "synchronous_commit = on" \
	"max_wal_size = 8GB" "checkpoint_timeout = 30min"
psql_() { cluster_psql "$@"; }
psql_ -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
psql_ -q <<'SQL'
CREATE SCHEMA bench;
CREATE TABLE bench.keys AS
	SELECT n, (apikey_usage.generate_key('bench-mix', 'mix key ' || n)).key_id FROM generate_series(1, 100) n;
CREATE TABLE bench.bare (LIKE apikey_usage.request_log_raw);
-- the mix, as log_request arguments
CREATE FUNCTION bench.log_mix(n integer, first integer DEFAULT 1) RETURNS bigint LANGUAGE sql AS $$
	SELECT count(apikey_usage.log_request(
		k.ids[1 + (i::bigint * 7919) % 100],
		(ARRAY['GET', 'POST', 'PUT', 'DELETE'])[1 + i % 4],
		'/v1/resource' || (i * 31) % 40 || '/{id}',
		(ARRAY[200, 201, 204, 400, 401, 404, 429, 500])[1 + (i * 13) % 8],
		'res-' || (i::bigint * 104729) % 100000))
	  FROM (SELECT array_agg(key_id ORDER BY n) AS ids FROM bench.keys) k,
	       generate_series(first, first + n - 1) i $$;
SQL
# the same rows as COPY input (requested_at now, as the live mix)
psql_ -c "COPY (SELECT now() AS requested_at, gen_random_uuid() AS request_id, k.key_id AS api_key_id,
		(ARRAY['GET', 'POST', 'PUT', 'DELETE'])[1 + i % 4] AS method,
		'/v1/resource' || (i * 31) % 40 || '/{id}' AS endpoint,
		(ARRAY[200, 201, 204, 400, 401, 404, 429, 500])[1 + (i * 13) % 8] AS response_code,
		'res-' || (i::bigint * 104729) % 100000 AS resource_id
	  FROM generate_series(1, $N) i JOIN bench.keys k ON k.n = 1 + (i::bigint * 7919) % 100) TO '$WORK/mix.copy'"

now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# CPU seconds (user + system) the background worker has used: robust to
# other load on the machine, unlike the rates
WPID=$(psql_ -c "SELECT worker_pid FROM apikey_usage.runtime_stats")
worker_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$WPID/stat"; }
# the same entries in statements of CHUNK calls, one session
seq 0 "$CHUNK" $((N - 1)) |
	awk -v c="$CHUNK" -v n="$N" '{ printf "SELECT bench.log_mix(%d, %d);\n", (n - $1 < c ? n - $1 : c), $1 + 1 }' >"$WORK/chunks.sql"
flusher_run() {	# SCENARIO REP SQLFILE-OR-EMPTY: log, flush(), one CSV line
	local sp0 sp1 c0 c1 t0 t1 s
	sp0=$(psql_ -c "SELECT sync_fallbacks FROM apikey_usage.runtime_stats")
	c0=$(worker_cpu)
	t0=$(now)
	if [ -n "$3" ]; then
		psql_ -f "$3" >/dev/null
	else
		psql_ -c "SELECT bench.log_mix($N)" >/dev/null
	fi
	psql_ -c "SELECT apikey_usage.flush()" >/dev/null
	t1=$(now)
	sp1=$(psql_ -c "SELECT sync_fallbacks FROM apikey_usage.runtime_stats")
	c1=$(worker_cpu)
	s=$(el "$t0" "$t1")
	echo "$1,$2,$N,$s,$(awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f", n / s }'),$((sp1 - sp0)),$(el "$c0" "$c1")" >>"$CSV"
	psql_ -c "CHECKPOINT"
}
for rep in $(seq 1 "$REPS"); do
	flusher_run flusher "$rep" ""
	flusher_run flusher_chunked "$rep" "$WORK/chunks.sql"
	t0=$(now)
	psql_ -c "COPY bench.bare FROM '$WORK/mix.copy'"
	t1=$(now)
	s=$(el "$t0" "$t1")
	echo "copy_bare,$rep,$N,$s,$(awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f", n / s }'),0," >>"$CSV"
	psql_ -c "TRUNCATE bench.bare"
	psql_ -c "CHECKPOINT"
	echo "  rep $rep: $(tail -n 3 "$CSV" | tr '\n' ' ')"
done

# log_request ÷ SELECT 1 at 2 clients.  The key ids are a constant of the
# prepared statement (a gateway has the key id from check_request; a
# subquery on bench.keys per call cost about half of SELECT 1 by itself).
# log_id also passes a request id, as the gateway flow does (every entry
# then goes through the writer's duplicate probe).
echo 'SELECT 1;' >"$WORK/select1.sql"
KEYS=$(psql_ -c "SELECT array_agg(key_id ORDER BY n)::text FROM bench.keys")
cat >"$WORK/log.sql" <<SQL
\\set n random(1, 100)
\\set e random(0, 39)
\\set c random(1, 8)
\\set r random(0, 99999)
SELECT apikey_usage.log_request(('$KEYS'::uuid[])[:n], 'GET',
	'/v1/resource' || :e || '/{id}', (ARRAY[200, 201, 204, 400, 401, 404, 429, 500])[:c], 'res-' || :r);
SQL
sed 's/'"'"'res-'"'"' || :r)/'"'"'res-'"'"' || :r, gen_random_uuid())/' "$WORK/log.sql" >"$WORK/log_id.sql"
for rep in $(seq 1 "$REPS"); do
	for v in select1 log log_id; do
		c0=$(worker_cpu)
		tps=$(pgbench -n -M prepared -c 2 -j 2 -T "$T" -f "$WORK/$v.sql" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
		echo "pgbench_$v,$rep,,$T,$tps,0,$(el "$c0" "$(worker_cpu)")" >>"$CSV"
	done
	psql_ -c "SELECT apikey_usage.flush()" >/dev/null
	echo "  rep $rep: $(tail -n 3 "$CSV" | tr '\n' ' ')"
done

# the request path alone: a ring that holds T_ALONE seconds of calls, the
# worker stopped while pgbench runs
psql_ -c "ALTER SYSTEM SET apikey_usage.log_buffer_entries = 1048576" >/dev/null
cluster_restart
cluster_wait_worker
WPID=$(psql_ -c "SELECT worker_pid FROM apikey_usage.runtime_stats")
for rep in $(seq 1 "$REPS"); do
	for v in select1 log_alone; do
		sp0=$(psql_ -c "SELECT sync_fallbacks FROM apikey_usage.runtime_stats")
		f=$v; [ "$v" = log_alone ] && { f=log; kill -STOP "$WPID"; STOPPED=$WPID; }
		tps=$(pgbench -n -M prepared -c 2 -j 2 -T "$T_ALONE" -f "$WORK/$f.sql" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
		[ -n "$STOPPED" ] && { kill -CONT "$STOPPED"; STOPPED=""; }
		sp1=$(psql_ -c "SELECT sync_fallbacks FROM apikey_usage.runtime_stats")
		echo "alone_$v,$rep,,$T_ALONE,$tps,$((sp1 - sp0)),0" >>"$CSV"
		psql_ -c "SELECT apikey_usage.flush()" >/dev/null
	done
	echo "  rep $rep: $(tail -n 2 "$CSV" | tr '\n' ' ')"
done

python3 - "$CSV" "$OUT/flusher_mix.md" "$N" "$CHUNK" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda s: statistics.median(float(r["rows_per_s"]) for r in rows if r["scenario"] == s)
fl, cp = med("flusher"), med("copy_bare")
fc = med("flusher_chunked")
s1, lg, li = med("pgbench_select1"), med("pgbench_log"), med("pgbench_log_id")
spooled = sum(int(r["spooled"]) for r in rows if r["scenario"] in ("flusher", "flusher_chunked"))
cpu = lambda s: statistics.median(float(r["worker_cpu_s"]) for r in rows if r["scenario"] == s)
tps_n = lambda s: statistics.median(float(r["rows_per_s"]) * float(r["seconds"]) for r in rows if r["scenario"] == s)
md = [f"| measure ({sys.argv[3]} rows of the live mix) | median | goal |", "|---|--:|--:|",
      f"| flusher end to end (log, then flush()) | {fl:,.0f} rows/s | |",
      f"| COPY into a bare table | {cp:,.0f} rows/s | |",
      f"| flusher ÷ COPY | {fl / cp:.2f}× | ≥ 0.25× |",
      f"| flusher end to end, logged in statements of {sys.argv[4]} calls (one session) | {fc:,.0f} rows/s | |",
      f"| that ÷ COPY | {fc / cp:.2f}× | ≥ 0.25× |",
      f"| entries spooled (ring full) during the flusher runs | {spooled} | |",
      f"| worker CPU per flusher run (user + system): one statement / statements of {sys.argv[4]} | {cpu('flusher'):.2f} s ({cpu('flusher') * 1e6 / int(sys.argv[3]):.1f} µs per entry) / {cpu('flusher_chunked'):.2f} s ({cpu('flusher_chunked') * 1e6 / int(sys.argv[3]):.1f} µs) | |",
      f"| log_request ÷ SELECT 1, 2 clients | {lg:,.0f} / {s1:,.0f} TPS = {lg / s1:.2f}× | ≥ 0.8× |",
      f"| log_request with a request_id ÷ SELECT 1, 2 clients | {li:,.0f} / {s1:,.0f} TPS = {li / s1:.2f}× | |",
      f"| worker CPU per entry during the pgbench runs: log / log_id | {cpu('pgbench_log') * 1e6 / tps_n('pgbench_log'):.1f} / {cpu('pgbench_log_id') * 1e6 / tps_n('pgbench_log_id'):.1f} µs | |"]
if any(r["scenario"] == "alone_log_alone" for r in rows):
    a1, al = med("alone_select1"), med("alone_log_alone")
    spilled = sum(int(r["spooled"] or 0) for r in rows if r["scenario"] == "alone_log_alone")
    md.append(f"| the request path alone: log_request with the worker stopped ÷ SELECT 1, 2 clients "
              f"(ring of 1,048,576; entries spooled: {spilled}) | {al:,.0f} / {a1:,.0f} TPS = {al / a1:.2f}× | |")
open(sys.argv[2], "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
