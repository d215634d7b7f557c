
------------------------------------------------------------------------
-- Analytics (apikey_usage_reader)
--
-- Every count is exact: equal to a plain count over request_log_raw for
-- the same bounds.  Whole UTC hours (or days) inside [since, until) are
-- read from rollups: usage_hourly (written in the same transaction as the
-- raw rows it counts) and the two tables derived from it below; the
-- partial hours at the two edges from the raw log through its
-- (api_key_id, requested_at) or (requested_at) index.  A dashboard over
-- 30 days of one key thus reads a few thousand to some ten thousand
-- rollup rows plus at most two hours of raw rows, whatever the traffic.
--
-- The queries are built as text and run with EXECUTE ... USING, so each
-- call is planned for its own arguments: a NULL key_id or bound drops its
-- condition (instead of an "x IS NULL OR" that no index serves), and the
-- day partitions of the raw log are pruned at plan time.  Only fixed SQL
-- fragments enter the text; every value is a parameter.
--
-- The functions are SECURITY DEFINER (readers have no table privileges),
-- STABLE (one snapshot for rollups and raw log alike, so a concurrent
-- flush is seen entirely or not at all) and pin search_path.
------------------------------------------------------------------------

-- since > until is bad input (22023); NULL bounds are unbounded sides.
CREATE FUNCTION apikey_usage._check_bounds(since timestamptz, until timestamptz) RETURNS void
	LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF since > until THEN
		RAISE EXCEPTION 'since must not be later than until'
			USING ERRCODE = '22023',
				  DETAIL = pg_catalog.format('since = %s, until = %s', since, until);
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._check_bounds(timestamptz, timestamptz) IS
	'Internal: raise 22023 when since > until.';

------------------------------------------------------------------------
-- Derived rollups, kept equal to usage_hourly by statement triggers (in
-- the same transaction as every change of usage_hourly: the worker's
-- flushes, imports, retention):
--
--   usage_daily         usage_hourly summed per UTC day
--   usage_hourly_codes  usage_hourly summed over method and endpoint
--
-- A busy key has hundreds of (method, endpoint, response code)
-- combinations an hour, so 30 days of usage_hourly are a few hundred
-- thousand rows of that key.  usage_daily holds about 1/24 of that, for
-- by_method and top_endpoints; usage_hourly_codes a handful of rows an
-- hour, for usage_summary, usage_by_response_status and usage_timeseries,
-- which need nothing but the response code.
------------------------------------------------------------------------
CREATE TABLE apikey_usage.usage_daily (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	method			text COLLATE "C" NOT NULL,	-- as in usage_hourly
	endpoint		text COLLATE "C" NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, method, endpoint, response_code)
);
CREATE INDEX usage_daily_bucket_idx ON apikey_usage.usage_daily (bucket_start);
COMMENT ON TABLE apikey_usage.usage_daily IS
	'Request counts per key, UTC day, method, endpoint and response code: usage_hourly summed per day, maintained by triggers on usage_hourly.';

CREATE TABLE apikey_usage.usage_hourly_codes (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, response_code)
);
CREATE INDEX usage_hourly_codes_bucket_idx ON apikey_usage.usage_hourly_codes (bucket_start);
COMMENT ON TABLE apikey_usage.usage_hourly_codes IS
	'Request counts per key, UTC hour and response code: usage_hourly summed over method and endpoint, maintained by triggers on usage_hourly.';

/*
 * The one entry point from the log writer into the rollups: a batch's
 * counts per (key, UTC minute, method, endpoint, response code), already
 * aggregated by the writer, added to every rollup grain in the writer's
 * transaction.  The writer knows nothing of the grains; this function
 * does.  Rows are upserted in primary-key order so concurrent writers
 * lock them in one order.
 */
CREATE FUNCTION apikey_usage._rollup_apply(
	key_ids uuid[], minute_starts timestamptz[], methods text[], endpoints text[],
	response_codes smallint[], counts bigint[]) RETURNS void
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		INSERT INTO apikey_usage.usage_hourly AS u
			(api_key_id, bucket_start, method, endpoint, response_code, requests)
		SELECT b.api_key_id,
			   pg_catalog.date_trunc('hour', b.minute_start, 'UTC'),
			   b.method, b.endpoint, b.response_code, pg_catalog.sum(b.n)::bigint
		  FROM unnest(key_ids, minute_starts, methods, endpoints, response_codes, counts)
			AS b(api_key_id, minute_start, method, endpoint, response_code, n)
		 GROUP BY 1, 2, 3, 4, 5
		 ORDER BY 1, 2, 3, 4, 5
		ON CONFLICT (api_key_id, bucket_start, method, endpoint, response_code)
		DO UPDATE SET requests = u.requests OPERATOR(pg_catalog.+) excluded.requests;
	END;
