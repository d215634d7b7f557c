#!/usr/bin/env bash
# `make bench [BENCH=quick]`: the performance report of apikey_usage.
#
# From a fresh clone: installs what is missing (scripts/deps.sh), builds and
# installs the extension, starts its own throwaway cluster (fsync on,
# synchronous_commit on unless a scenario says off, shared_buffers 2GB),
# runs every scenario, stops the cluster and writes
#   bench/results/<date>[-quick]/results.csv   every measurement
#   bench/results/<date>[-quick]/summary.md    medians and ratios
#   bench/results/<date>[-quick]/*.png         plots (gnuplot)
#   bench/results/<date>[-quick]/fleet.md      fleet figures (bench/fleet.sh)
#   bench/results/<date>[-quick]/raw/          pgbench output (not committed)
# bench/README.md explains the scenarios and how to read the results.
#
# Modes: full (default, up to ~25 min) and quick (under 3 min: fewer and
# shorter runs, 1M dataset rows, 1k/100k keys).  Environment overrides:
#   BENCH_T (seconds per request-path pgbench run), BENCH_REPS,
#   BENCH_BUDGET (seconds; the 10M dataset step is skipped when the
#   measured load rate says it would not fit), BENCH_OUT (results dir),
#   BENCH_PHASES (default "request driver flusher keys dashboards live"),
#   BENCH_DATA (dataset levels of the dashboards, e.g. "1000000 3000000"),
#   BENCH_LIVE (row levels of the live scenario, e.g. "1000000 5000000"),
#   BENCH_KEYCACHE=0 (skip the key-cache section, bench/keycache.sh, which
#   takes about 8 minutes in full mode and 2 in quick mode),
#   BENCH_FLEET=0 (skip the fleet section, bench/fleet.sh),
#   BENCH_FLUSHER_MIX=0 (skip bench/flusher_mix.sh: about 2 minutes full,
#   1 quick).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
B=$ROOT/bench/sql
MODE=${1:-full}
START=$(date +%s)

case $MODE in
quick)
	CLIENTS="2 8"; REPS=2; T=1; DRIVER_T=2
	SCALE_CLIENTS="2"; SCALE_REPS=2; SCALE_T=1; KEY_LEVELS="1000 100000"
	FLUSH_N=50000; DRAIN_REPS=2
	DATA_LEVELS="1000000"; DASH_REPS=2; DASH_RUN="-T 1"
	LIVE_LEVELS="200000 1000000"; LIVE_RUN="-T 2"
	BUDGET=170 ;;
full | "")
	MODE=full
	CLIENTS="1 2 8"; REPS=3; T=3; DRIVER_T=5
	SCALE_CLIENTS="2"; SCALE_REPS=3; SCALE_T=3; KEY_LEVELS="1000 100000 1000000"
	FLUSH_N=1000000; DRAIN_REPS=3
	DATA_LEVELS="1000000 3000000 10000000"; DASH_REPS=3; DASH_RUN="-T 2"
	LIVE_LEVELS="1000000 5000000"; LIVE_RUN="-T 6"
	BUDGET=2400 ;;
*)
	echo "usage: bench/run.sh [quick]" >&2; exit 2 ;;
esac
T=${BENCH_T:-$T}
REPS=${BENCH_REPS:-$REPS}
BUDGET=${BENCH_BUDGET:-$BUDGET}
PHASES=${BENCH_PHASES:-request driver flusher keys dashboards live}
DATA_LEVELS=${BENCH_DATA:-$DATA_LEVELS}
LIVE_LEVELS=${BENCH_LIVE:-$LIVE_LEVELS}
# live runs are longer: at 5M a naive call takes over a second, and the
# first (warm-up) transaction of each run is not measured
LIVE_RUN=${BENCH_LIVE_RUN:-$LIVE_RUN}
phase_on() { [[ " $PHASES " == *" $1 "* ]]; }

