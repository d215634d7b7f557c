
------------------------------------------------------------------------
-- Tenants (0.2.0): key management checks the caller's workspaces and
-- gains roll_key; the keys and requests views filter through the
-- visibility functions (15_visibility.sql) and are security barriers;
-- keys gains requests_30d and previous_key_expires_at; unused keys; spike
-- alerts; grants for the tenant roles.
------------------------------------------------------------------------
ALTER TABLE apikey_usage.api_keys
	ADD COLUMN previous_key_hash bytea CONSTRAINT api_keys_previous_key_hash_key UNIQUE,
	ADD COLUMN previous_key_expires_at timestamptz,
	ADD CONSTRAINT api_keys_previous_key_check
		CHECK ((previous_key_hash IS NULL) = (previous_key_expires_at IS NULL)
			   AND (deleted_at IS NULL OR previous_key_hash IS NULL));

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage.generate_key(

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage.copy_key(key_id uuid) RETURNS text

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage.delete_key(key_id uuid) RETURNS boolean

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage.rename_key(key_id uuid, name text) RETURNS void

--@include 10_core.sql CREATE OR REPLACE FUNCTION apikey_usage.set_rate_limit(key_id uuid, rate_limit integer,

--@include 10_core.sql CREATE FUNCTION apikey_usage.roll_key(key_id uuid, grace interval DEFAULT '1 day') RETURNS text


--@include 45_tenants.sql -- The usage page's best practices (issue 13): unused keys and spike

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.unused_keys(idle interval DEFAULT '30 days')

--@include 45_tenants.sql CREATE TABLE apikey_usage.alert_rule (

--@include 45_tenants.sql CREATE TABLE apikey_usage.alert_event (

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.create_alert_rule(

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.drop_alert_rule(rule_id bigint) RETURNS boolean

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._alert_counts(workspace text, key_id uuid,

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._alert_metric(metric text, total bigint, failed bigint, rate_limited bigint)

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._evaluate_alerts(budget interval DEFAULT NULL) RETURNS integer

--@include 45_tenants.sql CREATE VIEW apikey_usage.alert_rules WITH (security_barrier) AS

--@include 45_tenants.sql CREATE VIEW apikey_usage.alert_events WITH (security_barrier) AS

--@include 45_tenants.sql ALTER VIEW apikey_usage.hourly_usage SET (security_barrier = true);

--@include 50_views.sql CREATE OR REPLACE VIEW apikey_usage.keys WITH (security_barrier) AS

--@include 50_views.sql CREATE OR REPLACE VIEW apikey_usage.requests WITH (security_barrier) AS

--@include 90_grants.sql GRANT EXECUTE ON FUNCTION apikey_usage.unused_keys(interval) TO apikey_usage_reader;

--@include 90_grants.sql GRANT SELECT ON apikey_usage.keys, apikey_usage.requests,

-- as in the fresh install: nothing of the extension is PUBLIC's
REVOKE ALL ON apikey_usage.workspace_grants, apikey_usage.alert_rule, apikey_usage.alert_event FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apikey_usage FROM PUBLIC;

------------------------------------------------------------------------
-- Gateway: a reason for every refusal (issue 14).  delete_key above
-- keeps the hash in the tombstone.
------------------------------------------------------------------------

-- A deleted key's tombstone keeps its hash (never its ciphertext), so the
-- request path recognises it as revoked.  Tombstones made by 0.1.0 have
-- no hash left and stay unknown.
ALTER TABLE apikey_usage.api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE apikey_usage.api_keys
	ADD CONSTRAINT api_keys_check CHECK (deleted_at IS NOT NULL OR key_hash IS NOT NULL);

COMMENT ON FUNCTION apikey_usage.verify_key(text) IS
	'Check an API key: valid, or why not (malformed, unknown, expired, revoked). Served from the shared-memory key cache; never writes a table.';

-- check_request gains reason and reset_after_ms at the end of its result
DROP FUNCTION apikey_usage.check_request(text, text, text, text);
CREATE FUNCTION apikey_usage.check_request(api_key text, method text, endpoint text,
	resource_id text DEFAULT NULL,
	OUT allowed boolean, OUT key_id uuid, OUT workspace text, OUT response_code integer,
	OUT rate_limit integer, OUT remaining integer, OUT retry_after_ms integer,
	OUT request_id uuid, OUT rate_window interval, OUT reason text, OUT reset_after_ms integer)
	RETURNS record
	LANGUAGE c VOLATILE CALLED ON NULL INPUT
	AS 'MODULE_PATHNAME', 'apikey_usage_check_request';
COMMENT ON FUNCTION apikey_usage.check_request(text, text, text, text) IS
	'The gateway call before serving a request: credentials first, then the arguments and the rate limit (GCRA); logs refusals of recognised keys; returns what to answer and why (reason: valid, malformed, unknown, expired, revoked, rate_limited).';
REVOKE ALL ON FUNCTION apikey_usage.check_request(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apikey_usage.check_request(text, text, text, text) TO apikey_usage_app;