COMMENT ON FUNCTION apikey_usage._rollup_apply(uuid[], timestamptz[], text[], text[], smallint[], bigint[]) IS
	'Internal: add a batch''s pre-aggregated counts (per key, minute, method, endpoint, code) to every rollup grain.';

/*
 * Apply a statement's change of usage_hourly to usage_daily and
 * usage_hourly_codes, from the transition tables: inserted rows add,
 * updated rows add new minus old, deleted rows subtract (and derived rows
 * that reach zero are deleted).  A flush (INSERT ... ON CONFLICT DO
 * UPDATE) fires the INSERT and the UPDATE trigger once each.  Rows are
 * upserted in primary-key order, as the flush does with usage_hourly, so
 * concurrent writers lock them in one order.
 */
CREATE FUNCTION apikey_usage._usage_rollups_sync() RETURNS trigger
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	-- the statement's change as signed counts (each event sees only its
	-- own transition tables, hence the text chosen per event)
	added		constant text :=
		'SELECT n.api_key_id, n.bucket_start, n.method, n.endpoint, n.response_code, n.requests FROM new_rows n';
	removed		constant text :=
		'SELECT o.api_key_id, o.bucket_start, o.method, o.endpoint, o.response_code, -o.requests FROM old_rows o';
	delta		text;
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		TRUNCATE apikey_usage.usage_daily, apikey_usage.usage_hourly_codes;
		RETURN NULL;
	END IF;
	delta := CASE TG_OP WHEN 'INSERT' THEN added
						WHEN 'UPDATE' THEN added || ' UNION ALL ' || removed
						ELSE removed END;
	EXECUTE
		'WITH delta (api_key_id, bucket_start, method, endpoint, response_code, requests)'
		' AS MATERIALIZED (' || delta || '), daily AS ('
		'	INSERT INTO apikey_usage.usage_daily AS d'
		'		(api_key_id, bucket_start, method, endpoint, response_code, requests)'
		'	SELECT c.api_key_id, pg_catalog.date_bin(''1 day'', c.bucket_start, ''1970-01-01 00:00:00+00''),'
		'		   c.method, c.endpoint, c.response_code, pg_catalog.sum(c.requests)'
		'	  FROM delta c'
		'	 GROUP BY 1, 2, 3, 4, 5'
		'	HAVING pg_catalog.sum(c.requests) <> 0'
		'	 ORDER BY 1, 2, 3, 4, 5'
		'	ON CONFLICT (api_key_id, bucket_start, method, endpoint, response_code)'
		'	DO UPDATE SET requests = d.requests + excluded.requests'
		')'
		' INSERT INTO apikey_usage.usage_hourly_codes AS h (api_key_id, bucket_start, response_code, requests)'
		' SELECT c.api_key_id, c.bucket_start, c.response_code, pg_catalog.sum(c.requests)'
		'   FROM delta c'
		'  GROUP BY 1, 2, 3'
		' HAVING pg_catalog.sum(c.requests) <> 0'
		'  ORDER BY 1, 2, 3'
		' ON CONFLICT (api_key_id, bucket_start, response_code)'
		' DO UPDATE SET requests = h.requests + excluded.requests';
	IF TG_OP = 'DELETE' THEN
		-- deleted hours (retention): drop the derived rows that reached
		-- zero (a count merely lowered to 0 by an UPDATE stays, as it
		-- does in usage_hourly)
		DELETE FROM apikey_usage.usage_daily AS d
		 USING (SELECT DISTINCT o.api_key_id,
					   pg_catalog.date_bin('1 day', o.bucket_start, '1970-01-01 00:00:00+00') AS bucket_start
				  FROM old_rows o) o
		 WHERE d.api_key_id = o.api_key_id AND d.bucket_start = o.bucket_start AND d.requests <= 0;
		DELETE FROM apikey_usage.usage_hourly_codes AS h
		 USING (SELECT DISTINCT o.api_key_id, o.bucket_start FROM old_rows o) o
		 WHERE h.api_key_id = o.api_key_id AND h.bucket_start = o.bucket_start AND h.requests <= 0;
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION apikey_usage._usage_rollups_sync() IS
	'Internal: trigger function keeping usage_daily and usage_hourly_codes equal to usage_hourly summed per UTC day and over method and endpoint.';

