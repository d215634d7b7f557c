#!/usr/bin/env bash
# The key cache at scale (part of `make bench`; also runs alone:
# `bash bench/keycache.sh [quick] [OUTDIR]`).
#
# A population of KC_KEYS keys (1,000,000; quick: 100,000), each with a
# rate limit (1e9 per day: the limiter step runs, nothing is refused), and
# their naive twins (sha256 of the key, unique btree on a plain table).
# For each apikey_usage.max_keys level (a restart each), interleaved
# A B C D A B C D ..., pgbench -M prepared at 2 clients:
#   floor   the key selection alone (SELECT api_key FROM bench.keys WHERE i = :i)
#   check   SELECT * FROM check_request(<that key>, 'GET', '/bench')
#   naive   SELECT key_id, workspace FROM bench.naive_keys
#           WHERE key_hash = sha256(convert_to(<that key>, 'UTF8'))
#   verify  SELECT * FROM verify_key(<that key>)
# and, at the lowest and highest level (where the goals are judged), the
# same two calls reading only two columns, as the naive lookup does:
#   check2  SELECT allowed, key_id FROM check_request(<that key>, ...)
#   verify2 SELECT valid, key_id FROM verify_key(<that key>)
# (PostgreSQL pays per result column and statement: a type lookup for the
# plan's result descriptor, the RowDescription and the output function;
# check_request answers 11 columns, the naive lookup 2)
# (<that key>: the selection as a scalar subquery, passed like a parameter)
# over two traffic shapes: 1,000 hot keys, and uniform over all keys.
# Latency percentiles come from pgbench's per-transaction log (-l); the
# server's CPU per transaction from its backends' /proc times (below).  The
# cache is prefilled (every key verified once, up to max_keys) before the
# runs.  Also: 8 clients, uniform, cache 10x too small; and the worker's
# CPU time over 10 s of no traffic with the cache full; and, robust to a busy
# machine, the CPU time per lookup inside one backend (set-based).
# The keys start with last_used_at = now(), as in a steady state where the
# keys in use were used within apikey_usage.last_used_resolution (10 min):
# fresh keys would each cost one row update by the worker at first use,
# a one-off that competes with the runs for the CPUs.
#
# Writes OUTDIR/keycache.csv and OUTDIR/keycache.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-full}
OUT=${2:-$ROOT/bench/results/$(date -u +%Y-%m-%d)-keycache}
case $MODE in
quick) N=${KC_KEYS:-100000}; T=${KC_T:-2}; REPS=${KC_REPS:-1}
	LEVELS=${KC_LEVELS:-"10000 200000"} ;;
*) N=${KC_KEYS:-1000000}; T=${KC_T:-5}; REPS=${KC_REPS:-2}
	LEVELS=${KC_LEVELS:-"10000 100000 500000 2000000"} ;;
esac
SMALL=$((N / 10))	# the "10x too small" cache of the 8-client run
mkdir -p "$OUT"
CSV=$OUT/keycache.csv
echo "max_keys,traffic,clients,variant,repeat,tps,p50_ms,p99_ms,p999_ms,hit_ratio,server_us_per_tx" >"$CSV"
START=$(date +%s)
log() { printf '[keycache %4ds] %s\n' $(($(date +%s) - START)) "$*"; }

make -s >/dev/null && make -s install >/dev/null
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-kc.XXXXXX)
chmod 755 "$WORK"
trap 'cluster_stop; rm -rf "$WORK"' EXIT

# autovacuum off: the tables are vacuumed once after loading, and a worker
# vacuuming during a run would compete with it
cluster_start kcbench "shared_buffers = 1GB" "fsync = on" "max_wal_size = 8GB" \
	"checkpoint_timeout = 30min" "maintenance_work_mem = 256MB" "autovacuum = off" \
	"apikey_usage.max_keys = 10000"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

log "generating $N keys and their naive twins"
cluster_psql >/dev/null <<SQL
CREATE SCHEMA bench;
CREATE TABLE bench.keys (i int PRIMARY KEY, key_id uuid NOT NULL, api_key text NOT NULL);
CREATE TABLE bench.naive_keys (key_id uuid PRIMARY KEY, workspace text NOT NULL, key_hash bytea NOT NULL UNIQUE);
WITH m AS MATERIALIZED (
	SELECT g.n, g.id, k.api_key, k.key_hash, k.key_ciphertext, k.display_prefix
	  FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, $N) AS n) AS g,
	       apikey_usage._key_material('ak', g.id) AS k
), ins AS (
	INSERT INTO apikey_usage.api_keys (key_id, workspace, name, key_prefix, key_hash,
		key_ciphertext, rate_limit, rate_window, last_used_at)
	SELECT id, 'bench-kc', 'kc key ' || n, display_prefix, key_hash, key_ciphertext,
	       1000000000, '1 day', now() FROM m
)
INSERT INTO bench.keys (i, key_id, api_key) SELECT n, id, api_key FROM m;
INSERT INTO bench.naive_keys SELECT key_id, 'bench-kc', sha256(convert_to(api_key, 'UTF8')) FROM bench.keys;
SQL
for t in bench.keys bench.naive_keys apikey_usage.api_keys; do cluster_psql -c "VACUUM ANALYZE $t"; done

