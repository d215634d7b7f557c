/*
 * apikey_usage_fleet 0.2.0 — the coordinator of a fleet (README, "Scaling
 * out").  The same SQL API as one apikey_usage node, over PL/Proxy:
 *
 *	- key management by workspace (generate_key) goes to the workspace's
 *	  node (workspace_nodes, else a hash of the workspace; the first key
 *	  of a workspace records its node, so adding nodes never moves it);
 *	- everything by key or key id goes to node_of(key) (no lookup);
 *	- key_id NULL, the keys view and flush() run on every node and are
 *	  merged here exactly (sums, and request_log by its keyset order).
 *
 * The fleet is the PL/Proxy cluster (SQL/MED server) apikey_usage_fleet:
 * partition pN is node N, modular_mapping on.  PL/Proxy connects to the
 * nodes as the calling role, so no function here is SECURITY DEFINER
 * except _place_workspace (the placement table): each node applies its own
 * privileges and workspace visibility.
 */

\echo Use "CREATE EXTENSION apikey_usage_fleet" to load this file. \quit

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_admin') THEN
		CREATE ROLE apikey_usage_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_app') THEN
		CREATE ROLE apikey_usage_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_reader') THEN
		CREATE ROLE apikey_usage_reader NOLOGIN;
	END IF;
END
$roles$;
REVOKE ALL ON SCHEMA apikey_usage FROM PUBLIC;
GRANT USAGE ON SCHEMA apikey_usage TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader;