CREATE TRIGGER usage_rollups_insert AFTER INSERT ON apikey_usage.usage_hourly
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION apikey_usage._usage_rollups_sync();
CREATE TRIGGER usage_rollups_update AFTER UPDATE ON apikey_usage.usage_hourly
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION apikey_usage._usage_rollups_sync();
CREATE TRIGGER usage_rollups_delete AFTER DELETE ON apikey_usage.usage_hourly
	REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION apikey_usage._usage_rollups_sync();
CREATE TRIGGER usage_rollups_truncate AFTER TRUNCATE ON apikey_usage.usage_hourly
	FOR EACH STATEMENT EXECUTE FUNCTION apikey_usage._usage_rollups_sync();

/*
 * The query that yields what was requested in [since, until), as rows
 * (ts, method, endpoint, response_code, n), from the coarsest source
 * that is exact for each part of the range:
 *
 *   raw log   [since, lo_hour)                    ts = requested_at, n = 1
 *   hourly    [lo_hour, lo_day)                   ts = the UTC hour, n = its count
 *   daily     [lo_day, hi_day)                    ts = the UTC day
 *   hourly    [hi_day, hi_hour)
 *   raw log   [hi_hour, until)
 *
 * where lo_* round since up and hi_* round until down to whole UTC hours
 * and days.  coarsest chooses the sources: 'day' (all three), 'hour' (no
 * daily rows, for time buckets a day does not fit in), 'raw' (only the raw
 * log, for buckets an hour does not fit in), or 'codes': whole hours from
 * usage_hourly_codes (method and endpoint NULL), for the callers that need
 * only the response code.  A NULL since / until (or an infinite one on its
 * own side) leaves that side unbounded.
 *
 * Parameters of the returned query: $1 key_id (referenced only when
 * by_key), $2 since, $3 until, $4 lo_hour, $5 hi_hour, $6 lo_day,
 * $7 hi_day; the caller passes the bounds returned here.  Callers number
 * their own parameters from $8.
 */
CREATE FUNCTION apikey_usage._usage_query(
	by_key boolean, since timestamptz, until timestamptz, coarsest text,
	OUT lo_hour timestamptz, OUT hi_hour timestamptz,
	OUT lo_day timestamptz, OUT hi_day timestamptz, OUT query text)
	RETURNS record
	LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	epoch		constant timestamptz := '1970-01-01 00:00:00+00';
	raw_select	constant text :=
		'SELECT r.requested_at AS ts, r.method, r.endpoint, r.response_code, 1::bigint AS n'
		' FROM apikey_usage.request_log_raw r WHERE true'
		|| CASE WHEN by_key THEN ' AND r.api_key_id OPERATOR(pg_catalog.=) $1' ELSE '' END;
	hour_select	constant text :=
		CASE WHEN coarsest = 'codes' THEN
			'SELECT u.bucket_start AS ts, NULL::text COLLATE "C" AS method, NULL::text COLLATE "C" AS endpoint,'
			' u.response_code, u.requests AS n FROM apikey_usage.usage_hourly_codes u WHERE true'
		ELSE
			'SELECT u.bucket_start AS ts, u.method, u.endpoint, u.response_code, u.requests AS n'
			' FROM apikey_usage.usage_hourly u WHERE true'
		END
		|| CASE WHEN by_key THEN ' AND u.api_key_id OPERATOR(pg_catalog.=) $1' ELSE '' END;
	day_select	constant text :=
		'SELECT d.bucket_start AS ts, d.method, d.endpoint, d.response_code, d.requests AS n'
		' FROM apikey_usage.usage_daily d WHERE true'
		|| CASE WHEN by_key THEN ' AND d.api_key_id OPERATOR(pg_catalog.=) $1' ELSE '' END;
	pieces		text[] := '{}';
	piece		text;
