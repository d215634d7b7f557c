
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

CREATE OR REPLACE FUNCTION apikey_usage.generate_key(
	workspace text,
	name text,
	rate_limit integer DEFAULT NULL,
	rate_window interval DEFAULT '1 minute',
	expires_at timestamptz DEFAULT NULL,
	key_prefix text DEFAULT 'ak')
	RETURNS TABLE (key_id uuid, api_key text)
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_id		uuid := apikey_usage._new_key_id();
	material	record;
BEGIN
	IF workspace IS NULL THEN
		RAISE EXCEPTION 'workspace must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.octet_length(workspace) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'workspace must be 1 to 200 bytes long' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_name(name);
	PERFORM apikey_usage._check_rate_limit(rate_limit, rate_window);
	IF key_prefix IS NULL THEN
		RAISE EXCEPTION 'key_prefix must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF key_prefix !~ '^[a-z][a-z0-9]{0,15}$' THEN
		RAISE EXCEPTION 'key_prefix must match [a-z][a-z0-9]{0,15}' USING ERRCODE = '22023';
	END IF;
	IF expires_at IS NOT NULL AND expires_at <= pg_catalog.clock_timestamp() THEN
		RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_workspace_admin(workspace);

	material := apikey_usage._key_material(key_prefix, new_id);
	INSERT INTO apikey_usage.api_keys
		(key_id, workspace, name, key_prefix, key_hash, key_ciphertext,
		 expires_at, rate_limit, rate_window)
	VALUES (new_id, generate_key.workspace, generate_key.name, material.display_prefix,
			material.key_hash, material.key_ciphertext,
			generate_key.expires_at, generate_key.rate_limit, generate_key.rate_window);
	key_id := new_id;
	api_key := material.api_key;
	RETURN NEXT;
END
$$;
COMMENT ON FUNCTION apikey_usage.generate_key(text, text, integer, interval, timestamptz, text) IS
	'Create an API key for a workspace; returns its id and the secret key (shown again only by copy_key).';

CREATE OR REPLACE FUNCTION apikey_usage.copy_key(key_id uuid) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ciphertext	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_ciphertext INTO ciphertext
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = copy_key.key_id AND k.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	RETURN apikey_usage._decrypt_key(ciphertext, key_id);
END
$$;
COMMENT ON FUNCTION apikey_usage.copy_key(uuid) IS
	'The secret API key of a live key again (decrypted under the server secret).';

CREATE OR REPLACE FUNCTION apikey_usage.delete_key(key_id uuid) RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_hash INTO old_hash
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = delete_key.key_id AND k.deleted_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM apikey_usage.api_keys k WHERE k.key_id = delete_key.key_id) THEN
			RETURN false;
		END IF;
		RAISE EXCEPTION 'no API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	-- the hash stays, so that the key is recognised as revoked
	UPDATE apikey_usage.api_keys k
	   SET key_ciphertext = NULL, deleted_at = pg_catalog.now(),
		   previous_key_hash = NULL, previous_key_expires_at = NULL
	 WHERE k.key_id = delete_key.key_id;
	PERFORM apikey_usage._invalidate_key(old_hash);
	RETURN true;
END
$$;
COMMENT ON FUNCTION apikey_usage.delete_key(uuid) IS
	'Delete a key for good: its ciphertext is destroyed (and a rolled key''s previous key ends), every backend answers revoked for it from commit on (the tombstone keeps only its hash); its usage history stays.';

CREATE OR REPLACE FUNCTION apikey_usage.rename_key(key_id uuid, name text) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_name(name);
	PERFORM apikey_usage._check_key_admin(key_id);
	UPDATE apikey_usage.api_keys k SET name = rename_key.name
	 WHERE k.key_id = rename_key.key_id AND k.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage.rename_key(uuid, text) IS 'Change the name (description) of a live key.';

CREATE OR REPLACE FUNCTION apikey_usage.set_rate_limit(key_id uuid, rate_limit integer,
	rate_window interval DEFAULT '1 minute') RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_rate_limit(rate_limit, rate_window);
	PERFORM apikey_usage._check_key_admin(key_id);
	UPDATE apikey_usage.api_keys k
	   SET rate_limit = set_rate_limit.rate_limit, rate_window = set_rate_limit.rate_window
	 WHERE k.key_id = set_rate_limit.key_id AND k.deleted_at IS NULL
	RETURNING k.key_hash INTO old_hash;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._invalidate_key(old_hash);
END
$$;
COMMENT ON FUNCTION apikey_usage.set_rate_limit(uuid, integer, interval) IS
	'Set (or, with NULL, remove) the rate limit of a live key; effective on the next request in every backend.';

--@include 10_core.sql CREATE FUNCTION apikey_usage.roll_key(key_id uuid, grace interval DEFAULT '1 day') RETURNS text


--@include 45_tenants.sql -- The usage page's best practices (issue 13): unused keys and spike

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.unused_keys(idle interval DEFAULT '30 days')

