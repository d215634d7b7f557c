-- request_log() with a key: the C path (_request_log_by_key, which scans
-- the per-key btree of each day partition backward) against a plain
-- query over request_log_raw, for random filters, bounds and page sizes,
-- walking every page by keyset cursor: pages that cross a day partition
-- boundary, cursors inside runs of equal requested_at, future-dated rows.
-- Also: the PL/pgSQL path gives the same pages, bad input, visibility,
-- privileges, a partition without its per-key index.
--
-- The rows are inserted straight into request_log_raw (as the superuser
-- running the tests) in this transaction, and rolled back with it.
BEGIN;
SELECT plan(19);

SELECT setseed(0.4242);

CREATE TEMP TABLE rk (n int PRIMARY KEY, key_id uuid NOT NULL);
INSERT INTO rk SELECT 1, key_id FROM apikey_usage.generate_key('pgtap-rlc-a', 'main');
INSERT INTO rk SELECT 2, key_id FROM apikey_usage.generate_key('pgtap-rlc-b', 'other');

-- the day partitions of the last six days and the next one
SELECT apikey_usage._ensure_partition(now() + make_interval(days => d)) FROM generate_series(-6, 1) AS d;

-- key 1: 3,000 rows over the last 5 days, in runs of up to 6 rows with
-- the same requested_at (whole seconds), rows on and just before UTC
-- midnights, codes on every class edge, and rows up to 50 minutes ahead;
-- key 2: 1,000 rows in the same times (they must never show)
CREATE TEMP TABLE src AS
SELECT (SELECT key_id FROM rk WHERE n = CASE WHEN i % 4 = 0 THEN 2 ELSE 1 END) AS api_key_id,
	   CASE WHEN i % 97 = 0 THEN date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => i % 5)
			WHEN i % 89 = 0 THEN date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => i % 5) - interval '1 microsecond'
			WHEN i % 53 = 0 THEN now() + make_interval(mins => 1 + i % 50)
			ELSE date_trunc('second', now() - make_interval(secs => (i / 6) * 107 % 432000)) END AS requested_at,
	   (ARRAY['GET', 'POST', 'PUT', 'DELETE', 'GET', 'GET'])[1 + i % 6] AS method,
	   (ARRAY['/v1/a', '/v1/b', '/v1/a/{id}', '/v2/c'])[1 + (i * 7) % 4] AS endpoint,
	   (ARRAY[200, 201, 99, 100, 399, 400, 429, 500, 404, 200, 301, 600])[1 + (i * 5) % 12]::smallint AS response_code,
	   CASE WHEN i % 3 = 0 THEN NULL ELSE 'doc-' || (i % 7) END AS resource_id
  FROM generate_series(1, 4000) AS i;
INSERT INTO apikey_usage.request_log_raw (requested_at, request_id, api_key_id, method, endpoint, response_code, resource_id)
SELECT requested_at, gen_random_uuid(), api_key_id, method, endpoint, response_code, resource_id FROM src;

SELECT cmp_ok((SELECT count(*) FROM (SELECT 1 FROM apikey_usage.request_log_raw
									  WHERE api_key_id = (SELECT key_id FROM rk WHERE n = 1)
									  GROUP BY requested_at HAVING count(*) > 1) t), '>', 100::bigint,
	'the history has runs of rows with equal requested_at');

CREATE TEMP TABLE pw (n bigint, requested_at timestamptz, request_id uuid, t text);

-- One walk: every page of request_log(key 1, filters) until an empty page
-- or 100 pages, each compared with the plain query.  path 'c' calls
-- request_log() (the C path), 'plpgsql' calls _request_log().
CREATE FUNCTION pg_temp.walk(path text, p_status text, p_method text, p_endpoint text, p_code integer,
							 p_resource text, p_since timestamptz, p_until timestamptz, p_rows integer,
							 OUT pages integer, OUT mismatches integer, OUT crossing integer, OUT tie_cuts integer,
							 OUT total integer)
	LANGUAGE plpgsql AS $$
