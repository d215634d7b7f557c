
------------------------------------------------------------------------
-- Analytics (apikey_usage_reader)
--
-- Every count is exact: equal to a plain count over request_log_raw for
-- the same bounds, in the caller's snapshot.  The rollups are written in
-- the same transaction as the raw rows they count (_rollup_apply), so a
-- snapshot sees a batch in both or in neither.
--
-- Grains.  Each dashboard part reads a rollup that has only the
-- dimension it shows, per UTC day and per UTC hour:
--
--   dimension   day                    hour                   minute
--   code        usage_daily_codes      usage_hourly_codes     usage_minute_codes
--   method      usage_daily_methods    usage_hourly_methods   -
--   endpoint    usage_daily_endpoints  usage_hourly_endpoints -
--   all four    usage_daily            usage_hourly           -    (the views)
--
-- A busy key has hundreds of method x endpoint x code combinations an
-- hour; the narrow tables hold a handful (codes, methods) or tens
-- (endpoints) of rows per key and hour.
--
-- Bounds.  One function, _usage_counts(), answers "the counts of this key
-- in [since, until) at this grain (per bucket)".  It cuts the range into
-- whole UTC days, hours and minutes (the coarsest rollup that fits) and
-- the sub-minute (sub-hour for methods and endpoints) edges, which come
-- from the raw log.  An edge is counted directly ([floor, bound) from the
-- raw log) or as its whole unit minus the raw rows on the other side of
-- the bound, whichever side holds less past time: at until = now() the
-- other side is the future, so the live edge reads a rollup row and an
-- index range that is empty (or holds the few future-dated rows).
--
-- The functions are SECURITY DEFINER (readers have no table privileges),
-- STABLE (one snapshot for rollups and raw log alike) and pin search_path.
-- Every key they count passes apikey_usage._visible_key_ids(): a key id
-- the caller may not see counts as an unknown key (zeros, no rows).
------------------------------------------------------------------------

-- since > until is bad input (22023); NULL bounds are unbounded sides.
CREATE OR REPLACE FUNCTION apikey_usage._check_bounds(since timestamptz, until timestamptz) RETURNS void
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
-- Rollup tables.  bucket_start is the start of the UTC minute, hour or
-- day counted.  All are written only by _rollup_apply (in the writer's
-- transaction) and emptied only by _rollup_forget (retention).
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
	'Request counts per key, UTC day, method, endpoint and response code (the daily_usage view).';

CREATE TABLE apikey_usage.usage_hourly_codes (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, response_code)
);
CREATE INDEX usage_hourly_codes_bucket_idx ON apikey_usage.usage_hourly_codes (bucket_start);
COMMENT ON TABLE apikey_usage.usage_hourly_codes IS
	'Request counts per key, UTC hour and response code.';

CREATE TABLE apikey_usage.usage_minute_codes (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, response_code)
);
CREATE INDEX usage_minute_codes_bucket_idx ON apikey_usage.usage_minute_codes (bucket_start);
COMMENT ON TABLE apikey_usage.usage_minute_codes IS
	'Request counts per key, UTC minute and response code (live edges, minute and local-time buckets).';

CREATE TABLE apikey_usage.usage_daily_codes (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, response_code)
);
CREATE INDEX usage_daily_codes_bucket_idx ON apikey_usage.usage_daily_codes (bucket_start);
COMMENT ON TABLE apikey_usage.usage_daily_codes IS
	'Request counts per key, UTC day and response code.';

CREATE TABLE apikey_usage.usage_hourly_methods (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	method			text COLLATE "C" NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, method)
);
CREATE INDEX usage_hourly_methods_bucket_idx ON apikey_usage.usage_hourly_methods (bucket_start);
COMMENT ON TABLE apikey_usage.usage_hourly_methods IS
	'Request counts per key, UTC hour and HTTP method.';

CREATE TABLE apikey_usage.usage_daily_methods (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	method			text COLLATE "C" NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, method)
);
CREATE INDEX usage_daily_methods_bucket_idx ON apikey_usage.usage_daily_methods (bucket_start);
COMMENT ON TABLE apikey_usage.usage_daily_methods IS
	'Request counts per key, UTC day and HTTP method.';

CREATE TABLE apikey_usage.usage_hourly_endpoints (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	endpoint		text COLLATE "C" NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, endpoint)
);
CREATE INDEX usage_hourly_endpoints_bucket_idx ON apikey_usage.usage_hourly_endpoints (bucket_start);
COMMENT ON TABLE apikey_usage.usage_hourly_endpoints IS
	'Request counts per key, UTC hour and endpoint.';

CREATE TABLE apikey_usage.usage_daily_endpoints (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	endpoint		text COLLATE "C" NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, endpoint)
);
CREATE INDEX usage_daily_endpoints_bucket_idx ON apikey_usage.usage_daily_endpoints (bucket_start);
COMMENT ON TABLE apikey_usage.usage_daily_endpoints IS
	'Request counts per key, UTC day and endpoint.';

-- pg_dump: the rollups are data (like usage_hourly, see the ops part),
-- dumped and restored with the raw log they count
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_daily', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_minute_codes', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_hourly_codes', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_daily_codes', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_hourly_methods', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_daily_methods', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_hourly_endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_daily_endpoints', '');

/*
 * The one entry point from the log writer into the rollups: a batch's
 * counts per (key, UTC minute, method, endpoint, response code), already
 * aggregated by the writer, added to every rollup grain in the writer's
 * transaction (one statement, one upsert per grain; no triggers).  The
 * writer knows nothing of the grains; this function does.  Rows are
 * upserted in primary-key order so concurrent writers lock them in one
 * order.  Times are binned from the Unix epoch: UTC whatever TimeZone is.
 */
