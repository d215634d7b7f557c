
------------------------------------------------------------------------
-- Grants.  Nothing is granted to PUBLIC; each role gets exactly the
-- functions and views API.md assigns to it.
------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA apikey_usage FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apikey_usage FROM PUBLIC;

-- admin: key management, and everything the reader has
GRANT EXECUTE ON FUNCTION
	apikey_usage.generate_key(text, text, integer, interval, timestamptz, text),
	apikey_usage.copy_key(uuid),
	apikey_usage.delete_key(uuid),
	apikey_usage.rename_key(uuid, text),
	apikey_usage.set_rate_limit(uuid, integer, interval)
	TO apikey_usage_admin;
GRANT apikey_usage_reader TO apikey_usage_admin;

-- app: the request path
GRANT EXECUTE ON FUNCTION
	apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text),
	apikey_usage.log_request(uuid, text, text, integer, text, uuid, timestamptz),
	apikey_usage.flush()
	TO apikey_usage_app;

-- reader: views and analytics (the analytics grants are in 20_analytics.sql)
GRANT EXECUTE ON FUNCTION apikey_usage.status_of(integer) TO apikey_usage_reader, apikey_usage_app;
GRANT SELECT ON apikey_usage.keys, apikey_usage.requests, apikey_usage.runtime_stats
	TO apikey_usage_reader;
GRANT EXECUTE ON FUNCTION apikey_usage.flush() TO apikey_usage_reader;
-- functions the views call run with the caller's privileges
GRANT EXECUTE ON FUNCTION apikey_usage._cache_last_used(), apikey_usage._runtime_stats()
	TO apikey_usage_reader;

-- visibility: the views call these with the caller's privileges
GRANT EXECUTE ON FUNCTION
	apikey_usage._visible_workspaces(),
	apikey_usage._visible_key_ids(),
	apikey_usage._visible_workspaces_uncached(),
	apikey_usage._visible_key_ids_uncached(),
	apikey_usage._visible_last_used()
	TO apikey_usage_reader, apikey_usage_tenant;
GRANT EXECUTE ON FUNCTION
	apikey_usage.grant_workspace(regrole, text, text),
	apikey_usage.revoke_workspace(regrole, text),
	apikey_usage.roll_key(uuid, interval),
	apikey_usage.create_alert_rule(text, text, numeric, interval, uuid, bigint, numeric),
	apikey_usage.drop_alert_rule(bigint)
	TO apikey_usage_admin;
GRANT EXECUTE ON FUNCTION apikey_usage.unused_keys(interval) TO apikey_usage_reader;
GRANT SELECT ON apikey_usage.alert_rules, apikey_usage.alert_events TO apikey_usage_reader;

-- tenants (grant_workspace makes a role a member of apikey_usage_tenant,
-- and of apikey_usage_tenant_admin for admin access): the reader's views
-- and analytics, which show them only their workspaces, and key
-- management, which checks the workspace of every key it touches.
GRANT SELECT ON apikey_usage.keys, apikey_usage.requests,
	apikey_usage.hourly_usage, apikey_usage.daily_usage,
	apikey_usage.alert_rules, apikey_usage.alert_events
	TO apikey_usage_tenant;
GRANT EXECUTE ON FUNCTION
	apikey_usage.status_of(integer),
	apikey_usage.flush(),
	apikey_usage.usage_summary(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_method(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz),
	apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer),
	apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval, text),
	apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage.request_count(uuid, text, timestamptz, timestamptz, text, text, text, integer),
	apikey_usage.unused_keys(interval)
	TO apikey_usage_tenant;
GRANT EXECUTE ON FUNCTION
	apikey_usage.generate_key(text, text, integer, interval, timestamptz, text),
	apikey_usage.copy_key(uuid),
	apikey_usage.delete_key(uuid),
	apikey_usage.rename_key(uuid, text),
	apikey_usage.set_rate_limit(uuid, integer, interval),
	apikey_usage.roll_key(uuid, interval),
	apikey_usage.create_alert_rule(text, text, numeric, interval, uuid, bigint, numeric),
	apikey_usage.drop_alert_rule(bigint)
	TO apikey_usage_tenant_admin;

-- fleets: node_of reveals nothing secret; every extension role may route
GRANT EXECUTE ON FUNCTION apikey_usage.node_of(text), apikey_usage.node_of(uuid)
	TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader, apikey_usage_tenant;