DECLARE
	k		uuid := (SELECT key_id FROM rk WHERE n = 1);
	bts		timestamptz;
	bid		uuid;
	got		text[];
	want	text[];
	lo		timestamptz;
	hi		timestamptz;
BEGIN
	pages := 0; mismatches := 0; crossing := 0; tie_cuts := 0; total := 0;
	LOOP
		IF path = 'c' THEN
			SELECT array_agg(row(l.request_id, l.requested_at, l.api_key_id, l.method, l.endpoint, l.status,
								 l.response_code, l.resource_id)::text ORDER BY o),
				   min(l.requested_at), max(l.requested_at)
			  INTO got, lo, hi
			  FROM apikey_usage.request_log(k, p_resource, p_since, p_until, p_status, p_method, p_endpoint, p_code,
											p_rows, bts, bid) WITH ORDINALITY AS l(request_id, requested_at, api_key_id,
											method, endpoint, status, response_code, resource_id, o);
		ELSE
			SELECT array_agg(row(l.out_request_id, l.out_requested_at, l.out_api_key_id, l.out_method, l.out_endpoint,
								 l.out_status, l.out_response_code, l.out_resource_id)::text ORDER BY o),
				   min(l.out_requested_at), max(l.out_requested_at)
			  INTO got, lo, hi
			  FROM apikey_usage._request_log(k, p_resource, p_since, p_until, p_status, p_method, p_endpoint, p_code,
											 p_rows, bts, bid) WITH ORDINALITY AS l(out_request_id, out_requested_at,
											 out_api_key_id, out_method, out_endpoint, out_status, out_response_code,
											 out_resource_id, o);
		END IF;
		DELETE FROM pw;
		INSERT INTO pw
		SELECT row_number() OVER (ORDER BY r.requested_at DESC, r.request_id DESC), r.requested_at, r.request_id,
			   row(r.request_id, r.requested_at, r.api_key_id, r.method, r.endpoint,
				   apikey_usage.status_of(r.response_code), r.response_code::integer, r.resource_id)::text
		  FROM apikey_usage.request_log_raw r
		 WHERE r.api_key_id = k
		   AND (p_status IS NULL OR apikey_usage.status_of(r.response_code) = p_status)
		   AND (p_method IS NULL OR r.method = upper(p_method))
		   AND (p_endpoint IS NULL OR r.endpoint = p_endpoint)
		   AND (p_code IS NULL OR r.response_code = p_code)
		   AND (p_resource IS NULL OR r.resource_id = p_resource)
		   AND (p_since IS NULL OR r.requested_at >= p_since)
		   AND (p_until IS NULL OR r.requested_at < p_until)
		   AND (bts IS NULL OR (r.requested_at, r.request_id) < (bts, bid))
		 ORDER BY r.requested_at DESC, r.request_id DESC
		 LIMIT p_rows;
		SELECT array_agg(pw.t ORDER BY pw.n) INTO want FROM pw;
		IF got IS DISTINCT FROM want THEN
			mismatches := mismatches + 1;
		END IF;
		EXIT WHEN want IS NULL OR pages >= 100;
		pages := pages + 1;
		total := total + cardinality(want);
		IF (lo AT TIME ZONE 'UTC')::date <> (hi AT TIME ZONE 'UTC')::date THEN
			crossing := crossing + 1;
		END IF;
		-- the next page starts at the last row of this one (the expected rows)
		SELECT pw.requested_at, pw.request_id INTO STRICT bts, bid FROM pw ORDER BY pw.n DESC LIMIT 1;
		IF EXISTS (SELECT 1 FROM apikey_usage.request_log_raw r
					WHERE r.api_key_id = k AND r.requested_at = bts AND r.request_id < bid) THEN
			tie_cuts := tie_cuts + 1;
		END IF;
	END LOOP;
END
$$;

