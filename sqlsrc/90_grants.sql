
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

-- fleets: node_of reveals nothing secret; every extension role may route
GRANT EXECUTE ON FUNCTION apikey_usage.node_of(text), apikey_usage.node_of(uuid)
	TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader;
