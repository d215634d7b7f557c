#!/usr/bin/env bash
# Request ids (UUIDv7) stay unique across backends: their 62 random bits
# come from a keystream drawn per process, keyed at its first use in that
# process, so backends forked from the postmaster never share a stream.
# 12 concurrent sessions each take 50 ids from check_request (allowed and
# 429 refusals) and 20 from log_request; every id must be distinct, every
# backend's first id must have its own random bits, and every id must be
# a well-formed UUIDv7.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start kcids "fsync = off" "apikey_usage.flush_interval = 50"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

source scripts/check.sh

cluster_psql >/dev/null <<'SQL'
CREATE TABLE public.k AS
	SELECT g AS kn, k.key_id, k.api_key
	  FROM generate_series(1, 2) g,
	       LATERAL apikey_usage.generate_key('kcids', 'key ' || g,
	                                         CASE WHEN g = 2 THEN 10 END, '1 day') k;
CREATE TABLE public.ids (pid int, n int, source text, request_id uuid);
SQL

SESSIONS=12
pids=()
for s in $(seq 1 "$SESSIONS"); do
	cluster_psql -c "
		INSERT INTO public.ids
		SELECT pg_backend_pid(), g, 'check ' || c.reason, c.request_id
		  FROM generate_series(1, 50) g, public.k,
		       LATERAL apikey_usage.check_request(k.api_key, 'GET', '/ids') c
		 WHERE k.kn = 1 + g % 2;
		INSERT INTO public.ids
		SELECT pg_backend_pid(), 100 + g, 'log',
		       apikey_usage.log_request(k.key_id, 'GET', '/ids', 200)
		  FROM generate_series(1, 20) g, public.k WHERE k.kn = 1" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done

q() { cluster_psql -c "$1"; }
check "$SESSIONS backends took ids" test "$(q "SELECT count(DISTINCT pid) FROM public.ids")" -eq "$SESSIONS"
check "ids from allowed requests, 429 refusals and log_request" \
	test "$(q "SELECT string_agg(source || ' ' || n, ', ' ORDER BY source)
	            FROM (SELECT source, count(*) AS n FROM public.ids GROUP BY source) s")" \
	= "check rate_limited $((SESSIONS * 25 - 10)), check valid $((SESSIONS * 25 + 10)), log $((SESSIONS * 20))"
check "every answer has an id" test "$(q "SELECT count(*) FROM public.ids WHERE request_id IS NULL")" -eq 0
total=$(q "SELECT count(*) FROM public.ids")
check "every id is distinct ($total)" test "$(q "SELECT count(DISTINCT request_id) FROM public.ids")" -eq "$total"
# the 62 random bits: the last 16 hex digits, the variant bits masked off
check "every backend's first id has its own random bits" \
	test "$(q "SELECT count(DISTINCT overlay(substr(replace(first_id::text, '-', ''), 17, 16)
	                   PLACING to_hex(('x' || substr(replace(first_id::text, '-', ''), 17, 1))::bit(4)::int & 3) FROM 1 FOR 1))
	          FROM (SELECT DISTINCT ON (pid) request_id AS first_id FROM public.ids ORDER BY pid, n) f")" -eq "$SESSIONS"
check "the random bits never repeat" \
	test "$(q "SELECT count(DISTINCT substr(replace(request_id::text, '-', ''), 18, 15)) FROM public.ids")" -eq "$total"
check "every id is a UUIDv7 (version 7, variant 10)" \
	test "$(q "SELECT count(*) FROM public.ids
	            WHERE substr(request_id::text, 15, 1) = '7' AND substr(request_id::text, 20, 1) IN ('8', '9', 'a', 'b')")" -eq "$total"
exit $fail
