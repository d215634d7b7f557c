#!/usr/bin/env bash
# Issue 10 (items 3, 4) and issue 14 (crash): what the worker cannot write
# never blocks the rest, nothing is lost silently, flush() keeps its bound,
# and logging is idempotent across a crash.
#   1. an entry the tables refuse (a CHECK constraint added to the raw log)
#      is quarantined, the other entries of its batch arrive;
#   2. with an ACCESS EXCLUSIVE lock held on the raw log, flush() raises
#      55000 instead of waiting with the worker, flush_errors counts the
#      failed flushes, and the tiny ring spills into spool files;
#      one spool file is then damaged (a byte of its endpoint): it is
#      quarantined, every other spooled entry arrives;
#   3. a ring slot damaged while the server is down (immediate stop with
#      the worker held up) is quarantined at restart, the others arrive;
#   4. the same request ids logged before an immediate stop and again
#      after the restart are in the log once.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
WORK=$(mktemp -d /tmp/aku-qu.XXXXXX)
LOCKER=""
cleanup() {
	[ -n "$LOCKER" ] && kill "$LOCKER" 2>/dev/null || true
	cluster_stop
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL log_quarantine: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 30 "$CLUSTER_LOG" >&2; exit 1; }
stat() { cluster_psql -c "SELECT $1 FROM apikey_usage.runtime_stats"; }
count() { cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE $1"; }
# hold an ACCESS EXCLUSIVE lock on the raw log until released
lock_log() {
	PGAPPNAME=aku_locker psql -X -q -c "BEGIN" -c "LOCK TABLE apikey_usage.request_log_raw IN ACCESS EXCLUSIVE MODE" \
		-c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
	LOCKER=$!
	for _ in $(seq 1 50); do
		[ "$(cluster_psql -c "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
			WHERE c.relname = 'request_log_raw' AND l.mode = 'AccessExclusiveLock' AND l.granted")" -eq 1 ] && return 0
		sleep 0.1
	done
	fail "could not take the lock"
}
unlock_log() {
	cluster_psql -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'aku_locker'" >/dev/null
	wait "$LOCKER" 2>/dev/null || true
	LOCKER=""
}
# overwrite the last byte of NEEDLE in FILE with 0xff (invalid UTF-8)
damage() {
	python3 - "$1" "$2" <<'PY'
import sys
path, needle = sys.argv[1], sys.argv[2].encode()
data = bytearray(open(path, "rb").read())
i = data.find(needle)
if i < 0:
    sys.exit(1)
data[i + len(needle) - 1] = 0xff
open(path, "r+b").write(data)
PY
}

cluster_start quarant "fsync = off" "apikey_usage.log_buffer_entries = 64" "apikey_usage.flush_interval = 100"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
KEY=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('quarantine', 'q')")

# 1. refused by the tables
cluster_psql -c "ALTER TABLE apikey_usage.request_log_raw ADD CONSTRAINT no_poison CHECK (endpoint <> '/v1/poison') NOT VALID"
cluster_psql -c "SELECT apikey_usage.log_requests(array_fill('$KEY'::uuid, ARRAY[30]),
	array_fill('GET'::text, ARRAY[30]),
	ARRAY(SELECT CASE WHEN i = 15 THEN '/v1/poison' ELSE '/v1/good' END FROM generate_series(1, 30) i),
	array_fill(200, ARRAY[30]))" >/dev/null
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
[ "$(count "endpoint = '/v1/good'")" -eq 29 ] || fail "refused entry: the 29 others did not arrive"
[ "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.quarantine WHERE endpoint = '\\x2f76312f706f69736f6e' AND reason LIKE 'refused by the tables:%no_poison%'")" -eq 1 ] ||
	fail "the refused entry is not in the quarantine with its reason"
[ "$(stat quarantined_entries)" -eq 1 ] || fail "quarantined_entries is not 1"
[ "$(cluster_psql -c "SELECT sum(requests) FROM apikey_usage.usage_hourly WHERE api_key_id = '$KEY'")" -eq 29 ] ||
	fail "the rollups do not count exactly the 29 written entries"
grep -q "quarantined: refused by the tables" "$CLUSTER_LOG" || fail "no LOG line for the quarantined entry"
cluster_psql -c "ALTER TABLE apikey_usage.request_log_raw DROP CONSTRAINT no_poison"
echo "  refused entry quarantined, 29 others written"

