#!/usr/bin/env bash
# The worker summarizes the raw log's resource indexes (BRIN bloom) every
# second with _summarize_log.  A session that holds a lock on a day
# partition (here ACCESS EXCLUSIVE, which even reading the partition's
# size waits for) makes it skip that partition: _summarize_log returns at
# once, the worker counts no flush error and keeps logging (into the
# other partitions) meanwhile; once the lock is gone the closed ranges get
# summarized and a resource filter through the index counts exactly.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
LOCKER=""
cleanup() { [ -n "$LOCKER" ] && kill "$LOCKER" 2>/dev/null; cluster_stop; }
trap cleanup EXIT
fail() { echo "FAIL log_summarize_lock: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 20 "$CLUSTER_LOG" >&2; exit 1; }

cluster_start sumlock "fsync = off"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
key=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_sumlock', 'summarize')")

# two days' partitions: yesterday's gets the lock, today's keeps logging
cluster_psql -c "SELECT apikey_usage.log_requests(array_fill('$key'::uuid, ARRAY[20000]),
		array_fill('GET'::text, ARRAY[20000]), array_fill('/v1/sum'::text, ARRAY[20000]),
		array_fill(200, ARRAY[20000]),
		(SELECT array_agg('sum-' || i % 300 ORDER BY i) FROM generate_series(1, 20000) i),
		NULL, array_fill(now() - interval '1 day', ARRAY[20000]))" \
	-c "SELECT apikey_usage.flush()" >/dev/null
part=$(cluster_psql -c "SELECT 'apikey_usage.request_log_raw_p' || to_char((now() - interval '1 day') AT TIME ZONE 'UTC', 'YYYYMMDD')")
idx="${part}_resource_idx"
[ "$(cluster_psql -c "SELECT pg_relation_size('$part') / 8192 >= 64")" = t ] || fail "$part spans fewer than two ranges"

errors0=$(cluster_psql -c "SELECT flush_errors FROM apikey_usage.runtime_stats")
# hold the lock for 4 s in the background
psql -X -qAt -c "BEGIN" -c "LOCK TABLE $part IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(4)" -c "COMMIT" >/dev/null &
LOCKER=$!
for i in $(seq 1 50); do
	[ "$(cluster_psql -c "SELECT count(*) FROM pg_locks WHERE relation = '$part'::regclass AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && break
	sleep 0.1
done
start=$(date +%s%N)
cluster_psql -c "SELECT apikey_usage._summarize_log(NULL)" >/dev/null || fail "_summarize_log failed on a locked partition"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 1500 ] || fail "_summarize_log waited ${ms} ms for the lock"
# the worker keeps logging meanwhile (today's partition) and counts no error
cluster_psql -c "SELECT apikey_usage.log_request('$key', 'GET', '/v1/today', 200)" \
	-c "SELECT apikey_usage.flush()" >/dev/null || fail "logging stopped while the partition was locked"
sleep 2
wait "$LOCKER"; LOCKER=""
errors1=$(cluster_psql -c "SELECT flush_errors FROM apikey_usage.runtime_stats")
[ "$errors1" = "$errors0" ] || fail "the worker counted $((errors1 - errors0)) errors while a partition was locked"

# lock gone: the closed ranges are summarized (by the worker or this call)
cluster_psql -c "SELECT apikey_usage._summarize_log(NULL)" >/dev/null
unsummarized=$(cluster_psql -c "SELECT count(*) FROM generate_series(0, (pg_relation_size('$part') / 8192 - 1) / 32 - 1) r
		WHERE brin_summarize_range('$idx', r * 32) <> 0")
[ "$unsummarized" = 0 ] || fail "$unsummarized closed ranges were left unsummarized"
counted=$(cluster_psql -c "SET enable_seqscan = off" -c "SET enable_indexscan = off" \
	-c "SELECT count(*) FROM $part WHERE resource_id = 'sum-7'")
[ "$counted" = "$(cluster_psql -c "SELECT count(*) FROM generate_series(1, 20000) i WHERE i % 300 = 7")" ] ||
	fail "a resource filter through the index counted $counted"
echo "ok log_summarize_lock: a locked partition is skipped (${ms} ms), no worker error, then summarized; filters exact"
