
------------------------------------------------------------------------
-- Analytics and rollups (0.2.0): one rollup grain per dashboard part
-- (codes, methods, endpoints; per day and hour, codes also per minute),
-- all written by _rollup_apply in the writer's transaction instead of
-- statement triggers on usage_hourly; one counting function behind the
-- analytics; usage_timeseries gains time_zone; request_count.
--
-- The new grains are filled from 0.1.0's rollups (which agree with the
-- raw log), the per-minute codes from the raw log itself (one scan), so
-- an upgraded installation answers exactly as before.
------------------------------------------------------------------------
DROP TRIGGER usage_rollups_insert ON apikey_usage.usage_hourly;
DROP TRIGGER usage_rollups_update ON apikey_usage.usage_hourly;
DROP TRIGGER usage_rollups_delete ON apikey_usage.usage_hourly;
DROP TRIGGER usage_rollups_truncate ON apikey_usage.usage_hourly;
DROP FUNCTION apikey_usage._usage_rollups_sync();
DROP FUNCTION apikey_usage.usage_timeseries(uuid, timestamptz, timestamptz, interval);
DROP FUNCTION apikey_usage._usage_query(boolean, timestamptz, timestamptz, text);
DROP FUNCTION apikey_usage._status_sums_sql();

COMMENT ON TABLE apikey_usage.usage_daily IS
	'Request counts per key, UTC day, method, endpoint and response code (the daily_usage view).';
COMMENT ON TABLE apikey_usage.usage_hourly_codes IS
	'Request counts per key, UTC hour and response code.';

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_minute_codes (

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_daily_codes (

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_hourly_methods (

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_daily_methods (

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_hourly_endpoints (

--@include 20_analytics.sql CREATE TABLE apikey_usage.usage_daily_endpoints (

--@include 20_analytics.sql SELECT pg_catalog.pg_extension_config_dump('apikey_usage.usage_daily', '');

-- as in the fresh install (90_grants.sql): nothing of these is PUBLIC's
REVOKE ALL ON apikey_usage.usage_minute_codes, apikey_usage.usage_daily_codes,
	apikey_usage.usage_hourly_methods, apikey_usage.usage_daily_methods,
	apikey_usage.usage_hourly_endpoints, apikey_usage.usage_daily_endpoints FROM PUBLIC;

INSERT INTO apikey_usage.usage_minute_codes (api_key_id, bucket_start, response_code, requests)
SELECT r.api_key_id, pg_catalog.date_bin('1 minute', r.requested_at, '1970-01-01 00:00:00+00'), r.response_code, pg_catalog.count(*)
  FROM apikey_usage.request_log_raw r GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
INSERT INTO apikey_usage.usage_daily_codes (api_key_id, bucket_start, response_code, requests)
SELECT h.api_key_id, pg_catalog.date_bin('1 day', h.bucket_start, '1970-01-01 00:00:00+00'), h.response_code, pg_catalog.sum(h.requests)
  FROM apikey_usage.usage_hourly_codes h GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
INSERT INTO apikey_usage.usage_hourly_methods (api_key_id, bucket_start, method, requests)
SELECT h.api_key_id, h.bucket_start, h.method, pg_catalog.sum(h.requests)
  FROM apikey_usage.usage_hourly h GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
INSERT INTO apikey_usage.usage_daily_methods (api_key_id, bucket_start, method, requests)
SELECT d.api_key_id, d.bucket_start, d.method, pg_catalog.sum(d.requests)
  FROM apikey_usage.usage_daily d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
INSERT INTO apikey_usage.usage_hourly_endpoints (api_key_id, bucket_start, endpoint, requests)
SELECT h.api_key_id, h.bucket_start, h.endpoint, pg_catalog.sum(h.requests)
  FROM apikey_usage.usage_hourly h GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
INSERT INTO apikey_usage.usage_daily_endpoints (api_key_id, bucket_start, endpoint, requests)
SELECT d.api_key_id, d.bucket_start, d.endpoint, pg_catalog.sum(d.requests)
  FROM apikey_usage.usage_daily d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

------------------------------------------------------------------------
-- From here on the same text as sqlsrc/20_analytics.sql (functions and
-- views are CREATE OR REPLACE in both, so the two stay identical).
------------------------------------------------------------------------
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

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._rollup_forget(cutoff timestamptz) RETURNS void

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._usage_pieces(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._usage_counts(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.usage_summary(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.usage_by_method(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.usage_by_response_status(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.top_endpoints(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._buckets(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.usage_timeseries(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._request_filter(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._request_log(

--@include 20_analytics.sql CREATE FUNCTION apikey_usage._request_log_by_key(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.request_log(

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage.request_count(

--@include 20_analytics.sql CREATE OR REPLACE VIEW apikey_usage.hourly_usage AS

--@include 20_analytics.sql CREATE OR REPLACE VIEW apikey_usage.daily_usage AS

--@include 20_analytics.sql GRANT SELECT ON apikey_usage.hourly_usage, apikey_usage.daily_usage TO apikey_usage_reader;