--@include 45_tenants.sql CREATE TABLE apikey_usage.alert_rule (

--@include 45_tenants.sql CREATE TABLE apikey_usage.alert_event (

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.create_alert_rule(

--@include 45_tenants.sql CREATE FUNCTION apikey_usage.drop_alert_rule(rule_id bigint) RETURNS boolean

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._alert_counts(workspace text, key_id uuid,

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._alert_metric(metric text, total bigint, failed bigint, rate_limited bigint)

--@include 45_tenants.sql CREATE FUNCTION apikey_usage._evaluate_alerts() RETURNS integer

--@include 45_tenants.sql CREATE VIEW apikey_usage.alert_rules WITH (security_barrier) AS

--@include 45_tenants.sql CREATE VIEW apikey_usage.alert_events WITH (security_barrier) AS

--@include 45_tenants.sql ALTER VIEW apikey_usage.hourly_usage SET (security_barrier = true);

-- Both views are security barriers and filter through the visibility
-- functions: a tenant's own predicates (which may call functions that
-- leak their arguments) are applied only to rows it may see.  The scalar
-- subqueries evaluate the visibility functions once per query.
CREATE OR REPLACE VIEW apikey_usage.keys WITH (security_barrier) AS
SELECT k.key_id, k.workspace, k.name, k.key_prefix, k.created_at,
	   GREATEST(k.last_used_at, c.last_used_at) AS last_used_at,
	   k.expires_at, k.rate_limit, k.rate_window,
	   (SELECT s.total_requests
		  FROM apikey_usage.usage_summary(k.key_id, pg_catalog.now() - interval '30 days',
										  pg_catalog.now()) s) AS requests_30d,
	   CASE WHEN k.previous_key_expires_at > pg_catalog.now() THEN k.previous_key_expires_at END
		   AS previous_key_expires_at
  FROM apikey_usage.api_keys k
  LEFT JOIN apikey_usage._visible_last_used() c ON c.key_id = k.key_id
 WHERE k.deleted_at IS NULL
   AND ((SELECT apikey_usage._visible_workspaces()) IS NULL
		OR k.workspace = ANY ((SELECT apikey_usage._visible_workspaces())::text[]));
COMMENT ON VIEW apikey_usage.keys IS 'Live (not deleted) API keys the caller may see, with the live last_used_at from shared memory.';
COMMENT ON COLUMN apikey_usage.keys.key_id IS 'Id of the key (not secret).';
COMMENT ON COLUMN apikey_usage.keys.workspace IS 'Workspace (tenant) that owns the key.';
COMMENT ON COLUMN apikey_usage.keys.name IS 'Description shown in lists, e.g. "Zapier Integration".';
COMMENT ON COLUMN apikey_usage.keys.key_prefix IS 'Non-secret start of the key, to recognise it (e.g. ak_3xK9ab).';
COMMENT ON COLUMN apikey_usage.keys.created_at IS 'When the key was generated.';
COMMENT ON COLUMN apikey_usage.keys.last_used_at IS 'Last successful verification (live value from shared memory).';
COMMENT ON COLUMN apikey_usage.keys.expires_at IS 'When the key stops being valid; NULL = never.';
COMMENT ON COLUMN apikey_usage.keys.rate_limit IS 'Requests allowed per rate_window (burst size too); NULL = unlimited.';
COMMENT ON COLUMN apikey_usage.keys.rate_window IS 'Window of the rate limit.';
COMMENT ON COLUMN apikey_usage.keys.requests_30d IS 'Requests made with the key in the last 30 days (exact, from the rollups).';
COMMENT ON COLUMN apikey_usage.keys.previous_key_expires_at IS 'After roll_key: until when the replaced key still verifies as this key; NULL when there is none.';

CREATE OR REPLACE VIEW apikey_usage.requests WITH (security_barrier) AS
SELECT r.request_id, r.requested_at, r.api_key_id, k.name AS key_name, k.workspace,
	   r.method COLLATE "default" AS method, r.endpoint COLLATE "default" AS endpoint,
	   apikey_usage.status_of(r.response_code) AS status,
	   r.response_code::integer AS response_code, r.resource_id COLLATE "default" AS resource_id
  FROM apikey_usage.request_log_raw r
  LEFT JOIN apikey_usage.api_keys k ON k.key_id = r.api_key_id
 WHERE (SELECT apikey_usage._visible_workspaces()) IS NULL
	OR k.workspace = ANY ((SELECT apikey_usage._visible_workspaces())::text[]);
COMMENT ON VIEW apikey_usage.requests IS 'The request log of the keys the caller may see, one row per logged request, labelled with the key''s name and workspace.';
COMMENT ON COLUMN apikey_usage.requests.request_id IS 'Id of the request (UUIDv7 when generated by the extension).';
COMMENT ON COLUMN apikey_usage.requests.requested_at IS 'When the request was made.';
COMMENT ON COLUMN apikey_usage.requests.api_key_id IS 'Key the request was made with.';
COMMENT ON COLUMN apikey_usage.requests.key_name IS 'Name of that key (kept after deletion).';
COMMENT ON COLUMN apikey_usage.requests.workspace IS 'Workspace of that key.';
COMMENT ON COLUMN apikey_usage.requests.method IS 'HTTP method, upper case.';
COMMENT ON COLUMN apikey_usage.requests.endpoint IS 'Route as the application names it.';
COMMENT ON COLUMN apikey_usage.requests.status IS 'completed (100-399), rate_limited (429) or failed (other 400-599).';
COMMENT ON COLUMN apikey_usage.requests.response_code IS 'HTTP response code sent.';
COMMENT ON COLUMN apikey_usage.requests.resource_id IS 'Id of the resource the request touched, if any.';

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