------------------------------------------------------------------------
-- Placement and routing
------------------------------------------------------------------------
CREATE TABLE apikey_usage.workspace_nodes (
	workspace	text PRIMARY KEY,
	node		integer NOT NULL CHECK (node BETWEEN 0 AND 1023),
	placed_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.workspace_nodes IS
	'The node of each workspace: set by set_workspace_node, or recorded by the first generate_key of the workspace (hash placement).';
COMMENT ON COLUMN apikey_usage.workspace_nodes.workspace IS 'Workspace (tenant) id.';
COMMENT ON COLUMN apikey_usage.workspace_nodes.node IS 'Node number (partition pN of the PL/Proxy cluster apikey_usage_fleet).';
COMMENT ON COLUMN apikey_usage.workspace_nodes.placed_at IS 'When the placement was recorded.';

CREATE FUNCTION apikey_usage.node_of(api_key text) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_node_of_key';
COMMENT ON FUNCTION apikey_usage.node_of(text) IS
	'The fleet node an API key belongs to (0 for keys without a node number); NULL for a malformed key. Reads only the key.';

CREATE FUNCTION apikey_usage.node_of(key_id uuid) RETURNS integer
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'apikey_usage_node_of_key_id';
COMMENT ON FUNCTION apikey_usage.node_of(uuid) IS
	'The fleet node a key id belongs to (0 for ids without a node number). Reads only the id.';

-- the same pure helper as on a node, for queries written against either
CREATE FUNCTION apikey_usage.status_of(response_code integer) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN CASE WHEN response_code IS NULL THEN NULL
				WHEN response_code BETWEEN 100 AND 399 THEN 'completed'
				WHEN response_code = 429 THEN 'rate_limited'
				ELSE 'failed' END;
COMMENT ON FUNCTION apikey_usage.status_of(integer) IS
	'The status of a response code: completed (100-399), rate_limited (429), failed (any other).';

CREATE FUNCTION apikey_usage.fleet_nodes(OUT node integer, OUT connstr text)
	RETURNS SETOF record
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT pg_catalog.substr(pg_catalog.split_part(o, '=', 1), 2)::integer,
		   pg_catalog.substr(o, pg_catalog.strpos(o, '=') + 1)
	  FROM pg_catalog.pg_foreign_server s, pg_catalog.unnest(s.srvoptions) o
	 WHERE s.srvname = 'apikey_usage_fleet' AND o OPERATOR(pg_catalog.~) '^p[0-9]+='
	 ORDER BY 1
$$;
COMMENT ON FUNCTION apikey_usage.fleet_nodes() IS
	'The nodes of the fleet: the partitions p0, p1, ... of the PL/Proxy server apikey_usage_fleet.';

CREATE FUNCTION apikey_usage._node_count() RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n	integer;
BEGIN
	SELECT pg_catalog.count(*) INTO n FROM apikey_usage.fleet_nodes();
	IF n = 0 THEN
		RAISE EXCEPTION 'no fleet is configured'
			USING ERRCODE = '55000',
				  HINT = 'CREATE SERVER apikey_usage_fleet FOREIGN DATA WRAPPER plproxy OPTIONS (modular_mapping ''1'', p0 ''...'', ...); see README, "Scaling out".';
	END IF;
	RETURN n;
END
$$;
COMMENT ON FUNCTION apikey_usage._node_count() IS 'Internal: the number of nodes (55000 when no fleet is configured).';

-- The recorded node of one workspace.  SECURITY DEFINER because the table
-- of placements, which names every tenant, is readable by admins only.
CREATE FUNCTION apikey_usage._recorded_node(workspace text) RETURNS integer
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN (SELECT w.node FROM apikey_usage.workspace_nodes w
			 WHERE w.workspace OPERATOR(pg_catalog.=) _recorded_node.workspace);
COMMENT ON FUNCTION apikey_usage._recorded_node(text) IS
	'Internal: the node recorded for a workspace in workspace_nodes, or NULL.';

CREATE FUNCTION apikey_usage.workspace_node(workspace text) RETURNS integer
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	placed	integer;
BEGIN
	IF workspace IS NULL THEN
		RAISE EXCEPTION 'workspace must not be NULL' USING ERRCODE = '22004';
	END IF;
	placed := apikey_usage._recorded_node(workspace);
	IF placed IS NOT NULL THEN
		RETURN placed;
	END IF;
	-- hash placement: the first 32 bits of md5, stable across versions
	RETURN (('x' || pg_catalog.substr(pg_catalog.md5(workspace), 1, 8))::bit(32)::bigint
			OPERATOR(pg_catalog.%) apikey_usage._node_count())::integer;
END
$$;
COMMENT ON FUNCTION apikey_usage.workspace_node(text) IS
	'The node of a workspace: its workspace_nodes row, else the hash placement (md5 of the workspace modulo the number of nodes).';

CREATE FUNCTION apikey_usage._place_workspace(workspace text) RETURNS integer
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	node	integer := apikey_usage.workspace_node(workspace);
BEGIN
	INSERT INTO apikey_usage.workspace_nodes (workspace, node)
	VALUES (_place_workspace.workspace, node)
	ON CONFLICT DO NOTHING;
	RETURN node;
END
$$;
COMMENT ON FUNCTION apikey_usage._place_workspace(text) IS
	'Internal: the node of a workspace, recorded in workspace_nodes so that adding nodes later does not move it.';

CREATE FUNCTION apikey_usage.set_workspace_node(workspace text, node integer) RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF workspace IS NULL OR node IS NULL THEN
		RAISE EXCEPTION 'workspace and node must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF node < 0 OR node >= apikey_usage._node_count() THEN
		RAISE EXCEPTION 'node % is not in the fleet (nodes 0 to %)', node, apikey_usage._node_count() - 1
			USING ERRCODE = '22023';
	END IF;
	INSERT INTO apikey_usage.workspace_nodes AS w (workspace, node)
	VALUES (set_workspace_node.workspace, set_workspace_node.node)
	ON CONFLICT ON CONSTRAINT workspace_nodes_pkey
	DO UPDATE SET node = excluded.node, placed_at = pg_catalog.now();
END
$$;
COMMENT ON FUNCTION apikey_usage.set_workspace_node(text, integer) IS
	'Place a workspace on a node (before its first key, or as the last step of moving it; README, "Scaling out").';

/*
 * Re-raise an error caught around a call to the nodes.  PL/Proxy names a
 * node that cannot be reached only by its address; when the message holds
 * one node's host and port, the error says which node it is (SQLSTATE
 * 08006), else it is raised again unchanged (a node's own errors keep
 * their SQLSTATE).
 */
CREATE FUNCTION apikey_usage._fleet_reraise(state text, message text, detail text, hint text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	failed	record;
BEGIN
	SELECT f.node, f.connstr INTO failed
	  FROM apikey_usage.fleet_nodes() f,
		   LATERAL (SELECT pg_catalog.substring(f.connstr, 'host=([^ ]+)') AS host,
						   pg_catalog.substring(f.connstr, 'port=([0-9]+)') AS port) a
	 WHERE message NOT LIKE '%REMOTE ERROR%'
	   AND pg_catalog.strpos(message, a.host) > 0
	   AND (a.port IS NULL OR pg_catalog.strpos(message, a.port) > 0)
	 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'apikey_usage fleet: node % is unavailable', failed.node
			USING ERRCODE = '08006',
				  DETAIL = pg_catalog.format('Node %s (%s): %s', failed.node, failed.connstr, message),
				  HINT = 'Calls for the other nodes'' workspaces keep working; fleet-wide calls need every node.';
	END IF;
	IF COALESCE(detail, '') = '' AND COALESCE(hint, '') = '' THEN
		RAISE EXCEPTION USING MESSAGE = message, ERRCODE = state;
	ELSIF COALESCE(hint, '') = '' THEN
		RAISE EXCEPTION USING MESSAGE = message, ERRCODE = state, DETAIL = detail;
	END IF;
	RAISE EXCEPTION USING MESSAGE = message, ERRCODE = state,
		DETAIL = COALESCE(detail, ''), HINT = hint;
END
$$;
COMMENT ON FUNCTION apikey_usage._fleet_reraise(text, text, text, text) IS
	'Internal: raise an error from the nodes again, naming the node when one could not be reached.';

-- routing: a malformed key or an id naming no node goes to node 0, which
-- answers as for any malformed or unknown key
CREATE FUNCTION apikey_usage._key_node(api_key text) RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN COALESCE(apikey_usage.node_of(api_key), 0);
COMMENT ON FUNCTION apikey_usage._key_node(text) IS 'Internal: the node to route a key to.';
CREATE FUNCTION apikey_usage._id_node(key_id uuid) RETURNS integer
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN COALESCE(apikey_usage.node_of(key_id), 0);
COMMENT ON FUNCTION apikey_usage._id_node(uuid) IS 'Internal: the node to route a key id to.';

------------------------------------------------------------------------
-- Key management: generate_key by workspace, the rest by key id
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage._generate_key_on(node integer, workspace text, name text,
	rate_limit integer, rate_window interval, expires_at timestamptz, key_prefix text)
	RETURNS TABLE (key_id uuid, api_key text)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.generate_key(workspace, name, rate_limit, rate_window, expires_at, key_prefix);
$$;
COMMENT ON FUNCTION apikey_usage._generate_key_on(integer, text, text, integer, interval, timestamptz, text) IS
	'Internal: generate_key on one node.';

CREATE FUNCTION apikey_usage.generate_key(
	workspace text,
	name text,
	rate_limit integer DEFAULT NULL,
	rate_window interval DEFAULT '1 minute',
	expires_at timestamptz DEFAULT NULL,
	key_prefix text DEFAULT 'ak')
	RETURNS TABLE (key_id uuid, api_key text)
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM apikey_usage._generate_key_on(apikey_usage._place_workspace(workspace),
		workspace, name, rate_limit, rate_window, expires_at, key_prefix)
$$;
COMMENT ON FUNCTION apikey_usage.generate_key(text, text, integer, interval, timestamptz, text) IS
	'Create an API key on the workspace''s node; returns its id and the secret key.';

CREATE FUNCTION apikey_usage.copy_key(key_id uuid) RETURNS text
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.copy_key(uuid) IS 'copy_key on the key''s node.';

CREATE FUNCTION apikey_usage.delete_key(key_id uuid) RETURNS boolean
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.delete_key(uuid) IS 'delete_key on the key''s node.';

CREATE FUNCTION apikey_usage.rename_key(key_id uuid, name text) RETURNS void
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.rename_key(uuid, text) IS 'rename_key on the key''s node.';

CREATE FUNCTION apikey_usage.set_rate_limit(key_id uuid, rate_limit integer,
	rate_window interval DEFAULT '1 minute') RETURNS void
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.set_rate_limit(uuid, integer, interval) IS 'set_rate_limit on the key''s node.';

CREATE FUNCTION apikey_usage.roll_key(key_id uuid, grace interval DEFAULT '1 day') RETURNS text
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.roll_key(uuid, interval) IS 'roll_key on the key''s node (the new key names the same node).';

-- roles are named, not numbered, on the wire: each node resolves the name
CREATE FUNCTION apikey_usage._grant_workspace_on(node integer, role_name text, workspace text, access text)
	RETURNS SETOF void
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT apikey_usage.grant_workspace(role_name::regrole, workspace, access);
$$;
COMMENT ON FUNCTION apikey_usage._grant_workspace_on(integer, text, text, text) IS 'Internal.';
-- A revoke goes to every node: a workspace moved by set_workspace_node (or
-- placed by hash before nodes were added) may keep grants on a node that is
-- no longer its own.  A node where the role does not exist has nothing to
-- revoke.
CREATE FUNCTION apikey_usage._revoke_workspace_all(role_name text, workspace text)
	RETURNS SETOF void
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT apikey_usage.revoke_workspace(r.oid::pg_catalog.regrole, workspace)
	  FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) role_name;
$$;
COMMENT ON FUNCTION apikey_usage._revoke_workspace_all(text, text) IS 'Internal.';

CREATE FUNCTION apikey_usage.grant_workspace(role regrole, workspace text, access text DEFAULT 'reader')
	RETURNS void
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT apikey_usage._grant_workspace_on(apikey_usage.workspace_node(workspace), role::text, workspace, access)
$$;
COMMENT ON FUNCTION apikey_usage.grant_workspace(regrole, text, text) IS
	'grant_workspace on the workspace''s node (the role must exist there under the same name).';
CREATE FUNCTION apikey_usage.revoke_workspace(role regrole, workspace text) RETURNS void
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT count(*) FROM apikey_usage._revoke_workspace_all(role::text, workspace);
$$;
COMMENT ON FUNCTION apikey_usage.revoke_workspace(regrole, text) IS 'revoke_workspace on every node (grants left on a node the workspace moved away from go too).';

CREATE FUNCTION apikey_usage._create_alert_rule_on(node integer, workspace text, metric text,
	threshold numeric, alert_window interval, key_id uuid, min_requests bigint, baseline_factor numeric)
	RETURNS bigint
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT apikey_usage.create_alert_rule(workspace, metric, threshold, alert_window, key_id,
		min_requests, baseline_factor);
$$;
COMMENT ON FUNCTION apikey_usage._create_alert_rule_on(integer, text, text, numeric, interval, uuid, bigint, numeric) IS 'Internal.';
CREATE FUNCTION apikey_usage.create_alert_rule(
	workspace text,
	metric text,
	threshold numeric,
	alert_window interval DEFAULT '5 minutes',
	key_id uuid DEFAULT NULL,
	min_requests bigint DEFAULT 20,
	baseline_factor numeric DEFAULT NULL)
	RETURNS bigint
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT apikey_usage._create_alert_rule_on(apikey_usage.workspace_node(workspace), workspace,
		metric, threshold, alert_window, key_id, min_requests, baseline_factor)
$$;
COMMENT ON FUNCTION apikey_usage.create_alert_rule(text, text, numeric, interval, uuid, bigint, numeric) IS
	'create_alert_rule on the workspace''s node; the rule id is that node''s (drop it there, see drop_alert_rule).';

CREATE FUNCTION apikey_usage._drop_alert_rule_on(node integer, rule_id bigint) RETURNS boolean
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT apikey_usage.drop_alert_rule(rule_id);
$$;
COMMENT ON FUNCTION apikey_usage._drop_alert_rule_on(integer, bigint) IS 'Internal.';
CREATE FUNCTION apikey_usage.drop_alert_rule(rule_id bigint, node integer) RETURNS boolean
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT apikey_usage._drop_alert_rule_on(node, rule_id)
$$;
COMMENT ON FUNCTION apikey_usage.drop_alert_rule(bigint, integer) IS
	'drop_alert_rule on a node: rule ids are numbered per node, so the coordinator needs the node (the alert_rules view shows it).';

------------------------------------------------------------------------
-- Request path: by node_of (one hop more than calling the node itself)
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage.verify_key(api_key text,
	OUT valid boolean, OUT key_id uuid, OUT workspace text, OUT reason text)
	RETURNS record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._key_node(api_key);
$$;
COMMENT ON FUNCTION apikey_usage.verify_key(text) IS 'verify_key on the key''s node.';

CREATE FUNCTION apikey_usage.check_request(api_key text, method text, endpoint text,
	resource_id text DEFAULT NULL,
	OUT allowed boolean, OUT key_id uuid, OUT workspace text, OUT response_code integer,
	OUT rate_limit integer, OUT remaining integer, OUT retry_after_ms integer,
	OUT request_id uuid, OUT rate_window interval, OUT reason text, OUT reset_after_ms integer)
	RETURNS record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._key_node(api_key);
$$;
COMMENT ON FUNCTION apikey_usage.check_request(text, text, text, text) IS
	'check_request on the key''s node (its limit is exact there).';

CREATE FUNCTION apikey_usage.log_request(key_id uuid, method text, endpoint text,
	response_code integer, resource_id text DEFAULT NULL, request_id uuid DEFAULT NULL,
	requested_at timestamptz DEFAULT NULL)
	RETURNS uuid
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON apikey_usage._id_node(key_id);
$$;
COMMENT ON FUNCTION apikey_usage.log_request(uuid, text, text, integer, text, uuid, timestamptz) IS
	'log_request on the key''s node.';

/*
 * log_requests: PL/Proxy splits the arrays element by element on the key
 * id's node, so each node logs its own keys' requests in one call; the
 * optional arrays are passed as arrays of NULLs (the same meaning).
 */
CREATE FUNCTION apikey_usage._log_requests_split(key_ids uuid[], methods text[], endpoints text[],
	response_codes integer[], resource_ids text[], request_ids uuid[], requested_ats timestamptz[])
	RETURNS SETOF bigint
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	SPLIT key_ids, methods, endpoints, response_codes, resource_ids, request_ids, requested_ats;
	RUN ON apikey_usage._id_node(key_ids);
	SELECT apikey_usage.log_requests(key_ids, methods, endpoints, response_codes, resource_ids,
		request_ids, requested_ats);
$$;
COMMENT ON FUNCTION apikey_usage._log_requests_split(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) IS 'Internal.';

CREATE FUNCTION apikey_usage.log_requests(key_ids uuid[], methods text[], endpoints text[],
	response_codes integer[], resource_ids text[] DEFAULT NULL, request_ids uuid[] DEFAULT NULL,
	requested_ats timestamptz[] DEFAULT NULL) RETURNS bigint
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	n	integer := COALESCE(pg_catalog.cardinality(key_ids), 0);
BEGIN
	IF key_ids IS NULL OR methods IS NULL OR endpoints IS NULL OR response_codes IS NULL THEN
		RAISE EXCEPTION 'key_ids, methods, endpoints and response_codes must not be NULL'
			USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.cardinality(methods) <> n OR pg_catalog.cardinality(endpoints) <> n
		OR pg_catalog.cardinality(response_codes) <> n
		OR pg_catalog.cardinality(resource_ids) <> n OR pg_catalog.cardinality(request_ids) <> n
		OR pg_catalog.cardinality(requested_ats) <> n THEN
		RAISE EXCEPTION 'the arrays must have the same length' USING ERRCODE = '22023';
	END IF;
	IF n = 0 THEN
		RETURN 0;
	END IF;
	RETURN (SELECT COALESCE(pg_catalog.sum(c), 0)::bigint
			  FROM apikey_usage._log_requests_split(key_ids, methods, endpoints, response_codes,
				COALESCE(resource_ids, pg_catalog.array_fill(NULL::text, ARRAY[n])),
				COALESCE(request_ids, pg_catalog.array_fill(NULL::uuid, ARRAY[n])),
				COALESCE(requested_ats, pg_catalog.array_fill(NULL::timestamptz, ARRAY[n]))) c);
END
$$;
COMMENT ON FUNCTION apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]) IS
	'log_requests split by key id: each node logs its own keys'' requests; returns the total.';

