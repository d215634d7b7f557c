#!/usr/bin/env bash
# Issue 3 / API.md: "Logging is non-transactional (like a sequence): a
# logged request stays logged even if the caller's transaction rolls back"
# -- also when the ring is full and the caller falls back to writing the
# entry synchronously.  The worker is held up by a lock on
# apikey_usage.flush_state, the 64-entry ring is filled, then a session
# logs requests inside transactions that roll back: every acknowledged
# request_id must be in request_log_raw after the worker is released and
# flush() returns.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-fbrb.XXXXXX)
BG_PIDS=()
cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_fallback_rollback: $*" >&2; exit 1; }

cluster_start fbrb "fsync = off" "apikey_usage.log_buffer_entries = 64" "apikey_usage.flush_interval = 1000"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
stat() { cluster_psql -c "SELECT $1 FROM apikey_usage.runtime_stats"; }
filler=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_fbrb', 'filler')")
key=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_fbrb', 'rolled_back')")

PGAPPNAME=aku_locker cluster_psql -c "BEGIN" -c "LOCK apikey_usage.flush_state IN ACCESS EXCLUSIVE MODE" \
	-c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
BG_PIDS+=($!)
for i in $(seq 1 100); do
	[ "$(cluster_psql -c "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		WHERE a.application_name = 'aku_locker' AND l.relation = 'apikey_usage.flush_state'::regclass
		AND l.granted")" = 1 ] && break
	sleep 0.1
done
[ "$i" -lt 100 ] || fail "the locker did not get its lock"

# fill the ring (exactly its capacity: no fall-back yet)
cluster_psql -c "SELECT count(apikey_usage.log_request('$filler', 'GET', '/v1/fill', 200)) FROM generate_series(1, 64)" >/dev/null
[ "$(stat buffer_used)" -eq 64 ] || fail "ring not full: buffer_used $(stat buffer_used)"
fb0=$(stat sync_fallbacks)

# 20 requests, each logged in a transaction that rolls back
for i in $(seq 1 20); do
	echo "BEGIN;"
	echo "SELECT apikey_usage.log_request('$key', 'POST', '/v1/rolled-back', 201);"
	echo "ROLLBACK;"
done | cluster_psql -f - >"$WORK/ids"
ack=$(grep -c . "$WORK/ids" || true)
fb=$(($(stat sync_fallbacks) - fb0))

cluster_psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'aku_locker'" >/dev/null
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
present=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$key'")
fillers=$(cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$filler'")
echo "  ring full, worker held: $ack acknowledged log_request calls in rolled-back transactions," \
	"$fb synchronous fall-backs, $present present after flush() (lost $((ack - present))); filler rows $fillers/64"
[ "$ack" -eq 20 ] || fail "only $ack of 20 calls acknowledged"
[ "$fb" -gt 0 ] || fail "no synchronous fall-back happened (the test did not exercise it)"
[ "$fillers" -eq 64 ] || fail "$fillers of 64 filler rows present"
[ "$present" -eq "$ack" ] || fail "$((ack - present)) of $ack acknowledged entries lost: the synchronous fall-back wrote them in the caller's transaction, which rolled back"
echo "log_fallback_rollback: ok"
