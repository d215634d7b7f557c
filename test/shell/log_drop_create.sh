#!/usr/bin/env bash
# Issue 11: DROP EXTENSION / CREATE EXTENSION in a running cluster, under
# logging traffic.  Two sessions log requests for a key without pause (a
# long flush_interval keeps entries in the ring); the extension is dropped
# and created again in the middle of it.  Then:
#   - the entries left in the ring for the dropped installation are
#     counted (runtime_stats.discarded_entries, a LOG line) and discarded:
#     the new installation's raw log holds nothing of the old key;
#   - the sessions that used the old key before the DROP are refused for
#     it afterwards (22023: no such key), they do not log it;
#   - the worker resumes: a key of the new installation is logged and
#     flushed; no process crashed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-dc.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_drop_create: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 30 "$CLUSTER_LOG" >&2; exit 1; }

cluster_start dropcr "fsync = off" "apikey_usage.flush_interval = 3000"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
OLD=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('dropcreate', 'old')")

# a session: log for the old key until told to stop, then once more
for s in 1 2; do
	{
		for i in $(seq 1 400); do
			echo "SELECT apikey_usage.log_request('$OLD', 'GET', '/v1/load', 200);"
		done
		echo "\\! while [ ! -f $WORK/go ]; do sleep 0.05; done"
		for i in $(seq 1 400); do
			echo "SELECT apikey_usage.log_request('$OLD', 'GET', '/v1/load', 200);"
		done
		echo "\\! touch $WORK/recreated.$s; while [ ! -f $WORK/after ]; do sleep 0.05; done"
		echo "SELECT 'after: ' || apikey_usage.log_request('$OLD', 'GET', '/v1/after', 200);"
	} >"$WORK/session$s.sql"
	psql -X -qAt -v ON_ERROR_STOP=0 -f "$WORK/session$s.sql" >"$WORK/session$s.out" 2>&1 &
	PIDS+=($!)
done

# the first 800 calls are in the ring (the worker waits 3 s between flushes)
sleep 1
touch "$WORK/go"
cluster_psql -c "DROP EXTENSION apikey_usage"
cluster_psql -c "CREATE EXTENSION apikey_usage"
for s in 1 2; do
	for _ in $(seq 1 600); do [ -f "$WORK/recreated.$s" ] && break; sleep 0.1; done
done
touch "$WORK/after"
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()

NEW=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('dropcreate', 'new')")
cluster_psql -c "SELECT apikey_usage.log_request('$NEW', 'POST', '/v1/new', 201)" >/dev/null
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null

old_rows=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$OLD'")
new_rows=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$NEW'")
other_rows=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id <> '$NEW'")
discarded=$(cluster_psql -c "SELECT discarded_entries FROM apikey_usage.runtime_stats")
refused=$(cat "$WORK"/session*.out | grep -c "no API key with id $OLD" || true)
after_ok=$(cat "$WORK"/session*.out | grep -c "^after: " || true)
echo "  discarded $discarded ring entries of the dropped installation; old key rows now $old_rows; refusals of the old key $refused"
[ "$old_rows" -eq 0 ] || fail "$old_rows rows of the dropped installation's key were written into the new one"
[ "$other_rows" -eq 0 ] || fail "$other_rows rows of unknown keys in the new installation"
[ "$new_rows" -eq 1 ] || fail "the new installation's key has $new_rows rows, expected 1"
[ "$discarded" -gt 0 ] || fail "no discarded entry counted (the ring held entries of the old installation)"
grep -q "discarded [0-9]* log entries of a dropped installation" "$CLUSTER_LOG" || fail "no LOG line for the discarded entries"
[ "$after_ok" -eq 0 ] || fail "a session that used the old key before the DROP still logged it afterwards"
[ "$refused" -ge 2 ] || fail "the old key was not refused after the CREATE ($refused refusals)"
! grep -qE "terminated by signal|PANIC|server process .* exited with exit code [^01]" "$CLUSTER_LOG" || fail "a process crashed"
[ -n "$(cluster_psql -c "SELECT worker_pid FROM apikey_usage.runtime_stats")" ] || fail "no worker"
echo "log_drop_create: ok"