BEGIN
	IF coarsest NOT IN ('raw', 'codes', 'hour', 'day') THEN
		RAISE EXCEPTION 'unknown level %', coarsest USING ERRCODE = '22023';
	END IF;
	IF since = '-infinity' THEN
		since := NULL;
	END IF;
	IF until = 'infinity' THEN
		until := NULL;
	END IF;

	IF since = 'infinity' OR until = '-infinity' OR since >= until THEN
		query := 'SELECT NULL::timestamptz AS ts, NULL::text AS method, NULL::text AS endpoint,'
			' NULL::smallint AS response_code, 0::bigint AS n WHERE false';
		RETURN;
	END IF;

	IF coarsest <> 'raw' THEN
		IF since IS NOT NULL THEN
			lo_hour := pg_catalog.date_bin('1 hour', since, epoch);
			IF lo_hour < since THEN
				lo_hour := lo_hour + interval '1 hour';
			END IF;
		END IF;
		IF until IS NOT NULL THEN
			hi_hour := pg_catalog.date_bin('1 hour', until, epoch);
		END IF;
	END IF;

	-- no whole hour inside: everything from the raw log
	IF coarsest = 'raw' OR lo_hour >= hi_hour THEN
		lo_hour := NULL;
		hi_hour := NULL;
		piece := raw_select;
		IF since IS NOT NULL THEN
			piece := piece || ' AND r.requested_at OPERATOR(pg_catalog.>=) $2';
		END IF;
		IF until IS NOT NULL THEN
			piece := piece || ' AND r.requested_at OPERATOR(pg_catalog.<) $3';
		END IF;
		query := piece;
		RETURN;
	END IF;

	IF coarsest = 'day' THEN
		IF since IS NOT NULL THEN
			lo_day := pg_catalog.date_bin('1 day', since, epoch);
			IF lo_day < since THEN
				lo_day := lo_day + interval '24 hours';
			END IF;
		END IF;
		IF until IS NOT NULL THEN
			hi_day := pg_catalog.date_bin('1 day', until, epoch);
		END IF;
		IF lo_day >= hi_day THEN
			lo_day := NULL;		-- no whole day inside
			hi_day := NULL;
			coarsest := 'hour';
		END IF;
	END IF;

	IF coarsest = 'day' THEN
		piece := day_select;
		IF lo_day IS NOT NULL THEN
			piece := piece || ' AND d.bucket_start OPERATOR(pg_catalog.>=) $6';
		END IF;
		IF hi_day IS NOT NULL THEN
			piece := piece || ' AND d.bucket_start OPERATOR(pg_catalog.<) $7';
		END IF;
		pieces := pieces || piece;
		IF lo_hour < lo_day THEN
			pieces := pieces || (hour_select
				|| ' AND u.bucket_start OPERATOR(pg_catalog.>=) $4'
				|| ' AND u.bucket_start OPERATOR(pg_catalog.<) $6');
		END IF;
		IF hi_day < hi_hour THEN
			pieces := pieces || (hour_select
				|| ' AND u.bucket_start OPERATOR(pg_catalog.>=) $7'
				|| ' AND u.bucket_start OPERATOR(pg_catalog.<) $5');
		END IF;
	ELSE
		piece := hour_select;
		IF lo_hour IS NOT NULL THEN
			piece := piece || ' AND u.bucket_start OPERATOR(pg_catalog.>=) $4';
		END IF;
		IF hi_hour IS NOT NULL THEN
			piece := piece || ' AND u.bucket_start OPERATOR(pg_catalog.<) $5';
		END IF;
		pieces := pieces || piece;
	END IF;

	IF since < lo_hour THEN
		pieces := pieces || (raw_select
			|| ' AND r.requested_at OPERATOR(pg_catalog.>=) $2'
			|| ' AND r.requested_at OPERATOR(pg_catalog.<) $4');
	END IF;
	IF hi_hour < until THEN
		pieces := pieces || (raw_select
			|| ' AND r.requested_at OPERATOR(pg_catalog.>=) $5'
			|| ' AND r.requested_at OPERATOR(pg_catalog.<) $3');
	END IF;
	query := pg_catalog.array_to_string(pieces, ' UNION ALL ');
END
$$;
COMMENT ON FUNCTION apikey_usage._usage_query(boolean, timestamptz, timestamptz, text) IS
	'Internal: the daily + hourly rollups + raw-edge query behind the analytics functions, with the whole-day and whole-hour ranges it uses.';