-- 60 random walks over the C path
CREATE TEMP TABLE walks AS
SELECT w.*
  FROM generate_series(1, 60) AS g
 CROSS JOIN LATERAL (
	SELECT CASE WHEN random() < 0.5 THEN NULL ELSE (ARRAY['completed', 'failed', 'rate_limited'])[1 + floor(random() * 3)::int] END AS st,
		   CASE WHEN random() < 0.6 THEN NULL ELSE (ARRAY['get', 'POST', 'Put'])[1 + floor(random() * 3)::int] END AS me,
		   CASE WHEN random() < 0.7 THEN NULL ELSE (ARRAY['/v1/a', '/v2/c', '/nope'])[1 + floor(random() * 3)::int] END AS ep,
		   CASE WHEN random() < 0.85 THEN NULL ELSE (ARRAY[200, 429, 99, 600, 70000])[1 + floor(random() * 5)::int] END AS co,
		   CASE WHEN random() < 0.8 THEN NULL ELSE 'doc-' || floor(random() * 8)::int END AS re,
		   CASE WHEN random() < 0.5 THEN NULL ELSE now() - random() * interval '6 days' END AS si,
		   CASE WHEN random() < 0.5 THEN NULL ELSE now() + interval '1 hour' - random() * interval '3 days' END AS un,
		   1 + floor(random() * random() * 400)::int AS mr
	 WHERE g > 0) w
 WHERE w.si IS NULL OR w.un IS NULL OR w.si <= w.un;
CREATE TEMP TABLE res AS
SELECT r.* FROM walks w CROSS JOIN LATERAL pg_temp.walk('c', w.st, w.me, w.ep, w.co, w.re, w.si, w.un, w.mr) r;

SELECT is((SELECT sum(mismatches)::int FROM res), 0, 'C path: every page of every random walk equals the plain query');
SELECT cmp_ok((SELECT sum(pages)::int FROM res), '>', 300, 'C path: the walks read many pages');
SELECT cmp_ok((SELECT sum(crossing)::int FROM res), '>', 10, 'C path: pages crossing a day partition boundary were compared');
SELECT cmp_ok((SELECT sum(tie_cuts)::int FROM res), '>', 5, 'C path: cursors inside runs of equal requested_at were compared');

-- whole walks without filters: every row of the key, future ones first
SELECT is((SELECT row(mismatches, total) FROM pg_temp.walk('c', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 50)),
	(SELECT row(0, count(*)::int) FROM apikey_usage.request_log_raw WHERE api_key_id = (SELECT key_id FROM rk WHERE n = 1)),
	'C path, no filters, 50 rows a page: every row of the key exactly once, in order');
SELECT is((SELECT row(mismatches, total) FROM pg_temp.walk('c', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1)),
	(SELECT row(0, 100)),
	'C path, one row a page: 100 pages in order (ties cut one by one)');
SELECT is((SELECT (l.requested_at > now()) FROM apikey_usage.request_log((SELECT key_id FROM rk WHERE n = 1), max_rows => 1) l),
	true, 'future-dated rows come first');

-- the PL/pgSQL path (no key: the planner's path) agrees on a few walks
SELECT is((SELECT sum(r.mismatches)::int
			 FROM (SELECT * FROM walks LIMIT 10) w
			CROSS JOIN LATERAL pg_temp.walk('plpgsql', w.st, w.me, w.ep, w.co, w.re, w.si, w.un, w.mr) r), 0,
	'PL/pgSQL path: the same pages');

-- bad input, through the C path (a key is given)
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L, max_rows => NULL)$$, (SELECT key_id FROM rk WHERE n = 1)),
	'22004', 'max_rows must not be NULL', 'max_rows NULL: 22004');
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L, max_rows => 10001)$$, (SELECT key_id FROM rk WHERE n = 1)),
	'22023', 'max_rows must be between 1 and 10000', 'max_rows too large: 22023');
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L, since => now(), until => now() - interval '1 day')$$, (SELECT key_id FROM rk WHERE n = 1)),
	'22023', 'since must not be later than until', 'since > until: 22023');
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L, before_requested_at => now())$$, (SELECT key_id FROM rk WHERE n = 1)),
	'22023', 'before_requested_at and before_request_id go together', 'half a cursor: 22023');
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L, status => 'ok')$$, (SELECT key_id FROM rk WHERE n = 1)),
	'22023', 'unknown status "ok"', 'unknown status: 22023');