CREATE OR REPLACE FUNCTION apikey_usage._rollup_apply(
	key_ids uuid[], minute_starts timestamptz[], methods text[], endpoints text[],
	response_codes smallint[], counts bigint[]) RETURNS void
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		WITH b AS MATERIALIZED (
			SELECT u.api_key_id, pg_catalog.date_bin('1 minute', u.minute_start, '1970-01-01 00:00:00+00') AS m,
				   u.method COLLATE "C" AS method, u.endpoint COLLATE "C" AS endpoint, u.response_code, u.n
			  FROM unnest(key_ids, minute_starts, methods, endpoints, response_codes, counts)
				AS u(api_key_id, minute_start, method, endpoint, response_code, n)
		), hourly AS (
			INSERT INTO apikey_usage.usage_hourly AS t
				(api_key_id, bucket_start, method, endpoint, response_code, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 hour', b.m, '1970-01-01 00:00:00+00'),
				   b.method, b.endpoint, b.response_code, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
			ON CONFLICT (api_key_id, bucket_start, method, endpoint, response_code)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), daily AS (
			INSERT INTO apikey_usage.usage_daily AS t
				(api_key_id, bucket_start, method, endpoint, response_code, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 day', b.m, '1970-01-01 00:00:00+00'),
				   b.method, b.endpoint, b.response_code, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
			ON CONFLICT (api_key_id, bucket_start, method, endpoint, response_code)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), minute_codes AS (
			INSERT INTO apikey_usage.usage_minute_codes AS t (api_key_id, bucket_start, response_code, requests)
			SELECT b.api_key_id, b.m, b.response_code, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, response_code)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), hourly_codes AS (
			INSERT INTO apikey_usage.usage_hourly_codes AS t (api_key_id, bucket_start, response_code, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 hour', b.m, '1970-01-01 00:00:00+00'),
				   b.response_code, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, response_code)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), daily_codes AS (
			INSERT INTO apikey_usage.usage_daily_codes AS t (api_key_id, bucket_start, response_code, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 day', b.m, '1970-01-01 00:00:00+00'),
				   b.response_code, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, response_code)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), hourly_methods AS (
			INSERT INTO apikey_usage.usage_hourly_methods AS t (api_key_id, bucket_start, method, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 hour', b.m, '1970-01-01 00:00:00+00'),
				   b.method, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, method)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), daily_methods AS (
			INSERT INTO apikey_usage.usage_daily_methods AS t (api_key_id, bucket_start, method, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 day', b.m, '1970-01-01 00:00:00+00'),
				   b.method, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, method)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		), hourly_endpoints AS (
			INSERT INTO apikey_usage.usage_hourly_endpoints AS t (api_key_id, bucket_start, endpoint, requests)
			SELECT b.api_key_id, pg_catalog.date_bin('1 hour', b.m, '1970-01-01 00:00:00+00'),
				   b.endpoint, pg_catalog.sum(b.n)::bigint
			  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
			ON CONFLICT (api_key_id, bucket_start, endpoint)
			DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests
		)
		INSERT INTO apikey_usage.usage_daily_endpoints AS t (api_key_id, bucket_start, endpoint, requests)
		SELECT b.api_key_id, pg_catalog.date_bin('1 day', b.m, '1970-01-01 00:00:00+00'),
			   b.endpoint, pg_catalog.sum(b.n)::bigint
		  FROM b GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
		ON CONFLICT (api_key_id, bucket_start, endpoint)
		DO UPDATE SET requests = t.requests OPERATOR(pg_catalog.+) excluded.requests;
	END;
COMMENT ON FUNCTION apikey_usage._rollup_apply(uuid[], timestamptz[], text[], text[], smallint[], bigint[]) IS
	'Internal: add a batch''s pre-aggregated counts (per key, minute, method, endpoint, code) to every rollup grain.';

/*
 * Retention: delete every rollup row of the time before cutoff, which
 * must be a UTC midnight (the end of the dropped day partitions), so no
 * daily row is cut in two.  Called by _maintain in the transaction that
 * drops the partitions.
 */
CREATE OR REPLACE FUNCTION apikey_usage._rollup_forget(cutoff timestamptz) RETURNS void
	LANGUAGE plpgsql VOLATILE
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF cutoff IS NULL OR (pg_catalog.isfinite(cutoff)
		AND pg_catalog.date_bin('1 day', cutoff, '1970-01-01 00:00:00+00') OPERATOR(pg_catalog.<>) cutoff) THEN
		RAISE EXCEPTION 'cutoff must be a UTC midnight' USING ERRCODE = '22023';
	END IF;
	DELETE FROM apikey_usage.usage_hourly WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_daily WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_minute_codes WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_hourly_codes WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_daily_codes WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_hourly_methods WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_daily_methods WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_hourly_endpoints WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
	DELETE FROM apikey_usage.usage_daily_endpoints WHERE bucket_start OPERATOR(pg_catalog.<) cutoff;
END
$$;
COMMENT ON FUNCTION apikey_usage._rollup_forget(timestamptz) IS
	'Internal: delete the rollup rows of every grain before cutoff (a UTC midnight); used by retention.';

/*
 * The pieces that count a union of time ranges ("segments", each with a
 * sign) exactly from rollups of the given levels (unit lengths in
 * seconds, coarsest first, each a multiple of the next) and the raw log:
 * per segment, the whole units of each level inside it that no coarser
 * level covers, and the raw rest.  Adjacent pieces of one level and sign
 * are merged, so 720 whole hours are one range.  Level 0 is the raw log.
 * seg_first gives, per segment, the index of the coarsest level it may
 * use (a segment made of whole buckets must not use a unit longer than a
 * bucket).  Units are UTC: binned from the Unix epoch.
 */
CREATE OR REPLACE FUNCTION apikey_usage._usage_pieces(
	seg_lo timestamptz[], seg_hi timestamptz[], seg_sign integer[], seg_first integer[],
	levels integer[])
	RETURNS TABLE (level integer, lo timestamptz, hi timestamptz, sign integer)
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
	AS $$
#variable_conflict use_column
BEGIN
	-- (PL/pgSQL rather than SQL: the plan is made once per session)
	RETURN QUERY
	WITH seg AS (
		SELECT s.i, s.lo, s.hi, s.sign, s.first
		  FROM unnest(seg_lo, seg_hi, seg_sign, seg_first) WITH ORDINALITY AS s(lo, hi, sign, first, i)
		 WHERE s.lo < s.hi
	), lv AS (
		SELECT l.k::integer AS k, l.secs, pg_catalog.make_interval(secs => l.secs) AS step
		  FROM unnest(levels) WITH ORDINALITY AS l(secs, k)
	), whole AS (
		-- per segment and allowed level: the whole units inside it
		SELECT seg.i, lv.k, lv.secs,
			   CASE WHEN c.up < c.down THEN pg_catalog.tstzmultirange(pg_catalog.tstzrange(c.up, c.down))
					ELSE '{}'::pg_catalog.tstzmultirange END AS m
		  FROM seg JOIN lv ON lv.k >= seg.first
		 CROSS JOIN LATERAL (
			SELECT CASE WHEN f.lo_floor < seg.lo THEN f.lo_floor + lv.step ELSE f.lo_floor END AS up,
				   f.hi_floor AS down
			  FROM (SELECT pg_catalog.date_bin(lv.step, seg.lo, '1970-01-01 00:00:00+00') AS lo_floor,
						   pg_catalog.date_bin(lv.step, seg.hi, '1970-01-01 00:00:00+00') AS hi_floor) f) c
	), pieces AS (
		SELECT w.secs AS level, seg.sign,
			   w.m - COALESCE(pg_catalog.lag(w.m) OVER (PARTITION BY w.i ORDER BY w.k),
							  '{}'::pg_catalog.tstzmultirange) AS m
		  FROM whole w JOIN seg ON seg.i = w.i
		UNION ALL
		SELECT 0, seg.sign,
			   pg_catalog.tstzmultirange(pg_catalog.tstzrange(seg.lo, seg.hi))
			   - COALESCE((SELECT w.m FROM whole w WHERE w.i = seg.i ORDER BY w.k DESC LIMIT 1),
						  '{}'::pg_catalog.tstzmultirange)
		  FROM seg
	)
	SELECT g.level, pg_catalog.lower(r.r), pg_catalog.upper(r.r), g.sign
	  FROM (SELECT p.level, p.sign, pg_catalog.range_agg(p.m) AS m FROM pieces p GROUP BY 1, 2) g
	 CROSS JOIN LATERAL pg_catalog.unnest(g.m) AS r(r)
	 ORDER BY 1 DESC, 4 DESC, 2;
END
$$;
COMMENT ON FUNCTION apikey_usage._usage_pieces(timestamptz[], timestamptz[], integer[], integer[], integer[]) IS
	'Internal: cut signed time ranges into merged ranges of whole rollup units per level and raw-log ranges (level 0).';

/*
 * THE place that counts: the requests of key_id (NULL = every visible
 * key) in [since, until) at a grain -- 'codes' (per response code),
 * 'status' (per status class, named by one code each: 200, 429, 500),
 * 'method' or 'endpoint' -- summed per bucket when cuts is given (cuts:
 * the bucket starts, ascending, cuts[1] <= since; cuts_end: the end of
 * the last bucket; cut_level: when every bucket between the first and the
 * last is made of whole units of that level and no coarser unit fits in
 * one, their pieces are one range of that level).  NULL bounds are open.
 * Rows whose count is 0 are left out.
 *
 * Edges.  A bound that is not on a unit of the finest level (a minute for
 * codes, an hour for methods and endpoints) is counted either directly
 * (raw rows between the bound and the unit edge inside the range) or by
 * widening the range to a unit edge outside it and subtracting the raw
 * (and finer rollup) rows between the bound and that edge: whichever side
 * holds less past time, the future being empty but for future-dated
 * rows.  The widening goes to the coarsest unit whose extra part lies in
 * the future (at until = now(): the end of the current day or bucket).
 * Both ways are exact; the choice only decides what is read.
 *
 * The rollup ranges are read by static queries (one per grain and access
 * path: by key, or every visible key), planned once per session; the raw
 * ranges, if any, by a query built from fixed fragments and run with
 * EXECUTE ... USING, planned for its bounds so that they prune the day
 * partitions at plan time.  Parameters of that query: $1 key_id, $2 the
 * visible key ids, $3 cuts, $13-$15 lo/hi/sign arrays of the raw ranges,
 * $16 the positive raw ranges as a multirange (used when there are many).
 * A (bucket, dimension, code) may come in a row from each part, and
 * counts may be 0: callers sum per what they show.
 */
CREATE OR REPLACE FUNCTION apikey_usage._usage_counts(
	key_id uuid, since timestamptz, until timestamptz, grain text,
	cuts timestamptz[] DEFAULT NULL, cuts_end timestamptz DEFAULT NULL, cut_level integer DEFAULT NULL)
	RETURNS TABLE (b_start timestamptz, b_dim text, b_code smallint, b_requests bigint)
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan
	SET max_parallel_workers_per_gather = 0 AS $$
DECLARE
	epoch		constant timestamptz := '1970-01-01 00:00:00+00';
	-- no row is older or newer than these (log_request keeps
	-- requested_at within the retention and one hour ahead)
	far_past	constant timestamptz := '1000-01-01 00:00:00+00';
	far_future	constant timestamptz := '3000-01-01 00:00:00+00';
	t_now		constant timestamptz := pg_catalog.now();
	levels		integer[];
	tabs		text[];
	roll_dim	text;
	roll_code	text;
	raw_dim		text;
	raw_code	text;
	vis			uuid[] := apikey_usage._visible_key_ids();
	key_cond	text := '';
	s			timestamptz;
	e			timestamptz;
	s2			timestamptz;
	e2			timestamptz;
	fin			interval;
	step		interval;
	fl			timestamptz;
	cand		timestamptz;
	lo_lim		timestamptz := COALESCE(cuts[1], '-infinity');
	hi_lim		timestamptz := COALESCE(cuts_end, 'infinity');
	n			integer := COALESCE(pg_catalog.cardinality(cuts), 0);
	first_lv	integer;
	seg_lo		timestamptz[];
	seg_hi		timestamptz[];
	seg_sign	integer[];
	seg_first	integer[];
	l1_lo timestamptz[]; l1_hi timestamptz[]; l1_sign integer[];
	l2_lo timestamptz[]; l2_hi timestamptz[]; l2_sign integer[];
	l3_lo timestamptz[]; l3_hi timestamptz[]; l3_sign integer[];
	r_lo timestamptz[]; r_hi timestamptz[]; r_sign integer[];
	r_pos		pg_catalog.tstzmultirange;
	parts		text[] := '{}';
	cut_step	interval;
	raw_select	text;
	query		text;
BEGIN
	PERFORM apikey_usage._check_bounds(since, until);
	CASE grain
		WHEN 'codes', 'status' THEN
			levels := ARRAY[86400, 3600, 60];
			tabs := ARRAY['usage_daily_codes', 'usage_hourly_codes', 'usage_minute_codes'];
			roll_dim := 'NULL::text'; roll_code := 'r.response_code';
			raw_dim := 'NULL::text';
			raw_code := CASE WHEN grain = 'status'
							 THEN 'CASE WHEN r.response_code BETWEEN 100 AND 399 THEN 200::smallint WHEN r.response_code OPERATOR(pg_catalog.=) 429 THEN 429::smallint ELSE 500::smallint END'
							 ELSE 'r.response_code' END;
		WHEN 'method' THEN
			levels := ARRAY[86400, 3600];
			tabs := ARRAY['usage_daily_methods', 'usage_hourly_methods'];
			roll_dim := 'r.method'; roll_code := 'NULL::smallint';
			raw_dim := 'r.method'; raw_code := 'NULL::smallint';
		WHEN 'endpoint' THEN
			levels := ARRAY[86400, 3600];
			tabs := ARRAY['usage_daily_endpoints', 'usage_hourly_endpoints'];
			roll_dim := 'r.endpoint'; roll_code := 'NULL::smallint';
			raw_dim := 'r.endpoint'; raw_code := 'NULL::smallint';
		ELSE
			RAISE EXCEPTION 'unknown grain %', grain USING ERRCODE = '22023';
	END CASE;

	-- visibility: a key the caller may not see is an unknown key
	IF key_id IS NOT NULL THEN
		IF vis IS NOT NULL AND NOT key_id = ANY (vis) THEN
			RETURN;
		END IF;
		key_cond := ' AND r.api_key_id OPERATOR(pg_catalog.=) $1';
	ELSIF vis IS NOT NULL THEN
		key_cond := ' AND r.api_key_id OPERATOR(pg_catalog.=) ANY ($2)';
	END IF;

	s := since;
	e := until;
	IF s IS NULL OR s < far_past THEN
		s := far_past;
	END IF;
	IF e IS NULL OR e > far_future THEN
		e := far_future;
	END IF;
	IF NOT s < e THEN
		RETURN;
	END IF;

	-- the since edge: widen to a unit start below since when the raw rows
	-- [unit start, since) hold less past time than [since, unit end)
	fin := pg_catalog.make_interval(secs => levels[pg_catalog.cardinality(levels)]);
	s2 := s;
	fl := pg_catalog.date_bin(fin, s, epoch);
	IF fl < s AND GREATEST(0, pg_catalog.date_part('epoch', LEAST(s, t_now) - fl))
				  < GREATEST(0, pg_catalog.date_part('epoch', LEAST(fl + fin, e, t_now) - s)) THEN
		FOR k IN 1 .. pg_catalog.cardinality(levels) LOOP
			cand := pg_catalog.date_bin(pg_catalog.make_interval(secs => levels[k]), s, epoch);
			IF cand >= lo_lim AND LEAST(s, t_now) - LEAST(cand, t_now) <= LEAST(s, t_now) - LEAST(fl, t_now) THEN
				s2 := cand;
				EXIT;
			END IF;
		END LOOP;
	END IF;

	-- the until edge, likewise: at until = now() the widening lies in the
	-- future and its raw rows are none
	e2 := e;
	fl := pg_catalog.date_bin(fin, e, epoch);
	IF fl < e AND GREATEST(0, pg_catalog.date_part('epoch', LEAST(fl + fin, t_now) - e))
				  < GREATEST(0, pg_catalog.date_part('epoch', LEAST(e, t_now) - GREATEST(fl, s))) THEN
		FOR k IN 1 .. pg_catalog.cardinality(levels) LOOP
			step := pg_catalog.make_interval(secs => levels[k]);
			cand := pg_catalog.date_bin(step, e, epoch) + step;
			IF cand <= hi_lim AND GREATEST(e, LEAST(cand, t_now)) <= GREATEST(e, LEAST(fl + fin, t_now)) THEN
				e2 := cand;
				EXIT;
			END IF;
		END LOOP;
	END IF;

	-- segments: the (widened) range cut at the bucket starts, and the
	-- widenings with sign -1
	first_lv := pg_catalog.array_position(levels, cut_level);
	IF n <= 1 THEN
		seg_lo := ARRAY[s2]; seg_hi := ARRAY[e2]; seg_sign := ARRAY[1]; seg_first := ARRAY[1];
	ELSIF first_lv IS NOT NULL AND n >= 3 THEN
		seg_lo := ARRAY[s2, cuts[2], cuts[n]];
		seg_hi := ARRAY[cuts[2], cuts[n], e2];
		seg_sign := ARRAY[1, 1, 1];
		seg_first := ARRAY[1, first_lv, 1];
	ELSE
		seg_lo := s2 || cuts[2:n];
		seg_hi := cuts[2:n] || e2;
		seg_sign := pg_catalog.array_fill(1, ARRAY[n]);
		seg_first := pg_catalog.array_fill(1, ARRAY[n]);
	END IF;
	IF s2 < s THEN
		seg_lo := seg_lo || s2; seg_hi := seg_hi || s; seg_sign := seg_sign || -1; seg_first := seg_first || 1;
	END IF;
	IF e < e2 THEN
		seg_lo := seg_lo || e; seg_hi := seg_hi || e2; seg_sign := seg_sign || -1; seg_first := seg_first || 1;
	END IF;

	SELECT pg_catalog.array_agg(p.lo) FILTER (WHERE p.level = levels[1]),
		   pg_catalog.array_agg(p.hi) FILTER (WHERE p.level = levels[1]),
		   pg_catalog.array_agg(p.sign) FILTER (WHERE p.level = levels[1]),
		   pg_catalog.array_agg(p.lo) FILTER (WHERE p.level = levels[2]),
		   pg_catalog.array_agg(p.hi) FILTER (WHERE p.level = levels[2]),
		   pg_catalog.array_agg(p.sign) FILTER (WHERE p.level = levels[2]),
		   pg_catalog.array_agg(p.lo) FILTER (WHERE p.level = levels[3]),
		   pg_catalog.array_agg(p.hi) FILTER (WHERE p.level = levels[3]),
		   pg_catalog.array_agg(p.sign) FILTER (WHERE p.level = levels[3]),
		   pg_catalog.array_agg(p.lo) FILTER (WHERE p.level = 0),
		   pg_catalog.array_agg(p.hi) FILTER (WHERE p.level = 0),
		   pg_catalog.array_agg(p.sign) FILTER (WHERE p.level = 0),
		   pg_catalog.range_agg(pg_catalog.tstzrange(p.lo, p.hi)) FILTER (WHERE p.level = 0 AND p.sign = 1)
	  INTO l1_lo, l1_hi, l1_sign, l2_lo, l2_hi, l2_sign, l3_lo, l3_hi, l3_sign, r_lo, r_hi, r_sign, r_pos
	  FROM apikey_usage._usage_pieces(seg_lo, seg_hi, seg_sign, seg_first, levels) p;

	-- the rollup ranges: static queries (one per grain and access path),
	-- planned once per session; each range is its own index range scan
	-- (a LATERAL subquery kept apart by OFFSET 0: a generic plan must not
	-- read every row of the key and filter the ranges afterwards)
	IF l1_lo IS NOT NULL OR l2_lo IS NOT NULL OR l3_lo IS NOT NULL THEN
		-- equal buckets (always without a time zone): date_bin from the
		-- first start; else a binary search of the starts (slower per
		-- row: PL/pgSQL keeps array arguments expanded, and width_bucket
		-- flattens them on every call)
		IF n >= 2 THEN
			cut_step := cuts[2] - cuts[1];
			IF cuts_end - cuts[n] <> cut_step
			   OR EXISTS (SELECT FROM pg_catalog.generate_series(3, n) AS i
						   WHERE cuts[i] - cuts[i - 1] <> cut_step) THEN
				cut_step := NULL;
			END IF;
		END IF;
		IF grain IN ('codes', 'status') AND _usage_counts.key_id IS NOT NULL THEN
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, CASE WHEN grain OPERATOR(pg_catalog.=) 'status' THEN CASE WHEN s.code BETWEEN 100 AND 399 THEN 200::smallint WHEN s.code OPERATOR(pg_catalog.=) 429 THEN 429::smallint ELSE 500::smallint END ELSE s.code END,
				   pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_daily_codes r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_hourly_codes r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l3_lo, l3_hi, l3_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_minute_codes r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		ELSIF grain IN ('codes', 'status') THEN
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, CASE WHEN grain OPERATOR(pg_catalog.=) 'status' THEN CASE WHEN s.code BETWEEN 100 AND 399 THEN 200::smallint WHEN s.code OPERATOR(pg_catalog.=) 429 THEN 429::smallint ELSE 500::smallint END ELSE s.code END,
				   pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_daily_codes r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_hourly_codes r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l3_lo, l3_hi, l3_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, NULL::text AS dim, r.response_code AS code, r.requests
					  FROM apikey_usage.usage_minute_codes r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		ELSIF grain = 'method' AND _usage_counts.key_id IS NOT NULL THEN
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, s.code, pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.method::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_daily_methods r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.method::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_hourly_methods r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		ELSIF grain = 'method' THEN
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, s.code, pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.method::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_daily_methods r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.method::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_hourly_methods r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		ELSIF _usage_counts.key_id IS NOT NULL THEN
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, s.code, pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.endpoint::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_daily_endpoints r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.endpoint::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_hourly_endpoints r
					 WHERE r.api_key_id OPERATOR(pg_catalog.=) _usage_counts.key_id
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		ELSE
			RETURN QUERY
			SELECT CASE WHEN cut_step IS NOT NULL THEN pg_catalog.date_bin(cut_step, s.ts, cuts[1])
						WHEN cuts IS NOT NULL THEN cuts[pg_catalog.width_bucket(s.ts, cuts)] END,
				   s.dim, s.code, pg_catalog.sum(s.n)::bigint
			  FROM (
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l1_lo, l1_hi, l1_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.endpoint::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_daily_endpoints r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
				UNION ALL
				SELECT r.bucket_start, r.dim, r.code, r.requests * p.sign
				  FROM unnest(l2_lo, l2_hi, l2_sign) AS p(lo, hi, sign)
				 CROSS JOIN LATERAL (
					SELECT r.bucket_start, r.endpoint::text AS dim, NULL::smallint AS code, r.requests
					  FROM apikey_usage.usage_hourly_endpoints r
					 WHERE (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
					   AND r.bucket_start OPERATOR(pg_catalog.>=) p.lo AND r.bucket_start OPERATOR(pg_catalog.<) p.hi
					OFFSET 0) AS r
			  ) AS s(ts, dim, code, n)
			 GROUP BY 1, 2, 3;
		END IF;
	END IF;

	-- the raw ranges: one branch each (their bounds prune the day
	-- partitions at plan time), or, when there are many (buckets that are
	-- not whole minutes), the positive ones in one branch
	raw_select := 'SELECT r.requested_at AS ts, ' || raw_dim || ' AS dim, ' || raw_code || ' AS code, %s::bigint AS n'
		' FROM apikey_usage.request_log_raw r WHERE true' || key_cond;
	FOR i IN 1 .. COALESCE(pg_catalog.cardinality(r_lo), 0) LOOP
		IF r_sign[i] = -1 OR pg_catalog.cardinality(r_lo) <= 8 THEN
			parts := parts || (pg_catalog.format(raw_select, r_sign[i])
				|| pg_catalog.format(' AND r.requested_at OPERATOR(pg_catalog.>=) $13[%s]'
									 ' AND r.requested_at OPERATOR(pg_catalog.<) $14[%s]', i, i));
		END IF;
	END LOOP;
	IF pg_catalog.cardinality(r_lo) > 8 AND NOT pg_catalog.isempty(r_pos) THEN
		parts := parts || (pg_catalog.format(raw_select, 1)
			|| ' AND r.requested_at OPERATOR(pg_catalog.>=) pg_catalog.lower($16)'
			   ' AND r.requested_at OPERATOR(pg_catalog.<) pg_catalog.upper($16)'
			   ' AND r.requested_at OPERATOR(pg_catalog.<@) $16');
	END IF;
	IF pg_catalog.cardinality(parts) = 0 THEN
		RETURN;
	END IF;

	query := 'SELECT '
		|| CASE WHEN cuts IS NULL THEN 'NULL::timestamptz'
				ELSE '$3[pg_catalog.width_bucket(s.ts, $3)]' END
		|| ', s.dim, s.code, pg_catalog.sum(s.n)::bigint FROM ('
		|| pg_catalog.array_to_string(parts, ' UNION ALL ')
		|| ') s GROUP BY 1, 2, 3';
	RETURN QUERY EXECUTE query
		USING key_id, vis, cuts, l1_lo, l1_hi, l1_sign, l2_lo, l2_hi, l2_sign, l3_lo, l3_hi, l3_sign,
			  r_lo, r_hi, r_sign, r_pos;
END
$$;
COMMENT ON FUNCTION apikey_usage._usage_counts(uuid, timestamptz, timestamptz, text, timestamptz[], timestamptz, integer) IS
	'Internal: the exact requests of a key (NULL = every visible key) in [since, until) per bucket and per response code, method or endpoint, from the rollups and the raw edges.';

CREATE OR REPLACE FUNCTION apikey_usage.usage_summary(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	OUT total_requests bigint, OUT completed bigint, OUT failed bigint, OUT rate_limited bigint)
	RETURNS record
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT COALESCE(pg_catalog.sum(c.b_requests), 0)::bigint,
		   COALESCE(pg_catalog.sum(c.b_requests) FILTER (WHERE c.b_code BETWEEN 100 AND 399), 0)::bigint,
		   COALESCE(pg_catalog.sum(c.b_requests) FILTER (WHERE c.b_code NOT BETWEEN 100 AND 399
						AND c.b_code OPERATOR(pg_catalog.<>) 429), 0)::bigint,
		   COALESCE(pg_catalog.sum(c.b_requests) FILTER (WHERE c.b_code OPERATOR(pg_catalog.=) 429), 0)::bigint
	  FROM apikey_usage._usage_counts($1, $2, $3, 'status') c
$$;
COMMENT ON FUNCTION apikey_usage.usage_summary(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) (default: the last 30 days; NULL = unbounded), by status; always one row.';

CREATE OR REPLACE FUNCTION apikey_usage.usage_by_method(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (method text, requests bigint)
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.b_dim, pg_catalog.sum(c.b_requests)::bigint AS n
	  FROM apikey_usage._usage_counts($1, $2, $3, 'method') c
	 GROUP BY c.b_dim
	HAVING pg_catalog.sum(c.b_requests) OPERATOR(pg_catalog.<>) 0
	 ORDER BY n DESC, c.b_dim COLLATE "C"
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_method(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) per HTTP method, most requested first.';

CREATE OR REPLACE FUNCTION apikey_usage.usage_by_response_status(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now())
	RETURNS TABLE (response_code integer, requests bigint)
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$
	SELECT c.b_code::integer, pg_catalog.sum(c.b_requests)::bigint AS n
	  FROM apikey_usage._usage_counts($1, $2, $3, 'codes') c
	 GROUP BY c.b_code
	HAVING pg_catalog.sum(c.b_requests) OPERATOR(pg_catalog.<>) 0
	 ORDER BY n DESC, c.b_code
$$;
COMMENT ON FUNCTION apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz) IS
	'Requests of a key (NULL = every key) in [since, until) per HTTP response code, most frequent first.';

CREATE OR REPLACE FUNCTION apikey_usage.top_endpoints(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	max_rows integer DEFAULT 10)
	RETURNS TABLE (endpoint text, requests bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'max_rows must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF max_rows NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
		SELECT c.b_dim, pg_catalog.sum(c.b_requests)::bigint
		  FROM apikey_usage._usage_counts(top_endpoints.key_id, top_endpoints.since,
										  top_endpoints.until, 'endpoint') c
		 GROUP BY c.b_dim
		HAVING pg_catalog.sum(c.b_requests) OPERATOR(pg_catalog.<>) 0
		 ORDER BY 2 DESC, c.b_dim COLLATE "C"
		 LIMIT top_endpoints.max_rows;
END
$$;
COMMENT ON FUNCTION apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer) IS
	'The max_rows (1-10000) most requested endpoints of a key (NULL = every key) in [since, until).';

/*
 * The buckets of usage_timeseries over [since, until) (checked by the
 * caller): cuts = the bucket starts (the first at or before since),
 * cuts_end = the end of the last bucket, cut_level = the rollup unit (in
 * seconds) every inner bucket is made of, when no coarser unit fits in a
 * bucket (else NULL).
 *
 * Without a time zone, buckets are multiples of bucket from the Unix
 * epoch in absolute time (a '1 day' bucket is 86400 s, a UTC day).  With
 * one, they follow that zone's wall clock: a bucket of N days starts at a
 * local midnight (every N days from 1970-01-01), a bucket that divides a
 * day starts at every local time of day that is a multiple of it; across
 * a daylight-saving change a local day is 23 or 25 hours long, the
 * skipped local hour has no bucket and the repeated one has two.
 */
CREATE OR REPLACE FUNCTION apikey_usage._buckets(
	since timestamptz, until timestamptz, bucket interval, time_zone text,
	OUT cuts timestamptz[], OUT cuts_end timestamptz, OUT cut_level integer)
	RETURNS record
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	epoch		constant timestamptz := '1970-01-01 00:00:00+00';
	secs		numeric := pg_catalog.date_part('epoch', bucket)::numeric;
	step		interval := pg_catalog.make_interval(secs => pg_catalog.date_part('epoch', bucket));
	first_start	timestamptz;
	grid		interval;
	days		integer;
	allb		timestamptz[];
BEGIN
	IF time_zone IS NULL THEN
		first_start := pg_catalog.date_bin(step, since, epoch);
		cuts := ARRAY(SELECT pg_catalog.generate_series(first_start, until - interval '1 microsecond', step));
		cuts_end := cuts[pg_catalog.cardinality(cuts)] + step;
		cut_level := CASE WHEN secs % 86400 = 0 THEN 86400
						  WHEN secs % 3600 = 0 AND secs < 86400 THEN 3600
						  WHEN secs % 60 = 0 AND secs < 3600 THEN 60 END;
		RETURN;
	END IF;

	IF secs % 86400 = 0 THEN
		days := (secs / 86400)::integer;
		allb := ARRAY(
			SELECT DISTINCT ((d.d)::timestamp AT TIME ZONE time_zone)
			  FROM (SELECT (since AT TIME ZONE time_zone)::date - days - 1 + i AS d
					  FROM pg_catalog.generate_series(0, (until AT TIME ZONE time_zone)::date
														 - (since AT TIME ZONE time_zone)::date + 2 * days + 2) AS i) d
			 WHERE ((d.d - '1970-01-01'::date) % days + days) % days = 0
			 ORDER BY 1);
	ELSE
		-- every UTC offset in use is a multiple of 15 minutes: the local
		-- multiples of the bucket are among the UTC multiples of the grid
		grid := pg_catalog.make_interval(secs => pg_catalog.gcd(secs::bigint, 900));
		allb := ARRAY(
			SELECT t
			  FROM pg_catalog.generate_series(pg_catalog.date_bin(grid, since - step - interval '3 hours', epoch),
											  until + step + interval '3 hours', grid) AS t
			 WHERE pg_catalog.date_part('epoch', (t AT TIME ZONE time_zone)
						- pg_catalog.date_trunc('day', t AT TIME ZONE time_zone))::numeric % secs = 0
			 ORDER BY 1);
	END IF;
	cuts := ARRAY(SELECT b FROM unnest(allb) AS b WHERE b <= since ORDER BY b DESC LIMIT 1)
		 || ARRAY(SELECT b FROM unnest(allb) AS b WHERE b > since AND b < until ORDER BY b);
	cuts_end := (SELECT min(b) FROM unnest(allb) AS b WHERE b >= until);

	-- the coarsest unit every inner bucket is made of, if no coarser one
	-- fits in any of them
	SELECT l.secs INTO cut_level
	  FROM unnest(ARRAY[86400, 3600, 60]) WITH ORDINALITY AS l(secs, k)
	 WHERE NOT EXISTS (SELECT FROM unnest(cuts[2:]) AS c
						WHERE pg_catalog.date_bin(pg_catalog.make_interval(secs => l.secs), c, epoch) <> c)
	   AND (l.k = 1 OR NOT EXISTS (
			SELECT FROM (SELECT c, pg_catalog.lead(c) OVER (ORDER BY c) AS nxt FROM unnest(cuts[2:]) AS c) b,
				 LATERAL (SELECT pg_catalog.make_interval(secs => (ARRAY[86400, 3600, 60])[l.k - 1]) AS big) u
			 WHERE b.nxt IS NOT NULL
			   AND pg_catalog.date_bin(u.big, b.c - interval '1 microsecond', epoch) + 2 * u.big <= b.nxt))
	 ORDER BY l.k
	 LIMIT 1;
END
$$;
COMMENT ON FUNCTION apikey_usage._buckets(timestamptz, timestamptz, interval, text) IS
	'Internal: the bucket starts of usage_timeseries (UTC multiples from the epoch, or local wall-clock multiples in a time zone).';

CREATE OR REPLACE FUNCTION apikey_usage.usage_timeseries(
	key_id uuid,
	since timestamptz DEFAULT pg_catalog.now() - '30 days'::interval,
	until timestamptz DEFAULT pg_catalog.now(),
	bucket interval DEFAULT '1 hour',
	time_zone text DEFAULT NULL)
	RETURNS TABLE (bucket_start timestamptz, total_requests bigint, completed bigint,
				   failed bigint, rate_limited bigint)
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	epoch		constant timestamptz := '1970-01-01 00:00:00+00';
	bucket_secs	numeric;
	buckets		numeric;
	b			record;
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
	IF time_zone IS NOT NULL THEN
		IF bucket_secs % 60 <> 0 OR (86400 % bucket_secs <> 0 AND bucket_secs % 86400 <> 0) THEN
			RAISE EXCEPTION 'with a time zone, bucket must divide a day or be a whole number of days'
				USING ERRCODE = '22023', DETAIL = pg_catalog.format('bucket = %s', bucket);
		END IF;
		-- (pg_timezone_names reads the whole time zone database: far
		-- slower than letting AT TIME ZONE judge the name)
		BEGIN
			PERFORM pg_catalog.now() AT TIME ZONE time_zone;
		EXCEPTION WHEN invalid_parameter_value OR feature_not_supported THEN
			RAISE EXCEPTION 'time zone "%" is not recognized', time_zone
				USING ERRCODE = '22023', HINT = 'Use a name from pg_timezone_names, e.g. Europe/Berlin.';
		END;
	END IF;
	-- whole multiples of the bucket from the epoch (in a time zone the
	-- count differs by at most the daylight-saving shifts)
	buckets := pg_catalog.ceil((pg_catalog.date_part('epoch', until)::numeric
								- pg_catalog.date_part('epoch', pg_catalog.date_bin(
									pg_catalog.make_interval(secs => bucket_secs::double precision), since, epoch))::numeric)
							   / bucket_secs);
	IF buckets > 10000 THEN
		RAISE EXCEPTION 'bucket % gives % buckets between since and until; at most 10000 are allowed',
			bucket, buckets USING ERRCODE = '22023';
	END IF;
	IF since = until THEN
		RETURN;		-- an empty range overlaps no bucket
	END IF;

	b := apikey_usage._buckets(since, until, bucket, time_zone);
	IF pg_catalog.cardinality(b.cuts) > 10000 THEN
		RAISE EXCEPTION 'bucket % gives % buckets between since and until; at most 10000 are allowed',
			bucket, pg_catalog.cardinality(b.cuts) USING ERRCODE = '22023';
	END IF;
	RETURN QUERY
		SELECT g.g, COALESCE(c.total, 0)::bigint, COALESCE(c.ok, 0)::bigint,
			   COALESCE(c.failed, 0)::bigint, COALESCE(c.limited, 0)::bigint
		  FROM unnest(b.cuts) AS g(g)
		  LEFT JOIN (
			SELECT u.b_start, pg_catalog.sum(u.b_requests) AS total,
				   pg_catalog.sum(u.b_requests) FILTER (WHERE u.b_code BETWEEN 100 AND 399) AS ok,
				   pg_catalog.sum(u.b_requests) FILTER (WHERE u.b_code NOT BETWEEN 100 AND 399
								AND u.b_code OPERATOR(pg_catalog.<>) 429) AS failed,
				   pg_catalog.sum(u.b_requests) FILTER (WHERE u.b_code OPERATOR(pg_catalog.=) 429) AS limited
			  FROM apikey_usage._usage_counts(usage_timeseries.key_id, usage_timeseries.since,
											  usage_timeseries.until, 'status', b.cuts, b.cuts_end, b.cut_level) u
			 GROUP BY u.b_start) c
			ON c.b_start OPERATOR(pg_catalog.=) g.g
		 ORDER BY g.g;
END
$$;
COMMENT ON FUNCTION apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval, text) IS
	'Requests of a key (NULL = every key) per time bucket, by status; every bucket overlapping [since, until) is present, counting only requests inside [since, until). Without time_zone buckets are multiples of bucket from the Unix epoch; with one they start at local midnights (whole days) or local multiples of bucket (buckets that divide a day), daylight-saving changes included.';

/*
 * The WHERE conditions of request_log and request_count over the raw log
 * (alias r), from fixed fragments; bad filters raise 22023.  Parameters
 * of the returned text: $1 key_id, $2 resource_id, $3 method, $4
 * endpoint, $5 response_code, $6 the visible key ids.  A key id the
 * caller may not see selects nothing (returns NULL).
 */
CREATE OR REPLACE FUNCTION apikey_usage._request_filter(
	key_id uuid, resource_id text, status text, method text, endpoint text,
	response_code integer, visible uuid[])
	RETURNS text
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	cond	text := '';
BEGIN
	IF status NOT IN ('completed', 'rate_limited', 'failed') THEN
		RAISE EXCEPTION 'unknown status "%"', status
			USING ERRCODE = '22023',
				  HINT = 'status is one of completed, failed, rate_limited.';
	END IF;
	IF key_id IS NOT NULL THEN
		IF visible IS NOT NULL AND NOT key_id = ANY (visible) THEN
			RETURN NULL;
		END IF;
		cond := cond || ' AND r.api_key_id OPERATOR(pg_catalog.=) $1';
	ELSIF visible IS NOT NULL THEN
		cond := cond || ' AND r.api_key_id OPERATOR(pg_catalog.=) ANY ($6)';
	END IF;
	IF resource_id IS NOT NULL THEN
		cond := cond || ' AND r.resource_id OPERATOR(pg_catalog.=) $2';
	END IF;
	-- the same classes as status_of(), as ranges of the column
	cond := cond || CASE status
		WHEN 'completed' THEN ' AND r.response_code BETWEEN 100 AND 399'
		WHEN 'rate_limited' THEN ' AND r.response_code OPERATOR(pg_catalog.=) 429'
		WHEN 'failed' THEN ' AND r.response_code NOT BETWEEN 100 AND 399'
						   ' AND r.response_code OPERATOR(pg_catalog.<>) 429'
		ELSE '' END;
	IF method IS NOT NULL THEN
		cond := cond || ' AND r.method OPERATOR(pg_catalog.=) pg_catalog.upper($3)';
	END IF;
	IF endpoint IS NOT NULL THEN
		cond := cond || ' AND r.endpoint OPERATOR(pg_catalog.=) $4';
	END IF;
	IF response_code IS NOT NULL THEN
		cond := cond || ' AND r.response_code OPERATOR(pg_catalog.=) $5';
	END IF;
	RETURN cond;
END
$$;
COMMENT ON FUNCTION apikey_usage._request_filter(uuid, text, text, text, text, integer, uuid[]) IS
	'Internal: the WHERE conditions shared by request_log() and request_count().';

/*
 * One page of the request log, newest first.  Keyset pagination: the
 * next page starts strictly before the (requested_at, request_id) of the
 * last row of this one, which a backward scan of the indexes on
 * (..., requested_at, request_id) reaches directly, so a late page costs
 * what the first does.
 *
 * The page is read in time windows, newest first: the last day below the
 * upper bound (until, before_requested_at, or open above now()), then 2,
 * 4 and 8 days before it, then the rest, stopping once the page is full.
 * The queries are static, one per access path (by key, by resource id,
 * by time), with generic plans (plan_cache_mode): planned once per
 * session, their day partitions pruned at executor start-up from the
 * window's bounds, so a first page plans nothing and touches the one to
 * three partitions of its window.  NULL filters are off.
 *
 * request_log() below calls this (SECURITY DEFINER) when no key is
 * given, and the C _request_log_by_key() when one is; this function's
 * by-key branch gives the same rows (test/pgtap/request_log_c.sql
 * compares them).  request_log() gives them the names of API.md
 * (PL/pgSQL refuses result columns named like its arguments), as a plain
 * SQL function that the planner inlines into the caller's query.
 */
CREATE OR REPLACE FUNCTION apikey_usage._request_log(
	key_id uuid, resource_id text, since timestamptz, until timestamptz, status text,
	method text, endpoint text, response_code integer, max_rows integer,
	before_requested_at timestamptz, before_request_id uuid)
	RETURNS TABLE (out_request_id uuid, out_requested_at timestamptz, out_api_key_id uuid,
				   out_method text, out_endpoint text, out_status text,
				   out_response_code integer, out_resource_id text)
	LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 50
	SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan AS $$
DECLARE
	vis			uuid[] := apikey_usage._visible_key_ids();
	m			text := pg_catalog.upper(method);
	code		smallint;
	w_lo		timestamptz;
	w_hi		timestamptz;
	width		interval := '1 day';
	last		boolean := false;
	remaining	integer;
	got			integer;
	seqscan		text;
	indexscan	text;
BEGIN
	IF max_rows IS NULL THEN
		RAISE EXCEPTION 'max_rows must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF max_rows NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_rows must be between 1 and 10000' USING ERRCODE = '22023';
	END IF;
	IF since > until THEN
		PERFORM apikey_usage._check_bounds(since, until);
	END IF;
	IF (before_requested_at IS NULL) <> (before_request_id IS NULL) THEN
		RAISE EXCEPTION 'before_requested_at and before_request_id go together'
			USING ERRCODE = '22023',
				  HINT = 'Pass the requested_at and request_id of the last row of the previous page.';
	END IF;
	IF status NOT IN ('completed', 'rate_limited', 'failed') THEN
		RAISE EXCEPTION 'unknown status "%"', status
			USING ERRCODE = '22023',
				  HINT = 'status is one of completed, failed, rate_limited.';
	END IF;
	IF key_id IS NOT NULL AND vis IS NOT NULL AND NOT key_id = ANY (vis) THEN
		RETURN;		-- a key the caller may not see: no rows
	END IF;
	IF response_code NOT BETWEEN -32768 AND 32767 THEN
		RETURN;		-- no smallint code equals it
	END IF;
	code := response_code;

	-- the upper bound of the first window (infinity: open)
	w_hi := COALESCE(LEAST(until, before_requested_at + interval '1 microsecond'), 'infinity');
	remaining := max_rows;
	FOR i IN 1 .. 5 LOOP
		w_lo := CASE WHEN i = 5 THEN '-infinity'
					 ELSE LEAST(w_hi, pg_catalog.now()) - width END;
		IF since IS NOT NULL AND w_lo <= since THEN
			w_lo := since;
			last := true;
		END IF;
		-- a resource id without a key: one pass (a resource has few rows)
		IF _request_log.key_id IS NULL AND _request_log.resource_id IS NOT NULL THEN
			w_lo := COALESCE(since, '-infinity');
			last := true;
		END IF;
		IF _request_log.key_id IS NOT NULL THEN
			RETURN QUERY
			SELECT r.request_id, r.requested_at, r.api_key_id, r.method, r.endpoint,
				   apikey_usage.status_of(r.response_code), r.response_code::integer, r.resource_id
			  FROM apikey_usage.request_log_raw r
			 WHERE r.api_key_id OPERATOR(pg_catalog.=) _request_log.key_id
			   AND r.requested_at OPERATOR(pg_catalog.>=) w_lo AND r.requested_at OPERATOR(pg_catalog.<) w_hi
			   AND (_request_log.resource_id IS NULL OR r.resource_id OPERATOR(pg_catalog.=) _request_log.resource_id)
			   AND (_request_log.status IS NULL
					OR (_request_log.status OPERATOR(pg_catalog.=) 'completed' AND r.response_code BETWEEN 100 AND 399)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'rate_limited' AND r.response_code OPERATOR(pg_catalog.=) 429)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'failed' AND r.response_code NOT BETWEEN 100 AND 399
						AND r.response_code OPERATOR(pg_catalog.<>) 429))
			   AND (m IS NULL OR r.method OPERATOR(pg_catalog.=) m)
			   AND (_request_log.endpoint IS NULL OR r.endpoint OPERATOR(pg_catalog.=) _request_log.endpoint)
			   AND (code IS NULL OR r.response_code OPERATOR(pg_catalog.=) code)
			   AND (before_requested_at IS NULL OR (r.requested_at, r.request_id) < (before_requested_at, before_request_id))
			 ORDER BY r.requested_at DESC, r.request_id DESC
			 LIMIT remaining;
		ELSIF _request_log.resource_id IS NOT NULL THEN
			-- The resource index is a BRIN bloom index; the planner costs
			-- it as if every range matched (resource ids do not follow the
			-- heap order) and prefers reading whole partitions, or all of
			-- the time index.  This one statement is planned for its
			-- actual bounds, with bitmap scans only (the bloom's); the
			-- settings are put back right after it (an error aborts the
			-- transaction or subtransaction, which puts them back too).
			seqscan := pg_catalog.current_setting('enable_seqscan');
			indexscan := pg_catalog.current_setting('enable_indexscan');
			PERFORM pg_catalog.set_config('enable_seqscan', 'off', true);
			PERFORM pg_catalog.set_config('enable_indexscan', 'off', true);
			PERFORM pg_catalog.set_config('plan_cache_mode', 'force_custom_plan', true);
			RETURN QUERY
			SELECT r.request_id, r.requested_at, r.api_key_id, r.method, r.endpoint,
				   apikey_usage.status_of(r.response_code), r.response_code::integer, r.resource_id
			  FROM apikey_usage.request_log_raw r
			 WHERE r.resource_id OPERATOR(pg_catalog.=) _request_log.resource_id
			   AND r.requested_at OPERATOR(pg_catalog.>=) w_lo AND r.requested_at OPERATOR(pg_catalog.<) w_hi
			   AND (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
			   AND (_request_log.status IS NULL
					OR (_request_log.status OPERATOR(pg_catalog.=) 'completed' AND r.response_code BETWEEN 100 AND 399)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'rate_limited' AND r.response_code OPERATOR(pg_catalog.=) 429)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'failed' AND r.response_code NOT BETWEEN 100 AND 399
						AND r.response_code OPERATOR(pg_catalog.<>) 429))
			   AND (m IS NULL OR r.method OPERATOR(pg_catalog.=) m)
			   AND (_request_log.endpoint IS NULL OR r.endpoint OPERATOR(pg_catalog.=) _request_log.endpoint)
			   AND (code IS NULL OR r.response_code OPERATOR(pg_catalog.=) code)
			   AND (before_requested_at IS NULL OR (r.requested_at, r.request_id) < (before_requested_at, before_request_id))
			 ORDER BY r.requested_at DESC, r.request_id DESC
			 LIMIT remaining;
			PERFORM pg_catalog.set_config('enable_seqscan', seqscan, true);
			PERFORM pg_catalog.set_config('enable_indexscan', indexscan, true);
			PERFORM pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', true);
		ELSE
			RETURN QUERY
			SELECT r.request_id, r.requested_at, r.api_key_id, r.method, r.endpoint,
				   apikey_usage.status_of(r.response_code), r.response_code::integer, r.resource_id
			  FROM apikey_usage.request_log_raw r
			 WHERE r.requested_at OPERATOR(pg_catalog.>=) w_lo AND r.requested_at OPERATOR(pg_catalog.<) w_hi
			   AND (vis IS NULL OR r.api_key_id OPERATOR(pg_catalog.=) ANY (vis))
			   AND (_request_log.status IS NULL
					OR (_request_log.status OPERATOR(pg_catalog.=) 'completed' AND r.response_code BETWEEN 100 AND 399)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'rate_limited' AND r.response_code OPERATOR(pg_catalog.=) 429)
					OR (_request_log.status OPERATOR(pg_catalog.=) 'failed' AND r.response_code NOT BETWEEN 100 AND 399
						AND r.response_code OPERATOR(pg_catalog.<>) 429))
			   AND (m IS NULL OR r.method OPERATOR(pg_catalog.=) m)
			   AND (_request_log.endpoint IS NULL OR r.endpoint OPERATOR(pg_catalog.=) _request_log.endpoint)
			   AND (code IS NULL OR r.response_code OPERATOR(pg_catalog.=) code)
			   AND (before_requested_at IS NULL OR (r.requested_at, r.request_id) < (before_requested_at, before_request_id))
			 ORDER BY r.requested_at DESC, r.request_id DESC
			 LIMIT remaining;
		END IF;
		GET DIAGNOSTICS got = ROW_COUNT;
		remaining := remaining - got;
		EXIT WHEN remaining <= 0 OR last OR w_lo = '-infinity';
		w_hi := w_lo;
		width := width * 2;
	END LOOP;