-- The per-status sums over the rows of _usage_query, as SQL text.
CREATE FUNCTION apikey_usage._status_sums_sql() RETURNS text
	LANGUAGE sql IMMUTABLE
	RETURN 'COALESCE(pg_catalog.sum(s.n), 0)::bigint,'
		' COALESCE(pg_catalog.sum(s.n) FILTER (WHERE s.response_code BETWEEN 100 AND 399), 0)::bigint,'
		' COALESCE(pg_catalog.sum(s.n) FILTER (WHERE s.response_code NOT BETWEEN 100 AND 399'
		' AND s.response_code OPERATOR(pg_catalog.<>) 429), 0)::bigint,'
		' COALESCE(pg_catalog.sum(s.n) FILTER (WHERE s.response_code OPERATOR(pg_catalog.=) 429), 0)::bigint';
COMMENT ON FUNCTION apikey_usage._status_sums_sql() IS
	'Internal: SQL text of the total / completed / failed / rate_limited sums used by the analytics functions.';

CREATE FUNCTION apikey_usage.usage_summary(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	OUT total_requests bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS record
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q	record;
BEGIN
	PERFORM apikey_usage._check_bounds(since, until);
	q := apikey_usage._usage_query(key_id IS NOT NULL, since, until, 'codes');
	EXECUTE 'SELECT ' || apikey_usage._status_sums_sql() || ' FROM (' || q.query || ') s'
	   INTO total_requests, completed, failed, rate_limited
	  USING key_id, since, until, q.lo_hour, q.hi_hour, q.lo_day, q.hi_day;
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_summary(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) (default: the last 30 days; NULL = unbounded), by status; always one row.';

CREATE FUNCTION apikey_usage.usage_by_method(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (method text, requests bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q	record;
BEGIN
	PERFORM apikey_usage._check_bounds(since, until);
	q := apikey_usage._usage_query(key_id IS NOT NULL, since, until, 'day');
	RETURN QUERY EXECUTE
		'SELECT s.method, pg_catalog.sum(s.n)::bigint AS requests FROM (' || q.query || ') s'
		' GROUP BY s.method ORDER BY requests DESC, s.method'
		USING key_id, since, until, q.lo_hour, q.hi_hour, q.lo_day, q.hi_day;
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_method(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) per HTTP method, most requested first.';

CREATE FUNCTION apikey_usage.usage_by_response_status(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (response_code integer, requests bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q	record;
BEGIN
	PERFORM apikey_usage._check_bounds(since, until);
	q := apikey_usage._usage_query(key_id IS NOT NULL, since, until, 'codes');
	RETURN QUERY EXECUTE
		'SELECT s.response_code::integer AS response_code, pg_catalog.sum(s.n)::bigint AS requests'
		' FROM (' || q.query || ') s'
		' GROUP BY s.response_code ORDER BY requests DESC, response_code'
		USING key_id, since, until, q.lo_hour, q.hi_hour, q.lo_day, q.hi_day;
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) per HTTP response code, most frequent first.';

CREATE FUNCTION apikey_usage.top_endpoints(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	max_rows integer DEFAULT 10)
	RETURNS TABLE (endpoint text, requests bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	q	record;
BEGIN
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'max_rows must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF max_rows NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_bounds(since, until);
	q := apikey_usage._usage_query(key_id IS NOT NULL, since, until, 'day');
	RETURN QUERY EXECUTE
		'SELECT s.endpoint, pg_catalog.sum(s.n)::bigint AS requests FROM (' || q.query || ') s'
		' GROUP BY s.endpoint ORDER BY requests DESC, s.endpoint LIMIT $8'
		USING key_id, since, until, q.lo_hour, q.hi_hour, q.lo_day, q.hi_day, max_rows;
END
$$;
COMMENT ON FUNCTION apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer) IS
	'The max_rows (1-10000) most requested endpoints of a key (NULL = every key) in [since, until).';

/*
 * Buckets are aligned to multiples of the bucket from the Unix epoch
 * (date_bin), measured in absolute time: a bucket of '1 day' is 86400
 * seconds in every time zone, so the buckets do not move with TimeZone or
 * DST.  A bucket that is a whole number of hours contains whole UTC
 * hours, so usage_hourly_codes serves it; other buckets count raw rows.
 */
CREATE FUNCTION apikey_usage.usage_timeseries(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	bucket interval DEFAULT '1 hour')
	RETURNS TABLE (bucket_start timestamptz, total_requests bigint, completed bigint,
				   failed bigint, rate_limited bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	epoch		constant timestamptz := '1970-01-01 00:00:00+00';
	bucket_secs	numeric;
	step		interval;
	first_start	timestamptz;
	buckets		numeric;
	q			record;
BEGIN
	IF since IS NULL OR until IS NULL THEN
		RAISE EXCEPTION 'usage_timeseries needs both since and until'
			USING ERRCODE = '22004';
	END IF;
	IF bucket IS NULL THEN
		RAISE EXCEPTION 'bucket must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_bounds(since, until);
	IF NOT pg_catalog.isfinite(since) OR NOT pg_catalog.isfinite(until) THEN
		RAISE EXCEPTION 'since and until must be finite for usage_timeseries'
			USING ERRCODE = '22023';
	END IF;
	IF pg_catalog.date_part('month', bucket) <> 0 OR pg_catalog.date_part('year', bucket) <> 0 THEN
		RAISE EXCEPTION 'bucket must not contain months or years (use days)'
			USING ERRCODE = '22023';
	END IF;
	bucket_secs := pg_catalog.date_part('epoch', bucket)::numeric;
	IF bucket_secs < 60 THEN
		RAISE EXCEPTION 'bucket must be at least 1 minute' USING ERRCODE = '22023';
	END IF;
	-- days counted as 86400 seconds, as date_bin does
	step := pg_catalog.make_interval(secs => bucket_secs::double precision);
	first_start := pg_catalog.date_bin(step, since, epoch);
	buckets := pg_catalog.ceil((pg_catalog.date_part('epoch', until)::numeric
								- pg_catalog.date_part('epoch', first_start)::numeric) / bucket_secs);
	IF buckets > 10000 THEN
		RAISE EXCEPTION 'bucket % gives % buckets between since and until; at most 10000 are allowed',
			bucket, buckets USING ERRCODE = '22023';
	END IF;
	IF since = until THEN
		RETURN;		-- an empty range overlaps no bucket
	END IF;

	q := apikey_usage._usage_query(key_id IS NOT NULL, since, until,
								   CASE WHEN bucket_secs % 3600 = 0 THEN 'codes' ELSE 'raw' END);
	RETURN QUERY EXECUTE
		'WITH counts AS ('
		' SELECT pg_catalog.date_bin($8, s.ts, ''1970-01-01 00:00:00+00''::timestamptz) AS bucket_start, '
		|| apikey_usage._status_sums_sql()
		|| ' FROM (' || q.query || ') s GROUP BY 1)'
		' SELECT g.b, COALESCE(c.sum, 0), COALESCE(c.sum_1, 0), COALESCE(c.sum_2, 0), COALESCE(c.sum_3, 0)'
		' FROM pg_catalog.generate_series($9, $3 OPERATOR(pg_catalog.-) ''1 microsecond''::interval, $8) AS g(b)'
		' LEFT JOIN counts AS c(bucket_start, sum, sum_1, sum_2, sum_3) ON c.bucket_start OPERATOR(pg_catalog.=) g.b'
		' ORDER BY g.b'
		USING key_id, since, until, q.lo_hour, q.hi_hour, q.lo_day, q.hi_day, step, first_start;
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval) IS
	'Requests of a key (NULL = every key) per time bucket (aligned to multiples of bucket from the Unix epoch), by status; every bucket overlapping [since, until) is present, counting only requests inside [since, until).';

/*
 * One page of the request log, newest first.  Keyset pagination: the
 * next page starts strictly before the (requested_at, request_id) of the
 * last row of this one, which a backward scan of the indexes on
 * (..., requested_at, request_id) reaches directly, so a late page costs
 * what the first does.  The extra "requested_at <= before_requested_at"
 * lets the planner prune the newer day partitions.
 *
 * The work is done here; request_log() below only gives it the names of
 * API.md (PL/pgSQL refuses result columns named like its arguments).
 */
CREATE FUNCTION apikey_usage._request_log(
	key_id uuid, resource_id text, since timestamptz, until timestamptz, status text,
	method text, endpoint text, response_code integer, max_rows integer,
	before_requested_at timestamptz, before_request_id uuid)
	RETURNS TABLE (out_request_id uuid, out_requested_at timestamptz, out_api_key_id uuid,
				   out_method text, out_endpoint text, out_status text,
				   out_response_code integer, out_resource_id text)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	query	text;
BEGIN
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'max_rows must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF max_rows NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_bounds(since, until);
	IF (before_requested_at IS NULL) <> (before_request_id IS NULL) THEN
		RAISE EXCEPTION 'before_requested_at and before_request_id go together'
			USING ERRCODE = '22023',
				  HINT = 'Pass the requested_at and request_id of the last row of the previous page.';
	END IF;

	query := 'SELECT r.request_id, r.requested_at, r.api_key_id, r.method, r.endpoint,'
		' apikey_usage.status_of(r.response_code), r.response_code::integer, r.resource_id'
		' FROM apikey_usage.request_log_raw r WHERE true';
	IF key_id IS NOT NULL THEN
		query := query || ' AND r.api_key_id OPERATOR(pg_catalog.=) $1';
	END IF;
	IF resource_id IS NOT NULL THEN
		query := query || ' AND r.resource_id OPERATOR(pg_catalog.=) $2';
	END IF;
	IF since IS NOT NULL THEN
		query := query || ' AND r.requested_at OPERATOR(pg_catalog.>=) $3';
	END IF;
	IF until IS NOT NULL THEN
		query := query || ' AND r.requested_at OPERATOR(pg_catalog.<) $4';
	END IF;
	IF status NOT IN ('completed', 'rate_limited', 'failed') THEN
		RAISE EXCEPTION 'unknown status "%"', status
			USING ERRCODE = '22023',
				  HINT = 'status is one of completed, failed, rate_limited.';
	END IF;
	-- the same classes as status_of(), as ranges of the column
	query := query || CASE status
		WHEN 'completed' THEN ' AND r.response_code BETWEEN 100 AND 399'
		WHEN 'rate_limited' THEN ' AND r.response_code OPERATOR(pg_catalog.=) 429'
		WHEN 'failed' THEN ' AND r.response_code NOT BETWEEN 100 AND 399'
						   ' AND r.response_code OPERATOR(pg_catalog.<>) 429'
		ELSE '' END;
	IF method IS NOT NULL THEN
		query := query || ' AND r.method OPERATOR(pg_catalog.=) pg_catalog.upper($5)';
	END IF;
	IF endpoint IS NOT NULL THEN
		query := query || ' AND r.endpoint OPERATOR(pg_catalog.=) $6';
	END IF;
	IF response_code IS NOT NULL THEN
		query := query || ' AND r.response_code OPERATOR(pg_catalog.=) $7';
	END IF;
	IF before_requested_at IS NOT NULL THEN
		query := query || ' AND r.requested_at OPERATOR(pg_catalog.<=) $9'
			' AND (r.requested_at, r.request_id) < ($9, $10)';
	END IF;
	query := query || ' ORDER BY r.requested_at DESC, r.request_id DESC LIMIT $8';

	RETURN QUERY EXECUTE query
		USING key_id, resource_id, since, until, method, endpoint, response_code,
			  max_rows, before_requested_at, before_request_id;
END
$$;
COMMENT ON FUNCTION apikey_usage._request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'Internal: the query behind request_log().';

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
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT * FROM apikey_usage._request_log($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
$$;
COMMENT ON FUNCTION apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'One page of the request log, newest first; NULL filters are off. Pass the last row''s requested_at and request_id as before_* for the next page.';

------------------------------------------------------------------------
-- Bulk import of history (apikey_usage_admin)
------------------------------------------------------------------------

-- A UUIDv7 for a time: the Unix milliseconds of ts, version 7, then
-- random bits (random(), not a strong random source: a bulk import makes
-- millions of these, and a request id needs to be unique, not secret).
-- A single expression, so the planner inlines it.
CREATE FUNCTION apikey_usage._uuid_v7(ts timestamptz) RETURNS uuid
	LANGUAGE sql VOLATILE PARALLEL RESTRICTED
	RETURN (pg_catalog.lpad(pg_catalog.to_hex(pg_catalog.floor(EXTRACT(epoch FROM ts) * 1000)::bigint), 12, '0')
			|| pg_catalog.to_hex(28672 + (pg_catalog.random() * 4095)::integer)		-- 7xxx
			|| pg_catalog.to_hex(32768 + (pg_catalog.random() * 16383)::integer)	-- variant 10xx
			|| pg_catalog.lpad(pg_catalog.to_hex((pg_catalog.random() * 281474976710655)::bigint), 12, '0'))::uuid;
COMMENT ON FUNCTION apikey_usage._uuid_v7(timestamptz) IS
	'Internal: a random UUIDv7 carrying the millisecond of ts (request ids of imported rows that have none).';

-- import_requests itself is in 25_log.sql (the one write path).

------------------------------------------------------------------------
-- Views over the rollups, for tools that cannot call functions
-- (Metabase, Grafana's table panels).  They run with the owner's rights.
------------------------------------------------------------------------
CREATE VIEW apikey_usage.hourly_usage AS
SELECT u.api_key_id AS key_id, k.name AS key_name, k.workspace, u.bucket_start,
	   u.method COLLATE "default" AS method, u.endpoint COLLATE "default" AS endpoint, u.response_code::integer AS response_code,
	   apikey_usage.status_of(u.response_code) AS status, u.requests
  FROM apikey_usage.usage_hourly u
  LEFT JOIN apikey_usage.api_keys k ON k.key_id = u.api_key_id;
COMMENT ON VIEW apikey_usage.hourly_usage IS
	'Request counts per key, UTC hour, method, endpoint and response code (the hourly rollups), labelled with key name and workspace.';
COMMENT ON COLUMN apikey_usage.hourly_usage.key_id IS 'Key the requests were made with.';
COMMENT ON COLUMN apikey_usage.hourly_usage.key_name IS 'Name of that key (kept after deletion).';
COMMENT ON COLUMN apikey_usage.hourly_usage.workspace IS 'Workspace of that key.';
COMMENT ON COLUMN apikey_usage.hourly_usage.bucket_start IS 'Start of the UTC hour counted.';
COMMENT ON COLUMN apikey_usage.hourly_usage.method IS 'HTTP method, upper case.';
COMMENT ON COLUMN apikey_usage.hourly_usage.endpoint IS 'Route as the application names it.';
COMMENT ON COLUMN apikey_usage.hourly_usage.response_code IS 'HTTP response code sent.';
COMMENT ON COLUMN apikey_usage.hourly_usage.status IS 'completed (100-399), rate_limited (429) or failed (other 400-599).';
COMMENT ON COLUMN apikey_usage.hourly_usage.requests IS 'Number of requests in that hour with that key, method, endpoint and response code.';

CREATE VIEW apikey_usage.daily_usage AS
SELECT u.api_key_id AS key_id, k.name AS key_name, k.workspace,
	   (u.bucket_start AT TIME ZONE 'UTC')::date AS day,
	   u.method COLLATE "default" AS method, u.endpoint COLLATE "default" AS endpoint, u.response_code::integer AS response_code,
	   apikey_usage.status_of(u.response_code) AS status, u.requests
  FROM apikey_usage.usage_daily u
  LEFT JOIN apikey_usage.api_keys k ON k.key_id = u.api_key_id;
COMMENT ON VIEW apikey_usage.daily_usage IS
	'Request counts per key, UTC day, method, endpoint and response code (the daily rollups), labelled with key name and workspace.';
COMMENT ON COLUMN apikey_usage.daily_usage.key_id IS 'Key the requests were made with.';
COMMENT ON COLUMN apikey_usage.daily_usage.key_name IS 'Name of that key (kept after deletion).';
COMMENT ON COLUMN apikey_usage.daily_usage.workspace IS 'Workspace of that key.';
COMMENT ON COLUMN apikey_usage.daily_usage.day IS 'The UTC day counted.';
COMMENT ON COLUMN apikey_usage.daily_usage.method IS 'HTTP method, upper case.';
COMMENT ON COLUMN apikey_usage.daily_usage.endpoint IS 'Route as the application names it.';
COMMENT ON COLUMN apikey_usage.daily_usage.response_code IS 'HTTP response code sent.';
COMMENT ON COLUMN apikey_usage.daily_usage.status IS 'completed (100-399), rate_limited (429) or failed (other 400-599).';
COMMENT ON COLUMN apikey_usage.daily_usage.requests IS 'Number of requests that UTC day with that key, method, endpoint and response code.';

------------------------------------------------------------------------
-- Grants of this part (90_grants.sql revokes everything from PUBLIC
-- first; these role grants stay).  The admin role is a member of the
-- reader role.
------------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION
	apikey_usage.usage_summary(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_method(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz),
	apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer),
	apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval),
	apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid)
	TO apikey_usage_reader;
GRANT SELECT ON apikey_usage.hourly_usage, apikey_usage.daily_usage TO apikey_usage_reader;
