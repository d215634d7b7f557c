#!/usr/bin/env bash
# Alert rules cannot stall the log: a workspace holds at most 100 rules
# (the 101st is 22023, for a tenant admin and a global admin alike); the
# worker evaluates the rules in passes of bounded length, least recently
# evaluated first, so with a rule set far too large for one pass flush()
# keeps returning and what is logged becomes visible, and every rule is
# still evaluated in turn; a rule that cannot be evaluated in time (here:
# a lock on the key table) is skipped with last_value NULL, without
# holding back the others, and the skips are logged once, not per pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
source scripts/check.sh
trap cluster_stop EXIT

cluster_start alertsb "fsync = off" "apikey_usage.flush_interval = 50" "apikey_usage.alert_interval = 100"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

q() { cluster_psql -c "$1"; }
as_admin() { psql -X -qAt -U ab_admin -c "$1"; }
sqlstate() { # role sql
	psql -X -qAt -U "$1" -c "\\set VERBOSITY sqlstate" -c "$2" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\)$/\1/p'
}

# a tenant admin of ab-one with 20 keys
q "CREATE ROLE ab_admin LOGIN" >/dev/null
q "SELECT apikey_usage.grant_workspace('ab_admin', 'ab-one', 'admin')" >/dev/null
as_admin "SELECT count(*) FROM generate_series(1, 20) i, apikey_usage.generate_key('ab-one', 'key ' || i)" >/dev/null

# the cap: 100 rules (distinct windows, so no two share their counts;
# every one fires and reads its baseline too)
check "a tenant admin creates 100 rules in its workspace" \
	test "$(as_admin "SELECT count(apikey_usage.create_alert_rule('ab-one', 'failed_ratio', 0, make_interval(secs => i),
	                     min_requests => 0, baseline_factor => 1)) FROM generate_series(1, 100) i")" = 100
check "the 101st rule is 22023 for the tenant admin" \
	test "$(sqlstate ab_admin "SELECT apikey_usage.create_alert_rule('ab-one', 'failed', 1)")" = 22023
check "and for a global admin (the limit is the workspace's)" \
	test "$(sqlstate postgres "SELECT apikey_usage.create_alert_rule('ab-one', 'failed', 1)")" = 22023
msg=$(psql -X -qAt -U ab_admin -c "SELECT apikey_usage.create_alert_rule('ab-one', 'failed', 1)" 2>&1 || true)
check "the error names the limit" grep -q 'already has 100 alert rules' <<<"$msg"
check "nothing was created" test "$(q "SELECT count(*) FROM apikey_usage.alert_rule WHERE workspace = 'ab-one'")" = 100
check "another workspace is not limited by it" \
	test "$(q "SELECT apikey_usage.drop_alert_rule(apikey_usage.create_alert_rule('ab-two', 'failed', 1))")" = t
as_admin "SELECT apikey_usage.drop_alert_rule(max(rule_id)) FROM apikey_usage.alert_rules" >/dev/null
check "after dropping a rule the workspace may create one again" \
	test "$(as_admin "SELECT apikey_usage.create_alert_rule('ab-one', 'failed_ratio', 0, '100 seconds', min_requests => 0, baseline_factor => 1) > 0")" = t

# a rule that cannot be evaluated in time is skipped, the pass ends, and
# the next pass goes on with the other rules: hold the key table (which
# every evaluation reads) locked for a while
t_lock=$(q "SELECT clock_timestamp()")
psql -X -qAt -c "BEGIN; LOCK apikey_usage.api_keys IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT" >/dev/null &
locker=$!
sleep 3
skipped=$(q "SELECT count(*) FROM apikey_usage.alert_rule WHERE last_evaluated_at > '$t_lock' AND last_value IS NULL")
wait $locker
check "rules that cannot be evaluated in time are skipped one by one ($skipped skipped)" test "$skipped" -ge 2

# far more rules than a pass can take (as an upgraded installation or
# many workspaces could have): 1,200 more on the same 20 keys
q "INSERT INTO apikey_usage.alert_rule (workspace, metric, threshold, alert_window, min_requests, baseline_factor)
   SELECT 'ab-one', 'failed_ratio', 0, make_interval(secs => 100 + i), 0, 1 FROM generate_series(1, 1200) i" >/dev/null
t_mark=$(q "SELECT clock_timestamp()")
key=$(q "SELECT key_id FROM apikey_usage.keys WHERE workspace = 'ab-one' ORDER BY key_id LIMIT 1")

# the worker keeps flushing: every flush() returns and its entries are there
flushed=0
for round in 1 2 3 4 5; do
	q "SELECT count(apikey_usage.log_request('$key', 'GET', '/r$round', 500)) FROM generate_series(1, 200)" >/dev/null
	if q "SELECT apikey_usage.flush()" >/dev/null 2>&1 &&
		[ "$(q "SELECT count(*) FROM apikey_usage.requests WHERE api_key_id = '$key' AND endpoint = '/r$round'")" = 200 ]; then
		flushed=$((flushed + 1))
	fi
done
check "flush() returns and its entries are visible while 1,300 rules are evaluated (5 of 5: $flushed)" test "$flushed" = 5

# and every rule is evaluated in turn (also those skipped under the lock)
left=""
for i in $(seq 1 240); do
	left=$(q "SELECT count(*) FROM apikey_usage.alert_rule WHERE last_evaluated_at IS NULL OR last_evaluated_at < '$t_mark' OR last_value IS NULL")
	[ "$left" = 0 ] && break
	sleep 0.5
done
check "every one of the 1,300 rules is evaluated, pass after pass ($left left)" test "$left" = 0
check "the failed requests fired rules (the evaluation is real)" \
	test "$(q "SELECT count(*) > 0 FROM apikey_usage.alert_rule WHERE state = 'firing' AND last_value = 1")" = t

# the skips were logged once, not once per pass
n_logged=$(grep -c 'apikey_usage: an alert evaluation pass reached its limit of .* ms' "$CLUSTER_LOG" || true)
n_all=$(grep -cE 'apikey_usage: (an alert evaluation pass reached its limit|evaluating alert rules failed)' "$CLUSTER_LOG" || true)
check "the skips are logged once ($n_logged), nothing else of the alerts ($n_all)" test "$n_logged" = 1 -a "$n_all" = 1

exit $fail