END
$$;
COMMENT ON FUNCTION apikey_usage._request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'Internal: the query behind request_log().';

/*
 * The key-given path of request_log(), in C (src/api/request_log.c): the
 * per-key btree of each day partition scanned backward from the upper
 * bound, newest partition first, the other filters applied to the heap
 * tuple, stopping at max_rows; no SPI, no planning, so a page costs what
 * reading its rows costs.  Same checks and SQLSTATEs as _request_log(),
 * which keeps serving the paths without a key.  Not SECURITY DEFINER: it
 * reads the raw log with apikey_usage_owner's rights (checked) and shows
 * only keys _visible_key_ids() lets the caller see.  The status column is
 * added by request_log() with status_of().
 */
CREATE FUNCTION apikey_usage._request_log_by_key(
	key_id uuid, resource_id text, since timestamptz, until timestamptz, status text,
	method text, endpoint text, response_code integer, max_rows integer,
	before_requested_at timestamptz, before_request_id uuid)
	RETURNS TABLE (out_request_id uuid, out_requested_at timestamptz, out_api_key_id uuid,
				   out_method text, out_endpoint text, out_response_code integer, out_resource_id text)
	LANGUAGE c STABLE ROWS 50
	AS 'MODULE_PATHNAME', 'apikey_usage_request_log_by_key';
