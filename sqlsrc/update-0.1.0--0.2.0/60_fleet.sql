
------------------------------------------------------------------------
-- Fleets (owner: fleet).  Same objects as sqlsrc/60_fleet.sql, and
-- generate_key takes its key ids from _new_key_id() as in
-- sqlsrc/10_core.sql.
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage.node_of(api_key text) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_node_of_key';
COMMENT ON FUNCTION apikey_usage.node_of(text) IS
	'The fleet node an API key belongs to (0 for keys without a node number, such as every key made before 0.2.0); NULL for a malformed key. Reads only the key.';

--@include 60_fleet.sql CREATE FUNCTION apikey_usage.node_of(key_id uuid) RETURNS integer

--@include 60_fleet.sql CREATE FUNCTION apikey_usage._new_key_id() RETURNS uuid

REVOKE ALL ON FUNCTION apikey_usage.node_of(text), apikey_usage.node_of(uuid),
	apikey_usage._new_key_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apikey_usage.node_of(text), apikey_usage.node_of(uuid)
	TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader, apikey_usage_tenant;

-- generate_key: the one-line change of its key id's source, applied to
-- whatever body the earlier parts left (so it composes with them); fails
-- loudly if that line is not there.
DO $fleet$
DECLARE
	def		text := pg_catalog.pg_get_functiondef(
		'apikey_usage.generate_key(text, text, integer, interval, timestamptz, text)'::pg_catalog.regprocedure);
BEGIN
	IF pg_catalog.strpos(def, 'uuid := apikey_usage._new_key_id();') > 0 THEN
		RETURN;
	END IF;
	IF pg_catalog.strpos(def, 'uuid := pg_catalog.gen_random_uuid();') = 0 THEN
		RAISE EXCEPTION 'apikey_usage upgrade: generate_key does not declare its key id as expected';
	END IF;
	EXECUTE pg_catalog.replace(def, 'uuid := pg_catalog.gen_random_uuid();',
							   'uuid := apikey_usage._new_key_id();');
END
$fleet$;
