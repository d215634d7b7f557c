#!/usr/bin/env bash
# Run the pgTAP suites in test/pgtap/ with pg_prove against a throwaway
# preloaded cluster (the extension and pgTAP created in database apikey).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cluster.sh
trap cluster_stop EXIT
cluster_start pgtap "fsync = off" "apikey_usage.flush_interval = 50"
cluster_psql -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker
pg_prove --ext .sql -v test/pgtap/ 2>&1 | tee "$CLUSTER_DIR/pgtap.log" | grep -vE "^ok " || true
grep -qE "^Result: PASS" "$CLUSTER_DIR/pgtap.log"
