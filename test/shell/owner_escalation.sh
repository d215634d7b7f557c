#!/usr/bin/env bash
# apikey_usage_owner must not become superuser through the background
# worker.  That role owns the raw log, its day partitions and the SQL
# definer functions and has CREATE on the schema; the worker connects as
# the bootstrap superuser.  As that role, plant code everywhere the
# worker evaluates it:
#   - an index expression on every day partition (the writer's index
#     insertion),
#   - a CHECK constraint on the raw log (the writer's constraint check; it
#     refuses one endpoint, so the quarantine path runs too),
#   - _summarize_log, _maintain and _evaluate_alerts, redefined as
#     SECURITY INVOKER (the worker's maintenance, summarization and alert
#     evaluation);
# each records current_user and whether it is a superuser, and tries
# ALTER ROLE apikey_usage_owner SUPERUSER.  Every recorded call must have
# run as apikey_usage_owner, not a superuser, the ALTER ROLE must have
# failed, and logging must still work end to end: the entries flushed,
# visible in apikey_usage.requests and counted in the rollups, the refused
# one quarantined.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start ownesc "fsync = off" "apikey_usage.alert_interval = '200ms'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

source scripts/check.sh

key_id=$(cluster_psql -c "SELECT key_id FROM apikey_usage.generate_key('ownesc', 'owner escalation')")

# the attack, as apikey_usage_owner (a superuser SET ROLE to it, as a
# mistake in one of its definer functions would run)
cluster_psql <<'SQL'
SET ROLE apikey_usage_owner;
SELECT apikey_usage._ensure_partition(pg_catalog.now());
CREATE TABLE apikey_usage.pwn_log (
	tag text, who name, super boolean, escalated boolean,
	at timestamptz DEFAULT pg_catalog.clock_timestamp());
CREATE FUNCTION apikey_usage.pwn_rec(tag text) RETURNS void
	LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	escalated boolean := false;
BEGIN
	BEGIN
		ALTER ROLE apikey_usage_owner SUPERUSER;
		escalated := true;
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	INSERT INTO apikey_usage.pwn_log (tag, who, super, escalated)
	SELECT tag, current_user, r.rolsuper, escalated
	  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
END
$$;
CREATE FUNCTION apikey_usage.pwn_idx(m text) RETURNS text
	LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	PERFORM apikey_usage.pwn_rec('index');
	RETURN m;
END
$$;
CREATE FUNCTION apikey_usage.pwn_chk(endpoint text) RETURNS boolean
	LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	PERFORM apikey_usage.pwn_rec('check');
	RETURN endpoint <> '/refused';
END
$$;
DO $$
DECLARE
	p regclass;
BEGIN
	FOR p IN SELECT inhrelid::regclass FROM pg_catalog.pg_inherits
			  WHERE inhparent = 'apikey_usage.request_log_raw'::regclass
	LOOP
		EXECUTE pg_catalog.format('CREATE INDEX ON %s (apikey_usage.pwn_idx(method))', p);
	END LOOP;
END
$$;
ALTER TABLE apikey_usage.request_log_raw
	ADD CONSTRAINT pwn_check CHECK (apikey_usage.pwn_chk(endpoint));
CREATE OR REPLACE FUNCTION apikey_usage._summarize_log(since timestamptz DEFAULT NULL)
	RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	PERFORM apikey_usage.pwn_rec('summarize');
	RETURN 0;
END
$$;
CREATE OR REPLACE FUNCTION apikey_usage._maintain(retention interval DEFAULT NULL)
	RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
	PERFORM apikey_usage.pwn_rec('maintain');
	RETURN 0;
END
$$;
CREATE OR REPLACE FUNCTION apikey_usage._evaluate_alerts(budget interval DEFAULT NULL)
	RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
	PERFORM apikey_usage.pwn_rec('alerts');
	RETURN 0;
END
$$;
SQL
# a reload makes the worker run _maintain at once
cluster_psql -c "SELECT pg_reload_conf()" >/dev/null

# log five requests (one the planted CHECK refuses) and flush them
cluster_psql <<SQL >/dev/null
SELECT apikey_usage.log_request('$key_id', 'GET', '/a', 200);
SELECT apikey_usage.log_request('$key_id', 'POST', '/a', 201);
SELECT apikey_usage.log_request('$key_id', 'GET', '/b', 404);
SELECT apikey_usage.log_request('$key_id', 'DELETE', '/b', 500);
SELECT apikey_usage.log_request('$key_id', 'GET', '/refused', 200);
SELECT apikey_usage.flush();
SQL

# wait for the worker's other tasks to have run at least once
tags() { cluster_psql -c "SELECT string_agg(DISTINCT tag, ',' ORDER BY tag) FROM apikey_usage.pwn_log"; }
for _ in $(seq 1 150); do
	[ "$(tags)" = "alerts,check,index,maintain,summarize" ] && break
	sleep 0.2
done
echo "# recorded calls: $(cluster_psql -F ' ' -c "SELECT tag, who, super, escalated, count(*)
	FROM apikey_usage.pwn_log GROUP BY 1, 2, 3, 4 ORDER BY 1" | tr '\n' ';')"

check "the planted code ran in the writer, maintenance, summarization and alerts ($(tags))" \
	test "$(tags)" = "alerts,check,index,maintain,summarize"
check "every planted call ran as apikey_usage_owner" \
	test "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.pwn_log WHERE who <> 'apikey_usage_owner'")" -eq 0
check "no planted call ran as a superuser" \
	test "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.pwn_log WHERE super OR escalated")" -eq 0
check "apikey_usage_owner is not a superuser" \
	test "$(cluster_psql -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'apikey_usage_owner'")" = f

# logging still works end to end
check "the four accepted requests are in apikey_usage.requests" \
	test "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.requests WHERE api_key_id = '$key_id'")" -eq 4
check "the rollups count them" \
	test "$(cluster_psql -c "SELECT coalesce(sum(requests), 0) FROM apikey_usage.hourly_usage WHERE key_id = '$key_id'")" -eq 4
check "the daily rollups count them" \
	test "$(cluster_psql -c "SELECT coalesce(sum(requests), 0) FROM apikey_usage.daily_usage WHERE key_id = '$key_id'")" -eq 4
check "the refused request is quarantined" \
	test "$(cluster_psql -c "SELECT count(*) FROM apikey_usage.quarantine
		WHERE api_key_id = '$key_id' AND convert_from(endpoint, 'UTF8') = '/refused' AND reason LIKE '%pwn_check%'")" -eq 1
check "the worker reports no errors" \
	test "$(cluster_psql -c "SELECT flush_errors FROM apikey_usage.runtime_stats")" -eq 0
check "the day partitions belong to apikey_usage_owner" \
	test "$(cluster_psql -c "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass
		  AND c.relowner <> 'apikey_usage_owner'::regrole")" -eq 0
check "no ERROR in the server log" bash -c "! grep -n 'ERROR:' '$CLUSTER_LOG' >&2"
exit $fail
