
------------------------------------------------------------------------
-- Fleets: the node number carried by keys and key ids (README, "Scaling
-- out").  node_of() reads it offline: no lookup, no preloaded library
-- needed, immutable, so gateways and the PL/Proxy coordinator can route
-- by it.  generate_key takes its key ids from _new_key_id().
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage.node_of(api_key text) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_node_of_key';
COMMENT ON FUNCTION apikey_usage.node_of(text) IS
	'The fleet node an API key belongs to (0 for keys without a node number, such as every key made before 0.2.0); NULL for a malformed key. Reads only the key.';

CREATE FUNCTION apikey_usage.node_of(key_id uuid) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_node_of_key_id';
COMMENT ON FUNCTION apikey_usage.node_of(uuid) IS
	'The fleet node a key id belongs to (0 for ids without a node number, such as every id made before 0.2.0). Reads only the id.';

CREATE FUNCTION apikey_usage._new_key_id() RETURNS uuid
	LANGUAGE c VOLATILE STRICT
	AS 'MODULE_PATHNAME', 'apikey_usage_new_key_id';
COMMENT ON FUNCTION apikey_usage._new_key_id() IS
	'Internal: a fresh random key id carrying this node''s number (apikey_usage.node_id).';
