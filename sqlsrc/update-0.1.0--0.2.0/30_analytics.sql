
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

--@include 20_analytics.sql ALTER TABLE apikey_usage.usage_hourly SET (fillfactor = 50);

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

--@include 20_analytics.sql CREATE OR REPLACE FUNCTION apikey_usage._rollup_apply(


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
