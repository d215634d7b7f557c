#!/usr/bin/env bash
# The fleet figures of `make bench` (issue 15), on this machine: three
# nodes and a PL/Proxy coordinator (scripts/fleet.sh) plus one single node
# for comparison, all small throwaway clusters (fsync off: nothing here
# measures writes).  Prints and writes $OUT/fleet.md:
#   1. per-node request path: check_request / SELECT 1 on a fleet node (a
#      key with node digits) and on a single node (a fleet of one);
#   2. the same through the coordinator, and the latency it adds;
#   3. fleet-wide dashboards (3 nodes x ROWS/3 rows) / the same calls on one
#      node holding all ROWS rows.
# pgbench -M prepared, 2 clients (1 for dashboards), BENCH_FLEET_T seconds
# a run, A B A B ... BENCH_FLEET_REPS times; medians.
#   bench/fleet.sh [OUT_DIR]        (as root; honours PG_CONFIG)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-$ROOT/bench/results/$(date -u +%Y-%m-%d)-fleet}
T=${BENCH_FLEET_T:-5}
REPS=${BENCH_FLEET_REPS:-3}
ROWS=${BENCH_FLEET_ROWS:-300000}
mkdir -p "$OUT"
source scripts/cluster.sh
source scripts/fleet.sh
WORK=$(mktemp -d /tmp/aku-fbench.XXXXXX)
chmod 755 "$WORK"
SINGLE_DIR=""
cleanup() {
	fleet_stop
	if [ -n "$SINGLE_DIR" ]; then CLUSTER_DIR=$SINGLE_DIR; CLUSTER_DATA=$SINGLE_DIR/data; cluster_stop; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[fleet %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
CONF=("fsync = off" "shared_buffers = 256MB" "apikey_usage.flush_interval = 200")

log "starting 3 nodes, a coordinator and a single node"
fleet_start 3 "${CONF[@]}"
cluster_start single "${CONF[@]}"
SINGLE_DIR=$CLUSTER_DIR; SINGLE_PORT=$PGPORT; CLUSTER_DIR=""
single_psql() { psql -X -v ON_ERROR_STOP=1 -qAt -h "$SINGLE_DIR" -p "$SINGLE_PORT" -U postgres -d apikey "$@"; }
single_psql -c "CREATE EXTENSION apikey_usage"

# keys: 5 per node through the coordinator (workspaces placed by hash), 15
# on the single node; the request path uses an unlimited key of node 1
coord_psql -c "CREATE TABLE bench_keys AS SELECT w, k.* FROM generate_series(1, 40) w,
	LATERAL apikey_usage.generate_key('bench-' || w, 'bench key') k" >/dev/null
for i in 0 1 2; do
	n=$(node_psql $i -c "SELECT count(*) FROM apikey_usage.keys")
	[ "$n" -ge 5 ] || { echo "node $i got only $n keys" >&2; exit 1; }
done
NODE_KEY=$(coord_psql -c "SELECT api_key FROM bench_keys WHERE apikey_usage.node_of(key_id) = 1 LIMIT 1")
SINGLE_KEY=$(single_psql -c "SELECT api_key FROM apikey_usage.generate_key('bench', 'bench key')")
single_psql -c "SELECT count(*) FROM generate_series(1, 39) g, LATERAL apikey_usage.generate_key('bench-' || g, 'bench key')" >/dev/null

# ---- data: ROWS rows over the last 7 days; the single node gets all of
# them, each fleet node the rows of its own keys (about a third)
gen_stage() { # KEY_IDS_SQL -> SQL creating table stage
	cat <<SQL
CREATE UNLOGGED TABLE stage AS
SELECT now() - interval '1 minute' - random() * interval '7 days' AS requested_at,
	   k.ids[1 + g % cardinality(k.ids)] AS api_key_id,
	   (ARRAY['GET', 'GET', 'GET', 'POST', 'DELETE'])[1 + g % 5] AS method,
	   '/v1/' || (ARRAY['documents', 'users', 'orders', 'files'])[1 + (g / 5) % 4] || '/{id}' AS endpoint,
	   (ARRAY[200, 200, 200, 201, 404, 429, 500])[1 + (g / 3) % 7] AS response_code
  FROM (SELECT array_agg(key_id ORDER BY key_id) AS ids FROM apikey_usage.keys) k,
	   generate_series(1, $1) g;
SELECT apikey_usage.import_requests('stage');
DROP TABLE stage;
SQL
}
log "loading $ROWS log rows into the single node and the same number over the fleet"
single_psql -c "$(gen_stage "$ROWS")" >/dev/null
for i in 0 1 2; do
	node_keys=$(node_psql $i -c "SELECT count(*) FROM apikey_usage.keys")
	node_psql $i -c "$(gen_stage "$(( ROWS * node_keys / 40 ))")" >/dev/null
done
fleet_rows=$(coord_psql -c "SELECT total_requests FROM apikey_usage.usage_summary(NULL, NULL, NULL)")
single_rows=$(single_psql -c "SELECT total_requests FROM apikey_usage.usage_summary(NULL, NULL, NULL)")
log "rows: fleet $fleet_rows (3 nodes), single node $single_rows"
for i in 0 1 2; do node_psql $i -c "VACUUM ANALYZE" ; done
single_psql -c "VACUUM ANALYZE"

# ---- pgbench helpers
echo "SELECT 1;" >"$WORK/select1.sql"
echo "SELECT * FROM apikey_usage.check_request(:key, 'GET', '/v1/documents/{id}');" >"$WORK/check.sql"
echo "SELECT * FROM apikey_usage.usage_summary(NULL);" >"$WORK/summary.sql"
echo "SELECT * FROM apikey_usage.usage_by_response_status(NULL);" >"$WORK/by_status.sql"
echo "SELECT * FROM apikey_usage.request_log(max_rows => 50);" >"$WORK/log_page1.sql"
chown -R postgres "$WORK"
pgb() { # DIR PORT DB CLIENTS FILE [args] -> "tps latency_ms"
	local dir=$1 port=$2 db=$3 c=$4 f=$5; shift 5
	local out
	out=$("$PGBIN/pgbench" -n -M prepared -h "$dir" -p "$port" -U postgres -c "$c" -j "$c" -T "$T" \
		"$@" -f "$f" "$db" 2>&1) || { echo "$out" >&2; return 1; }
	echo "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out") $(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
}
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A SAMPLES
add() { SAMPLES[$1]="${SAMPLES[$1]:-} $2"; }
med() { tr ' ' '\n' <<<"${SAMPLES[$1]}" | grep -v '^$' | median | awk '{ printf($1 >= 100 ? "%.0f" : "%.2f", $1) }'; }

N1=(${NODE_DIR[1]} ${NODE_PORT[1]} apikey)
SG=($SINGLE_DIR $SINGLE_PORT apikey)
CO=($COORD_DIR $COORD_PORT fleet)
log "request path: $REPS x (SELECT 1, check_request) on node 1, the single node and the coordinator, ${T}s each, 2 clients"
for rep in $(seq 1 "$REPS"); do
	for target in N1 SG CO; do
		declare -n tgt=$target
		key=$NODE_KEY; [ "$target" = SG ] && key=$SINGLE_KEY
		read -r tps _ < <(pgb "${tgt[@]}" 2 "$WORK/select1.sql"); add "$target.select1" "$tps"
		read -r tps _ < <(pgb "${tgt[@]}" 2 "$WORK/check.sql" -D key="$key"); add "$target.check" "$tps"
		unset -n tgt
	done
	log "  rep $rep tps check_request/SELECT 1: node 1 ${SAMPLES[N1.check]##* }/${SAMPLES[N1.select1]##* }, single ${SAMPLES[SG.check]##* }/${SAMPLES[SG.select1]##* }, coordinator ${SAMPLES[CO.check]##* }/${SAMPLES[CO.select1]##* }"
done
log "dashboards: $REPS x (fleet-wide through the coordinator, single node), ${T}s each, 1 client"
for rep in $(seq 1 "$REPS"); do
	for d in summary by_status log_page1; do
		read -r _ lat < <(pgb "${CO[@]}" 1 "$WORK/$d.sql"); add "CO.$d" "$lat"
		read -r _ lat < <(pgb "${SG[@]}" 1 "$WORK/$d.sql"); add "SG.$d" "$lat"
	done
	log "  rep $rep ms fleet/single: summary ${SAMPLES[CO.summary]##* }/${SAMPLES[SG.summary]##* }, by_status ${SAMPLES[CO.by_status]##* }/${SAMPLES[SG.by_status]##* }, log page 1 ${SAMPLES[CO.log_page1]##* }/${SAMPLES[SG.log_page1]##* }"
done

r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
us() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (2 / a - 2 / b) * 1e6 }'; } # 2 clients
{
	echo "# Fleet figures ($(date -u '+%Y-%m-%d %H:%M UTC'))"
	echo
	echo "3 nodes + 1 PL/Proxy coordinator + 1 single node, all on this 2-vCPU machine (shared with"
	echo "other jobs); pgbench -M prepared, ${T} s runs, $REPS interleaved repeats, medians."
	echo
	echo "| figure | value |"
	echo "|---|--:|"
	echo "| 1. check_request ÷ SELECT 1 on a fleet node (node 1, key with node digits), 2 clients | $(r "$(med N1.check)" "$(med N1.select1)")× ($(med N1.check) / $(med N1.select1) tps) |"
	echo "| 1. the same on a single node (a fleet of one) | $(r "$(med SG.check)" "$(med SG.select1)")× ($(med SG.check) / $(med SG.select1) tps) |"
	echo "| 2. check_request through the coordinator ÷ SELECT 1 on the coordinator | $(r "$(med CO.check)" "$(med CO.select1)")× ($(med CO.check) / $(med CO.select1) tps) |"
	echo "| 2. check_request through the coordinator ÷ direct on the node | $(r "$(med CO.check)" "$(med N1.check)")×: about $(us "$(med CO.check)" "$(med N1.check)") µs more per call |"
	for d in summary by_status log_page1; do
		echo "| 3. fleet-wide $d ($fleet_rows rows on 3 nodes) ÷ the single node ($single_rows rows), 1 client | $(r "$(med CO.$d)" "$(med SG.$d)")× ($(med CO.$d) / $(med SG.$d) ms; goal ≤ 2×) |"
	done
} >"$OUT/fleet.md"
cat "$OUT/fleet.md"