# Each statement as an application would send it, the key a parameter of
# one statement: the key selection is an InitPlan whose result is passed
# as the argument (as a bind parameter would be), so every script pays
# exactly the floor's work plus its own.  A gateway reads every column of
# check_request's answer (SELECT *); the hand-written lookup reads the key
# id and workspace.
cat >"$WORK/floor.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT api_key FROM bench.keys WHERE i = :i;
SQL
cat >"$WORK/check.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT * FROM apikey_usage.check_request((SELECT api_key FROM bench.keys WHERE i = :i), 'GET', '/bench');
SQL
cat >"$WORK/naive.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT key_id, workspace FROM bench.naive_keys WHERE key_hash = sha256(convert_to((SELECT api_key FROM bench.keys WHERE i = :i), 'UTF8'));
SQL
cat >"$WORK/verify.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT * FROM apikey_usage.verify_key((SELECT api_key FROM bench.keys WHERE i = :i));
SQL
cat >"$WORK/check2.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT allowed, key_id FROM apikey_usage.check_request((SELECT api_key FROM bench.keys WHERE i = :i), 'GET', '/bench');
SQL
cat >"$WORK/verify2.sql" <<'SQL'
\set i random(1, :nkeys)
SELECT valid, key_id FROM apikey_usage.verify_key((SELECT api_key FROM bench.keys WHERE i = :i));
SQL

cache_counts() { cluster_psql -F ' ' -c "SELECT key_cache_hits, key_cache_misses FROM apikey_usage.runtime_stats"; }

# CPU time (user + system, clock ticks) of the given processes, summed.
# The server's CPU per transaction of a run: pgbench's backends read twice
# while the run is in full swing, and the transactions that ended between
# the two reads counted in pgbench's log.  Connection start and exit (the
# exit tears down the page tables of the shared memory a backend touched)
# stay out, as with a gateway's pooled connections; other load on the
# machine does not move it the way it moves TPS.
proc_ticks() {
	local p s=0
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] || { echo -1; return; }	# gone: no figure
		s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
	done
	echo "$s"
}

