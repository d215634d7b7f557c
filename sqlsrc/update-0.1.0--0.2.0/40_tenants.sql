
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

-- A new secret for the same key id (one usage history); the replaced key
-- keeps verifying as this key until now() + grace.  The previous hash is
-- never cached: each use of it reads the key table, so its grace ends in
-- every backend by the clock alone, and it is verified and rate-limited
-- through the current key's cache entry (one shared limit).  A key has at
-- most one previous key: rolling again ends the earlier one at once.
CREATE FUNCTION apikey_usage.roll_key(key_id uuid, grace interval DEFAULT '1 day') RETURNS text
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
	old_prefix	text;
	material	record;
BEGIN
	IF key_id IS NULL OR grace IS NULL THEN
		RAISE EXCEPTION 'key_id and grace must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF grace < interval '0' THEN
		RAISE EXCEPTION 'grace must not be negative' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_hash, k.key_prefix INTO old_hash, old_prefix
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = roll_key.key_id AND k.deleted_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	-- the display prefix is "<prefix>_<first characters>"
	material := apikey_usage._key_material(pg_catalog.split_part(old_prefix, '_', 1), key_id);
	UPDATE apikey_usage.api_keys k
	   SET key_hash = material.key_hash, key_ciphertext = material.key_ciphertext,
		   key_prefix = material.display_prefix,
		   previous_key_hash = CASE WHEN grace > interval '0' THEN old_hash END,
		   previous_key_expires_at = CASE WHEN grace > interval '0' THEN pg_catalog.now() + grace END
	 WHERE k.key_id = roll_key.key_id;
	PERFORM apikey_usage._invalidate_key(old_hash);
	RETURN material.api_key;
END
$$;
COMMENT ON FUNCTION apikey_usage.roll_key(uuid, interval) IS
	'Replace a live key''s secret, keeping its id; the old key verifies as the same key until now() + grace (0 = until commit). Returns the new api_key.';


------------------------------------------------------------------------
-- The usage page's best practices (issue 13): unused keys and spike
-- alerts.  Everything here honours tenant isolation: unused_keys reads
-- the keys view as its caller; the alert views filter through the
-- visibility functions; the rule functions check the workspace.
------------------------------------------------------------------------

-- Live keys not used within idle: never used and older than idle, or last
-- used before now() - idle.  Runs as the caller, through the keys view,
-- so a tenant sees only its own keys.
CREATE FUNCTION apikey_usage.unused_keys(idle interval DEFAULT '30 days')
	RETURNS TABLE (key_id uuid, workspace text, name text, key_prefix text,
				   created_at timestamptz, last_used_at timestamptz)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF idle IS NULL THEN
		RAISE EXCEPTION 'idle must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF idle < interval '0' THEN
		RAISE EXCEPTION 'idle must not be negative' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
	SELECT k.key_id, k.workspace, k.name, k.key_prefix, k.created_at, k.last_used_at
	  FROM apikey_usage.keys k
	 WHERE CASE WHEN k.last_used_at IS NULL THEN k.created_at < pg_catalog.now() - idle
				ELSE k.last_used_at < pg_catalog.now() - idle END
	 ORDER BY k.last_used_at NULLS FIRST, k.created_at, k.key_id;
END
$$;
COMMENT ON FUNCTION apikey_usage.unused_keys(interval) IS
	'Live keys not used within idle (never used and older than idle, or last used before now() - idle), least recently used first; only the caller''s workspaces.';

-- Alert rules and their transitions.  Only the SECURITY DEFINER functions
-- below and the worker write them; users read the alert_rules and
-- alert_events views.
CREATE TABLE apikey_usage.alert_rule (
	rule_id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	workspace		text NOT NULL,
	key_id			uuid,
	metric			text NOT NULL
		CHECK (metric IN ('failed', 'rate_limited', 'total', 'failed_ratio', 'rate_limited_ratio')),
	threshold		numeric NOT NULL,
	alert_window	interval NOT NULL,
	min_requests	bigint NOT NULL,
	baseline_factor	numeric,
	state			text NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'firing')),
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	last_evaluated_at timestamptz,
	last_value		numeric
);
CREATE INDEX alert_rule_workspace_idx ON apikey_usage.alert_rule (workspace);
COMMENT ON TABLE apikey_usage.alert_rule IS
	'Spike alert rules (create_alert_rule); read them through the alert_rules view.';

