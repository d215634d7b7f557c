
------------------------------------------------------------------------
-- Gateway: a reason for every refusal (issue 14)
------------------------------------------------------------------------

-- A deleted key's tombstone keeps its hash (never its ciphertext), so the
-- request path recognises it as revoked.  Tombstones made by 0.1.0 have
-- no hash left and stay unknown.
ALTER TABLE apikey_usage.api_keys DROP CONSTRAINT api_keys_check;
ALTER TABLE apikey_usage.api_keys
	ADD CONSTRAINT api_keys_check CHECK (deleted_at IS NOT NULL OR key_hash IS NOT NULL);

CREATE OR REPLACE FUNCTION apikey_usage.delete_key(key_id uuid) RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
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
	   SET key_ciphertext = NULL, deleted_at = pg_catalog.now()
	 WHERE k.key_id = delete_key.key_id;
	PERFORM apikey_usage._invalidate_key(old_hash);
	RETURN true;
END
$$;
COMMENT ON FUNCTION apikey_usage.delete_key(uuid) IS
	'Delete a key for good: its ciphertext is destroyed, every backend answers revoked for it from commit on (the tombstone keeps only its hash); its usage history stays.';

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