-- visibility and privileges
CREATE ROLE rlc_tenant LOGIN IN ROLE apikey_usage_tenant;
CREATE ROLE rlc_app LOGIN IN ROLE apikey_usage_app;
SELECT apikey_usage.grant_workspace('rlc_tenant', 'pgtap-rlc-b', 'reader');
SELECT key_id AS k1 FROM rk WHERE n = 1 \gset
SELECT key_id AS k2 FROM rk WHERE n = 2 \gset
SET LOCAL ROLE rlc_tenant;
SELECT count(*) AS t_other FROM apikey_usage.request_log(:'k1', max_rows => 10000) \gset
SELECT count(*) AS t_own FROM apikey_usage.request_log(:'k2', max_rows => 10000) \gset
RESET ROLE;
SELECT is(:t_other::bigint, 0::bigint, 'a tenant sees no row of a key of another workspace (like an unknown key)');
SELECT is(:t_own::bigint, 1000::bigint, 'and every row of a key of its workspace');
SELECT is(has_function_privilege('rlc_app', 'apikey_usage._request_log_by_key(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid)', 'EXECUTE')
		  OR has_function_privilege('rlc_app', 'apikey_usage.request_log(uuid, text, timestamptz, timestamptz, text, text, text, integer, integer, timestamptz, uuid)', 'EXECUTE'),
	false, 'the app role may not read the log');

-- _visible_key_ids() decides "sees everything" in C for global roles
-- (src/tenants/caller.c); it must agree with the SQL definition
-- (_visible_key_ids_uncached(), through _caller_is_global()) for every
-- kind of role, NOINHERIT membership included
CREATE ROLE rlc_super SUPERUSER;
CREATE ROLE rlc_reader IN ROLE apikey_usage_reader;
CREATE ROLE rlc_admin IN ROLE apikey_usage_admin;
CREATE ROLE rlc_noinherit NOINHERIT IN ROLE apikey_usage_reader;
CREATE ROLE rlc_plain;
GRANT USAGE ON SCHEMA apikey_usage TO rlc_plain, rlc_noinherit, rlc_app;
GRANT EXECUTE ON FUNCTION apikey_usage._visible_key_ids(), apikey_usage._visible_key_ids_uncached(),
	apikey_usage._visible_workspaces(), apikey_usage._visible_workspaces_uncached()
	TO rlc_plain, rlc_noinherit, rlc_app, rlc_tenant, rlc_reader, rlc_admin;
CREATE FUNCTION pg_temp.visibility_disagreements() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	r		text;
	bad		text := '';
	same	boolean;
BEGIN
	FOREACH r IN ARRAY ARRAY['rlc_super', 'rlc_reader', 'rlc_admin', 'rlc_app', 'rlc_tenant', 'rlc_noinherit', 'rlc_plain'] LOOP
		EXECUTE format('SET LOCAL ROLE %I', r);
		SELECT (apikey_usage._visible_key_ids() IS NOT DISTINCT FROM apikey_usage._visible_key_ids_uncached())
			   AND (apikey_usage._visible_workspaces() IS NOT DISTINCT FROM apikey_usage._visible_workspaces_uncached())
		  INTO same;
		RESET ROLE;
		IF NOT same THEN
			bad := bad || r || ' ';
		END IF;
	END LOOP;
	RETURN bad;
END
$$;
SELECT is(pg_temp.visibility_disagreements(), '', '_visible_key_ids() / _visible_workspaces() equal their SQL definitions for every kind of role');

-- a partition that lost its per-key index: a clear error, not a wrong page
DO $$
BEGIN
	EXECUTE format('DROP INDEX apikey_usage.%I',
				   'request_log_raw_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '_key_time_idx');
END
$$;
SELECT throws_ok(format($$SELECT * FROM apikey_usage.request_log(%L)$$, (SELECT key_id FROM rk WHERE n = 1)),
	'55000', NULL, 'a partition without the (api_key_id, requested_at, request_id) index: 55000');

SELECT * FROM finish();
ROLLBACK;
