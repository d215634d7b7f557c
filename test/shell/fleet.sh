#!/usr/bin/env bash
# Scale-out (issue 15): three apikey_usage nodes (node_id 0, 1, 2) and a
# PL/Proxy coordinator (extension apikey_usage_fleet), real servers, fsync
# off.  Shows:
#  - routing: every key, log row and limit on its workspace's node, none
#    elsewhere; keys and key ids name their node;
#  - fleet-wide analytics through the coordinator equal to plain counts over
#    the union of the nodes' raw logs; request_log pages merge exactly;
#  - a node down fails only its workspaces' calls, fleet-wide calls fail
#    naming it; statement_timeout stops a call to a silent node; a node
#    that comes back is used again (at most one failed call per backend).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
source scripts/fleet.sh
WORK=$(mktemp -d /tmp/aku-fleet.XXXXXX)
SESSION_PID=""
cleanup() {
	[ -n "$SESSION_PID" ] && { exec 7>&- || true; kill "$SESSION_PID" 2>/dev/null || true; }
	fleet_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

fleet_start 3 "fsync = off" "apikey_usage.flush_interval = 50"

# ---- 1. keys by workspace, through the coordinator -------------------------
coord_psql <<'SQL'
CREATE TABLE t_keys AS
SELECT w.workspace, apikey_usage.workspace_node(w.workspace) AS placed, k.*,
	   (w.i % 2 = 0) AS limited
  FROM (SELECT i, 'tenant-' || i AS workspace FROM generate_series(1, 9) i) w,
	   LATERAL apikey_usage.generate_key(w.workspace, 'key of ' || w.workspace,
										 CASE WHEN w.i % 2 = 0 THEN 3 END) k;
INSERT INTO t_keys
SELECT w.workspace, w.placed, k.*, false
  FROM (SELECT DISTINCT workspace, placed FROM t_keys) w,
	   LATERAL apikey_usage.generate_key(w.workspace, 'second key') k;
SQL
out=$(coord_psql -c "SELECT count(DISTINCT placed), count(*),
	count(*) FILTER (WHERE apikey_usage.node_of(api_key) = placed AND apikey_usage.node_of(key_id) = placed),
	(SELECT count(*) FROM apikey_usage.workspace_nodes)
	FROM t_keys")
[ "$out" = "3|18|18|9" ] || fail "placement: got '$out' (nodes used | keys | keys naming their node | workspaces recorded)"
echo "ok: 18 keys of 9 workspaces on all 3 nodes; every key and key id names its workspace's node"

for i in 0 1 2; do
	want=$(coord_psql -c "SELECT count(*) || '|' || string_agg(DISTINCT workspace, ',' ORDER BY workspace) FROM t_keys WHERE placed = $i")
	got=$(node_psql $i -c "SELECT count(*) || '|' || string_agg(DISTINCT workspace, ',' ORDER BY workspace) FROM apikey_usage.keys
		WHERE apikey_usage.node_of(key_id) = $i")
	all=$(node_psql $i -c "SELECT count(*) FROM apikey_usage.keys")
	[ "$got" = "$want" ] && [ "${got%%|*}" = "$all" ] || fail "node $i holds '$got' ($all keys), want '$want'"
	[ "$(node_psql $i -c "SHOW apikey_usage.node_id")" = "$i" ] || fail "node $i: node_id"
done
echo "ok: each node holds exactly its workspaces' keys, none of the others"

# ---- 2. traffic through the coordinator ------------------------------------
coord_psql <<'SQL'
CREATE TABLE t_calls (key_id uuid, placed integer, n integer, allowed boolean, code integer);
DO $$
DECLARE
	k record;
	c record;
	n integer;
BEGIN
	FOR k IN SELECT * FROM t_keys ORDER BY key_id LOOP
		FOR n IN 1 .. 4 LOOP
			SELECT * INTO c FROM apikey_usage.check_request(k.api_key,
				(ARRAY['GET', 'POST'])[1 + n % 2], '/v1/' || k.workspace || '/' || (n % 3));
			INSERT INTO t_calls VALUES (k.key_id, k.placed, n, c.allowed, c.response_code);
			IF c.allowed THEN
				PERFORM apikey_usage.log_request(k.key_id, (ARRAY['GET', 'POST'])[1 + n % 2],
					'/v1/' || k.workspace || '/' || (n % 3), (ARRAY[200, 404, 503, 201])[n],
					request_id => c.request_id);
			END IF;
		END LOOP;
	END LOOP;
END
$$;
SELECT apikey_usage.flush() \g /dev/null
SQL
out=$(coord_psql -c "SELECT count(*) FILTER (WHERE NOT allowed AND code = 429),
	bool_and(allowed) FILTER (WHERE NOT limited), bool_and(allowed = (n <= 3)) FILTER (WHERE limited)
	FROM t_calls JOIN t_keys USING (key_id)")
[ "$out" = "4|t|t" ] || fail "limits through the coordinator: got '$out'"
echo "ok: limits exact through the coordinator (4 limited keys: 3 allowed, the 4th 429)"

for i in 0 1 2; do
	want=$(coord_psql -c "SELECT count(*) FROM t_calls WHERE placed = $i")
	got=$(node_psql $i -c "SELECT count(*) || '|' || count(*) FILTER (WHERE apikey_usage.node_of(api_key_id) = $i) FROM apikey_usage.requests")
	[ "$got" = "$want|$want" ] || fail "node $i log: got '$got', want $want rows, all its own"
done
echo "ok: every log row on its key's node, none elsewhere"

# a limited key is known (and limited) on its node only
read -r LKEY LNODE < <(coord_psql -F ' ' -c "SELECT api_key, placed FROM t_keys WHERE limited ORDER BY key_id LIMIT 1")
other=$(( (LNODE + 1) % 3 ))
got=$(node_psql "$LNODE" -c "SELECT allowed, response_code FROM apikey_usage.check_request('$LKEY', 'GET', '/x')")
[ "$got" = "f|429" ] || fail "limited key on its node: '$got'"
got=$(node_psql "$other" -c "SELECT allowed, response_code, key_id IS NULL FROM apikey_usage.check_request('$LKEY', 'GET', '/x')")
[ "$got" = "f|401|t" ] || fail "limited key on node $other: '$got'"
echo "ok: the limit state lives on the key's node; another node does not know the key (401)"

# ---- 3. fleet-wide answers = plain counts over the union of the raw logs ----
coord_psql -c "CREATE TABLE raw (request_id uuid, requested_at timestamptz, api_key_id uuid, method text, endpoint text, status text, response_code integer)"
for i in 0 1 2; do
	node_psql "$i" -c "COPY (SELECT request_id, requested_at, api_key_id, method, endpoint, status, response_code FROM apikey_usage.requests) TO STDOUT" |
		coord_psql -c "COPY raw FROM STDIN"
done
out=$(coord_psql <<'SQL'
SELECT (SELECT count(*) FROM raw) = (SELECT count(*) + 1 FROM t_calls), -- + the 429 asked on the node itself
	(SELECT row(s.*)::text FROM apikey_usage.usage_summary(NULL) s) =
	(SELECT row(count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
				count(*) FILTER (WHERE status = 'rate_limited'))::text FROM raw),
	(SELECT string_agg(m.method || '=' || m.requests, ',') FROM apikey_usage.usage_by_method(NULL) m) =
	(SELECT string_agg(method || '=' || n, ',' ORDER BY n DESC, method) FROM (SELECT method, count(*) n FROM raw GROUP BY 1) x),
	(SELECT string_agg(c.response_code || '=' || c.requests, ',') FROM apikey_usage.usage_by_response_status(NULL) c) =
	(SELECT string_agg(response_code || '=' || n, ',' ORDER BY n DESC, response_code) FROM (SELECT response_code, count(*) n FROM raw GROUP BY 1) x),
	(SELECT string_agg(e.endpoint || '=' || e.requests, ',') FROM apikey_usage.top_endpoints(NULL, max_rows => 5) e) =
	(SELECT string_agg(endpoint || '=' || n, ',' ORDER BY n DESC, endpoint) FROM
		(SELECT endpoint, count(*) n FROM raw GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5) x),
	(SELECT sum(t.total_requests) FROM apikey_usage.usage_timeseries(NULL, now() - interval '2 hours', now() + interval '1 minute', '1 minute') t) =
	(SELECT count(*) FROM raw),
	(SELECT count(*) FROM apikey_usage.keys) = (SELECT count(*) FROM t_keys),
	apikey_usage.request_count(status => 'failed') = (SELECT count(*) FROM raw WHERE status = 'failed')
	AND (SELECT sum(t.total_requests) FROM apikey_usage.usage_timeseries(NULL, now() - interval '2 days', now() + interval '1 minute', '1 day', 'Europe/Paris') t)
		= (SELECT count(*) FROM raw),
	(SELECT row(s.*)::text FROM apikey_usage.usage_summary((SELECT key_id FROM t_keys ORDER BY key_id LIMIT 1)) s) =
	(SELECT row(count(*), count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed'),
				count(*) FILTER (WHERE status = 'rate_limited'))::text FROM raw WHERE api_key_id = (SELECT key_id FROM t_keys ORDER BY key_id LIMIT 1));
SQL
)
[ "$out" = "t|t|t|t|t|t|t|t|t" ] || fail "fleet-wide analytics vs raw counts: '$out'"
echo "ok: fleet-wide summary, by method, by status, top endpoints, timeseries (UTC and Europe/Paris days), request_count and keys equal plain counts over all nodes"

out=$(coord_psql <<'SQL'
CREATE TEMP TABLE pages (page integer, pos integer, request_id uuid);
DO $$
DECLARE
	page	integer := 0;
	last_at	timestamptz;
	last_id	uuid;
	r		record;
	pos		integer;
BEGIN
	LOOP
		pos := 0;
		FOR r IN SELECT * FROM apikey_usage.request_log(max_rows => 7,
				before_requested_at => last_at, before_request_id => last_id) LOOP
			pos := pos + 1;
			INSERT INTO pages VALUES (page, pos, r.request_id);
			last_at := r.requested_at;
			last_id := r.request_id;
		END LOOP;
		EXIT WHEN pos < 7;
		page := page + 1;
	END LOOP;
END
$$;
SELECT (SELECT string_agg(request_id::text, ',' ORDER BY page, pos) FROM pages) =
	   (SELECT string_agg(request_id::text, ',' ORDER BY requested_at DESC, request_id DESC) FROM raw),
	   (SELECT count(DISTINCT page) > 3 FROM pages);
SQL
)
[ "$out" = "t|t" ] || fail "fleet-wide request_log pages: '$out'"
echo "ok: fleet-wide request_log, newest first, walked by its keyset cursor 7 rows at a time, equals the union of the logs"

# ---- 3b. the rest of the API through the coordinator ------------------------
out=$(coord_psql <<'SQL'
CREATE TEMP TABLE rolled AS
SELECT k.key_id, k.placed, apikey_usage.roll_key(k.key_id, interval '1 hour') AS new_key
  FROM (SELECT * FROM t_keys WHERE placed = 2 AND NOT limited ORDER BY key_id LIMIT 1) k;
SELECT apikey_usage.node_of(new_key) = placed,
	   (SELECT valid FROM apikey_usage.verify_key(new_key)),
	   (SELECT reason FROM apikey_usage.check_request('ak_x', 'GET', '/x')) IS NOT NULL,
	   apikey_usage.log_requests(ARRAY(SELECT key_id FROM t_keys ORDER BY key_id),
			array_fill('PUT'::text, ARRAY[18]), array_fill('/batch'::text, ARRAY[18]),
			array_fill(204, ARRAY[18])) = 18,
	   (SELECT count(*) FROM apikey_usage.unused_keys(interval '1 day')) = 0,
	   (SELECT previous_key_expires_at IS NOT NULL FROM apikey_usage.keys k WHERE k.key_id = rolled.key_id)
  FROM rolled;
SQL
)
[ "$out" = "t|t|t|t|t|t" ] || fail "roll_key / check_request reason / log_requests / unused_keys / keys through the coordinator: '$out'"
coord_psql -c "SELECT apikey_usage.flush()" >/dev/null
for i in 0 1 2; do
	want=$(coord_psql -c "SELECT count(*) FROM t_keys WHERE placed = $i")
	got=$(node_psql $i -c "SELECT count(*) FILTER (WHERE apikey_usage.node_of(api_key_id) = $i) || '|' || count(*) FROM apikey_usage.requests WHERE endpoint = '/batch'")
	[ "$got" = "$want|$want" ] || fail "log_requests split: node $i has '$got', want $want of its own"
done
rule=$(coord_psql -c "SELECT apikey_usage.create_alert_rule((SELECT workspace FROM t_keys WHERE placed = 1 LIMIT 1), 'failed', 100)")
got=$(coord_psql -c "SELECT node FROM apikey_usage.alert_rules WHERE rule_id = $rule")
[ "$got" = "1" ] || fail "alert rule on node 1: alert_rules says '$got'"
[ "$(coord_psql -c "SELECT apikey_usage.drop_alert_rule($rule, 1)")" = "t" ] || fail "drop_alert_rule on node 1"
echo "ok: roll_key keeps the node; log_requests split per node; unused_keys, keys, alert rules across nodes"

# ---- 3c. the caller's role reaches the nodes --------------------------------
for i in 0 1 2; do node_psql $i -c "CREATE ROLE fleet_app LOGIN IN ROLE apikey_usage_app"; done
# (the coordinator lets it through to the node, which refuses: the node decides)
coord_psql -c "CREATE ROLE fleet_app LOGIN IN ROLE apikey_usage_app" -c "GRANT SELECT ON t_keys TO fleet_app" \
	-c "GRANT EXECUTE ON FUNCTION apikey_usage._generate_key_on(integer, text, text, integer, interval, timestamptz, text) TO fleet_app"
got=$(psql -X -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U fleet_app -d fleet \
	-c "SELECT count(*) FILTER (WHERE (apikey_usage.check_request(api_key, 'GET', '/role')).key_id = key_id) FROM t_keys WHERE NOT limited" 2>&1)
[ "$got" = "14" ] || fail "fleet_app through the coordinator: '$got'"
err=$(psql -X -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U fleet_app -d fleet \
	-c "SELECT * FROM apikey_usage._generate_key_on(0, 'w', 'n', NULL, '1 minute', NULL, 'ak')" 2>&1) && fail "app role generated a key"
[[ "$err" == *"REMOTE ERROR: permission denied"* ]] || fail "app role generate_key on node 0: $err"
err=$(psql -X -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U fleet_app -d fleet \
	-c "SELECT count(*) FROM apikey_usage.request_log()" 2>&1) && fail "app role read the log"
[[ "$err" == *"permission denied"* ]] || fail "app role request_log: $err"
echo "ok: the coordinator calls the nodes as the calling role (an app login checks requests on every node; node 0 refuses it generate_key)"

# ---- 3d. placement override; top_endpoints beyond 10000 endpoints a node ----
out=$(coord_psql <<'SQL'
SELECT apikey_usage.set_workspace_node('moved-here', 1);
SELECT apikey_usage.node_of(key_id) FROM apikey_usage.generate_key('moved-here', 'placed by hand');
SQL
)
[ "$out" = $'\n1' ] || [ "$out" = "1" ] || fail "set_workspace_node: '$out'"
err=$(coord_psql -c "SELECT apikey_usage.set_workspace_node('x', 3)" 2>&1) && fail "node 3 accepted"
[[ "$err" == *"node 3 is not in the fleet"* ]] || fail "set_workspace_node(3): $err"
# node 0 gets 10001 endpoints once each and 50 requests to /hot: the top one is still certain,
# the top 100 are not (54000 rather than a guess)
K0ID=$(coord_psql -c "SELECT key_id FROM t_keys WHERE placed = 0 LIMIT 1")
node_psql 0 -c "CREATE TABLE wide AS SELECT now() - interval '1 minute' AS requested_at, '$K0ID'::uuid AS api_key_id,
	'GET'::text AS method, '/wide/' || g AS endpoint, 200 AS response_code FROM generate_series(1, 10001) g
	UNION ALL SELECT now() - interval '1 minute', '$K0ID', 'GET', '/hot', 200 FROM generate_series(1, 50)" \
	-c "SELECT apikey_usage.import_requests('wide')" >/dev/null
got=$(coord_psql -c "SELECT endpoint || '=' || requests FROM apikey_usage.top_endpoints(NULL, max_rows => 1)")
[ "$got" = "/hot=50" ] || fail "top_endpoints over a node with 10002 endpoints, top 1: '$got'"
err=$(coord_psql -v VERBOSITY=verbose -c "SELECT * FROM apikey_usage.top_endpoints(NULL, max_rows => 100)" 2>&1) && fail "an undecidable top 100 was answered"
[[ "$err" == *"54000"* ]] || fail "undecidable top_endpoints: $err"
echo "ok: set_workspace_node places a workspace; fleet-wide top_endpoints stays exact past 10000 endpoints a node, or says 54000"

# ---- 3e. a revoke reaches every node; the placement table is for admins --
for i in 0 1 2; do node_psql $i -c "CREATE ROLE fleet_tenant LOGIN"; done
coord_psql -c "CREATE ROLE fleet_tenant LOGIN" -c "CREATE ROLE fleet_reader LOGIN IN ROLE apikey_usage_reader" >/dev/null
coord_psql >/dev/null <<'SQL'
SELECT apikey_usage.set_workspace_node('moving', 1);
SELECT apikey_usage.grant_workspace('fleet_tenant', 'moving', 'admin');
SELECT apikey_usage.set_workspace_node('moving', 2);
SQL
[ "$(node_psql 1 -c "SELECT count(*) FROM apikey_usage.workspace_grants WHERE workspace = 'moving'")" = 1 ] ||
	fail "the grant did not reach node 1 (is the test testing it?)"
coord_psql -c "SELECT apikey_usage.revoke_workspace('fleet_tenant', 'moving')" >/dev/null
for i in 0 1 2; do
	[ "$(node_psql $i -c "SELECT count(*) FROM apikey_usage.workspace_grants WHERE workspace = 'moving'")" = 0 ] ||
		fail "a grant of the moved workspace is left on node $i after revoke_workspace"
done
err=$(psql -X -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U fleet_reader -d fleet \
	-c "SELECT count(*) FROM apikey_usage.workspace_nodes" 2>&1) && fail "a reader listed every workspace's node"
[[ "$err" == *"permission denied"* ]] || fail "reader on workspace_nodes: $err"
got=$(psql -X -qAt -h "$COORD_DIR" -p "$COORD_PORT" -U fleet_reader -d fleet -c "SELECT apikey_usage.workspace_node('moving')")
[ "$got" = 2 ] || fail "workspace_node('moving') for a reader: '$got'"
echo "ok: revoke_workspace reaches every node (a moved workspace keeps no grant behind); only admins list the placements"

# ---- 4. failures ----------------------------------------------------------
# a coordinator session kept open across the failures (one PL/Proxy backend)
mkfifo "$WORK/in"
stdbuf -o0 -e0 psql -X -qAt -v ON_ERROR_STOP=0 -h "$COORD_DIR" -p "$COORD_PORT" -U postgres -d fleet <"$WORK/in" >"$WORK/out" 2>&1 &
SESSION_PID=$!
exec 7>"$WORK/in"
session() { # SQL -> prints what the session printed for it
	# (called in $(...): the sequence number comes from the marks so far)
	local SEQ; SEQ=$(( $(grep -c '^@@' "$WORK/out" || true) + 1 ))
	local start; start=$(wc -l <"$WORK/out")
	printf '%s\n\\echo @@%s\n' "$1" "$SEQ" >&7
	local t
	for t in $(seq 1 300); do
		grep -q "^@@$SEQ\$" "$WORK/out" && break
		sleep 0.1
	done
	# PL/Proxy's NOTICE "dropping stale conn" and WARNING "detected unstable
	# connection" come with an answer; they are not one
	tail -n +"$((start + 1))" "$WORK/out" | grep -v -e "^@@$SEQ\$" -e "^NOTICE:" -e "^WARNING:" || true
}
read -r K0 < <(coord_psql -c "SELECT api_key FROM t_keys WHERE placed = 0 AND NOT limited LIMIT 1")
read -r K1 < <(coord_psql -c "SELECT api_key FROM t_keys WHERE placed = 1 AND NOT limited LIMIT 1")
read -r K2 < <(coord_psql -c "SELECT api_key FROM t_keys WHERE placed = 2 AND NOT limited LIMIT 1")
read -r W0 < <(coord_psql -c "SELECT workspace FROM t_keys WHERE placed = 0 LIMIT 1")
read -r W2 < <(coord_psql -c "SELECT workspace FROM t_keys WHERE placed = 2 LIMIT 1")
[ "$(session "SELECT allowed FROM apikey_usage.check_request('$K2', 'GET', '/s');")" = "t" ] || fail "session before the stop"

node_pgctl 2 stop -m fast
[ "$(coord_psql -c "SELECT allowed FROM apikey_usage.check_request('$K0', 'GET', '/x')")" = "t" ] || fail "node 0 key with node 2 down"
[ "$(coord_psql -c "SELECT count(*) FROM apikey_usage.generate_key('$W0', 'while node 2 is down')")" = "1" ] || fail "generate_key on node 0 with node 2 down"
got=$(session "SELECT allowed FROM apikey_usage.check_request('$K1', 'GET', '/s');"); [ "$got" = "t" ] || { cat "$WORK/out" >&2; fail "session: node 1 key with node 2 down: $got"; }
err=$(coord_psql -c "SELECT * FROM apikey_usage.check_request('$K2', 'GET', '/x')" 2>&1) && fail "node 2 key answered while node 2 is down"
[[ "$err" == *"${NODE_PORT[2]}"* ]] || fail "node 2 key: error does not name node 2's address: $err"
err=$(coord_psql -c "SELECT * FROM apikey_usage.generate_key('$W2', 'x')" 2>&1) && fail "generate_key for node 2's workspace answered"
err=$(coord_psql -v VERBOSITY=verbose -c "SELECT * FROM apikey_usage.usage_summary(NULL)" 2>&1) && fail "fleet-wide call answered with node 2 down"
[[ "$err" == *"08006"*"node 2 is unavailable"* ]] || fail "fleet-wide error does not name node 2: $err"
err=$(coord_psql -c "SELECT count(*) FROM apikey_usage.request_log()" 2>&1) && fail "fleet-wide request_log answered with node 2 down"
[[ "$err" == *"node 2 is unavailable"* ]] || fail "fleet-wide request_log error: $err"
err=$(coord_psql -c "SELECT count(*) FROM apikey_usage.keys" 2>&1) && fail "fleet-wide keys answered with node 2 down"
[[ "$err" == *"node 2 is unavailable"* ]] || fail "fleet-wide keys error: $err"
echo "ok: node 2 down: nodes 0 and 1 keep serving (request path, key management); node 2's calls fail naming its address; fleet-wide calls fail naming node 2 (08006)"

node_pgctl 2 start
fails=0
for attempt in 1 2 3; do
	got=$(session "SELECT allowed FROM apikey_usage.check_request('$K2', 'GET', '/s');")
	if [ "$got" = "t" ]; then break; fi
	echo "# after the restart, attempt $attempt: $got"
	fails=$((fails + 1))
done
[ "$got" = "t" ] && [ "$fails" -le 1 ] || fail "node 2 back: session got '$got' after $fails failures"
[ "$(coord_psql -c "SELECT total_requests > 0 FROM apikey_usage.usage_summary(NULL)")" = "t" ] || fail "fleet-wide after node 2 came back"
echo "ok: node 2 back: used again without restarting anything ($fails failed call in the open backend, none in new ones)"

# a silent node (stopped, not dead): statement_timeout on the coordinator ends the call
pm=$(head -n 1 "${NODE_DIR[1]}/data/postmaster.pid")
stopped="$pm $(pgrep -P "$pm" | tr '\n' ' ')"
kill -STOP $stopped
set +e
err=$(coord_psql -v VERBOSITY=verbose -c "SET statement_timeout = '1s'" -c "SELECT * FROM apikey_usage.check_request('$K1', 'GET', '/x')" 2>&1)
rc=$?
ok0=$(coord_psql -c "SELECT allowed FROM apikey_usage.check_request('$K0', 'GET', '/x')" 2>&1)
set -e
kill -CONT $stopped
[ $rc -ne 0 ] && [[ "$err" == *"57014"* ]] || fail "silent node 1: expected a statement timeout, got rc=$rc: $err"
[ "$ok0" = "t" ] || fail "node 0 while node 1 is silent: $ok0"
[ "$(coord_psql -c "SELECT allowed FROM apikey_usage.check_request('$K1', 'GET', '/x')")" = "t" ] || fail "node 1 after SIGCONT"
echo "ok: a silent node: statement_timeout ends the call (57014); other nodes unaffected; it serves again when it resumes"
