#!/usr/bin/env bash
# Issue 3: no acknowledged log entry is lost across restarts and worker kills.
#   A. 20,000 entries, then at once `pg_ctl restart -m fast` (no flush()).
#   B. the same with `-m immediate` (a crash: the ring file survives).
#   C. SIGTERM to the worker while pgbench writers run.
#   D. SIGKILL to the worker while psql writers run (the postmaster
#      crash-restarts every backend); every acknowledged request_id must be
#      in request_log_raw once the server is back.
# Each phase logs under its own key; exactly-once is checked too (no
# request_id twice).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
PGBENCH=$(command -v pgbench || echo "$PGBIN/pgbench")
WORK=$(mktemp -d /tmp/aku-rst.XXXXXX)
chmod 755 "$WORK"
WRITER_PIDS=()
cleanup() {
	local p
	for p in "${WRITER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_restart: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 30 "$CLUSTER_LOG" >&2; exit 1; }

worker_pid() { cluster_psql -c "SELECT worker_pid FROM apikey_usage.runtime_stats" 2>/dev/null || true; }

# Wait (bounded) until a worker other than $1 is running.
wait_new_worker() {
	local old=$1 i pid
	for i in $(seq 1 300); do
		pid=$(worker_pid)
		if [ -n "$pid" ] && [ "$pid" != "$old" ]; then echo "$pid"; return 0; fi
		sleep 0.2
	done
	fail "no new background worker within 60 s (old pid $old)"
}

new_key() { cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_restart', '$1')"; }

# rows for a key, and how many request_ids appear more than once
count_rows() {
	cluster_psql -F ' ' -c "SELECT count(*), count(*) - count(DISTINCT request_id)
		FROM apikey_usage.request_log_raw WHERE api_key_id = '$1'"
}

pgbench_writers() { # key clients per_client outfile
	cat >"$WORK/log.sql" <<'SQL'
\set c random(1, 4)
SELECT apikey_usage.log_request(:key::uuid, 'POST', '/v1/restart', (ARRAY[200, 201, 404, 500])[:c]);
SQL
	"$PGBENCH" -n -M prepared -c "$2" -j 2 -t "$3" -D key="$1" -f "$WORK/log.sql" >"$4" 2>&1
}
pgbench_processed() { sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$1"; }

# A psql writer: ROUNDS rounds of BATCH log_request calls, each returned
# request_id appended to $WORK/ids.NAME (only acknowledged calls print an
# id).  A round cut by a crash is not repeated; failed connections retry.
psql_writer() { # name key rounds batch
	local name=$1 key=$2 rounds=$3 batch=$4 ok=0 tries=0
	local out="$WORK/ids.$name" sql="$WORK/batch.$name.sql" i
	: >"$out"
	for ((i = 0; i < batch; i++)); do
		echo "SELECT apikey_usage.log_request('$key', 'GET', '/v1/$name', 200);"
	done >"$sql"
	while [ $ok -lt "$rounds" ] && [ $tries -lt $((rounds + 200)) ]; do
		tries=$((tries + 1))
		if PGAPPNAME=aku_writer psql -X -qAt -v ON_ERROR_STOP=1 -f "$sql" >>"$out" 2>>"$WORK/err.$name"; then
			ok=$((ok + 1))
		else
			sleep 0.2
		fi
	done
}
acked() { cat "$WORK"/ids.* | grep -c . || true; }

# lost = acknowledged ids absent from request_log_raw
lost_of() { # key
	{ echo "CREATE TEMP TABLE ack (request_id uuid);"
	  echo "COPY ack FROM STDIN;"
	  cat "$WORK"/ids.*
	  echo '\.'
	  echo "SELECT count(*) FROM ack a WHERE NOT EXISTS (SELECT FROM apikey_usage.request_log_raw r
			WHERE r.api_key_id = '$1' AND r.request_id = a.request_id);"
	} | cluster_psql -f -
}

# A ring large enough that 20,000 entries stay below its half-full wake-up
# mark, and a 60 s flush interval for phases A and B: every entry is still
# in the ring when the server is restarted.
cluster_start restart "fsync = off" "apikey_usage.log_buffer_entries = 49152" \
	"apikey_usage.flush_interval = '60s'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

# ---- A and B: restart right after logging, without flush() ----
N=20000
for mode in fast immediate; do
	key=$(new_key "restart_$mode")
	pgbench_writers "$key" 2 $((N / 2)) "$WORK/pgbench.$mode" || { cat "$WORK/pgbench.$mode" >&2; fail "pgbench failed"; }
	[ "$(pgbench_processed "$WORK/pgbench.$mode")" = "$N" ] || fail "pgbench did not complete $N calls"
	pending=$(cluster_psql -c "SELECT buffer_used FROM apikey_usage.runtime_stats")
	old=$(worker_pid)
	cluster_restart "$mode"
	wait_new_worker "$old" >/dev/null
	cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
	read -r rows dups <<<"$(count_rows "$key")"
	recovered=$(cluster_psql -c "SELECT recovered_entries FROM apikey_usage.runtime_stats")
	[ "$rows" -eq "$N" ] || fail "restart -m $mode: $rows rows, expected $N (lost $((N - rows)))"
	[ "$dups" -eq 0 ] || fail "restart -m $mode: $dups duplicate request_ids"
	if [ "$mode" = fast ]; then
		# the worker drains the ring at a clean shutdown
		[ "$recovered" -eq 0 ] || fail "restart -m fast: $recovered entries left in the ring at shutdown"
	else
		# nothing drained at an immediate stop: the ring file gave them back
		[ "$recovered" -eq "$pending" ] || fail "restart -m immediate: recovered $recovered, $pending were pending"
	fi
	echo "  restart -m $mode: logged $N, unflushed at restart $pending, present $rows, lost 0," \
		"duplicates 0, recovered from ring file $recovered"
done
sed -i "/^apikey_usage.flush_interval/d" "$CLUSTER_DATA/postgresql.conf"
cluster_psql -c "SELECT pg_reload_conf()" >/dev/null

# ---- C: SIGTERM to the worker during the writes ----
key=$(new_key sigterm)
N=20000
pgbench_writers "$key" 2 $((N / 2)) "$WORK/pgbench.term" &
bench=$!
WRITER_PIDS+=("$bench")
for i in $(seq 1 300); do
	[ "$(cluster_psql -c "SELECT count(*) >= 2000 FROM apikey_usage.request_log_raw WHERE api_key_id = '$key'")" = t ] && break
	sleep 0.1
done
old=$(worker_pid)
kill -0 "$bench" 2>/dev/null && during="while pgbench ran" || during="after pgbench had finished (slow poll)"
kill -TERM "$old"
new=$(wait_new_worker "$old")
wait "$bench" || { cat "$WORK/pgbench.term" >&2; fail "pgbench failed during the SIGTERM phase"; }
[ "$(pgbench_processed "$WORK/pgbench.term")" = "$N" ] || fail "pgbench did not complete $N calls"
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
read -r rows dups <<<"$(count_rows "$key")"
[ "$rows" -eq "$N" ] || fail "SIGTERM: $rows rows, expected $N (lost $((N - rows)))"
[ "$dups" -eq 0 ] || fail "SIGTERM: $dups duplicate request_ids"
fallbacks=$(cluster_psql -c "SELECT sync_fallbacks FROM apikey_usage.runtime_stats")
echo "  SIGTERM worker $old $during (new worker $new): logged $N, present $rows, lost 0, duplicates 0, sync fall-backs $fallbacks"

# ---- D: SIGKILL to the worker during the writes (crash-restart) ----
key=$(new_key sigkill)
rm -f "$WORK"/ids.*
for w in 1 2; do
	psql_writer "w$w" "$key" 8 1500 &
	WRITER_PIDS+=($!)
done
for i in $(seq 1 300); do
	[ "$(acked)" -ge 1000 ] && break
	sleep 0.1
done
old=$(worker_pid)
running=$(cluster_psql -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aku_writer'")
kill -KILL "$old"
new=$(wait_new_worker "$old")
for p in "${WRITER_PIDS[@]:1}"; do wait "$p" || true; done
WRITER_PIDS=()
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
ack=$(acked)
lost=$(lost_of "$key")
read -r rows dups <<<"$(count_rows "$key")"
grep -q "terminated by signal 9" "$CLUSTER_LOG" || fail "the server log shows no crash-restart after SIGKILL"
[ "$ack" -ge 1000 ] || fail "only $ack acknowledged calls"
[ "$lost" -eq 0 ] || fail "SIGKILL: $lost of $ack acknowledged request_ids are missing"
[ "$dups" -eq 0 ] || fail "SIGKILL: $dups duplicate request_ids"
recovered=$(cluster_psql -c "SELECT recovered_entries FROM apikey_usage.runtime_stats")
echo "  SIGKILL worker $old with $running writer sessions connected (new worker $new): acknowledged $ack, present $rows, lost 0," \
	"unacknowledged but present $((rows - ack + lost)), duplicates 0, recovered from ring file $recovered"
echo "log_restart: ok"
