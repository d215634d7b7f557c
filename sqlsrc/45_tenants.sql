
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
	max_rules	constant integer := 100;
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
	-- at most max_rules rules per workspace: the worker evaluates them all
	-- (serialised per workspace, so concurrent calls cannot exceed it)
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('apikey_usage.alert_rule'),
											 pg_catalog.hashtext(workspace));
	IF (SELECT pg_catalog.count(*) FROM apikey_usage.alert_rule r
		 WHERE r.workspace OPERATOR(pg_catalog.=) create_alert_rule.workspace) >= max_rules THEN
		RAISE EXCEPTION 'workspace % already has % alert rules, the most it may have', workspace, max_rules
			USING ERRCODE = '22023',
				  HINT = 'Drop rules it no longer needs (drop_alert_rule) first.';
	END IF;
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
	'Alert when, over the last alert_window, metric reaches threshold with at least min_requests requests (and, with baseline_factor, is that many times its average over the previous 12 windows). At most 100 rules per workspace. Returns the rule id.';

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

-- Evaluate the rules over the window ending now; record and NOTIFY each
-- transition.  Called by the background worker every alert_interval with
-- a budget: it stops starting rules once the budget is spent, and since
-- the rules least recently evaluated go first, the next call takes up
-- those not reached.  Rules with the same workspace, key and window share
-- one count.  A rule whose evaluation is cancelled (the worker's time
-- limit, see src/alerts/alerts.c) is skipped: its last_evaluated_at moves
-- on with last_value NULL and its state unchanged, so it cannot hold back
-- the rules after it, and the call returns.
-- The baseline of a count is its mean over the previous 12 windows; of a
-- ratio, the ratio over those 12 windows together.
CREATE FUNCTION apikey_usage._evaluate_alerts(budget interval DEFAULT NULL) RETURNS integer
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
	counted		jsonb := '{}';		-- counts of this call by workspace, key and range
	ckey		text;
	cancelled	boolean;
	evaluated	integer := 0;
BEGIN
	FOR rule IN SELECT * FROM apikey_usage.alert_rule
				 ORDER BY last_evaluated_at NULLS FIRST, rule_id FOR UPDATE SKIP LOCKED LOOP
		EXIT WHEN evaluated > 0 AND budget IS NOT NULL
			AND pg_catalog.clock_timestamp() >= window_end + budget;
		window_start := window_end - rule.alert_window;
		cancelled := false;
		BEGIN
			ckey := pg_catalog.jsonb_build_array(rule.workspace, rule.key_id, rule.alert_window, 'cur')::text;
			IF counted ? ckey THEN
				SELECT (counted -> ckey ->> 0)::bigint AS total, (counted -> ckey ->> 1)::bigint AS failed,
					   (counted -> ckey ->> 2)::bigint AS rate_limited INTO cur;
			ELSE
				cur := apikey_usage._alert_counts(rule.workspace, rule.key_id, window_start, window_end);
				counted := counted || pg_catalog.jsonb_build_object(ckey,
					pg_catalog.jsonb_build_array(cur.total, cur.failed, cur.rate_limited));
			END IF;
			value := apikey_usage._alert_metric(rule.metric, cur.total, cur.failed, cur.rate_limited);
			firing := value >= rule.threshold AND cur.total >= rule.min_requests;
			IF firing AND rule.baseline_factor IS NOT NULL THEN
				ckey := pg_catalog.jsonb_build_array(rule.workspace, rule.key_id, rule.alert_window, 'base')::text;
				IF counted ? ckey THEN
					SELECT (counted -> ckey ->> 0)::bigint AS total, (counted -> ckey ->> 1)::bigint AS failed,
						   (counted -> ckey ->> 2)::bigint AS rate_limited INTO base;
				ELSE
					base := apikey_usage._alert_counts(rule.workspace, rule.key_id,
													   window_start - 12 * rule.alert_window, window_start);
					counted := counted || pg_catalog.jsonb_build_object(ckey,
						pg_catalog.jsonb_build_array(base.total, base.failed, base.rate_limited));
				END IF;
				baseline := apikey_usage._alert_metric(rule.metric, base.total, base.failed, base.rate_limited);
				IF rule.metric NOT LIKE '%\_ratio' THEN
					baseline := baseline / 12;
				END IF;
				firing := value >= rule.baseline_factor * baseline;
			END IF;
		EXCEPTION WHEN query_canceled THEN
			cancelled := true;
		END;
		IF cancelled THEN
			-- the pass is over.  A rule that had it all to itself is that slow:
			-- skipped, to the back of the queue.  One that started late keeps
			-- its place at the front, so the next pass gives it the whole time.
			IF evaluated = 0 THEN
				UPDATE apikey_usage.alert_rule r
				   SET last_evaluated_at = window_end, last_value = NULL
				 WHERE r.rule_id OPERATOR(pg_catalog.=) rule.rule_id;
			END IF;
			EXIT;
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
		evaluated := evaluated + 1;
	END LOOP;
	RETURN transitions;
END
$$;
COMMENT ON FUNCTION apikey_usage._evaluate_alerts(interval) IS
	'Internal: evaluate the alert rules now, least recently evaluated first, starting none after budget (NULL: every rule); record and NOTIFY apikey_usage_alerts each transition; returns their number.';

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
