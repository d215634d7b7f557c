#!/usr/bin/env bash
# Key lifecycle across sessions and restarts (issue 2):
#  - a delete in one session makes verify_key 'revoked' in another session
#    that verified the key just before;
#  - copy_key survives a restart; the secret file is mode 0600; after the
#    secret file is removed copy_key fails clearly while verify_key works;
#  - a presented key never reaches the server log, even through errors;
#  - without shared_preload_libraries every function fails with 55000.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cluster_start keys "fsync = off" "log_min_messages = debug1"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

read -r KID KEY < <(cluster_psql -F ' ' -c "SELECT key_id, api_key FROM apikey_usage.generate_key('srv', 'Zapier Integration')")
read -r KID2 KEY2 < <(cluster_psql -F ' ' -c "SELECT key_id, api_key FROM apikey_usage.generate_key('srv', 'PowerAutomate')")

# 1. revocation seen by a session that verified the key just before
out=$(cluster_psql <<SQL
SELECT reason FROM apikey_usage.verify_key('$KEY2');
\! psql -X -qAt -c "SELECT apikey_usage.delete_key('$KID2')" >/dev/null
SELECT reason FROM apikey_usage.verify_key('$KEY2');
SQL
)
[ "$out" = $'valid\nrevoked' ] || fail "revocation across sessions: got '$out'"
echo "ok: delete in one session -> 'revoked' in a session that verified just before"

# 2. copy_key after restart; secret file mode
perm=$(stat -c %a "$CLUSTER_DATA/apikey_usage.secret")
[ "$perm" = 600 ] || fail "secret file mode is $perm, want 600"
cluster_restart fast
cluster_wait_worker
got=$(cluster_psql -c "SELECT apikey_usage.copy_key('$KID')")
[ "$got" = "$KEY" ] || fail "copy_key after restart differs"
echo "ok: copy_key after restart; secret file mode 600"

# 3. the key never reaches the server log, even through errors
cluster_psql -c "SELECT * FROM apikey_usage.check_request('$KEY', 'BAD METHOD', '/x')" 2>/dev/null && fail "bad method accepted"
cluster_psql -c "SELECT * FROM apikey_usage.check_request('$KEY', 'GET', 'no-slash')" 2>/dev/null && fail "bad endpoint accepted"
cluster_psql -c "SELECT * FROM apikey_usage.check_request('$KEY', NULL, '/x')" 2>/dev/null && fail "NULL method accepted"
cluster_psql -c "SELECT * FROM apikey_usage.verify_key('$KEY')" >/dev/null
cluster_psql -c "SELECT * FROM apikey_usage.check_request('$KEY', 'GET', '/x')" >/dev/null
sleep 0.5
if grep -F -q "${KEY:3:20}" "$CLUSTER_LOG"; then
	grep -F "${KEY:3:20}" "$CLUSTER_LOG" | head -3 >&2
	fail "the API key appears in the server log"
fi
grep -q "ERROR:  method must be an HTTP method token" "$CLUSTER_LOG" || fail "expected error not logged (test is not looking at the right log)"
echo "ok: errors are logged without the key"
# (An error raised outside our functions in a statement that carries a key
# literally logs that statement: PostgreSQL's log_min_error_statement.
# README tells users to pass keys as bind parameters.)

# 4. secret file removed: copy_key fails clearly, verify_key still works
cluster_pgctl -m fast stop
rm "$CLUSTER_DATA/apikey_usage.secret"
cluster_pgctl start
cluster_wait_worker
err=$(cluster_psql -c "SELECT apikey_usage.copy_key('$KID')" 2>&1 || true)
echo "$err" | grep -q "server secret has changed" || fail "copy_key after secret loss: '$err'"
echo "$err" | grep -qF "${KEY:3:20}" && fail "copy_key error shows the key"
state=$(psql -X -qAt -v VERBOSITY=verbose -c "SELECT apikey_usage.copy_key('$KID')" 2>&1 | grep -o '55000' | head -1 || true)
[ "$state" = 55000 ] || fail "copy_key after secret loss: SQLSTATE not 55000"
[ "$(cluster_psql -c "SELECT reason FROM apikey_usage.verify_key('$KEY')")" = valid ] || fail "verify_key broken after secret loss"
new=$(cluster_psql -F ' ' -c "SELECT key_id FROM apikey_usage.generate_key('srv', 'After')")
[ -n "$(cluster_psql -c "SELECT apikey_usage.copy_key('$new')")" ] || fail "new keys cannot be copied"
echo "ok: secret file removed -> copy_key fails with 55000, verify_key still valid, new keys copyable"

# 5. not preloaded: 55000 with a hint naming shared_preload_libraries
sed -i "s/^shared_preload_libraries = 'apikey_usage'/shared_preload_libraries = ''/" "$CLUSTER_DATA/postgresql.conf"
cluster_restart fast
for call in "SELECT * FROM apikey_usage.verify_key('$KEY')" \
            "SELECT * FROM apikey_usage.check_request('$KEY', 'GET', '/x')" \
            "SELECT apikey_usage.log_request('$KID', 'GET', '/x', 200)" \
            "SELECT apikey_usage.flush()" \
            "SELECT * FROM apikey_usage.generate_key('srv', 'x')" \
            "SELECT * FROM apikey_usage.runtime_stats"; do
	out=$(psql -X -qAt -v VERBOSITY=verbose -c "$call" 2>&1 || true)
	echo "$out" | grep -q "ERROR:  55000: apikey_usage must be loaded via shared_preload_libraries" || fail "not preloaded: $call -> $out"
	echo "$out" | grep -q "HINT:  Add apikey_usage to shared_preload_libraries" || fail "no hint: $call"
done
cluster_psql -c "CREATE DATABASE other"
out=$(psql -X -qAt -d other -v VERBOSITY=verbose -c "CREATE EXTENSION apikey_usage" 2>&1 || true)
echo "$out" | grep -q "55000" || fail "CREATE EXTENSION without preload: $out"
echo "ok: without shared_preload_libraries every function fails with 55000 and a hint"