CREATE FUNCTION apikey_usage._flush_all() RETURNS SETOF bigint
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT apikey_usage.flush();
$$;
COMMENT ON FUNCTION apikey_usage._flush_all() IS 'Internal: flush() on every node.';

CREATE FUNCTION apikey_usage.flush() RETURNS bigint
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	RETURN (SELECT COALESCE(pg_catalog.sum(n), 0)::bigint FROM apikey_usage._flush_all() n);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.flush() IS 'flush() on every node; the entries written, in total.';

------------------------------------------------------------------------
-- Analytics: a key's on its node; key_id NULL on every node, merged here
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage._usage_summary_on(node integer, key_id uuid, since timestamptz, until timestamptz,
	OUT total_requests bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.usage_summary(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_summary_on(integer, uuid, timestamptz, timestamptz) IS 'Internal.';
CREATE FUNCTION apikey_usage._usage_summary_all(key_id uuid, since timestamptz, until timestamptz,
	OUT total_requests bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.usage_summary(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_summary_all(uuid, timestamptz, timestamptz) IS 'Internal.';

CREATE FUNCTION apikey_usage.usage_summary(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	OUT total_requests bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	IF key_id IS NOT NULL THEN
		SELECT * INTO total_requests, completed, failed, rate_limited
		  FROM apikey_usage._usage_summary_on(apikey_usage._id_node(key_id), key_id, since, until);
	ELSE
		SELECT pg_catalog.sum(s.total_requests)::bigint, pg_catalog.sum(s.completed)::bigint,
			   pg_catalog.sum(s.failed)::bigint, pg_catalog.sum(s.rate_limited)::bigint
		  INTO total_requests, completed, failed, rate_limited
		  FROM apikey_usage._usage_summary_all(NULL, since, until) s;
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_summary(uuid, timestamptz, timestamptz) IS
	'usage_summary of a key on its node, or of every key: the sum over the nodes.';

CREATE FUNCTION apikey_usage._usage_by_method_on(node integer, key_id uuid, since timestamptz, until timestamptz)
	RETURNS TABLE (method text, requests bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.usage_by_method(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_by_method_on(integer, uuid, timestamptz, timestamptz) IS 'Internal.';
CREATE FUNCTION apikey_usage._usage_by_method_all(key_id uuid, since timestamptz, until timestamptz)
	RETURNS TABLE (method text, requests bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.usage_by_method(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_by_method_all(uuid, timestamptz, timestamptz) IS 'Internal.';

CREATE FUNCTION apikey_usage.usage_by_method(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (method text, requests bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	IF key_id IS NOT NULL THEN
		RETURN QUERY SELECT * FROM apikey_usage._usage_by_method_on(apikey_usage._id_node(key_id), key_id, since, until);
	ELSE
		RETURN QUERY SELECT m.method, pg_catalog.sum(m.requests)::bigint
		  FROM apikey_usage._usage_by_method_all(NULL, since, until) m
		 GROUP BY 1 ORDER BY 2 DESC, 1;
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_method(uuid, timestamptz, timestamptz) IS
	'usage_by_method of a key on its node, or of every key: summed over the nodes.';

CREATE FUNCTION apikey_usage._usage_by_response_status_on(node integer, key_id uuid, since timestamptz, until timestamptz)
	RETURNS TABLE (response_code integer, requests bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.usage_by_response_status(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_by_response_status_on(integer, uuid, timestamptz, timestamptz) IS 'Internal.';
CREATE FUNCTION apikey_usage._usage_by_response_status_all(key_id uuid, since timestamptz, until timestamptz)
	RETURNS TABLE (response_code integer, requests bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.usage_by_response_status(key_id, since, until);
$$;
COMMENT ON FUNCTION apikey_usage._usage_by_response_status_all(uuid, timestamptz, timestamptz) IS 'Internal.';

CREATE FUNCTION apikey_usage.usage_by_response_status(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (response_code integer, requests bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	IF key_id IS NOT NULL THEN
		RETURN QUERY SELECT * FROM apikey_usage._usage_by_response_status_on(apikey_usage._id_node(key_id), key_id, since, until);
	ELSE
		RETURN QUERY SELECT c.response_code, pg_catalog.sum(c.requests)::bigint
		  FROM apikey_usage._usage_by_response_status_all(NULL, since, until) c
		 GROUP BY 1 ORDER BY 2 DESC, 1;
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz) IS
	'usage_by_response_status of a key on its node, or of every key: summed over the nodes.';

CREATE FUNCTION apikey_usage._top_endpoints_on(node integer, key_id uuid, since timestamptz, until timestamptz,
	max_rows integer)
	RETURNS TABLE (endpoint text, requests bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.top_endpoints(key_id, since, until, max_rows);
$$;
COMMENT ON FUNCTION apikey_usage._top_endpoints_on(integer, uuid, timestamptz, timestamptz, integer) IS 'Internal.';
CREATE FUNCTION apikey_usage._top_endpoints_all(key_id uuid, since timestamptz, until timestamptz,
	max_rows integer, OUT node integer, OUT endpoint text, OUT requests bigint)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT pg_catalog.current_setting('apikey_usage.node_id')::integer AS node, t.endpoint, t.requests
	  FROM apikey_usage.top_endpoints(key_id, since, until, max_rows) t;
$$;
COMMENT ON FUNCTION apikey_usage._top_endpoints_all(uuid, timestamptz, timestamptz, integer) IS 'Internal.';

/*
 * Fleet-wide top endpoints, exact: every node's complete list when it has
 * at most 10000 endpoints in the bounds (summed here); when one has more,
 * its unseen endpoints have at most its 10000th count, and the answer is
 * given only when that bound cannot change it (else SQLSTATE 54000).
 */
CREATE FUNCTION apikey_usage.top_endpoints(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	max_rows integer DEFAULT 10)
	RETURNS TABLE (endpoint text, requests bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
	nodes		integer[];
	endpoints	text[];
	counts		bigint[];
	decided		boolean;
BEGIN
	IF key_id IS NOT NULL THEN
		RETURN QUERY SELECT * FROM apikey_usage._top_endpoints_on(apikey_usage._id_node(key_id), key_id, since, until, max_rows);
		RETURN;
	END IF;
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'max_rows must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF max_rows NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = '22023';
	END IF;
	SELECT pg_catalog.array_agg(t.node), pg_catalog.array_agg(t.endpoint), pg_catalog.array_agg(t.requests)
	  INTO nodes, endpoints, counts
	  FROM apikey_usage._top_endpoints_all(NULL, since, until, 10000) t;

	/*
	 * A node that returned 10000 rows may hold more endpoints, each with at
	 * most its last count (slack).  The answer stands when each of the top
	 * max_rows was returned by every such node (its sum is exact) and the
	 * last of them beats any other endpoint's sum plus the slack it could
	 * still gain.
	 */
	WITH t AS (SELECT * FROM ROWS FROM (pg_catalog.unnest(nodes), pg_catalog.unnest(endpoints), pg_catalog.unnest(counts)) AS u(node, endpoint, n)),
		 cut AS (SELECT t.node, pg_catalog.min(t.n) AS m FROM t GROUP BY t.node
				 HAVING pg_catalog.count(*) >= 10000),
		 per AS (SELECT t.endpoint, pg_catalog.sum(t.n) AS n,
						(SELECT COALESCE(pg_catalog.sum(cut.m), 0) FROM cut
						  WHERE cut.node <> ALL (pg_catalog.array_agg(t.node))) AS missing
				   FROM t GROUP BY t.endpoint),
		 ranked AS (SELECT per.*, pg_catalog.row_number() OVER (ORDER BY per.n DESC, per.endpoint) AS r
					  FROM per)
	SELECT NOT EXISTS (SELECT FROM cut)
		   OR (COALESCE(pg_catalog.bool_and(ranked.missing = 0) FILTER (WHERE ranked.r <= max_rows), true)
			   AND COALESCE(pg_catalog.min(ranked.n) FILTER (WHERE ranked.r <= max_rows), 0) >
				   GREATEST(COALESCE(pg_catalog.max(ranked.n + ranked.missing) FILTER (WHERE ranked.r > max_rows), 0),
							(SELECT pg_catalog.sum(cut.m) FROM cut)))
	  INTO decided FROM ranked;
	IF NOT decided THEN
		RAISE EXCEPTION 'fleet-wide top_endpoints cannot be answered exactly: a node has more than 10000 endpoints in these bounds'
			USING ERRCODE = '54000', HINT = 'Ask per key, or narrow the bounds.';
	END IF;
	RETURN QUERY SELECT u.endpoint, pg_catalog.sum(u.n)::bigint AS requests
	  FROM ROWS FROM (pg_catalog.unnest(endpoints), pg_catalog.unnest(counts)) AS u(endpoint, n)
	 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT max_rows;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer) IS
	'top_endpoints of a key on its node, or of every key: exact over the nodes (54000 when a node''s 10000 endpoints cannot decide it).';

CREATE FUNCTION apikey_usage._usage_timeseries_on(node integer, key_id uuid, since timestamptz, until timestamptz,
	bucket interval, time_zone text)
	RETURNS TABLE (bucket_start timestamptz, total_requests bigint, completed bigint, failed bigint, rate_limited bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.usage_timeseries(key_id, since, until, bucket, time_zone);
$$;
COMMENT ON FUNCTION apikey_usage._usage_timeseries_on(integer, uuid, timestamptz, timestamptz, interval, text) IS 'Internal.';
CREATE FUNCTION apikey_usage._usage_timeseries_all(key_id uuid, since timestamptz, until timestamptz,
	bucket interval, time_zone text)
	RETURNS TABLE (bucket_start timestamptz, total_requests bigint, completed bigint, failed bigint, rate_limited bigint)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.usage_timeseries(key_id, since, until, bucket, time_zone);
$$;
COMMENT ON FUNCTION apikey_usage._usage_timeseries_all(uuid, timestamptz, timestamptz, interval, text) IS 'Internal.';

CREATE FUNCTION apikey_usage.usage_timeseries(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	bucket interval DEFAULT '1 hour',
	time_zone text DEFAULT NULL)
	RETURNS TABLE (bucket_start timestamptz, total_requests bigint, completed bigint, failed bigint, rate_limited bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	IF key_id IS NOT NULL THEN
		RETURN QUERY SELECT * FROM apikey_usage._usage_timeseries_on(apikey_usage._id_node(key_id), key_id, since, until, bucket, time_zone);
	ELSE
		RETURN QUERY SELECT t.bucket_start, pg_catalog.sum(t.total_requests)::bigint,
			   pg_catalog.sum(t.completed)::bigint, pg_catalog.sum(t.failed)::bigint,
			   pg_catalog.sum(t.rate_limited)::bigint
		  FROM apikey_usage._usage_timeseries_all(NULL, since, until, bucket, time_zone) t
		 GROUP BY 1 ORDER BY 1;
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval, text) IS
	'usage_timeseries of a key on its node, or of every key: summed per bucket over the nodes.';

CREATE FUNCTION apikey_usage._request_log_on(node integer,
	key_id uuid, resource_id text, since timestamptz, until timestamptz, status text,
	method text, endpoint text, response_code integer, max_rows integer,
	before_requested_at timestamptz, before_request_id uuid)
	RETURNS TABLE (request_id uuid, requested_at timestamptz, api_key_id uuid, method text,
				   endpoint text, status text, response_code integer, resource_id text)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT * FROM apikey_usage.request_log(key_id, resource_id, since, until, status, method,
		endpoint, response_code, max_rows, before_requested_at, before_request_id);
$$;
COMMENT ON FUNCTION apikey_usage._request_log_on(integer, uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS 'Internal.';
CREATE FUNCTION apikey_usage._request_log_all(
	key_id uuid, resource_id text, since timestamptz, until timestamptz, status text,
	method text, endpoint text, response_code integer, max_rows integer,
	before_requested_at timestamptz, before_request_id uuid)
	RETURNS TABLE (request_id uuid, requested_at timestamptz, api_key_id uuid, method text,
				   endpoint text, status text, response_code integer, resource_id text)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.request_log(key_id, resource_id, since, until, status, method,
		endpoint, response_code, max_rows, before_requested_at, before_request_id);
$$;
COMMENT ON FUNCTION apikey_usage._request_log_all(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS 'Internal.';

CREATE FUNCTION apikey_usage._fleet_request_log(
	p_resource_id text, p_since timestamptz, p_until timestamptz, p_status text,
	p_method text, p_endpoint text, p_response_code integer, p_max_rows integer,
	p_before_requested_at timestamptz, p_before_request_id uuid)
	RETURNS TABLE (request_id uuid, requested_at timestamptz, api_key_id uuid, method text,
				   endpoint text, status text, response_code integer, resource_id text)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	RETURN QUERY SELECT * FROM apikey_usage._request_log_all(NULL, p_resource_id, p_since, p_until,
		p_status, p_method, p_endpoint, p_response_code, p_max_rows, p_before_requested_at,
		p_before_request_id);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage._fleet_request_log(text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'Internal: request_log on every node (errors name the node that failed).';

/*
 * Every node returns its own newest max_rows before the cursor; the fleet's
 * newest max_rows are among them, so merging by the same keyset order
 * (requested_at DESC, request_id DESC) and cutting is exact, and the last
 * row's (requested_at, request_id) is the cursor of the next page.
 */
CREATE FUNCTION apikey_usage.request_log(
	key_id uuid DEFAULT NULL,
	resource_id text DEFAULT NULL,
	since timestamptz DEFAULT NULL,
	until timestamptz DEFAULT NULL,
	status text DEFAULT NULL,
	method text DEFAULT NULL,
	endpoint text DEFAULT NULL,
	response_code integer DEFAULT NULL,
	max_rows integer DEFAULT 50,
	before_requested_at timestamptz DEFAULT NULL,
	before_request_id uuid DEFAULT NULL)
	RETURNS TABLE (request_id uuid, requested_at timestamptz, api_key_id uuid, method text,
				   endpoint text, status text, response_code integer, resource_id text)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM (
		SELECT * FROM apikey_usage._request_log_on(apikey_usage._id_node($1),
			$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		 WHERE $1 IS NOT NULL
		UNION ALL
		SELECT * FROM apikey_usage._fleet_request_log($2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		 WHERE $1 IS NULL) r
	 ORDER BY r.requested_at DESC, r.request_id DESC
	 LIMIT $9
$$;
COMMENT ON FUNCTION apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'request_log of a key on its node, or of every key: the nodes'' pages merged newest first (keyset cursor as on one node).';

CREATE FUNCTION apikey_usage._request_count_on(node integer, key_id uuid, resource_id text,
	since timestamptz, until timestamptz, status text, method text, endpoint text, response_code integer)
	RETURNS SETOF bigint
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON node;
	SELECT apikey_usage.request_count(key_id, resource_id, since, until, status, method, endpoint, response_code);
$$;
COMMENT ON FUNCTION apikey_usage._request_count_on(integer, uuid, text, timestamptz, timestamptz, text, text, text, integer) IS 'Internal.';
CREATE FUNCTION apikey_usage._request_count_all(key_id uuid, resource_id text,
	since timestamptz, until timestamptz, status text, method text, endpoint text, response_code integer)
	RETURNS SETOF bigint
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT apikey_usage.request_count(key_id, resource_id, since, until, status, method, endpoint, response_code);
$$;
COMMENT ON FUNCTION apikey_usage._request_count_all(uuid, text, timestamptz, timestamptz, text, text, text, integer) IS 'Internal.';

CREATE FUNCTION apikey_usage.request_count(
	key_id uuid DEFAULT NULL,
	resource_id text DEFAULT NULL,
	since timestamptz DEFAULT NULL,
	until timestamptz DEFAULT NULL,
	status text DEFAULT NULL,
	method text DEFAULT NULL,
	endpoint text DEFAULT NULL,
	response_code integer DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	IF key_id IS NOT NULL THEN
		RETURN (SELECT c FROM apikey_usage._request_count_on(apikey_usage._id_node(key_id), key_id,
			resource_id, since, until, status, method, endpoint, response_code) c);
	END IF;
	RETURN (SELECT COALESCE(pg_catalog.sum(c), 0)::bigint FROM apikey_usage._request_count_all(NULL,
		resource_id, since, until, status, method, endpoint, response_code) c);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage.request_count(uuid, text, timestamptz, timestamptz, text, text, text, integer) IS
	'request_count of a key on its node, or over every node: the sum.';

------------------------------------------------------------------------
-- Views over every node
------------------------------------------------------------------------
CREATE FUNCTION apikey_usage._unused_keys_all(idle interval)
	RETURNS TABLE (key_id uuid, workspace text, name text, key_prefix text,
				   created_at timestamptz, last_used_at timestamptz)
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT * FROM apikey_usage.unused_keys(idle);
$$;
COMMENT ON FUNCTION apikey_usage._unused_keys_all(interval) IS 'Internal.';
CREATE FUNCTION apikey_usage.unused_keys(idle interval DEFAULT '30 days')
	RETURNS TABLE (key_id uuid, workspace text, name text, key_prefix text,
				   created_at timestamptz, last_used_at timestamptz)
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
	SELECT * FROM apikey_usage._unused_keys_all(idle) k
	 ORDER BY k.last_used_at NULLS FIRST, k.created_at, k.key_id
$$;
COMMENT ON FUNCTION apikey_usage.unused_keys(interval) IS 'unused_keys of every node, in the node''s order.';

CREATE FUNCTION apikey_usage._alert_rules_all(
	OUT node integer, OUT rule_id bigint, OUT workspace text, OUT key_id uuid, OUT metric text,
	OUT threshold numeric, OUT alert_window interval, OUT min_requests bigint,
	OUT baseline_factor numeric, OUT state text, OUT created_at timestamptz,
	OUT last_evaluated_at timestamptz, OUT last_value numeric)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT pg_catalog.current_setting('apikey_usage.node_id')::integer AS node, r.*
	  FROM apikey_usage.alert_rules r;
$$;
COMMENT ON FUNCTION apikey_usage._alert_rules_all() IS 'Internal.';
CREATE VIEW apikey_usage.alert_rules AS
	SELECT r.rule_id, r.workspace, r.key_id, r.metric, r.threshold, r.alert_window, r.min_requests,
		   r.baseline_factor, r.state, r.created_at, r.last_evaluated_at, r.last_value, r.node
	  FROM apikey_usage._alert_rules_all() r;
COMMENT ON VIEW apikey_usage.alert_rules IS 'Alert rules of every node, with the node at the end (rule ids are per node).';
COMMENT ON COLUMN apikey_usage.alert_rules.rule_id IS 'Id of the rule on its node.';
COMMENT ON COLUMN apikey_usage.alert_rules.workspace IS 'Workspace the rule watches.';
COMMENT ON COLUMN apikey_usage.alert_rules.key_id IS 'Key the rule watches; NULL = every key of the workspace.';
COMMENT ON COLUMN apikey_usage.alert_rules.metric IS 'failed, rate_limited, total, failed_ratio or rate_limited_ratio.';
COMMENT ON COLUMN apikey_usage.alert_rules.threshold IS 'Value above which the rule fires.';
COMMENT ON COLUMN apikey_usage.alert_rules.alert_window IS 'Window the metric is computed over.';
COMMENT ON COLUMN apikey_usage.alert_rules.min_requests IS 'Fewer requests than this in the window never fire.';
COMMENT ON COLUMN apikey_usage.alert_rules.baseline_factor IS 'When set, the metric must also be this many times its average over the previous 12 windows.';
COMMENT ON COLUMN apikey_usage.alert_rules.state IS 'ok or firing, as of the last evaluation.';
COMMENT ON COLUMN apikey_usage.alert_rules.created_at IS 'When the rule was created.';
COMMENT ON COLUMN apikey_usage.alert_rules.last_evaluated_at IS 'Last evaluation by the node''s worker.';
COMMENT ON COLUMN apikey_usage.alert_rules.last_value IS 'Metric value at the last evaluation.';
COMMENT ON COLUMN apikey_usage.alert_rules.node IS 'The node holding the rule.';

CREATE FUNCTION apikey_usage._alert_events_all(
	OUT node integer, OUT event_id bigint, OUT rule_id bigint, OUT workspace text, OUT key_id uuid,
	OUT metric text, OUT value numeric, OUT threshold numeric, OUT window_start timestamptz,
	OUT window_end timestamptz, OUT state text, OUT occurred_at timestamptz)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT pg_catalog.current_setting('apikey_usage.node_id')::integer AS node, e.*
	  FROM apikey_usage.alert_events e;
$$;
COMMENT ON FUNCTION apikey_usage._alert_events_all() IS 'Internal.';
CREATE VIEW apikey_usage.alert_events AS
	SELECT e.event_id, e.rule_id, e.workspace, e.key_id, e.metric, e.value, e.threshold,
		   e.window_start, e.window_end, e.state, e.occurred_at, e.node
	  FROM apikey_usage._alert_events_all() e;
COMMENT ON VIEW apikey_usage.alert_events IS 'Alert transitions of every node, with the node at the end.';
COMMENT ON COLUMN apikey_usage.alert_events.event_id IS 'Id of the transition on its node.';
COMMENT ON COLUMN apikey_usage.alert_events.rule_id IS 'Rule (on the same node).';
COMMENT ON COLUMN apikey_usage.alert_events.workspace IS 'Workspace of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.key_id IS 'Key of the rule; NULL = every key.';
COMMENT ON COLUMN apikey_usage.alert_events.metric IS 'Metric of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.value IS 'Metric value at the transition.';
COMMENT ON COLUMN apikey_usage.alert_events.threshold IS 'Threshold of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.window_start IS 'Start of the evaluated window.';
COMMENT ON COLUMN apikey_usage.alert_events.window_end IS 'End of the evaluated window.';
COMMENT ON COLUMN apikey_usage.alert_events.state IS 'firing or resolved.';
COMMENT ON COLUMN apikey_usage.alert_events.occurred_at IS 'When the transition happened.';
COMMENT ON COLUMN apikey_usage.alert_events.node IS 'The node holding the rule.';

CREATE FUNCTION apikey_usage._keys_all(
	OUT key_id uuid, OUT workspace text, OUT name text, OUT key_prefix text,
	OUT created_at timestamptz, OUT last_used_at timestamptz, OUT expires_at timestamptz,
	OUT rate_limit integer, OUT rate_window interval, OUT requests_30d bigint,
	OUT previous_key_expires_at timestamptz)
	RETURNS SETOF record
	LANGUAGE plproxy AS $$
	CLUSTER 'apikey_usage_fleet';
	RUN ON ALL;
	SELECT key_id, workspace, name, key_prefix, created_at, last_used_at, expires_at,
		   rate_limit, rate_window, requests_30d, previous_key_expires_at
	  FROM apikey_usage.keys;
$$;
COMMENT ON FUNCTION apikey_usage._keys_all() IS 'Internal: the keys view of every node.';

CREATE FUNCTION apikey_usage._fleet_keys(
	OUT key_id uuid, OUT workspace text, OUT name text, OUT key_prefix text,
	OUT created_at timestamptz, OUT last_used_at timestamptz, OUT expires_at timestamptz,
	OUT rate_limit integer, OUT rate_window interval, OUT requests_30d bigint,
	OUT previous_key_expires_at timestamptz)
	RETURNS SETOF record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	err_state	text;
	err_message	text;
	err_detail	text;
	err_hint	text;
BEGIN
	RETURN QUERY SELECT * FROM apikey_usage._keys_all();
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE, err_message = MESSAGE_TEXT,
		err_detail = PG_EXCEPTION_DETAIL, err_hint = PG_EXCEPTION_HINT;
	PERFORM apikey_usage._fleet_reraise(err_state, err_message, err_detail, err_hint);
END
$$;
COMMENT ON FUNCTION apikey_usage._fleet_keys() IS 'Internal: the keys view of every node (errors name the node that failed).';

CREATE VIEW apikey_usage.keys AS
	SELECT k.key_id, k.workspace, k.name, k.key_prefix, k.created_at, k.last_used_at,
		   k.expires_at, k.rate_limit, k.rate_window, k.requests_30d, k.previous_key_expires_at,
		   apikey_usage.node_of(k.key_id) AS node
	  FROM apikey_usage._fleet_keys() k;
COMMENT ON VIEW apikey_usage.keys IS 'Live API keys of every node (each node applies the caller''s visibility), with the node at the end.';
COMMENT ON COLUMN apikey_usage.keys.key_id IS 'Id of the key (not secret).';
COMMENT ON COLUMN apikey_usage.keys.workspace IS 'Workspace (tenant) that owns the key.';
COMMENT ON COLUMN apikey_usage.keys.name IS 'Description shown in lists.';
COMMENT ON COLUMN apikey_usage.keys.key_prefix IS 'Non-secret start of the key, to recognise it.';
COMMENT ON COLUMN apikey_usage.keys.created_at IS 'When the key was generated.';
COMMENT ON COLUMN apikey_usage.keys.last_used_at IS 'Last successful verification (live value from the node''s shared memory).';
COMMENT ON COLUMN apikey_usage.keys.expires_at IS 'When the key stops being valid; NULL = never.';
COMMENT ON COLUMN apikey_usage.keys.rate_limit IS 'Requests allowed per rate_window; NULL = unlimited.';
COMMENT ON COLUMN apikey_usage.keys.rate_window IS 'Window of the rate limit.';
COMMENT ON COLUMN apikey_usage.keys.requests_30d IS 'Requests made with the key in the last 30 days.';
COMMENT ON COLUMN apikey_usage.keys.previous_key_expires_at IS 'Until when the key''s previous secret still verifies after roll_key; NULL = not in a grace period.';
COMMENT ON COLUMN apikey_usage.keys.node IS 'The node holding the key.';

------------------------------------------------------------------------
-- Grants: as on a node
------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA apikey_usage FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA apikey_usage FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	apikey_usage.generate_key(text, text, integer, interval, timestamptz, text),
	apikey_usage._generate_key_on(integer, text, text, integer, interval, timestamptz, text),
	apikey_usage._place_workspace(text),
	apikey_usage.copy_key(uuid),
	apikey_usage.delete_key(uuid),
	apikey_usage.rename_key(uuid, text),
	apikey_usage.set_rate_limit(uuid, integer, interval),
	apikey_usage.roll_key(uuid, interval),
	apikey_usage.grant_workspace(regrole, text, text), apikey_usage._grant_workspace_on(integer, text, text, text),
	apikey_usage.revoke_workspace(regrole, text), apikey_usage._revoke_workspace_all(text, text),
	apikey_usage.create_alert_rule(text, text, numeric, interval, uuid, bigint, numeric),
	apikey_usage._create_alert_rule_on(integer, text, text, numeric, interval, uuid, bigint, numeric),
	apikey_usage.drop_alert_rule(bigint, integer), apikey_usage._drop_alert_rule_on(integer, bigint)
	TO apikey_usage_admin;
GRANT apikey_usage_reader TO apikey_usage_admin;
GRANT EXECUTE ON FUNCTION
	apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text),
	apikey_usage.log_request(uuid, text, text, integer, text, uuid, timestamptz),
	apikey_usage.log_requests(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]),
	apikey_usage._log_requests_split(uuid[], text[], text[], integer[], text[], uuid[], timestamptz[]),
	apikey_usage.flush(), apikey_usage._flush_all()
	TO apikey_usage_app;
GRANT EXECUTE ON FUNCTION
	apikey_usage.node_of(text), apikey_usage.node_of(uuid), apikey_usage.status_of(integer),
	apikey_usage._key_node(text), apikey_usage._id_node(uuid),
	apikey_usage.fleet_nodes(), apikey_usage._node_count(), apikey_usage.workspace_node(text),
	apikey_usage._recorded_node(text),
	apikey_usage._fleet_reraise(text, text, text, text)
	TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader;
GRANT EXECUTE ON FUNCTION
	apikey_usage.flush(), apikey_usage._flush_all(),
	apikey_usage.usage_summary(uuid, timestamptz, timestamptz),
	apikey_usage._usage_summary_on(integer, uuid, timestamptz, timestamptz),
	apikey_usage._usage_summary_all(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_method(uuid, timestamptz, timestamptz),
	apikey_usage._usage_by_method_on(integer, uuid, timestamptz, timestamptz),
	apikey_usage._usage_by_method_all(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz),
	apikey_usage._usage_by_response_status_on(integer, uuid, timestamptz, timestamptz),
	apikey_usage._usage_by_response_status_all(uuid, timestamptz, timestamptz),
	apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer),
	apikey_usage._top_endpoints_on(integer, uuid, timestamptz, timestamptz, integer),
	apikey_usage._top_endpoints_all(uuid, timestamptz, timestamptz, integer),
	apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval, text),
	apikey_usage._usage_timeseries_on(integer, uuid, timestamptz, timestamptz, interval, text),
	apikey_usage._usage_timeseries_all(uuid, timestamptz, timestamptz, interval, text),
	apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage._fleet_request_log(text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage._fleet_reraise(text, text, text, text),
	apikey_usage._request_log_on(integer, uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage._request_log_all(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage._keys_all(), apikey_usage._fleet_keys(),
	apikey_usage.request_count(uuid, text, timestamptz, timestamptz, text, text, text, integer),
	apikey_usage._request_count_on(integer, uuid, text, timestamptz, timestamptz, text, text, text, integer),
	apikey_usage._request_count_all(uuid, text, timestamptz, timestamptz, text, text, text, integer),
	apikey_usage.unused_keys(interval), apikey_usage._unused_keys_all(interval),
	apikey_usage._alert_rules_all(), apikey_usage._alert_events_all()
	TO apikey_usage_reader;
GRANT SELECT ON apikey_usage.keys, apikey_usage.alert_rules,
	apikey_usage.alert_events TO apikey_usage_reader;
-- the whole placement table names every tenant: admins only (workspace_node()
-- answers for one workspace)
GRANT SELECT ON apikey_usage.workspace_nodes TO apikey_usage_admin;