# 2. a held lock: flush() within its bound; spool files; a damaged one
errors0=$(stat flush_errors)
lock_log
for i in $(seq 1 100); do echo "SELECT apikey_usage.log_request('$KEY', 'POST', '/v1/spool-$i', 201);"; done |
	cluster_psql >/dev/null
[ "$(stat sync_fallbacks)" -gt 0 ] || fail "no entry was spooled while the worker was held up"
out=$(timeout 60 psql -X -qAt -c "SELECT apikey_usage.flush()" 2>&1) && fail "flush() returned under the lock: $out"
echo "$out" | grep -q "has written nothing for 10 seconds" || fail "flush() under the lock: $out"
[ "$(stat flush_errors)" -gt "$errors0" ] || fail "flush_errors did not count the lock timeouts"
spooled=$(grep -l "/v1/spool-" "$CLUSTER_DATA"/apikey_usage_spool/*.entry | head -n 1)
[ -n "$spooled" ] || fail "no spool file to damage"
damage "$spooled" "/v1/spool-" || fail "could not damage $spooled"
unlock_log
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
[ "$(count "endpoint LIKE '/v1/spool-%'")" -eq 99 ] || fail "damaged spool file: $(count "endpoint LIKE '/v1/spool-%'") of the 99 others arrived"
[ "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.quarantine WHERE source = 'spool' AND reason LIKE '%checksum mismatch%'")" -eq 1 ] ||
	fail "the damaged spool file is not quarantined"
echo "  flush() raised 55000 under the lock; damaged spool file quarantined, 99 others written"

# 3. a ring slot damaged while the server is down
lock_log
for i in $(seq 1 20); do echo "SELECT apikey_usage.log_request('$KEY', 'PUT', '/v1/ring-$i', 204);"; done |
	cluster_psql >/dev/null
cluster_pgctl -m immediate stop
LOCKER=""
damage "$CLUSTER_DATA/apikey_usage.ring" "/v1/ring-7" || fail "could not damage the ring"
cluster_pgctl start
cluster_wait_worker
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
[ "$(count "endpoint LIKE '/v1/ring-%'")" -eq 19 ] || fail "damaged ring slot: $(count "endpoint LIKE '/v1/ring-%'") of the 19 others arrived"
[ "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.quarantine WHERE source = 'ring' AND reason LIKE '%checksum mismatch%'")" -eq 1 ] ||
	fail "the damaged ring slot is not quarantined"
echo "  damaged ring slot quarantined, 19 others written"

# 4. idempotent across a crash: ids logged before an immediate stop, again after
# (version-4 ids: the time is given, so a retry names the same request)
cluster_psql -c "CREATE TABLE ids AS SELECT gen_random_uuid() AS id, now() - i * interval '1.5 ms' AS at FROM generate_series(1, 500) i"
cluster_psql -c "SELECT apikey_usage.log_requests(array_fill('$KEY'::uuid, ARRAY[500]), array_fill('GET'::text, ARRAY[500]),
	array_fill('/v1/crash'::text, ARRAY[500]), array_fill(200, ARRAY[500]), NULL, (SELECT array_agg(id ORDER BY id) FROM ids), (SELECT array_agg(at ORDER BY id) FROM ids))" >/dev/null
cluster_pgctl -m immediate stop
cluster_pgctl start
cluster_wait_worker
cluster_psql -c "SELECT apikey_usage.log_requests(array_fill('$KEY'::uuid, ARRAY[500]), array_fill('GET'::text, ARRAY[500]),
	array_fill('/v1/crash'::text, ARRAY[500]), array_fill(200, ARRAY[500]), NULL, (SELECT array_agg(id ORDER BY id) FROM ids), (SELECT array_agg(at ORDER BY id) FROM ids))" >/dev/null
cluster_psql -c "SELECT apikey_usage.flush()" >/dev/null
[ "$(count "endpoint = '/v1/crash'")" -eq 500 ] || fail "across a crash: $(count "endpoint = '/v1/crash'") rows for 500 request ids"
[ "$(cluster_psql -c "SELECT sum(requests) FROM apikey_usage.usage_hourly WHERE api_key_id = '$KEY' AND endpoint = '/v1/crash'")" -eq 500 ] ||
	fail "across a crash: the rollups do not count 500"
echo "  500 request ids logged before and after an immediate stop: 500 rows"
echo "log_quarantine: ok"
