#!/usr/bin/env bash
# The example gateway (examples/gateway: Node, Express, node-postgres)
# against a real server, directly and through pgbouncer 1.18 in transaction
# mode: concurrent clients over nine kinds of keys (unlimited, tight,
# burst, expiring mid-run, expired, deleted, deleted mid-run, malformed,
# well-formed but unknown, none), logging with log_request directly and
# with batched log_requests through pgbouncer, and every response a client
# saw compared with what the extension counted and logged:
#  - every X-Request-Id a client got is in the log exactly once, with the
#    status, key, method, endpoint and resource the client saw, and nothing
#    else is logged under the keys;
#  - per key and status code, usage_by_response_status equals the clients'
#    counts; usage_summary's total equals the responses with an id;
#  - responses without an id are the 401s of malformed / unknown / missing
#    keys, and the refusals of a 300-byte resource id;
#  - the header contract (Retry-After, RateLimit, RateLimit-Policy,
#    WWW-Authenticate, X-Request-Id) holds on every response;
#  - the gateway lost no log call; fail-closed answers 503 when the
#    database is unreachable, fail-open serves;
#  - control: the same driver with named prepared statements does fail
#    through this pgbouncer (what README's pooling advice prevents).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
APP=$ROOT/examples/gateway
source scripts/cluster.sh

