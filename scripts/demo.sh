#!/usr/bin/env bash
# `make demo`: the main job.  From a fresh clone: install what is missing,
# build, start a throwaway preloaded cluster, create keys, run ~20 s of
# concurrent gateway traffic through check_request + log_request, and print
# the API Key Usage page of one key in the terminal, with the SQL behind
# each part.  Leaves nothing running unless KEEP=1 (then it prints how to
# connect psql or Grafana, and how to stop the cluster).
#   DEMO_SECONDS=20  DEMO_CLIENTS=4  KEEP=0
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECONDS_OF_TRAFFIC=${DEMO_SECONDS:-20}
CLIENTS=${DEMO_CLIENTS:-4}

bash scripts/deps.sh
make -s >/dev/null && make -s install >/dev/null
source scripts/cluster.sh
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "demo failed; cluster left in $CLUSTER_DIR"' ERR
else trap cluster_stop EXIT; fi

echo "== starting a throwaway PostgreSQL 15 with shared_preload_libraries = 'apikey_usage'"
cluster_start demo "fsync = off" "synchronous_commit = off" "apikey_usage.alert_interval = '2s'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

echo "== creating API keys (workspace 'acme')"
declare -A KEY
while IFS='|' read -r name limit window; do
	KEY[$name]=$(cluster_psql -c "SELECT api_key FROM apikey_usage.generate_key('acme', '$name', $limit, '$window')")
done <<'KEYS'
Zapier Integration|200|1 second
PowerAutomate|60|1 second
Make.com Scenario|NULL|1 minute
Internal Dashboard|1000|1 minute
Legacy Webhook|NULL|1 minute
KEYS
# a key made long ago and never used since (backdated for the demo), for the unused-keys list
cluster_psql -c "UPDATE apikey_usage.api_keys SET created_at = now() - interval '45 days' WHERE name = 'Legacy Webhook'"
# a spike alert: the worker evaluates it every 2 s during the traffic below
cluster_psql -c "SELECT apikey_usage.create_alert_rule('acme', 'rate_limited', 50, '1 minute', min_requests => 20)" >/dev/null
cluster_psql -c "SELECT workspace, name, key_prefix, coalesce(rate_limit::text, 'unlimited') AS rate_limit, rate_window FROM apikey_usage.keys ORDER BY created_at" -P format=aligned -P tuples_only=off -q

echo
echo "== ${SECONDS_OF_TRAFFIC}s of traffic, ~600 requests/s from $((CLIENTS + 3)) concurrent clients (check_request, then log_request),"
echo "   including requests with invalid keys, 4xx/5xx responses and rate-limit hits"
W=$CLUSTER_DIR/demo; mkdir -p "$W"
echo "SELECT allowed FROM apikey_usage.check_request(:bad, 'GET', '/v1/documents');" >"$W/invalid.sql"
pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$SECONDS_OF_TRAFFIC" -R 300 -f demo/traffic.sql \
	-D key="${KEY[Zapier Integration]}" >"$W/zap.out" 2>&1 &
P1=$!
pgbench -n -M prepared -c 2 -j 1 -T "$SECONDS_OF_TRAFFIC" -R 100 -f demo/traffic.sql \
	-D key="${KEY[PowerAutomate]}" >"$W/pa.out" 2>&1 &
P2=$!
pgbench -n -M prepared -c 1 -j 1 -T "$SECONDS_OF_TRAFFIC" -R 200 -f demo/traffic.sql@9 -f "$W/invalid.sql"@1 \
	-D key="${KEY[Make.com Scenario]}" -D bad=ak_thisIsNotAValidKey >"$W/make.out" 2>&1 &
P3=$!
wait $P1 $P2 $P3 || true
rm -f "$W"/*.sql
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
for f in zap pa make; do grep -h "number of transactions actually processed" "$W/$f.out" || true; done | \
	awk '{s += $NF} END {print "   " s " gateway calls made"}'

KID=$(cluster_psql -c "SELECT key_id FROM apikey_usage.keys WHERE name = 'Zapier Integration'")
bash scripts/usage_page.sh "$KID"

if [ "${KEEP:-0}" = 1 ]; then
	cat <<MSG

== the cluster keeps running (KEEP=1)
   psql:    psql "host=$PGHOST port=$PGPORT dbname=apikey user=postgres"
   TCP:     host 127.0.0.1 port $PGPORT (Grafana: see dashboards/grafana/README.md; create a
            read-only login first: CREATE ROLE grafana LOGIN PASSWORD '...' IN ROLE apikey_usage_reader;)
   stop:    runuser -u postgres -- $PGBIN/pg_ctl -D $CLUSTER_DATA stop && rm -rf $CLUSTER_DIR
MSG
else
	echo
	echo "== done; the cluster is stopped and removed (run 'KEEP=1 make demo' to keep it running)"
fi
