-- Rows :lo .. :hi of the live dataset: one key (bench.live_key) with
-- requests spread over the 40 minutes before the load started
-- (:t_end), loaded straight into the raw log and, in the same statement,
-- into the rollups through apikey_usage._rollup_apply, as the log writer
-- does; the same rows into naive.live (a plain table, one (key, ts)
-- btree).  Mix as in dataset_stage.sql: 80 % GET, 40 endpoints (skewed),
-- 8 response codes; half the rows carry a resource id.
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.live_stage;
CREATE UNLOGGED TABLE bench.live_stage AS
SELECT s.requested_at,
	   (lpad(to_hex((extract(epoch FROM s.requested_at) * 1000)::bigint), 12, '0') || '7'
		|| lpad(to_hex((random() * 4095)::int), 3, '0') || to_hex(32768 | (random() * 16383)::int)
		|| lpad(to_hex((random() * 281474976710655)::bigint), 12, '0'))::uuid AS request_id,
	   (SELECT key_id FROM bench.live_key) AS api_key_id,
	   CASE WHEN s.r2 < 0.8 THEN 'GET' ELSE (ARRAY['POST', 'PUT', 'DELETE', 'PATCH'])[1 + s.ep % 4] END AS method,
	   '/v1/' || (ARRAY['documents', 'users', 'orders', 'invoices', 'files', 'events', 'projects', 'teams'])[1 + s.ep % 8]
		|| CASE WHEN s.ep >= 8 THEN '/{id}/' || (ARRAY['items', 'comments', 'history', 'share'])[1 + (s.ep / 8) % 4]
				ELSE '/{id}' END AS endpoint,
	   (CASE WHEN s.r3 < 0.80 THEN 200 WHEN s.r3 < 0.86 THEN 201 WHEN s.r3 < 0.89 THEN 204
			 WHEN s.r3 < 0.92 THEN 400 WHEN s.r3 < 0.93 THEN 401 WHEN s.r3 < 0.97 THEN 404
			 WHEN s.r3 < 0.99 THEN 429 ELSE 500 END)::smallint AS response_code,
	   CASE WHEN s.r2 < 0.5 THEN 'doc_' || (s.g % 10000) END AS resource_id
  FROM (SELECT g, :'t_end'::timestamptz - random() * interval '40 minutes' AS requested_at,
			   random() AS r2, random() AS r3, floor(random() * random() * 40)::int AS ep
		  FROM generate_series(:lo::bigint, :hi::bigint) AS g) AS s;
SELECT apikey_usage._ensure_partition(d)
  FROM (SELECT DISTINCT date_trunc('day', requested_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS d FROM bench.live_stage) x;
WITH raw AS (
	INSERT INTO apikey_usage.request_log_raw
	SELECT requested_at, request_id, api_key_id, method, endpoint, response_code, resource_id
	  FROM bench.live_stage ORDER BY requested_at, request_id
)
SELECT apikey_usage._rollup_apply(array_agg(api_key_id), array_agg(m), array_agg(method), array_agg(endpoint),
								  array_agg(response_code), array_agg(n))
  FROM (SELECT api_key_id, date_bin('1 minute', requested_at, timestamptz 'epoch') AS m, method, endpoint,
			   response_code, count(*) AS n
		  FROM bench.live_stage GROUP BY 1, 2, 3, 4, 5) g;
INSERT INTO naive.live SELECT * FROM bench.live_stage;
DROP TABLE bench.live_stage;