COMMENT ON FUNCTION apikey_usage._request_log_by_key(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'Internal: request_log() for one key, read from the per-key index of each day partition.';

CREATE OR REPLACE FUNCTION apikey_usage.request_log(
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
	AS $$
	SELECT r.out_request_id, r.out_requested_at, r.out_api_key_id, r.out_method, r.out_endpoint,
		   apikey_usage.status_of(r.out_response_code), r.out_response_code, r.out_resource_id
	  FROM apikey_usage._request_log_by_key($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) r
	 WHERE $1 IS NOT NULL
	UNION ALL
	SELECT * FROM apikey_usage._request_log($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
	 WHERE $1 IS NULL
$$;
-- (ROWS 50 on both functions keeps the plan of a prepared request_log()
-- call generic: the branch not taken costs less than re-planning would.)
COMMENT ON FUNCTION apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid) IS
	'One page of the request log, newest first; NULL filters are off. Pass the last row''s requested_at and request_id as before_* for the next page.';

/*
 * The number of rows request_log() pages through with the same filters
 * (the total shown next to a page).  Exact.  Filters on key, bounds,
 * status and response code only are counted like usage_summary (rollups
 * and raw edges); a method, endpoint or resource_id filter counts the
 * raw log through its indexes.
 */
CREATE OR REPLACE FUNCTION apikey_usage.request_count(
	key_id uuid DEFAULT NULL,
	resource_id text DEFAULT NULL,
	since timestamptz DEFAULT NULL,
	until timestamptz DEFAULT NULL,
	status text DEFAULT NULL,
	method text DEFAULT NULL,
	endpoint text DEFAULT NULL,
	response_code integer DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	vis		uuid[] := apikey_usage._visible_key_ids();
	cond	text;
	n		bigint;
	seqscan	text := pg_catalog.current_setting('enable_seqscan');
BEGIN
	PERFORM apikey_usage._check_bounds(since, until);
	cond := apikey_usage._request_filter(key_id, resource_id, status, method, endpoint, response_code, vis);
	IF cond IS NULL THEN
		RETURN 0;
	END IF;
	IF resource_id IS NULL AND method IS NULL AND endpoint IS NULL THEN
		SELECT COALESCE(pg_catalog.sum(c.b_requests), 0)::bigint INTO n
		  FROM apikey_usage._usage_counts(request_count.key_id, request_count.since, request_count.until, 'codes') c
		 WHERE (request_count.response_code IS NULL OR c.b_code OPERATOR(pg_catalog.=) request_count.response_code)
		   AND CASE request_count.status
				WHEN 'completed' THEN c.b_code BETWEEN 100 AND 399
				WHEN 'rate_limited' THEN c.b_code OPERATOR(pg_catalog.=) 429
				WHEN 'failed' THEN c.b_code NOT BETWEEN 100 AND 399 AND c.b_code OPERATOR(pg_catalog.<>) 429
				ELSE true END;
		RETURN n;
	END IF;
	-- a resource id without a key: through the BRIN bloom index (see _request_log)
	IF key_id IS NULL AND resource_id IS NOT NULL THEN
		PERFORM pg_catalog.set_config('enable_seqscan', 'off', true);
	END IF;
	EXECUTE 'SELECT pg_catalog.count(*) FROM apikey_usage.request_log_raw r WHERE true' || cond
		|| CASE WHEN since IS NOT NULL THEN ' AND r.requested_at OPERATOR(pg_catalog.>=) $7' ELSE '' END
		|| CASE WHEN until IS NOT NULL THEN ' AND r.requested_at OPERATOR(pg_catalog.<) $8' ELSE '' END
		INTO n
		USING key_id, resource_id, method, endpoint, response_code, vis, since, until;
	PERFORM pg_catalog.set_config('enable_seqscan', seqscan, true);
	RETURN n;
END
$$;
COMMENT ON FUNCTION apikey_usage.request_count(uuid, text, timestamptz, timestamptz, text, text, text, integer) IS
	'The number of requests request_log() pages through with the same filters (exact; NULL filters are off).';

------------------------------------------------------------------------
-- Bulk import of history (apikey_usage_admin)
------------------------------------------------------------------------

-- A UUIDv7 for a time: the Unix milliseconds of ts, version 7, then
-- random bits (random(), not a strong random source: a bulk import makes
-- millions of these, and a request id needs to be unique, not secret).
-- A single expression, so the planner inlines it.
CREATE OR REPLACE FUNCTION apikey_usage._uuid_v7(ts timestamptz) RETURNS uuid
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
-- (Metabase, Grafana's table panels).  They run with the owner's rights
-- and show only the keys the caller may see (_visible_key_ids).
------------------------------------------------------------------------
CREATE OR REPLACE VIEW apikey_usage.hourly_usage AS
SELECT u.api_key_id AS key_id, k.name AS key_name, k.workspace, u.bucket_start,
	   u.method COLLATE "default" AS method, u.endpoint COLLATE "default" AS endpoint, u.response_code::integer AS response_code,
	   apikey_usage.status_of(u.response_code) AS status, u.requests
  FROM apikey_usage.usage_hourly u
  LEFT JOIN apikey_usage.api_keys k ON k.key_id = u.api_key_id
 WHERE apikey_usage._visible_key_ids() IS NULL OR u.api_key_id = ANY (apikey_usage._visible_key_ids());
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

CREATE OR REPLACE VIEW apikey_usage.daily_usage AS
SELECT u.api_key_id AS key_id, k.name AS key_name, k.workspace,
	   (u.bucket_start AT TIME ZONE 'UTC')::date AS day,
	   u.method COLLATE "default" AS method, u.endpoint COLLATE "default" AS endpoint, u.response_code::integer AS response_code,
	   apikey_usage.status_of(u.response_code) AS status, u.requests
  FROM apikey_usage.usage_daily u
  LEFT JOIN apikey_usage.api_keys k ON k.key_id = u.api_key_id
 WHERE apikey_usage._visible_key_ids() IS NULL OR u.api_key_id = ANY (apikey_usage._visible_key_ids());
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
-- reader role.  The views call _visible_key_ids() with the caller's
-- rights.
------------------------------------------------------------------------
GRANT EXECUTE ON FUNCTION
	apikey_usage.usage_summary(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_method(uuid, timestamptz, timestamptz),
	apikey_usage.usage_by_response_status(uuid, timestamptz, timestamptz),
	apikey_usage.top_endpoints(uuid, timestamptz, timestamptz, integer),
	apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval, text),
	apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage.request_count(uuid, text, timestamptz, timestamptz, text, text, text, integer),
	apikey_usage._visible_key_ids()
	TO apikey_usage_reader;
GRANT SELECT ON apikey_usage.hourly_usage, apikey_usage.daily_usage TO apikey_usage_reader;
-- request_log() is inlined into the caller's query: the caller calls
-- _request_log (SECURITY DEFINER) and _request_log_by_key itself
GRANT EXECUTE ON FUNCTION
	apikey_usage._request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid),
	apikey_usage._request_log_by_key(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid)
	TO apikey_usage_reader, apikey_usage_tenant;
