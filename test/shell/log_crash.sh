#!/usr/bin/env bash
# Issue 3: a backend crash.  While psql writers log requests, one ordinary
# backend (a writer's, not the worker) gets SIGKILL: the postmaster kills
# every backend and re-initialises shared memory.  The log ring is a
# file-backed mapping, so no acknowledged entry may be lost:
#   lost = acknowledged request_ids missing from request_log_raw = 0,
# with apikey_usage.log_mode = buffered, again with synchronous_commit = off
# server-wide (the worker must not advance the ring past a flush whose
# commit record could be lost in the crash), then with log_mode =
# synchronous (every acknowledged entry in the table even before flush()).
# The ring (49,152 entries) never fills here, so no synchronous fall-back
# (which commits with the caller's settings) is involved.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-crash.XXXXXX)
chmod 755 "$WORK"
WRITER_PIDS=()
cleanup() {
	local p
	for p in "${WRITER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_crash: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 30 "$CLUSTER_LOG" >&2; exit 1; }

worker_pid() { cluster_psql -c "SELECT worker_pid FROM apikey_usage.runtime_stats" 2>/dev/null || true; }
wait_new_worker() {
	local old=$1 i pid
	for i in $(seq 1 300); do
		pid=$(worker_pid)
		if [ -n "$pid" ] && [ "$pid" != "$old" ]; then echo "$pid"; return 0; fi
		sleep 0.2
	done
	fail "no new background worker within 60 s (old pid $old)"
}

# A psql writer: ROUNDS successful rounds of BATCH log_request calls; each
# returned request_id (an acknowledged call) is appended to ids.NAME.  A
# round cut by the crash is not repeated; failed connections retry.
psql_writer() { # name key rounds batch
	local name=$1 key=$2 rounds=$3 batch=$4 ok=0 tries=0 i
	local out="$WORK/ids.$name" sql="$WORK/batch.$name.sql"
	: >"$out"
	for ((i = 0; i < batch; i++)); do
		echo "SELECT apikey_usage.log_request('$key', 'PUT', '/v1/$name', 200, 'r$i');"
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
lost_of() { # key
	{ echo "CREATE TEMP TABLE ack (request_id uuid);"
	  echo "COPY ack FROM STDIN;"
	  cat "$WORK"/ids.*
	  echo '\.'
	  echo "SELECT count(*) FROM ack a WHERE NOT EXISTS (SELECT FROM apikey_usage.request_log_raw r
			WHERE r.api_key_id = '$1' AND r.request_id = a.request_id);"
	} | cluster_psql -f -
}

# phase MODE SYNCHRONOUS_COMMIT ROUNDS BATCH
phase() {
	local mode=$1 sc=$2 rounds=$3 batch=$4 key w victim old new i ack lost_before lost rows dups crashes
	local label="log_mode=$mode synchronous_commit=$sc"
	cluster_psql -c "ALTER SYSTEM SET apikey_usage.log_mode = '$mode'" \
		-c "ALTER SYSTEM SET synchronous_commit = '$sc'" -c "SELECT pg_reload_conf()" >/dev/null
	key=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_crash', '$label')")
	rm -f "$WORK"/ids.*
	crashes=$(grep -c "was terminated by signal 9" "$CLUSTER_LOG" || true)
	for w in 1 2 3; do
		psql_writer "$mode$sc$w" "$key" "$rounds" "$batch" &
		WRITER_PIDS+=($!)
	done
	for i in $(seq 1 300); do
		[ "$(acked)" -ge 300 ] && break
		sleep 0.1
	done
	old=$(worker_pid)
	# a writer's session may end between the query and the kill (then the
	# kill fails, or lands on a backend already exiting normally, which is
	# no crash): retry until the server log shows the crash-restart (any
	# state: on a loaded machine a writer is often between two calls)
	for i in $(seq 1 400); do
		victim=$(cluster_psql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'aku_writer'
			AND backend_type = 'client backend' ORDER BY state = 'active' DESC, random() LIMIT 1")
		if [ -n "$victim" ] && [ "$victim" != "$old" ] && kill -KILL "$victim" 2>/dev/null; then
			for _ in $(seq 1 50); do
				[ "$(grep -c "was terminated by signal 9" "$CLUSTER_LOG")" -gt "$crashes" ] && break 2
				sleep 0.1
			done
		fi
		victim=""
		sleep 0.05
	done
	[ -n "$victim" ] || fail "$label: no writer backend killed with a crash-restart"
	new=$(wait_new_worker "$old")
	for p in "${WRITER_PIDS[@]}"; do wait "$p" || true; done
	WRITER_PIDS=()
	[ "$(grep -c "was terminated by signal 9" "$CLUSTER_LOG")" -gt "$crashes" ] || \
		fail "$label: the server log shows no crash-restart"
	ack=$(acked)
	[ "$ack" -ge 300 ] || fail "$label: only $ack acknowledged calls"
	[ "$(cluster_psql -c "SHOW apikey_usage.log_mode")" = "$mode" ] || fail "log_mode is not $mode after the crash"
	[ "$(cluster_psql -c "SHOW synchronous_commit")" = "$sc" ] || fail "synchronous_commit is not $sc after the crash"
	lost_before=-
	if [ "$mode" = synchronous ]; then
		lost_before=$(lost_of "$key")
	fi
	cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
	lost=$(lost_of "$key")
	read -r rows dups <<<"$(cluster_psql -F ' ' -c "SELECT count(*), count(*) - count(DISTINCT request_id)
		FROM apikey_usage.request_log_raw WHERE api_key_id = '$key'")"
	recovered=$(cluster_psql -c "SELECT recovered_entries FROM apikey_usage.runtime_stats")
	echo "  $label: killed backend $victim (worker $old -> $new): acknowledged $ack, present $rows," \
		"lost $lost (before flush(): $lost_before), unacknowledged but present $((rows - ack + lost))," \
		"duplicates $dups, recovered from ring file $recovered"
	[ "$lost" -eq 0 ] || fail "$label: $lost of $ack acknowledged request_ids are missing after the crash"
	[ "$lost_before" = - ] || [ "$lost_before" -eq 0 ] || \
		fail "$label: $lost_before acknowledged request_ids were not in the table before flush()"
	[ "$dups" -eq 0 ] || fail "$label: $dups request_ids written twice"
}

cluster_start crash "fsync = off" "apikey_usage.log_buffer_entries = 49152"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

phase buffered on 6 2000
phase buffered off 6 2000
phase synchronous on 4 300
echo "log_crash: ok"
