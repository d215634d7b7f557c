#!/usr/bin/env bash
# Spike alerts against a real server: a spike fires in the first
# evaluation after it is flushed, steady traffic (also above the threshold)
# never fires a baseline rule, min_requests and per-key rules hold back,
# a quiet window resolves; each transition is a row in alert_events and a
# NOTIFY apikey_usage_alerts with the JSON payload, and the background
# worker evaluates on its own every apikey_usage.alert_interval.
# Evaluations are driven by hand first (alert_interval = 1d, so the worker
# evaluates only at its start), then by the worker (alert_interval 200ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/cluster.sh
trap cluster_stop EXIT

cluster_start alerts "fsync = off" "apikey_usage.flush_interval = 50" "apikey_usage.alert_interval = '1d'"
cluster_psql -c "CREATE EXTENSION apikey_usage"
cluster_wait_worker

fail=0
check() { # description expected actual
	if [ "$2" = "$3" ]; then echo "ok - $1"; else echo "not ok - $1: expected '$2', got '$3'"; fail=1; fi
}
q() { cluster_psql -c "$1"; }
evaluate() { q "SELECT apikey_usage._evaluate_alerts()"; }

# keys; steady history for k2: 10 requests 30 s into each of the last 13 minutes
q "CREATE TABLE public.k AS SELECT 'k1' AS k, * FROM apikey_usage.generate_key('al-one', 'one')
   UNION ALL SELECT 'k2', * FROM apikey_usage.generate_key('al-two', 'two')
   UNION ALL SELECT 'k3', * FROM apikey_usage.generate_key('al-two', 'three')" >/dev/null
q "SELECT count(apikey_usage.log_request((SELECT key_id FROM public.k WHERE k = 'k2'), 'GET', '/steady', 200,
        requested_at => now() - make_interval(mins => m, secs => 30)))
     FROM generate_series(0, 12) m, generate_series(1, 10)" >/dev/null
q "SELECT apikey_usage.flush()" >/dev/null

# rules
r_failed=$(q "SELECT apikey_usage.create_alert_rule('al-one', 'failed', 5, '2 seconds', min_requests => 5)")
r_ratio=$(q "SELECT apikey_usage.create_alert_rule('al-one', 'failed_ratio', 0.5, '1 minute', min_requests => 20)")
r_steady=$(q "SELECT apikey_usage.create_alert_rule('al-two', 'total', 5, '1 minute', min_requests => 1, baseline_factor => 3)")
r_key3=$(q "SELECT apikey_usage.create_alert_rule('al-two', 'total', 1, '1 minute', (SELECT key_id FROM public.k WHERE k = 'k3'), 1)")

# steady traffic, above the threshold, never fires the baseline rule
for i in 1 2 3; do evaluate >/dev/null; done
check "steady traffic above the threshold never fires a baseline rule" "ok|10" \
	"$(q "SELECT state || '|' || last_value FROM apikey_usage.alert_rules WHERE rule_id = $r_steady")"
check "no event from three evaluations of quiet or steady traffic" "0" "$(q "SELECT count(*) FROM apikey_usage.alert_events")"

# a spike of failures: fires in the first evaluation after the flush
q "SELECT count(apikey_usage.log_request((SELECT key_id FROM public.k WHERE k = 'k1'), 'POST', '/spike', 500))
     FROM generate_series(1, 8)" >/dev/null
q "SELECT apikey_usage.flush()" >/dev/null
check "one evaluation after the spike: one transition" "1" "$(evaluate)"
check "the failed rule fires with the spike's count" "$r_failed|firing|8|5|al-one" \
	"$(q "SELECT rule_id || '|' || state || '|' || value || '|' || threshold || '|' || workspace FROM apikey_usage.alert_events")"
check "min_requests holds the ratio rule back (8 of 8 failed, fewer than 20)" "ok" \
	"$(q "SELECT state FROM apikey_usage.alert_rules WHERE rule_id = $r_ratio")"
check "a rule on one key ignores the other keys of its workspace" "ok" \
	"$(q "SELECT state FROM apikey_usage.alert_rules WHERE rule_id = $r_key3")"
check "firing is not repeated while it lasts" "0" "$(evaluate)"

# a spike on top of steady traffic fires the baseline rule
q "SELECT count(apikey_usage.log_request((SELECT key_id FROM public.k WHERE k = 'k2'), 'GET', '/steady', 200))
     FROM generate_series(1, 50)" >/dev/null
q "SELECT apikey_usage.flush()" >/dev/null
evaluate >/dev/null
check "a spike to 6x the baseline fires the baseline rule" "firing|60" \
	"$(q "SELECT state || '|' || value FROM apikey_usage.alert_events WHERE rule_id = $r_steady")"

# resolved: the worker, now evaluating every 200 ms, resolves the failed
# rule once its 2-second window is quiet, and a LISTEN client is told
q "ALTER SYSTEM SET apikey_usage.alert_interval = '200ms'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
notes=$(psql -X -qAt <<'SQL' 2>&1
LISTEN apikey_usage_alerts;
SELECT pg_sleep(4);
SELECT 1;
SQL
)
check "the worker recorded the resolved event" "resolved|0" \
	"$(q "SELECT state || '|' || value FROM apikey_usage.alert_events WHERE rule_id = $r_failed ORDER BY event_id DESC LIMIT 1")"
payload=$(echo "$notes" | grep -o 'payload "{.*}"' | sed 's/^payload "//; s/"$//' | grep '"resolved"' | head -n 1)
check "NOTIFY apikey_usage_alerts carries the transition as JSON" "$r_failed|al-one|failed|0|5|resolved|t" \
	"$(q "SELECT concat_ws('|', j->>'rule_id', j->>'workspace', j->>'metric', j->>'value', j->>'threshold', j->>'state',
	                       (j->>'window_end')::timestamptz - (j->>'window_start')::timestamptz = interval '2 seconds')
	        FROM (SELECT '$payload'::json AS j) s")"

# bad input changes nothing
for bad in "'al-one', 'latency', 1" "'al-one', 'failed_ratio', 1.5" "'al-one', 'failed', -1" \
	"'al-one', 'failed', 1, '0 seconds'" "'al-one', 'failed', 1, '1 minute', gen_random_uuid()"; do
	check "create_alert_rule($bad) is 22023" "22023" \
		"$(psql -X -qAt -c "\\set VERBOSITY sqlstate" -c "SELECT apikey_usage.create_alert_rule($bad)" 2>&1 | sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\)$/\1/p')"
done
check "rules unchanged by bad input" "4" "$(q "SELECT count(*) FROM apikey_usage.alert_rules")"
check "drop_alert_rule drops" "t" "$(q "SELECT apikey_usage.drop_alert_rule($r_ratio)")"
check "dropping again answers false" "f" "$(q "SELECT apikey_usage.drop_alert_rule($r_ratio)")"
check "events outlive their rule" "t" "$(q "SELECT count(*) > 0 FROM apikey_usage.alert_events WHERE rule_id = $r_failed")"

exit $fail