DAY=$(date -u +%Y-%m-%d)
SUFFIX=""
[ "$MODE" = quick ] && SUFFIX=-quick
OUT=${BENCH_OUT:-$ROOT/bench/results/$DAY$SUFFIX}
rm -rf "$OUT/raw" "$OUT"/*.png "$OUT/results.csv" "$OUT/summary.md"
mkdir -p "$OUT/raw"
RUNS=$OUT/raw/runs.tsv
METRICS=$OUT/raw/metrics.tsv
printf 'phase\tscenario\tvariant\tclients\trows\trepeat\tfile\n' >"$RUNS"
printf 'phase\tscenario\tvariant\tclients\trows\trepeat\tmetric\tvalue\tunit\n' >"$METRICS"

log() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# metric PHASE SCENARIO VARIANT CLIENTS ROWS REPEAT METRIC VALUE UNIT
metric() { local IFS=$'\t'; echo "$*" >>"$METRICS"; }

log "mode $MODE: request path ${REPS}x${T}s at clients $CLIENTS; results in ${OUT#"$ROOT"/}"
bash scripts/deps.sh
make -s >/dev/null && make -s install >/dev/null

source scripts/cluster.sh
WORK=""
cleanup() {
	cluster_stop
	[ -n "$WORK" ] && rm -rf "$WORK"
	return 0
}
trap cleanup EXIT
# The bench-only secrets (API keys of the throwaway cluster) live here
# and nowhere else; removed on exit.
WORK=$(mktemp -d /tmp/aku-bench.XXXXXX)
chmod 700 "$WORK"

cluster_start bench \
	"shared_buffers = 2GB" \
	"fsync = on" \
	"synchronous_commit = on" \
	"max_wal_size = 16GB" \
	"checkpoint_timeout = 30min" \
	"maintenance_work_mem = 512MB" \
	"apikey_usage.max_keys = 1100000"
psql_() { cluster_psql "$@"; }
# flush(), bounded: a flusher that keeps failing must not hang the run
flush_() {
	PGOPTIONS="-c statement_timeout=300s" psql_ -c "SELECT apikey_usage.flush()" || {
		log "flush() failed or timed out; the server log ends with:"
		tail -n 30 "$CLUSTER_LOG" >&2
		exit 1
	}
}
psql_ -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
psql_ -f "$B/setup.sql"

metric env mode "" "" "" "" mode "$MODE" ""
metric env git "" "" "" "" commit "$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD -- src sqlsrc 2>/dev/null || echo +dirty)" ""
metric env server "" "" "" "" version "$(psql_ -c 'SHOW server_version' | cut -d' ' -f1)" ""
metric env machine "" "" "" "" cpus "$(nproc)" ""
metric env machine "" "" "" "" loadavg_start "$(cut -d' ' -f1 /proc/loadavg)" ""

# ---------------------------------------------------------------------
# pgbench: one run, its output kept under raw/, indexed in raw/runs.tsv
# run_pgb PHASE SCENARIO VARIANT CLIENTS ROWS REPEAT pgbench-args...
# ---------------------------------------------------------------------
run_pgb() {
	local phase=$1 scen=$2 var=$3 c=$4 rows=$5 rep=$6
	shift 6
	local j=$((c < 2 ? c : 2))
	local f=raw/$phase/$scen-$var-c$c-n$rows-r$rep.txt
	mkdir -p "$OUT/raw/$phase"
	if ! pgbench -n -M prepared -c "$c" -j "$j" "$@" >"$OUT/$f" 2>&1; then
		log "  pgbench failed: $phase $scen/$var c=$c (see $f)"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$scen" "$var" "$c" "$rows" "$rep" "$f" >>"$RUNS"
	PGB_LAST=$OUT/$f
}
tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$1" | head -1; }
# latency (ms) of the N-th statement of the script (pgbench -r)
# (meta commands such as \if are not counted)
statement_lat_of() {
	awk -v n="$2" '/^statement latencies/ { on = 1; next }
		on && $1 ~ /^[0-9.]+$/ && $3 !~ /^\\/ && ++i == n { print $1; exit }' "$1"
}
# pair OURS NAIVE > script: ours then naive in every transaction; the
# first transaction of each connection runs them once unmeasured (other
# lines of the script), so the figures are a warm connection's (a pool's);
# pass -D warm=0 to pgbench
pair() {
	printf '\\if :warm\n'; cat "$1" "$2"
	printf '\\else\n'; cat "$1" "$2"
	printf '\\set warm 1\n\\endif\n'
}

# ---------------------------------------------------------------------
# Keys: 100 unlimited request keys (n = 1 is the hot one), the 1,000 keys
# of the dashboard dataset.
# ---------------------------------------------------------------------
psql_ -f "$B/keys_request.sql"
psql_ -c "SELECT n, key_id, api_key FROM bench.req_keys ORDER BY n" >"$WORK/api_keys.txt"
chmod 600 "$WORK/api_keys.txt"
DVARS=()
while IFS='|' read -r n kid key; do
	DVARS+=(-D "k$n=$key")
	[ "$n" = 1 ] && { DVARS+=(-D "k=$key" -D "kid=$kid"); HOT_KEY=$key; HOT_KID=$kid; }
done <"$WORK/api_keys.txt"
# 100-key scenarios: one script per key (pgbench picks one at random per
# transaction), the key passed as a parameter like a gateway does.
render100() {	# TEMPLATE NAME -> "-f file" x 100
	local n args=()
	mkdir -p "$WORK/$2"
	for n in $(seq 1 100); do
		sed "s/:k\b/:k$n/g" "$B/$1" >"$WORK/$2/$n.sql"
		args+=(-f "$WORK/$2/$n.sql")
	done
	echo "${args[@]}"
}

# ---------------------------------------------------------------------
# 1. Request path: every scenario at every client count, interleaved.
# ---------------------------------------------------------------------
declare -A RP
RP[select1]="-f $B/select1.sql"
RP[verify_hot]="-f $B/verify_key.sql"
RP[naive_verify_hot]="-f $B/naive_verify.sql"
RP[check_hot]="-f $B/check_request.sql"
RP[naive_limit_hot]="-f $B/naive_limit_hot.sql"
RP[check_100]=$(render100 check_request.sql check100)
RP[naive_limit_100]="-f $B/naive_limit_100.sql"
RP[log]="-f $B/log_request.sql"
RP[naive_insert_sync]="-f $B/naive_insert.sql"
RP[naive_insert_async]="-f $B/naive_insert.sql"
RP[check_log_100]=$(render100 check_log.sql checklog100)
RP[naive_gateway_100]=$(render100 naive_gateway.sql gateway100)
RP_ORDER="select1 verify_hot naive_verify_hot check_hot naive_limit_hot check_100 naive_limit_100
	log naive_insert_sync naive_insert_async check_log_100 naive_gateway_100"

if phase_on request; then
t_phase=$(now)
log "request path: $(echo "$RP_ORDER" | wc -w) scenarios x clients ($CLIENTS) x $REPS repeats x ${T}s"
for rep in $(seq 1 "$REPS"); do
	for c in $CLIENTS; do
		line=""
		for s in $RP_ORDER; do
			sc=on
			[ "$s" = naive_insert_async ] && sc=off
			# shellcheck disable=SC2086
			PGOPTIONS="-c synchronous_commit=$sc" run_pgb request "$s" "" "$c" "" "$rep" \
				-T "$T" "${DVARS[@]}" ${RP[$s]}
			line+=" $s=$(tps_of "$PGB_LAST" | cut -d. -f1)"
			case $s in log | check_log_100) flush_ >/dev/null ;; esac
		done
		log "  rep $rep c=$c:$line"
	done
done
metric request phase "" "" "" "" seconds "$(elapsed "$t_phase" "$(now)")" s
fi

# ---------------------------------------------------------------------
# 1b. A served request through a real driver (node-postgres, bind
# parameters, as examples/gateway does it): check_request + log_request
# against two no-op statements of the same shape, and with log_requests
# batches, interleaved (bench/driver.js).
# ---------------------------------------------------------------------
if phase_on driver; then
(cd examples/gateway && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
t_phase=$(now)
log "driver: noop_pair / pair / batched x clients (2 8) x $REPS repeats x ${DRIVER_T}s (node-postgres)"
while IFS=$'\t' read -r scen c rep tps us p50; do
	metric driver "$scen" "c$c" "$c" "" "$rep" served_per_s "$tps" 1/s
	metric driver "$scen" "c$c" "$c" "" "$rep" us_per_served "$us" us
	metric driver "$scen" "c$c" "$c" "" "$rep" p50_us "$p50" us
	log "  rep $rep c=$c $scen: $tps served/s, $us us per served request"
done < <(KEY=$HOT_KEY KEY_ID=$HOT_KID DURATION=$DRIVER_T CLIENTS="2 8" REPS=$REPS node bench/driver.js)
flush_ >/dev/null
metric driver phase "" "" "" "" seconds "$(elapsed "$t_phase" "$(now)")" s
fi

# ---------------------------------------------------------------------
# Memory: shared memory per key and per buffered entry, worker RSS.
# ---------------------------------------------------------------------
memory_snapshot() {	# LABEL
	local label=$1 stats pid
	stats=$(psql_ -F ' ' -c "SELECT key_cache_bytes, key_cache_capacity, buffer_bytes, buffer_capacity,
		worker_pid, key_cache_size, entries_logged, sync_fallbacks FROM apikey_usage.runtime_stats")
	read -r kcb kcc bb bc pid kcs el sf <<<"$stats"
	metric memory key_cache "$label" "" "" "" bytes "$kcb" B
	metric memory key_cache "$label" "" "" "" capacity "$kcc" keys
	metric memory key_cache "$label" "" "" "" size "$kcs" keys
	metric memory log_buffer "$label" "" "" "" bytes "$bb" B
	metric memory log_buffer "$label" "" "" "" capacity "$bc" entries
	metric memory counters "$label" "" "" "" entries_logged "$el" entries
	metric memory counters "$label" "" "" "" sync_fallbacks "$sf" entries
	if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
		for k in VmRSS VmHWM RssAnon RssFile RssShmem; do
			metric memory worker_rss "$label" "" "" "" "$k" \
				"$(awk -v k="$k:" '$1 == k { print $2 * 1024 }' "/proc/$pid/status")" B
		done
	fi
}

# ---------------------------------------------------------------------
# 2. Flusher: log FLUSH_N entries (2 clients, 100 keys, 40 endpoints) and
# measure until flush() returns and every row is in request_log_raw.
# ---------------------------------------------------------------------
if phase_on flusher; then
t_phase=$(now)
flush_ >/dev/null
psql_ -c "TRUNCATE apikey_usage.request_log_raw, apikey_usage.usage_hourly, apikey_usage.usage_daily, apikey_usage.usage_minute_codes, apikey_usage.usage_hourly_codes, apikey_usage.usage_daily_codes, apikey_usage.usage_hourly_methods, apikey_usage.usage_daily_methods, apikey_usage.usage_hourly_endpoints, apikey_usage.usage_daily_endpoints"
read -r fb0 sf0 <<<"$(psql_ -F ' ' -c "SELECT entries_flushed, sync_fallbacks FROM apikey_usage.runtime_stats")"
t0=$(now)
run_pgb flusher log_1m "" 2 "$FLUSH_N" 1 -t $((FLUSH_N / 2)) -f "$B/flusher_log.sql"
t1=$(now)
flush_ >/dev/null
t2=$(now)
rows=$(psql_ -c "SELECT count(*) FROM apikey_usage.request_log_raw")
read -r fb1 sf1 <<<"$(psql_ -F ' ' -c "SELECT entries_flushed, sync_fallbacks FROM apikey_usage.runtime_stats")"
metric flusher log "" 2 "$FLUSH_N" 1 seconds_logging "$(elapsed "$t0" "$t1")" s
metric flusher log "" 2 "$FLUSH_N" 1 seconds_until_flushed "$(elapsed "$t0" "$t2")" s
metric flusher log "" 2 "$FLUSH_N" 1 seconds_drain_after_logging "$(elapsed "$t1" "$t2")" s
metric flusher log "" 2 "$FLUSH_N" 1 rows_in_table "$rows" rows
metric flusher log "" 2 "$FLUSH_N" 1 entries_flushed "$((fb1 - fb0))" entries
metric flusher log "" 2 "$FLUSH_N" 1 sync_fallbacks "$((sf1 - sf0))" entries
log "flusher: $rows of $FLUSH_N rows in the table $(elapsed "$t0" "$t2") s after logging started (logging took $(elapsed "$t0" "$t1") s)"

# The worker's own drain rate: with flush_interval at 60 s the worker
# sleeps while 8,000 entries (under half the ring, which would wake it)
# are logged; one flush() then writes them all.
psql_ -c "ALTER SYSTEM SET apikey_usage.flush_interval = '60s'"
psql_ -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
for rep in $(seq 1 "$DRAIN_REPS"); do
	run_pgb flusher fill_ring "" 2 8000 "$rep" -t 4000 -f "$B/flusher_log.sql"
	ta=$(now)
	got=$(flush_)
	tb=$(now)
	metric flusher drain "" 1 8000 "$rep" rows_flushed "$got" rows
	metric flusher drain "" 1 8000 "$rep" rows_per_s "$(awk -v n="$got" -v s="$(elapsed "$ta" "$tb")" 'BEGIN { printf "%.0f", n / s }')" rows/s
	log "flusher drain: flush() wrote $got entries in $(elapsed "$ta" "$tb") s"
done
psql_ -c "ALTER SYSTEM RESET apikey_usage.flush_interval"
psql_ -c "SELECT pg_reload_conf()" >/dev/null
memory_snapshot after_flusher
metric flusher phase "" "" "" "" seconds "$(elapsed "$t_phase" "$(now)")" s
fi

# ---------------------------------------------------------------------
# 3. Verify cost against the number of keys (cumulative levels).
# ---------------------------------------------------------------------
if phase_on keys; then
t_phase=$(now)
lo=1
for level in $KEY_LEVELS; do
	hi=$level
	n=$((hi - lo + 1))
	ta=$(now)
	if [ "$lo" = 1 ]; then
		psql_ -v lo="$lo" -v hi="$hi" -f "$B/keys_generate.sql"
		how=generate_key
	else
		psql_ -v lo="$lo" -v hi="$hi" -f "$B/keys_bulk.sql"
		how=key_material_bulk
	fi
	tb=$(now)
	metric keys load "$how" "" "$n" 1 keys_per_s "$(awk -v n="$n" -v s="$(elapsed "$ta" "$tb")" 'BEGIN { printf "%.0f", n / s }')" keys/s
	psql_ -v lo="$lo" -v hi="$hi" -f "$B/keys_naive.sql"
	psql_ -c "VACUUM ANALYZE bench.keys"
	psql_ -c "VACUUM ANALYZE naive.keys"
	psql_ -c "VACUUM ANALYZE apikey_usage.api_keys"
	ta=$(now)
	valid=$(psql_ -v lo="$lo" -v hi="$hi" -f "$B/keys_prewarm.sql")
	tb=$(now)
	[ "$valid" = "$n" ] || log "  WARNING: only $valid of $n keys verified as valid"
	metric keys cold_verify "" 1 "$level" 1 keys_per_s "$(awk -v n="$n" -v s="$(elapsed "$ta" "$tb")" 'BEGIN { printf "%.0f", n / s }')" keys/s
	metric keys cold_verify "" 1 "$level" 1 valid "$valid" keys
	log "keys: $level ($n added with $how in $(elapsed "$ta" "$tb") s to verify cold)"
	for rep in $(seq 1 "$SCALE_REPS"); do
		for c in $SCALE_CLIENTS; do
			line=""
			for v in floor ours naive; do
				f=scale_verify.sql
				[ $v = floor ] && f=scale_floor.sql
				[ $v = naive ] && f=scale_naive.sql
				run_pgb keys verify "$v" "$c" "$level" "$rep" -T "$SCALE_T" -D nkeys="$level" -f "$B/$f"
				line+=" $v=$(tps_of "$PGB_LAST" | cut -d. -f1)"
			done
			log "  rep $rep c=$c:$line"
		done
	done
	lo=$((hi + 1))
done
memory_snapshot after_keys
metric keys phase "" "" "" "" seconds "$(elapsed "$t_phase" "$(now)")" s
fi

# ---------------------------------------------------------------------
# 4. Dashboards over a growing dataset (heavy key = 20 % of the rows),
# imported with apikey_usage.import_requests; the same rows in naive.log.
# ---------------------------------------------------------------------
if phase_on dashboards; then
DASH="summary by_method by_status top_endpoints timeseries log_page1 log_page100"
HEAVY=$(psql_ -c "SELECT key_id FROM bench.dataset_keys WHERE i = 1")
flush_ >/dev/null
psql_ -c "TRUNCATE apikey_usage.request_log_raw, apikey_usage.usage_hourly, apikey_usage.usage_daily, apikey_usage.usage_minute_codes, apikey_usage.usage_hourly_codes, apikey_usage.usage_daily_codes, apikey_usage.usage_hourly_methods, apikey_usage.usage_daily_methods, apikey_usage.usage_hourly_endpoints, apikey_usage.usage_daily_endpoints"
loaded=0
dash_seconds=0
load_rate=0
for target in $DATA_LEVELS; do
	n=$((target - loaded))
	if [ "$loaded" -gt 0 ]; then
		# will loading n more rows and one dashboard round fit in the budget?
		# (the load rate falls a little as the indexes grow, the naive
		# dashboards slow down with the rows: allow 15 % and 50 % more)
		need=$(awk -v n="$n" -v r="$load_rate" -v d="$dash_seconds" 'BEGIN { printf "%d", n / r * 1.15 + d * 1.5 }')
		left=$((START + BUDGET - $(date +%s)))
		if [ "$need" -gt "$left" ]; then
			log "dataset: skipping $target rows (needs ~${need}s at the measured load rate, ${left}s left)"
			metric dataset skipped "" "" "$target" "" needed_seconds "$need" s
			metric dataset skipped "" "" "$target" "" seconds_left "$left" s
			break
		fi
	fi
	log "dataset: loading rows $((loaded + 1))..$target"
	ta=$(now)
	psql_ -v lo=$((loaded + 1)) -v hi="$target" -f "$B/dataset_stage.sql"
	tb=$(now)
	PGOPTIONS="-c work_mem=256MB" psql_ -c "SELECT apikey_usage.import_requests('bench.stage')" >/dev/null
	tc=$(now)
	psql_ -c "INSERT INTO naive.log SELECT * FROM bench.stage"
	td=$(now)
	psql_ -c "DROP TABLE bench.stage"
	psql_ -c "VACUUM ANALYZE"	# every table, including the extension's rollups
	te=$(now)
	loaded=$target
	metric dataset load stage "" "$target" 1 rows_per_s "$(awk -v n="$n" -v s="$(elapsed "$ta" "$tb")" 'BEGIN { printf "%.0f", n / s }')" rows/s
	metric dataset load import_requests "" "$target" 1 rows_per_s "$(awk -v n="$n" -v s="$(elapsed "$tb" "$tc")" 'BEGIN { printf "%.0f", n / s }')" rows/s
	metric dataset load naive_insert "" "$target" 1 rows_per_s "$(awk -v n="$n" -v s="$(elapsed "$tc" "$td")" 'BEGIN { printf "%.0f", n / s }')" rows/s
	metric dataset load vacuum "" "$target" 1 seconds "$(elapsed "$td" "$te")" s
	load_rate=$(awk -v n="$n" -v s="$(elapsed "$ta" "$te")" 'BEGIN { printf "%.0f", n / s }')
	metric dataset load total "" "$target" 1 rows_per_s "$load_rate" rows/s
	log "  loaded in $(elapsed "$ta" "$te") s (import_requests $(elapsed "$tb" "$tc") s, naive insert $(elapsed "$tc" "$td") s)"

	while IFS='|' read -r what tbl idx cnt; do
		metric dataset size "$what" "" "$target" "" table_bytes "$tbl" B
		metric dataset size "$what" "" "$target" "" index_bytes "$idx" B
		metric dataset size "$what" "" "$target" "" rows "$cnt" rows
	done < <(psql_ -f "$B/sizes.sql")

	IFS='|' read -r bts bid walk_ms <<<"$(psql_ -f "$B/walk_pages.sql")"
	metric dashboard walk_99_pages ours 1 "$target" 1 ms "$walk_ms" ms
	while IFS='|' read -r what ok; do
		metric dataset check "$what" "" "$target" "" ok "$ok" ""
		[ "$ok" = t ] || log "  WARNING: $what is false: ours and naive disagree"
	done < <(psql_ -f "$B/check_dataset.sql")

	ta=$(now)
	DV=(-D "h=$HEAVY" -D "bts=$bts" -D "bid=$bid" -D warm=0)
	# ours and naive in one script, one after the other in every
	# transaction (A B A B ... in the same backend); pgbench -r reports the
	# latency of each statement
	mkdir -p "$WORK/dash"
	for d in $DASH; do
		pair "$B/dash_${d}_ours.sql" "$B/dash_${d}_naive.sql" >"$WORK/dash/$d.sql"
	done
	# page 100 / page 1 of ours: their own script (page 1 then page 100 in
	# every transaction), so that neither follows the naive OFFSET query,
	# which leaves the next statement with a cold CPU cache
	pair "$B/dash_log_page1_ours.sql" "$B/dash_log_page100_ours.sql" >"$WORK/dash/log_pages.sql"
	for rep in $(seq 1 "$DASH_REPS"); do
		line=""
		for d in $DASH; do
			# shellcheck disable=SC2086
			run_pgb dashboard "$d" pair 1 "$target" "$rep" $DASH_RUN -r "${DV[@]}" -f "$WORK/dash/$d.sql"
			line+=" $d=$(statement_lat_of "$PGB_LAST" 1)/$(statement_lat_of "$PGB_LAST" 2)"
		done
		# shellcheck disable=SC2086
		run_pgb dashboard log_pages pages 1 "$target" "$rep" $DASH_RUN -r "${DV[@]}" -f "$WORK/dash/log_pages.sql"
		line+=" pages=$(statement_lat_of "$PGB_LAST" 1)/$(statement_lat_of "$PGB_LAST" 2)"
		log "  rep $rep latency ms, ours/naive (pages: page 1/page 100 of ours):$line"
	done
	dash_seconds=$(elapsed "$ta" "$(now)")
done
metric dashboard phase "" "" "" "" seconds "$dash_seconds" s
fi

# ---------------------------------------------------------------------
# 5. The live edge: one key with LIVE_LEVELS requests in the 40 minutes
# before each load (straight into the raw log and, in the same
# statement, into the rollups through _rollup_apply, as the log writer
# does; the same rows in naive.live), every dashboard call with its
# default bounds [now() - 30 days, now()) and the last hour in 1-minute
# buckets, ours and naive side by side (A B A B ... in one backend).
# ---------------------------------------------------------------------
if phase_on live; then
t_phase=$(now)
LIVE="summary by_method by_status top_endpoints timeseries minutes log_page1"
psql_ -c "CREATE TABLE bench.live_key AS SELECT key_id FROM apikey_usage.generate_key('bench-live', 'live edge')"
LIVEK=$(psql_ -c "SELECT key_id FROM bench.live_key")
mkdir -p "$WORK/live"
for d in $LIVE; do
	pair "$B/live_${d}_ours.sql" "$B/live_${d}_naive.sql" >"$WORK/live/$d.sql"
done
loaded=0
for target in $LIVE_LEVELS; do
	log "live: loading rows $((loaded + 1))..$target of one key, spread over the 40 minutes before now"
	ta=$(now)
	PGOPTIONS="-c work_mem=256MB" psql_ -v lo=$((loaded + 1)) -v hi="$target" \
		-v t_end="$(date -u '+%Y-%m-%d %H:%M:%S.%N+00')" -f "$B/live_load.sql" >/dev/null
	psql_ -c "VACUUM ANALYZE naive.live" -c "VACUUM ANALYZE apikey_usage.request_log_raw" \
		-c "VACUUM ANALYZE apikey_usage.usage_minute_codes" -c "VACUUM ANALYZE apikey_usage.usage_hourly_codes" \
		-c "VACUUM ANALYZE apikey_usage.usage_hourly_methods" -c "VACUUM ANALYZE apikey_usage.usage_hourly_endpoints"
	loaded=$target
	metric live load total "" "$target" 1 seconds "$(elapsed "$ta" "$(now)")" s
	log "  loaded in $(elapsed "$ta" "$(now)") s"
	while IFS='|' read -r what ok; do
		metric dataset check "$what" "" "$target" "" ok "$ok" ""
		[ "$ok" = t ] || log "  WARNING: $what is false: ours and naive disagree"
	done < <(psql_ -f "$B/check_live.sql")
	for rep in $(seq 1 "$DASH_REPS"); do
		line=""
		for d in $LIVE; do
			# shellcheck disable=SC2086
			run_pgb live "$d" pair 1 "$target" "$rep" $LIVE_RUN -r -D "h=$LIVEK" -D warm=0 -f "$WORK/live/$d.sql"
			line+=" $d=$(statement_lat_of "$PGB_LAST" 1)/$(statement_lat_of "$PGB_LAST" 2)"
		done
		log "  rep $rep latency ms, ours/naive:$line"
	done
done
metric live phase "" "" "" "" seconds "$(elapsed "$t_phase" "$(now)")" s
fi


memory_snapshot end
metric env machine "" "" "" "" loadavg_end "$(cut -d' ' -f1 /proc/loadavg)" ""
cleanup
trap - EXIT
metric env total "" "" "" "" seconds $(($(date +%s) - START)) s

python3 bench/report.py "$OUT"

# ---------------------------------------------------------------------
# 5. The key cache at scale: its own cluster per apikey_usage.max_keys
# level (bench/keycache.sh), appended to the summary.
# ---------------------------------------------------------------------
if [ "${BENCH_KEYCACHE:-1}" = 1 ]; then
	log "key cache at scale (bench/keycache.sh $MODE)"
	if bash bench/keycache.sh "$MODE" "$OUT" >"$OUT/raw/keycache.log" 2>&1; then
		{ echo; cat "$OUT/keycache.md"; } >>"$OUT/summary.md"
	else
		log "bench/keycache.sh failed (see raw/keycache.log)"
	fi
fi
# ---------------------------------------------------------------------
# 6. The flusher on the live mix against COPY into a bare table, and
# log_request / SELECT 1 at 2 clients (bench/flusher_mix.sh, own cluster),
# appended to the summary.
# ---------------------------------------------------------------------
if [ "${BENCH_FLUSHER_MIX:-1}" = 1 ]; then
	log "flusher on the live mix (bench/flusher_mix.sh $MODE)"
	if bash bench/flusher_mix.sh "$MODE" "$OUT" >"$OUT/raw/flusher_mix.log" 2>&1; then
		{ echo; echo "### Flusher on the live mix (bench/flusher_mix.sh)"; echo; cat "$OUT/flusher_mix.md"; } >>"$OUT/summary.md"
	else
		log "bench/flusher_mix.sh failed (see raw/flusher_mix.log)"
	fi
fi
# a plot only for the phases that ran (their data files exist); a plot
# that fails leaves no empty image behind
plot() {	# plot SCRIPT IMAGE DATAFILE...
	local gp=$1 png=$2; shift 2
	# data rows below the header line of any of the files
	awk 'FNR > 1 { found = 1 } END { exit !found }' "$@" 2>/dev/null ||
		{ log "no data for $png (phase not run)"; return; }
	gnuplot -e "dir='$OUT'" "$gp" || { log "gnuplot $gp failed"; rm -f "$OUT/$png"; }
}
plot bench/plot_throughput.gp throughput.png "$OUT"/raw/plot/throughput_*.dat
plot bench/plot_dashboards.gp dashboards.png "$OUT"/raw/plot/dash_*.dat
# the fleet figures (issue 15): their own clusters, appended to summary.md
if [ "$MODE" = quick ]; then
	export BENCH_FLEET_T=${BENCH_FLEET_T:-2} BENCH_FLEET_REPS=${BENCH_FLEET_REPS:-1} BENCH_FLEET_ROWS=${BENCH_FLEET_ROWS:-60000}
fi
if [ "${BENCH_FLEET:-1}" = 1 ]; then
	log "fleet: 3 nodes + a PL/Proxy coordinator (bench/fleet.sh)"
	if bash bench/fleet.sh "$OUT"; then
		{ echo; sed 's/^# /## /' "$OUT/fleet.md"; } >>"$OUT/summary.md"
	else
		log "bench/fleet.sh failed"
	fi
fi
log "done: ${OUT#"$ROOT"/}/summary.md"
