#!/usr/bin/env bash
# Issue 3: back-pressure.  A tiny ring (64 entries, flush_interval 1 s) and
# writers faster than the worker: no entry is dropped; when the ring stays
# full the caller writes the entry to a spool file (runtime_stats.sync_fallbacks).
#   1. 4 pgbench clients x 5,000 calls against the tiny ring.
#   2. the same while the worker is held up (a session holds an ACCESS
#      EXCLUSIVE lock on apikey_usage.flush_state, which the worker's flush
#      transaction needs) until fall-backs have happened, then released.
# After each: flush(), exactly the logged number of rows, no duplicate,
# rollups equal to the raw rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
PGBENCH=$(command -v pgbench || echo "$PGBIN/pgbench")
WORK=$(mktemp -d /tmp/aku-bp.XXXXXX)
BG_PIDS=()
cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_backpressure: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 20 "$CLUSTER_LOG" >&2; exit 1; }

CLIENTS=4 PER_CLIENT=5000
N=$((CLIENTS * PER_CLIENT))

cluster_start backpr "fsync = off" "apikey_usage.log_buffer_entries = 64" "apikey_usage.flush_interval = 1000"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
[ "$(cluster_psql -c "SELECT buffer_capacity FROM apikey_usage.runtime_stats")" -eq 64 ] || fail "ring is not 64 entries"

cat >"$WORK/log.sql" <<'SQL'
\set m random(1, 3)
\set c random(1, 4)
SELECT apikey_usage.log_request(:key::uuid, (ARRAY['GET', 'POST', 'DELETE'])[:m], '/v1/bp',
	(ARRAY[200, 201, 429, 500])[:c]);
SQL
stat() { cluster_psql -c "SELECT $1 FROM apikey_usage.runtime_stats"; }
run_writers() { # key outfile
	"$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -t "$PER_CLIENT" -D key="$1" -f "$WORK/log.sql" >"$2" 2>&1
}
check_key() { # label key
	local rows dups processed
	cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
	read -r rows dups <<<"$(cluster_psql -F ' ' -c "SELECT count(*), count(*) - count(DISTINCT request_id)
		FROM apikey_usage.request_log_raw WHERE api_key_id = '$2'")"
	[ "$rows" -eq "$N" ] || fail "$1: $rows rows, expected $N (lost $((N - rows)))"
	[ "$dups" -eq 0 ] || fail "$1: $dups duplicate request_ids"
	echo "$rows"
}
check_rollups() {
	local diff
	diff=$(cluster_psql -c "
		WITH raw AS (
			SELECT api_key_id, date_trunc('hour', requested_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket_start,
				   method, endpoint, response_code, count(*) AS requests
			  FROM apikey_usage.request_log_raw GROUP BY 1, 2, 3, 4, 5
		), roll AS (
			SELECT api_key_id, bucket_start, method, endpoint, response_code, requests FROM apikey_usage.usage_hourly
		)
		SELECT (SELECT count(*) FROM (TABLE raw EXCEPT TABLE roll) a) + (SELECT count(*) FROM (TABLE roll EXCEPT TABLE raw) b)")
	[ "$diff" -eq 0 ] || fail "usage_hourly differs from the raw log in $diff groups"
}

# ---- 1: writers faster than the worker ----
key1=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_backpressure', 'free')")
run_writers "$key1" "$WORK/pgbench.1" || { cat "$WORK/pgbench.1" >&2; fail "pgbench failed (phase 1)"; }
rows1=$(check_key "free-running worker" "$key1")
fb1=$(stat sync_fallbacks)
echo "  1. free-running worker: $N calls, $rows1 rows, lost 0, spooled fall-backs $fb1"

# ---- 2: the worker held up by a lock on flush_state ----
key2=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_backpressure', 'held')")
PGAPPNAME=aku_locker cluster_psql -c "BEGIN" -c "LOCK apikey_usage.flush_state IN ACCESS EXCLUSIVE MODE" \
	-c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
BG_PIDS+=($!)
for i in $(seq 1 100); do
	[ "$(cluster_psql -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE a.application_name = 'aku_locker' AND l.relation = 'apikey_usage.flush_state'::regclass
		AND l.mode = 'AccessExclusiveLock' AND l.granted")" = 1 ] && break
	sleep 0.1
done
[ "$i" -lt 100 ] || fail "the locker did not get its lock"
run_writers "$key2" "$WORK/pgbench.2" &
bench=$!
BG_PIDS+=("$bench")
for i in $(seq 1 300); do
	[ "$(stat sync_fallbacks)" -gt "$fb1" ] && break
	kill -0 "$bench" 2>/dev/null || break
	sleep 0.1
done
fb_held=$(stat sync_fallbacks)
worker_waiting=$(cluster_psql -c "SELECT count(*) FROM pg_stat_activity
	WHERE backend_type = 'apikey_usage flusher' AND wait_event_type = 'Lock'")
cluster_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'aku_locker'" >/dev/null
wait "$bench" || { cat "$WORK/pgbench.2" >&2; fail "pgbench failed (phase 2)"; }
rows2=$(check_key "held worker" "$key2")
fb2=$(stat sync_fallbacks)
[ "$fb_held" -gt "$fb1" ] || fail "no synchronous fall-back while the worker was held up (sync_fallbacks $fb1 -> $fb_held)"
check_rollups
read -r logged flushed errors <<<"$(cluster_psql -F ' ' -c "SELECT entries_logged, entries_flushed, flush_errors FROM apikey_usage.runtime_stats")"
# every entry, through the ring or a spool file, is written by the worker once
[ "$flushed" -eq $((2 * N)) ] || fail "runtime_stats: entries_flushed $flushed <> $((2 * N))"
echo "  2. worker held by a lock (worker waiting on a lock: $worker_waiting): $N calls, $rows2 rows, lost 0," \
	"spooled fall-backs $((fb_held - fb1)) while held, $((fb2 - fb1)) in the phase"
echo "log_backpressure: ok — 0 lost of $((2 * N)); entries flushed $flushed, spooled fall-backs $fb2, flush errors $errors"
