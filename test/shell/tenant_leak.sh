#!/usr/bin/env bash
# The leak test of tenant isolation: two workspaces with identical key
# names, endpoints, methods, codes and resource ids; every view and every
# analytics and key-management function run as a tenant of one of them
# (test/shell/tenant_leak.sql, pgTAP), with filters, pagination cursors,
# joins, another workspace's key ids and cursors, and a function that
# leaks its arguments in a WHERE clause.  Nothing of the other workspace
# may show, and its key ids must answer exactly like unknown ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start leak "fsync = off" "apikey_usage.flush_interval = 50" "apikey_usage.alert_interval = '1d'"
cluster_psql -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

# committed set-up: the same keys and traffic in both workspaces (globex
# with more of it, so that any leak changes a count), a deleted key each,
# traffic 2 days and 3 hours ago and now (daily, hourly and raw edges)
cluster_psql >/dev/null <<'SQL'
CREATE TABLE public.lk AS
SELECT ws, n, g.key_id, g.api_key
  FROM unnest(ARRAY['acme', 'globex']) ws,
       unnest(ARRAY['Zapier Integration', 'Production', 'Old']) n,
       LATERAL apikey_usage.generate_key(ws, n) g;
GRANT SELECT ON public.lk TO PUBLIC;
SELECT count(apikey_usage.log_request(lk.key_id, m, '/v1/documents/{id}', c, 'doc-' || (i % 3),
		requested_at => now() - ago - make_interval(secs => i)))
  FROM public.lk,
       unnest(ARRAY['GET', 'POST']) m,
       unnest(ARRAY[200, 404, 429, 500]) c,
       unnest(ARRAY[interval '2 days', interval '3 hours', interval '1 minute']) ago,
       generate_series(1, CASE lk.ws WHEN 'acme' THEN 2 ELSE 3 END) i;
SELECT apikey_usage.flush();
SELECT apikey_usage.delete_key(key_id) FROM public.lk WHERE n = 'Old';
SELECT apikey_usage.create_alert_rule(ws, 'failed', 1, '1 hour', min_requests => 1) FROM (VALUES ('acme'), ('globex')) v(ws);
SELECT apikey_usage._evaluate_alerts();
CREATE ROLE acme_t LOGIN;
CREATE ROLE acme_adm LOGIN;
SELECT apikey_usage.grant_workspace('acme_t', 'acme');
SELECT apikey_usage.grant_workspace('acme_adm', 'acme', 'admin');
SQL

pg_prove test/shell/tenant_leak.sql
