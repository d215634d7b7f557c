#!/usr/bin/env bash
# Issue 3: retention.  With the default retention (90 days) log entries
# dated 10 days ago, 1 day ago and now; then lower apikey_usage.retention
# to '2 days' with ALTER SYSTEM + pg_reload_conf(): the worker (SIGHUP ->
# maintenance) drops the 10-day-old day partition -- DROP, not DELETE: the
# table is gone from pg_class -- and the rollup rows of those hours, and
# keeps the recent partitions (same table, same oid) and their rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT
fail() { echo "FAIL log_retention: $*" >&2; [ -n "${CLUSTER_LOG:-}" ] && tail -n 20 "$CLUSTER_LOG" >&2; exit 1; }

cluster_start retent "fsync = off"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
[ "$(cluster_psql -c "SHOW apikey_usage.retention")" = "90 days" ] || fail "default retention is not 90 days"
key=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('shell_retention', 'old and new')")

part_of() { # SQL timestamptz expression -> partition name
	cluster_psql -c "SELECT 'request_log_raw_p' || to_char(($1) AT TIME ZONE 'UTC', 'YYYYMMDD')"
}
old_part=$(part_of "now() - interval '10 days'")
recent_part=$(part_of "now() - interval '1 day'")
today_part=$(part_of "now()")

cluster_psql -c "SELECT count(apikey_usage.log_request('$key', 'GET', '/v1/old', 200, NULL, NULL,
		now() - interval '10 days' + make_interval(mins => i))) FROM generate_series(1, 5) i" \
	-c "SELECT count(apikey_usage.log_request('$key', 'GET', '/v1/recent', 200, NULL, NULL,
		now() - interval '1 day' + make_interval(mins => i))) FROM generate_series(1, 5) i" \
	-c "SELECT count(apikey_usage.log_request('$key', 'GET', '/v1/now', 200)) FROM generate_series(1, 5) i" \
	-c "SELECT apikey_usage.flush()" >/dev/null

exists() { cluster_psql -c "SELECT count(*) FROM pg_class WHERE relnamespace = 'apikey_usage'::regnamespace AND relname = '$1'"; }
rows_in() { cluster_psql -c "SELECT count(*) FROM apikey_usage.request_log_raw WHERE api_key_id = '$key' AND endpoint = '$1'"; }
rollups_in() { cluster_psql -c "SELECT coalesce(sum(requests), 0) FROM apikey_usage.usage_hourly WHERE api_key_id = '$key' AND endpoint = '$1'"; }

[ "$(exists "$old_part")" -eq 1 ] || fail "partition $old_part was not created"
[ "$(exists "$recent_part")" -eq 1 ] || fail "partition $recent_part was not created"
for ep in /v1/old /v1/recent /v1/now; do
	[ "$(rows_in $ep)" -eq 5 ] || fail "before: $(rows_in $ep) raw rows for $ep, expected 5"
	[ "$(rollups_in $ep)" -eq 5 ] || fail "before: rollups count $(rollups_in $ep) for $ep, expected 5"
done
recent_oid=$(cluster_psql -c "SELECT 'apikey_usage.$recent_part'::regclass::oid")
today_oid=$(cluster_psql -c "SELECT 'apikey_usage.$today_part'::regclass::oid")
parts_before=$(cluster_psql -c "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i
	JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass")

cluster_psql -c "ALTER SYSTEM SET apikey_usage.retention = '2 days'" -c "SELECT pg_reload_conf()" >/dev/null
# bounded wait for the worker's maintenance (no flush(), no manual call)
for i in $(seq 1 150); do
	[ "$(exists "$old_part")" -eq 0 ] && break
	sleep 0.2
done
[ "$(exists "$old_part")" -eq 0 ] || fail "partition $old_part still exists 30 s after lowering the retention"
parts_after=$(cluster_psql -c "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i
	JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass")

[ "$(rows_in /v1/old)" -eq 0 ] || fail "$(rows_in /v1/old) old raw rows remain"
[ "$(rollups_in /v1/old)" -eq 0 ] || fail "old rollup rows remain (count $(rollups_in /v1/old))"
for ep in /v1/recent /v1/now; do
	[ "$(rows_in $ep)" -eq 5 ] || fail "after: $(rows_in $ep) raw rows for $ep, expected 5"
	[ "$(rollups_in $ep)" -eq 5 ] || fail "after: rollups count $(rollups_in $ep) for $ep, expected 5"
done
[ "$(cluster_psql -c "SELECT to_regclass('apikey_usage.$recent_part')::oid")" = "$recent_oid" ] || \
	fail "partition $recent_part was dropped or recreated"
[ "$(cluster_psql -c "SELECT to_regclass('apikey_usage.$today_part')::oid")" = "$today_oid" ] || \
	fail "partition $today_part was dropped or recreated"

# backends see the new retention too: a 10-day-old entry is refused now
out=$(cluster_psql -v VERBOSITY=verbose -c "SELECT apikey_usage.log_request('$key', 'GET', '/v1/old', 200, NULL, NULL,
	now() - interval '10 days')" 2>&1 || true)
grep -q "22023" <<<"$out" || fail "a 10-day-old requested_at was not refused with 22023 after the reload: $out"

echo "log_retention: ok — partitions before: $parts_before; after: $parts_after;" \
	"$old_part dropped (gone from pg_class) with its rows and rollups, $recent_part and $today_part kept (same oids)"