CREATE TABLE apikey_usage.alert_event (
	event_id		bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	rule_id			bigint NOT NULL,
	workspace		text NOT NULL,
	key_id			uuid,
	metric			text NOT NULL,
	value			numeric NOT NULL,
	threshold		numeric NOT NULL,
	window_start	timestamptz NOT NULL,
	window_end		timestamptz NOT NULL,
	state			text NOT NULL CHECK (state IN ('firing', 'resolved')),
	occurred_at		timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX alert_event_workspace_idx ON apikey_usage.alert_event (workspace, event_id);
COMMENT ON TABLE apikey_usage.alert_event IS
	'Alert transitions (firing, resolved), kept after their rule is dropped; read them through the alert_events view.';

CREATE FUNCTION apikey_usage.create_alert_rule(
	workspace text,
	metric text,
	threshold numeric,
	alert_window interval DEFAULT '5 minutes',
	key_id uuid DEFAULT NULL,
	min_requests bigint DEFAULT 20,
	baseline_factor numeric DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_id		bigint;
BEGIN
	IF workspace IS NULL OR metric IS NULL OR threshold IS NULL OR alert_window IS NULL
		OR min_requests IS NULL THEN
		RAISE EXCEPTION 'workspace, metric, threshold, alert_window and min_requests must not be NULL'
			USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.octet_length(workspace) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'workspace must be 1 to 200 bytes long' USING ERRCODE = '22023';
	END IF;
	IF metric NOT IN ('failed', 'rate_limited', 'total', 'failed_ratio', 'rate_limited_ratio') THEN
		RAISE EXCEPTION 'unknown metric'
			USING ERRCODE = '22023',
				  HINT = 'metric is failed, rate_limited, total, failed_ratio or rate_limited_ratio.';
	END IF;
	IF threshold < 0 OR (metric LIKE '%\_ratio' AND threshold > 1) THEN
		RAISE EXCEPTION 'threshold must be >= 0 (and at most 1 for a ratio)' USING ERRCODE = '22023';
	END IF;
	IF alert_window < interval '1 second' OR alert_window > interval '1 day'
		OR pg_catalog.date_part('month', alert_window) <> 0 THEN
		RAISE EXCEPTION 'alert_window must be between 1 second and 1 day' USING ERRCODE = '22023';
	END IF;
	IF min_requests < 0 THEN
		RAISE EXCEPTION 'min_requests must not be negative' USING ERRCODE = '22023';
	END IF;
	IF baseline_factor IS NOT NULL AND baseline_factor <= 0 THEN
		RAISE EXCEPTION 'baseline_factor must be positive (or NULL for none)' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_workspace_admin(workspace);
	IF key_id IS NOT NULL AND NOT EXISTS (
		SELECT FROM apikey_usage.api_keys k
		 WHERE k.key_id OPERATOR(pg_catalog.=) create_alert_rule.key_id
		   AND k.workspace OPERATOR(pg_catalog.=) create_alert_rule.workspace) THEN
		RAISE EXCEPTION 'workspace % has no API key with id %', workspace, key_id
			USING ERRCODE = '22023';
	END IF;
	INSERT INTO apikey_usage.alert_rule
		(workspace, key_id, metric, threshold, alert_window, min_requests, baseline_factor)
	VALUES (create_alert_rule.workspace, create_alert_rule.key_id, create_alert_rule.metric,
			create_alert_rule.threshold, create_alert_rule.alert_window,
			create_alert_rule.min_requests, create_alert_rule.baseline_factor)
	RETURNING rule_id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION apikey_usage.create_alert_rule(text, text, numeric, interval, uuid, bigint, numeric) IS
	'Alert when, over the last alert_window, metric reaches threshold with at least min_requests requests (and, with baseline_factor, is that many times its average over the previous 12 windows). Returns the rule id.';

CREATE FUNCTION apikey_usage.drop_alert_rule(rule_id bigint) RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rule_workspace	text;
BEGIN
	IF rule_id IS NULL THEN
		RAISE EXCEPTION 'rule_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	SELECT r.workspace INTO rule_workspace FROM apikey_usage.alert_rule r
	 WHERE r.rule_id OPERATOR(pg_catalog.=) drop_alert_rule.rule_id FOR UPDATE;
	IF NOT FOUND THEN
		-- a tenant cannot tell another workspace's rule from no rule
		IF NOT apikey_usage._caller_is_global('admin') THEN
			RAISE EXCEPTION 'permission denied for alert rule %', rule_id USING ERRCODE = '42501';
		END IF;
		RETURN false;
	END IF;
	IF NOT apikey_usage._caller_is_global('admin')
		AND rule_workspace OPERATOR(pg_catalog.<>) ALL (apikey_usage._granted_workspaces('admin')) THEN
		RAISE EXCEPTION 'permission denied for alert rule %', rule_id USING ERRCODE = '42501';
	END IF;
	DELETE FROM apikey_usage.alert_rule r WHERE r.rule_id OPERATOR(pg_catalog.=) drop_alert_rule.rule_id;
	RETURN true;
END
$$;
COMMENT ON FUNCTION apikey_usage.drop_alert_rule(bigint) IS
	'Drop an alert rule (its events stay); false when there is no such rule.';

-- Exact request counts of a workspace (or one of its keys) in
-- [since, until), from the analytics (rollups plus raw edges).
CREATE FUNCTION apikey_usage._alert_counts(workspace text, key_id uuid,
	since timestamptz, until timestamptz,
	OUT total bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS record
	LANGUAGE sql STABLE
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		SELECT coalesce(pg_catalog.sum(s.total_requests), 0)::bigint,
			   coalesce(pg_catalog.sum(s.failed), 0)::bigint,
			   coalesce(pg_catalog.sum(s.rate_limited), 0)::bigint
		  FROM apikey_usage.api_keys k
		 CROSS JOIN LATERAL apikey_usage.usage_summary(k.key_id, since, until) s
		 WHERE k.workspace OPERATOR(pg_catalog.=) _alert_counts.workspace
		   AND (_alert_counts.key_id IS NULL OR k.key_id OPERATOR(pg_catalog.=) _alert_counts.key_id);
	END;
COMMENT ON FUNCTION apikey_usage._alert_counts(text, uuid, timestamptz, timestamptz) IS
	'Internal: exact total, failed and rate-limited requests of a workspace or one of its keys in [since, until).';

-- The value of a metric from counts (a ratio of no requests is 0).
CREATE FUNCTION apikey_usage._alert_metric(metric text, total bigint, failed bigint, rate_limited bigint)
	RETURNS numeric
	LANGUAGE sql IMMUTABLE
	RETURN CASE metric
		WHEN 'failed' THEN failed::numeric
		WHEN 'rate_limited' THEN rate_limited::numeric
		WHEN 'total' THEN total::numeric
		WHEN 'failed_ratio' THEN CASE WHEN total > 0 THEN round(failed::numeric / total, 6) ELSE 0 END
		WHEN 'rate_limited_ratio' THEN CASE WHEN total > 0 THEN round(rate_limited::numeric / total, 6) ELSE 0 END
	END;
COMMENT ON FUNCTION apikey_usage._alert_metric(text, bigint, bigint, bigint) IS
	'Internal: the value of an alert metric from request counts.';

-- Evaluate every rule over the window ending now; record and NOTIFY each
-- transition.  Called by the background worker every alert_interval.
-- The baseline of a count is its mean over the previous 12 windows; of a
-- ratio, the ratio over those 12 windows together.
CREATE FUNCTION apikey_usage._evaluate_alerts() RETURNS integer
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	rule		record;
	cur			record;
	base		record;
	value		numeric;
	baseline	numeric;
	firing		boolean;
	window_end	timestamptz := pg_catalog.clock_timestamp();
	window_start timestamptz;
	new_state	text;
	event		bigint;
	transitions	integer := 0;
BEGIN
	FOR rule IN SELECT * FROM apikey_usage.alert_rule ORDER BY rule_id FOR UPDATE SKIP LOCKED LOOP
		window_start := window_end - rule.alert_window;
		cur := apikey_usage._alert_counts(rule.workspace, rule.key_id, window_start, window_end);
		value := apikey_usage._alert_metric(rule.metric, cur.total, cur.failed, cur.rate_limited);
		firing := value >= rule.threshold AND cur.total >= rule.min_requests;
		IF firing AND rule.baseline_factor IS NOT NULL THEN
			base := apikey_usage._alert_counts(rule.workspace, rule.key_id,
											   window_start - 12 * rule.alert_window, window_start);
			baseline := apikey_usage._alert_metric(rule.metric, base.total, base.failed, base.rate_limited);
			IF rule.metric NOT LIKE '%\_ratio' THEN
				baseline := baseline / 12;
			END IF;
			firing := value >= rule.baseline_factor * baseline;
		END IF;
		new_state := CASE WHEN firing THEN 'firing' ELSE 'ok' END;
		IF new_state <> rule.state THEN
			INSERT INTO apikey_usage.alert_event
				(rule_id, workspace, key_id, metric, value, threshold, window_start, window_end, state)
			VALUES (rule.rule_id, rule.workspace, rule.key_id, rule.metric, value, rule.threshold,
					window_start, window_end, CASE WHEN firing THEN 'firing' ELSE 'resolved' END)
			RETURNING event_id INTO event;
			PERFORM pg_catalog.pg_notify('apikey_usage_alerts', pg_catalog.json_build_object(
				'event_id', event, 'rule_id', rule.rule_id, 'workspace', rule.workspace,
				'key_id', rule.key_id, 'metric', rule.metric, 'value', value,
				'threshold', rule.threshold, 'window_start', window_start,
				'window_end', window_end, 'state', CASE WHEN firing THEN 'firing' ELSE 'resolved' END)::text);
			transitions := transitions + 1;
		END IF;
		UPDATE apikey_usage.alert_rule r
		   SET state = new_state, last_evaluated_at = window_end, last_value = value
		 WHERE r.rule_id OPERATOR(pg_catalog.=) rule.rule_id;
	END LOOP;
	RETURN transitions;
END
$$;
COMMENT ON FUNCTION apikey_usage._evaluate_alerts() IS
	'Internal: evaluate every alert rule now, record and NOTIFY apikey_usage_alerts each transition; returns their number.';

CREATE VIEW apikey_usage.alert_rules WITH (security_barrier) AS
SELECT r.rule_id, r.workspace, r.key_id, r.metric, r.threshold, r.alert_window, r.min_requests,
	   r.baseline_factor, r.state, r.created_at, r.last_evaluated_at, r.last_value
  FROM apikey_usage.alert_rule r
 WHERE (SELECT apikey_usage._visible_workspaces()) IS NULL
	OR r.workspace = ANY ((SELECT apikey_usage._visible_workspaces())::text[]);
COMMENT ON VIEW apikey_usage.alert_rules IS 'Spike alert rules of the workspaces the caller may see, with their current state.';
COMMENT ON COLUMN apikey_usage.alert_rules.rule_id IS 'Id of the rule (create_alert_rule).';
COMMENT ON COLUMN apikey_usage.alert_rules.workspace IS 'Workspace whose requests the rule watches.';
COMMENT ON COLUMN apikey_usage.alert_rules.key_id IS 'The one key watched; NULL = every key of the workspace.';
COMMENT ON COLUMN apikey_usage.alert_rules.metric IS 'failed, rate_limited, total, failed_ratio or rate_limited_ratio.';
COMMENT ON COLUMN apikey_usage.alert_rules.threshold IS 'The rule fires when the metric reaches this value.';
COMMENT ON COLUMN apikey_usage.alert_rules.alert_window IS 'The metric is taken over the last alert_window.';
COMMENT ON COLUMN apikey_usage.alert_rules.min_requests IS 'Fewer requests than this in the window never fire.';
COMMENT ON COLUMN apikey_usage.alert_rules.baseline_factor IS 'When set, the metric must also be this many times its average over the previous 12 windows.';
COMMENT ON COLUMN apikey_usage.alert_rules.state IS 'ok or firing, as of the last evaluation.';
COMMENT ON COLUMN apikey_usage.alert_rules.created_at IS 'When the rule was created.';
COMMENT ON COLUMN apikey_usage.alert_rules.last_evaluated_at IS 'End of the window of the last evaluation.';
COMMENT ON COLUMN apikey_usage.alert_rules.last_value IS 'Value of the metric at the last evaluation.';

CREATE VIEW apikey_usage.alert_events WITH (security_barrier) AS
SELECT e.event_id, e.rule_id, e.workspace, e.key_id, e.metric, e.value, e.threshold,
	   e.window_start, e.window_end, e.state, e.occurred_at
  FROM apikey_usage.alert_event e
 WHERE (SELECT apikey_usage._visible_workspaces()) IS NULL
	OR e.workspace = ANY ((SELECT apikey_usage._visible_workspaces())::text[]);
COMMENT ON VIEW apikey_usage.alert_events IS 'Alert transitions (firing, resolved) of the workspaces the caller may see; also sent as NOTIFY apikey_usage_alerts.';
COMMENT ON COLUMN apikey_usage.alert_events.event_id IS 'Id of the transition, increasing.';
COMMENT ON COLUMN apikey_usage.alert_events.rule_id IS 'The rule that changed state.';
COMMENT ON COLUMN apikey_usage.alert_events.workspace IS 'Workspace of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.key_id IS 'Key of the rule; NULL = every key of the workspace.';
COMMENT ON COLUMN apikey_usage.alert_events.metric IS 'Metric of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.value IS 'Value of the metric over the window.';
COMMENT ON COLUMN apikey_usage.alert_events.threshold IS 'Threshold of the rule.';
COMMENT ON COLUMN apikey_usage.alert_events.window_start IS 'Start of the evaluated window.';
COMMENT ON COLUMN apikey_usage.alert_events.window_end IS 'End of the evaluated window (the evaluation time).';
COMMENT ON COLUMN apikey_usage.alert_events.state IS 'firing or resolved.';
COMMENT ON COLUMN apikey_usage.alert_events.occurred_at IS 'When the transition was recorded.';

-- The rollup views (20_analytics.sql) filter through the visibility
-- functions; as security barriers, a caller's own predicates never see
-- the rows filtered out (the leak test runs a leaking function on them).
ALTER VIEW apikey_usage.hourly_usage SET (security_barrier = true);
ALTER VIEW apikey_usage.daily_usage SET (security_barrier = true);

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
