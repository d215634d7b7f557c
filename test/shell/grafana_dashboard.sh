#!/usr/bin/env bash
# The Grafana dashboard (dashboards/grafana), without Grafana:
#   a. the dashboard JSON type-checks against @grafana/schema (tsc --strict),
#   b. every panel's and variable's SQL, expanded as Grafana's PostgreSQL
#      data source expands it, runs as README's read-only role on a
#      throwaway cluster with seeded traffic and returns the shapes the
#      panels need and the counts of the analytics functions,
#   c. structural lints (panel ids and grid, data source uids, variables,
#      macros, provisioning paths),
#   d. the same SQL for a tenant login (grant_workspace): only its workspace.
# Exits non-zero on the first failing part; removes its cluster and files.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
GRAFANA_DIR=$ROOT/dashboards/grafana
TEST_DIR=$GRAFANA_DIR/test

source scripts/cluster.sh
cleanup() {
	cluster_stop
	rm -rf "$TEST_DIR/.generated"
}
trap cleanup EXIT

echo "# a. type check against @grafana/schema"
(cd "$TEST_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
(cd "$TEST_DIR" && echo "typescript $(npx --no-install tsc --version | cut -d' ' -f2)," \
	"@grafana/schema $(node -p "require('@grafana/schema/package.json').version")")
node "$TEST_DIR/gen_typecheck.mjs" >/dev/null
(cd "$TEST_DIR" && npx --no-install tsc -p tsconfig.json --noEmit --strict)
echo "ok     - dashboards/apikey_usage.json type-checks as StrictDashboard"

echo "# c. structural lints"
node "$TEST_DIR/lint.mjs"

echo "# b. SQL of every panel and variable, as Grafana expands it"
cluster_start grafana
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
# the read-only role exactly as README.md gives it
sed -n '/<!-- grafana-role:begin -->/,/<!-- grafana-role:end -->/p' "$GRAFANA_DIR/README.md" \
	| grep -v -e '^<!--' -e '^```' >"$CLUSTER_DIR/grafana_role.sql"
grep -q 'GRANT apikey_usage_reader TO grafana' "$CLUSTER_DIR/grafana_role.sql"
cluster_psql -f "$CLUSTER_DIR/grafana_role.sql"
cluster_psql -f "$TEST_DIR/seed.sql" >/dev/null
node "$TEST_DIR/sql_check.mjs" grafana

echo "# d. the same dashboard for a tenant login: only its workspace"
cluster_psql -c "CREATE ROLE grafana_acme LOGIN" -c "SELECT apikey_usage.grant_workspace('grafana_acme', 'acme')" >/dev/null
GRAFANA_TENANT_WORKSPACE=acme node "$TEST_DIR/sql_check.mjs" grafana_acme