# run LEVEL TRAFFIC CLIENTS VARIANT REPEAT NKEYS -> a CSV line
run() {
	local level=$1 traffic=$2 c=$3 v=$4 rep=$5 nkeys=$6 h0 m0 h1 m1 dir tps pb pids i w0 w1 c0 c1
	dir=$WORK/log-$level-$traffic-$c-$v-$rep
	mkdir -p "$dir"
	read -r h0 m0 < <(cache_counts)
	(cd "$dir" && exec pgbench -n -M prepared -c "$c" -j "$((c < 2 ? c : 2))" -T "$T" -l \
		-D nkeys="$nkeys" -f "$WORK/$v.sql" >"$dir/out.txt" 2>&1) &
	pb=$!
	for i in $(seq 1 100); do	# pgbench's backends, once all connected
		pids=$(cluster_psql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity
			WHERE application_name = 'pgbench' AND backend_type = 'client backend'")
		[ "$(wc -w <<<"$pids")" -ge "$c" ] && break
		sleep 0.05
	done
	sleep 0.3
	w0=$(date +%s.%N); c0=$(proc_ticks $pids)
	sleep "$(awk -v t="$T" 'BEGIN { print t - 1.2 }')"
	c1=$(proc_ticks $pids); w1=$(date +%s.%N)
	[ "$c0" -ge 0 ] && [ "$c1" -ge 0 ] || c1=$c0	# a backend gone: no figure
	wait "$pb" || { log "pgbench failed: $level $traffic c=$c $v"; cat "$dir/out.txt" >&2; }
	read -r h1 m1 < <(cache_counts)
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$dir/out.txt" | head -1)
	cat "$dir"/pgbench_log.* | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
lat = sorted(int(r[2]) for r in rows)
def q(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000.0 if lat else 0
hits, misses = int(sys.argv[2]), int(sys.argv[3])
ratio = "" if hits + misses == 0 else "%.3f" % (hits / (hits + misses))
w0, w1, ticks, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
# transactions that ended inside the window (time_epoch, time_us: the end)
ntx = sum(1 for r in rows if w0 <= int(r[4]) + int(r[5]) / 1e6 < w1)
cpu = "%.2f" % (ticks * 1e6 / hz / ntx) if ntx > 0 and ticks > 0 else ""
print("%s,%.0f,%.3f,%.3f,%.3f,%s,%s" % (sys.argv[1], float(sys.argv[4] or 0), q(0.5), q(0.99), q(0.999), ratio, cpu))
' "$level,$traffic,$c,$v,$rep" "$((h1 - h0))" "$((m1 - m0))" "${tps:-0}" "$w0" "$w1" "$((c1 - c0))" \
		"$(getconf CLK_TCK)" >>"$CSV"
	rm -rf "$dir"
	tail -n 1 "$CSV"
}

worker_cpu() { # CPU seconds (user + system) of the worker over 10 s without traffic
	local pid a b
	pid=$(cluster_psql -c "SELECT worker_pid FROM apikey_usage.runtime_stats")
	sleep 2
	a=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	sleep 10
	b=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
	awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }'
}

# CPU time per lookup inside one backend (robust to a busy machine, unlike
# throughput): set-based over a sample of INPROC keys drawn uniformly (with
# repeats) from the population, interleaved 3 rounds; the naive side as a
# nested loop of index probes (no hash join, no parallel workers).
INPROC=$((N < 200000 ? N : 200000))
inproc() { # LEVEL -> CSV lines "LEVEL,inproc,1,VARIANT,ROUND,cpu_us,,,,"
	cluster_psql -q >>"$CSV" <<SQL
SET enable_hashjoin = off; SET enable_mergejoin = off; SET max_parallel_workers_per_gather = 0;
SET client_min_messages = error;
CREATE TEMP TABLE sample AS SELECT b.api_key FROM generate_series(1, $INPROC) g
	JOIN bench.keys b ON b.i = 1 + (hashint4(g) & 2147483647) % $N;
SELECT pg_backend_pid() AS pid \gset
CREATE TEMP TABLE cpu (n serial, label text, ticks int);
PREPARE tick(text) AS INSERT INTO cpu (label, ticks)
	SELECT \$1, split_part(pg_read_file('/proc/' || :pid || '/stat'), ' ', 14)::int
	           + split_part(pg_read_file('/proc/' || :pid || '/stat'), ' ', 15)::int;
\o /dev/null
EXECUTE tick('start');
$(for r in 1 2 3; do cat <<ROUND
SELECT count(*) FILTER (WHERE v.valid) FROM sample s, LATERAL apikey_usage.verify_key(s.api_key) v;
EXECUTE tick('verify');
SELECT count(*) FILTER (WHERE c.allowed) FROM sample s, LATERAL apikey_usage.check_request(s.api_key, 'GET', '/bench') c;
EXECUTE tick('check');
SELECT count(n.key_id) FROM sample s JOIN bench.naive_keys n ON n.key_hash = sha256(convert_to(s.api_key, 'UTF8'));
EXECUTE tick('naive');
SELECT count(s.api_key) FROM sample s;
EXECUTE tick('floor');
ROUND
done)
\o
SELECT '$1,inproc,1,' || label || ',' || row_number() OVER (PARTITION BY label ORDER BY n) || ','
       || round((ticks - lag(ticks) OVER (ORDER BY n)) * 1e6 / $(getconf CLK_TCK) / $INPROC, 3) || ',,,,,'
  FROM cpu ORDER BY n OFFSET 1;
SQL
}

FIRST_LEVEL=${LEVELS%% *}
LAST_LEVEL=${LEVELS##* }
for level in $LEVELS; do
	cluster_psql -c "ALTER SYSTEM SET apikey_usage.max_keys = $level" >/dev/null
	cluster_restart
	cluster_wait_worker
	prefill=$((level < N ? level : N))
	t0=$(date +%s.%N)
	cluster_psql -c "SELECT count(*) FILTER (WHERE v.valid) FROM bench.keys b
		CROSS JOIN LATERAL apikey_usage.verify_key(b.api_key) v WHERE b.i <= $prefill" >/dev/null
	t1=$(date +%s.%N)
	log "max_keys $level: prefilled $prefill keys in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s (cold misses)"
	for rep in $(seq 1 "$REPS"); do
		for traffic in hot uniform; do
			nkeys=$N
			[ "$traffic" = hot ] && nkeys=1000
			variants="floor check naive verify"
			# the narrow answers where the goals are judged
			[ "$traffic" = uniform ] && { [ "$level" = "$FIRST_LEVEL" ] || [ "$level" = "$LAST_LEVEL" ]; } &&
				variants="floor check check2 naive verify verify2"
			for v in $variants; do
				run "$level" "$traffic" 2 "$v" "$rep" "$nkeys"
			done
		done
		if [ "$level" = "$SMALL" ]; then
			for v in floor check naive; do
				run "$level" uniform 8 "$v" "$rep" "$N"
			done
		fi
	done
	inproc "$level"
	log "max_keys $level: CPU µs per lookup in one backend: $(grep "^$level,inproc" "$CSV" | awk -F, '{ s[$4] = s[$4] " " $6 } END { for (v in s) printf "%s:%s; ", v, s[v] }')"
	echo "$level,idle,0,worker_cpu_10s,1,$(worker_cpu),,,,," >>"$CSV"
	log "max_keys $level: worker CPU over 10 s idle: $(tail -n 1 "$CSV" | cut -d, -f6) s"
done

python3 bench/keycache_report.py "$CSV" "$N" "$SMALL" "$T" "$MODE" >"$OUT/keycache.md"
cat "$OUT/keycache.md"