GW_PID=""
BOUNCER_DIR=""
cleanup() {
	[ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
	if [ -n "$BOUNCER_DIR" ]; then
		[ -f "$BOUNCER_DIR/pgbouncer.pid" ] && kill "$(cat "$BOUNCER_DIR/pgbouncer.pid")" 2>/dev/null || true
		rm -rf "$BOUNCER_DIR"
	fi
	cluster_stop
}
trap cleanup EXIT

source scripts/check.sh

(cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

cluster_start gateway "fsync = off" "apikey_usage.flush_interval = 50"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_psql -c "CREATE ROLE gateway_app LOGIN IN ROLE apikey_usage_app"
cluster_wait_worker
DB_HOST=$PGHOST DB_PORT=$PGPORT

# http_get URL [KEY]: "<status> <Retry-After>" of a GET (node: no curl needed)
http_get() {
	KEY=${2:-} node -e "
		const headers = process.env.KEY ? { Authorization: 'Bearer ' + process.env.KEY } : {};
		fetch(process.argv[1], { headers })
			.then((r) => console.log(r.status + ' ' + (r.headers.get('retry-after') || '')))
			.catch(() => console.log('000 '));" "$1"
}

# start_gateway NAME HOST PORT [env...]: the example server, as gateway_app
start_gateway() {
	local name=$1 host=$2 port=$3; shift 3
	GW_PORT=$(free_port)
	env PGHOST="$host" PGPORT="$port" PGUSER=gateway_app PGDATABASE=apikey PORT="$GW_PORT" "$@" \
		node "$APP/server.js" >"$CLUSTER_DIR/gateway-$name.log" 2>&1 &
	GW_PID=$!
	local i
	for i in $(seq 1 100); do
		[ "$(http_get "http://127.0.0.1:$GW_PORT/_gateway/stats")" = "200 " ] && return 0
		sleep 0.1
	done
	echo "gateway $name did not start" >&2; cat "$CLUSTER_DIR/gateway-$name.log" >&2; return 1
}

# stop_gateway: SIGTERM, which drains the gateway's pending log calls
stop_gateway() {
	kill -TERM "$GW_PID"
	wait "$GW_PID" || { echo "gateway exited with $?" >&2; return 1; }
	GW_PID=""
}

# one_pass NAME HOST PORT [env...]: keys, traffic, comparison
one_pass() {
	local name=$1 host=$2 port=$3 ws="gw_$1"
	shift 3
	local keys="$CLUSTER_DIR/keys-$name.json" seen="$CLUSTER_DIR/seen-$name.csv"
	echo "# pass: $name"
	cluster_psql >/dev/null <<SQL
CREATE TABLE public.keys_$name AS
SELECT g.name, k.key_id, k.api_key
  FROM (VALUES ('unlimited', NULL::int, NULL::interval, NULL::timestamptz),
               ('tight', 5, interval '1 minute', NULL),
               ('burst', 30, interval '10 seconds', NULL),
               ('expiring', 1000, interval '1 second', clock_timestamp() + interval '1 hour'),
               ('expired', NULL, interval '1 minute', clock_timestamp() + interval '1 second'),
               ('deleted', NULL, interval '1 minute', NULL),
               ('deleted_mid', NULL, interval '1 minute', NULL)) AS g(name, lim, win, exp),
       LATERAL apikey_usage.generate_key('$ws', g.name, g.lim, coalesce(g.win, interval '1 minute'), g.exp) k;
SELECT apikey_usage.delete_key(key_id) FROM public.keys_$name WHERE name = 'deleted';
SQL
	# a well-formed key that does not exist: generated, then rolled back
	local unknown
	unknown=$(cluster_psql -c "BEGIN" -c "SELECT api_key FROM apikey_usage.generate_key('$ws', 'gone')" -c "ROLLBACK")
	cluster_psql -c "SELECT json_object_agg(name, api_key) || '' FROM (
		SELECT name, api_key FROM public.keys_$name
		UNION ALL VALUES ('malformed', 'ak_' || repeat('Z', 49)), ('unknown', '$unknown'), ('none', NULL)) s" >"$keys"
	sleep 1.1	# "expired" has expired
	local since
	since=$(cluster_psql -c "SELECT now()")

	start_gateway "$name" "$host" "$port" "$@"
	# half the traffic, then "deleted_mid" is deleted and "expiring" expires
	# (moved to now, as the clock would: the superuser writes the table and
	# drops the key from the cache at commit), then the other half
	local pause="$CLUSTER_DIR/pause-$name"
	BASE_URL="http://127.0.0.1:$GW_PORT" KEYS_FILE="$keys" OUT_FILE="$seen" TOTAL=500 CONCURRENCY=6 PACE_MS=0 \
		PAUSE_FILE="$pause" node "$APP/drive.js" &
	local drive=$!
	local i
	for i in $(seq 1 600); do [ -e "$pause.reached" ] && break; sleep 0.05; done
	cluster_psql >/dev/null <<SQL
SELECT apikey_usage.delete_key(key_id) FROM public.keys_$name WHERE name = 'deleted_mid';
BEGIN;
UPDATE apikey_usage.api_keys SET expires_at = clock_timestamp()
 WHERE key_id = (SELECT key_id FROM public.keys_$name WHERE name = 'expiring');
SELECT apikey_usage._invalidate_key(key_hash) FROM apikey_usage.api_keys
 WHERE key_id = (SELECT key_id FROM public.keys_$name WHERE name = 'expiring');
COMMIT;
SQL
	touch "$pause.go"
	local drive_rc=0
	wait "$drive" || drive_rc=$?
	check "$name: every response kept the header contract" test "$drive_rc" -eq 0
	stop_gateway
	# the counters after the drain, as the gateway printed them on exit
	sed -n 's/^gateway: stopped //p' "$CLUSTER_DIR/gateway-$name.log" >"$CLUSTER_DIR/stats-$name.json"
	tail -n 1 "$CLUSTER_DIR/gateway-$name.log"
	check "$name: the gateway lost no log call and always reached the database" \
		node -e "const s = require('$CLUSTER_DIR/stats-$name.json'); process.exit(s.log_lost === 0 && s.db_unavailable === 0 ? 0 : 1)"
	check "$name: log calls as configured ($*)" node -e "
		const s = require('$CLUSTER_DIR/stats-$name.json');
		const batched = '$*'.includes('LOG_BATCH=25');
		process.exit(s.logged === s.served && (batched ? s.batch_calls > 0 && s.batch_calls === s.log_calls
		                                               : s.batch_calls === 0 && s.log_calls === s.served) ? 0 : 1)"
	cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null

	cluster_psql >/dev/null <<SQL
CREATE TABLE public.seen_$name (label text, status int, request_id text, method text, endpoint text, resource text);
COPY public.seen_$name FROM STDIN (FORMAT csv, FORCE_NOT_NULL (request_id, resource));
$(cat "$seen")
\.
SQL
	read -r responses with_id logged matched dups <<<"$(cluster_psql -F ' ' -c "
		WITH log AS (SELECT r.* FROM apikey_usage.requests r JOIN public.keys_$name k ON r.api_key_id = k.key_id)
		SELECT (SELECT count(*) FROM public.seen_$name),
		       (SELECT count(*) FROM public.seen_$name WHERE request_id <> ''),
		       (SELECT count(*) FROM log),
		       (SELECT count(*) FROM public.seen_$name s
		          JOIN public.keys_$name k ON k.name = s.label
		          JOIN log r ON r.request_id = nullif(s.request_id, '')::uuid
		         WHERE r.api_key_id = k.key_id AND r.response_code = s.status AND r.method = s.method
		           AND r.endpoint = s.endpoint AND coalesce(r.resource_id, '') = s.resource),
		       (SELECT count(*) - count(DISTINCT request_id) FROM log)")"
	echo "# $name: $responses responses, $with_id with a request id, $logged log rows, $matched matching, $dups duplicates"
	check "$name: every response with an id is logged once, as the client saw it, and nothing else ($with_id = $logged = $matched)" \
		test "$with_id" -eq "$logged" -a "$logged" -eq "$matched" -a "$dups" -eq 0 -a "$responses" -eq 500
	if [ "$with_id" -ne "$matched" ]; then	# show a few differences
		cluster_psql -c "SELECT '#   seen ' || s::text || ' logged ' || coalesce(r::text, '(nothing)')
			FROM public.seen_$name s LEFT JOIN apikey_usage.requests r ON r.request_id = nullif(s.request_id, '')::uuid
			WHERE s.request_id <> '' AND (r IS NULL OR r.response_code <> s.status OR r.method <> s.method
			      OR r.endpoint <> s.endpoint OR coalesce(r.resource_id, '') <> s.resource
			      OR r.api_key_id IS DISTINCT FROM (SELECT key_id FROM public.keys_$name WHERE name = s.label)) LIMIT 5"
	fi
	check "$name: per key and status code, usage_by_response_status equals the clients' counts" test "$(cluster_psql -c "
		WITH theirs AS (SELECT k.name, u.response_code, u.requests
		                  FROM public.keys_$name k,
		                       LATERAL apikey_usage.usage_by_response_status(k.key_id, since => '$since') u),
		     ours AS (SELECT label AS name, status AS response_code, count(*) AS requests
		                FROM public.seen_$name WHERE request_id <> '' GROUP BY 1, 2)
		SELECT count(*) FROM theirs FULL JOIN ours USING (name, response_code)
		 WHERE theirs.requests IS DISTINCT FROM ours.requests")" -eq 0
	check "$name: usage_summary totals equal the responses with an id" test "$(cluster_psql -c "
		SELECT sum(u.total_requests) FROM public.keys_$name k,
		       LATERAL apikey_usage.usage_summary(k.key_id, since => '$since') u")" -eq "$with_id"
	check "$name: responses without an id are 401s of malformed / unknown / missing keys or refused 300-byte ids" \
		test "$(cluster_psql -c "
		SELECT count(*) FROM public.seen_$name WHERE request_id = ''
		   AND NOT (status = 401 AND label IN ('malformed', 'unknown', 'none'))
		   AND NOT (status IN (400, 401) AND length(resource) = 300)")" -eq 0
	# the run must have produced every kind of answer, or it proves little
	local kinds
	kinds=$(cluster_psql -c "
		SELECT count(*) FILTER (WHERE label = 'tight' AND status = 429) > 0
		   AND count(*) FILTER (WHERE label = 'deleted' AND status = 401 AND request_id <> '') > 0
		   AND count(*) FILTER (WHERE label = 'deleted_mid' AND status = 401 AND request_id <> '') > 0
		   AND count(*) FILTER (WHERE label = 'deleted_mid' AND status < 400) > 0
		   AND count(*) FILTER (WHERE label = 'expired' AND status = 401 AND request_id <> '') > 0
		   AND count(*) FILTER (WHERE label = 'expiring' AND status = 401 AND request_id <> '') > 0
		   AND count(*) FILTER (WHERE label = 'expiring' AND status < 400) > 0
		   AND count(*) FILTER (WHERE label IN ('malformed', 'unknown', 'none') AND status = 401) > 0
		   AND count(*) FILTER (WHERE status = 400) > 0
		   AND count(*) FILTER (WHERE status = 200) > 0 AND count(*) FILTER (WHERE status = 201) > 0
		   AND count(*) FILTER (WHERE status = 204) > 0 AND count(*) FILTER (WHERE status = 404) > 0
		   AND count(*) FILTER (WHERE status = 500) > 0
		FROM public.seen_$name")
	check "$name: the run saw every kind of answer (429, revoked, expired, before/after mid-run changes, 400, 401, 2xx, 404, 500)" \
		test "$kinds" = t
	cluster_psql -c "SELECT '# $name: ' || string_agg(label || ' ' || status || ' x' || n, ', ' ORDER BY label, status)
		FROM (SELECT label, status, count(*) n FROM public.seen_$name GROUP BY 1, 2) s"
}

# 1. directly, one log_request per served request
one_pass direct "$DB_HOST" "$DB_PORT" LOG_BATCH=0

# 2. through pgbouncer 1.18, transaction mode, fewer server connections
#    than the gateway's pool (statements of different clients interleave
#    on one server connection)
BOUNCER_DIR=$(mktemp -d /tmp/aku.bouncer.XXXXXX)
chown postgres:postgres "$BOUNCER_DIR"
BOUNCER_PORT=$(free_port)
cat >"$BOUNCER_DIR/pgbouncer.ini" <<INI
[databases]
apikey = host=$DB_HOST port=$DB_PORT dbname=apikey

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir = $BOUNCER_DIR
auth_type = trust
auth_file = $BOUNCER_DIR/users.txt
pool_mode = transaction
default_pool_size = 3
max_client_conn = 100
logfile = $BOUNCER_DIR/pgbouncer.log
pidfile = $BOUNCER_DIR/pgbouncer.pid
INI
echo '"gateway_app" ""' >"$BOUNCER_DIR/users.txt"
chown postgres:postgres "$BOUNCER_DIR"/*
(cd / && runuser -u postgres -- pgbouncer -d "$BOUNCER_DIR/pgbouncer.ini")
for i in $(seq 1 50); do
	psql -X -qAt -h 127.0.0.1 -p "$BOUNCER_PORT" -U gateway_app -d apikey -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.1
done
check "pgbouncer $(pgbouncer --version | head -n 1 | awk '{print $2}') in transaction mode answers" \
	test "$(psql -X -qAt -h 127.0.0.1 -p "$BOUNCER_PORT" -U gateway_app -d apikey -c "SELECT 1")" = 1
# (and logging batched: one log_requests call per 25 served requests)
one_pass pgbouncer 127.0.0.1 "$BOUNCER_PORT" LOG_BATCH=25
check "pgbouncer: the gateway's clients shared at most 3 server connections" \
	test "$(cluster_psql -c "SELECT count(*) FROM pg_stat_activity WHERE usename = 'gateway_app'")" -le 3
# Control: what README warns about.  The same driver with *named* prepared
# statements (a query config with a name) through the same pgbouncer: 8
# clients, 3 server connections that keep what was prepared on them, so at
# least 5 of the first 8 calls prepare a name that already exists there.
named_errors=$(PGHOST=127.0.0.1 PGPORT=$BOUNCER_PORT PGUSER=gateway_app PGDATABASE=apikey node -e "
	const { Client } = require('$APP/node_modules/pg');
	(async () => {
		const clients = [];
		for (let i = 0; i < 8; i++) { const c = new Client(); await c.connect(); clients.push(c); }
		let errors = 0;
		await Promise.all(clients.map(async (c) => {
			for (let j = 0; j < 5; j++) {
				try {
					await c.query({ name: 'verify', text: 'SELECT reason FROM apikey_usage.verify_key(\$1)', values: ['ak_x'] });
				} catch (err) { errors++; }
			}
		}));
		for (const c of clients) await c.end();
		console.log(errors);
	})();")
check "control: named prepared statements through pgbouncer 1.18 in transaction mode fail ($named_errors of 40 calls)" \
	test "$named_errors" -ge 5

# 3. the database unreachable: fail-closed answers 503, fail-open serves
dead_port=$(free_port)
key=$(cluster_psql -c "SELECT api_key FROM public.keys_direct WHERE name = 'unlimited'")
start_gateway closed 127.0.0.1 "$dead_port" FAIL_MODE=closed
code=$(http_get "http://127.0.0.1:$GW_PORT/v1/documents/doc_1" "$key")
stop_gateway
check "database unreachable, fail-closed: 503 with Retry-After ($code)" test "$code" = "503 1"
start_gateway open 127.0.0.1 "$dead_port" FAIL_MODE=open
code=$(http_get "http://127.0.0.1:$GW_PORT/v1/documents/doc_1" "$key")
stop_gateway
check "database unreachable, fail-open: served ($code)" test "$code" = "200 "

check "no API key in the server log" test "$(grep -c -E 'ak_[0-9A-Za-z]{20,}' "$CLUSTER_LOG" || true)" -eq 0
exit $fail
