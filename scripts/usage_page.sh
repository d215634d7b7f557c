#!/usr/bin/env bash
# Print the API Key Usage page of one key (last 30 days) in the terminal,
# with the SQL behind each part.  Uses PGHOST/PGPORT/PGDATABASE.
#   scripts/usage_page.sh KEY_ID
set -euo pipefail
KID=$1
q() { psql -X -q -v ON_ERROR_STOP=1 -P footer=off "$@"; }
show() { # title, sql
	echo
	echo "── $1"
	echo "   SQL: $2"
	q -c "$2"
}
val() { psql -X -qAt -c "SELECT $1 FROM apikey_usage.keys WHERE key_id = '$KID'"; }
NAME=$(val name); PREFIX=$(val key_prefix); WS=$(val workspace)
echo
echo "════════════════════════════════════════════════════════════════════════"
echo " API Key Usage — $NAME   (${PREFIX}…, workspace $WS)"
echo " key_id $KID · last 30 days · times in $(psql -X -qAt -c 'SHOW TimeZone')"
echo "════════════════════════════════════════════════════════════════════════"

show "API Keys of workspace $WS (description, last used, requests in 30 days, expiry)" \
"SELECT name AS \"Description\", key_prefix || '…' AS \"Key\", coalesce(to_char(last_used_at, 'YYYY-MM-DD HH24:MI:SS'), 'never') AS \"Last used\", requests_30d AS \"Requests (30 days)\", coalesce(to_char(expires_at, 'YYYY-MM-DD'), 'never') AS \"Expires\" FROM apikey_usage.keys WHERE workspace = '$WS' ORDER BY created_at"

show "Unused keys (not used in 30 days): review and delete them" \
"SELECT name AS \"Description\", key_prefix || '…' AS \"Key\", to_char(created_at, 'YYYY-MM-DD') AS \"Created\", coalesce(to_char(last_used_at, 'YYYY-MM-DD'), 'never') AS \"Last used\" FROM apikey_usage.unused_keys('30 days') WHERE workspace = '$WS'"

show "Alerts (spikes of failed or rate-limited requests; also NOTIFY apikey_usage_alerts)" \
"SELECT to_char(occurred_at, 'HH24:MI:SS') AS \"At\", state AS \"State\", metric AS \"Metric\", value AS \"Value\", threshold AS \"Threshold\", window_end - window_start AS \"Window\" FROM apikey_usage.alert_events WHERE workspace = '$WS' ORDER BY event_id"

show "Total Requests · Completed (green) · Failed (red) · Rate Limited (orange)" \
"SELECT total_requests AS \"Total Requests\", completed AS \"Completed\", failed AS \"Failed\", rate_limited AS \"Rate Limited\" FROM apikey_usage.usage_summary('$KID')"

show "Requests by HTTP Method" \
"SELECT method AS \"Method\", requests AS \"Requests\", round(100.0 * requests / sum(requests) OVER (), 1) AS \"%\" FROM apikey_usage.usage_by_method('$KID')"

show "Requests by Response Status" \
"SELECT response_code AS \"Status\", apikey_usage.status_of(response_code) AS \"Class\", requests AS \"Requests\", round(100.0 * requests / sum(requests) OVER (), 1) AS \"%\" FROM apikey_usage.usage_by_response_status('$KID')"

show "Top Endpoints" \
"SELECT endpoint AS \"Endpoint\", requests AS \"Requests\" FROM apikey_usage.top_endpoints('$KID', max_rows => 5)"

show "Usage over time (last hour, 5-minute buckets)" \
"SELECT to_char(bucket_start, 'HH24:MI') AS \"From\", total_requests AS \"Total\", completed AS \"Completed\", failed AS \"Failed\", rate_limited AS \"Rate Limited\" FROM apikey_usage.usage_timeseries('$KID', date_trunc('hour', now()), now(), '5 minutes') WHERE total_requests > 0"

show "Request Log (newest 10; filters: resource_id, key, dates, status, method, endpoint, response_code)" \
"SELECT request_id AS \"Request ID\", to_char(requested_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS \"Timestamp\", method AS \"Method\", endpoint AS \"Endpoint\", status AS \"Status\", response_code AS \"Response\" FROM apikey_usage.request_log(key_id => '$KID', max_rows => 10)"

echo
echo "── Next page: pass the last row's (requested_at, request_id) as before_requested_at / before_request_id."
echo "── Filtered, e.g. failed POSTs: SELECT * FROM apikey_usage.request_log(key_id => '$KID', status => 'failed', method => 'POST', max_rows => 10);"
