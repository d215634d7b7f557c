-- Rows :lo .. :hi of the dashboard dataset, as a staging table for
-- apikey_usage.import_requests: requests over the last 30 days of 1,000
-- keys; every 5th row belongs to the heavy key (bench.dataset_keys i = 1),
-- the others spread over the 999 light keys.  The heavy key uses 40
-- endpoints (skewed), each light key 6; 80 % GET; response codes 80 % 200,
-- 6 % 201, 3 % 204, 3 % 400, 1 % 401, 4 % 404, 2 % 429, 1 % 500; half the
-- rows carry a resource_id.  request_id is a UUIDv7 of requested_at,
-- generated here so that the naive table gets the very same rows.
-- The stage is in time order, as a history export is (and as the live
-- log arrives): each import_requests chunk then touches a narrow band of
-- every rollup index instead of all of it, which made the import about
-- 1.7x faster at 2-3M rows (bench/results/2026-11-29-dashboards2/);
-- in random order the rollup upserts wander over indexes larger than the
-- cache as the dataset grows.
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.stage;
CREATE UNLOGGED TABLE bench.stage AS
SELECT s.requested_at,
	   (lpad(to_hex((extract(epoch FROM s.requested_at) * 1000)::bigint), 12, '0') || '7'
		|| lpad(to_hex((random() * 4095)::int), 3, '0') || to_hex(32768 | (random() * 16383)::int)
		|| lpad(to_hex((random() * 281474976710655)::bigint), 12, '0'))::uuid AS request_id,
	   k.key_id AS api_key_id,
	   CASE WHEN s.r2 < 0.8 THEN 'GET' ELSE (ARRAY['POST', 'PUT', 'DELETE', 'PATCH'])[1 + s.ep % 4] END AS method,
	   '/v1/' || (ARRAY['documents', 'users', 'orders', 'invoices', 'files', 'events', 'projects', 'teams'])[1 + s.ep % 8]
		|| CASE WHEN s.ep >= 8 THEN '/{id}/' || (ARRAY['items', 'comments', 'history', 'share'])[1 + (s.ep / 8) % 4]
				ELSE '/{id}' END AS endpoint,
	   (CASE WHEN s.r3 < 0.80 THEN 200 WHEN s.r3 < 0.86 THEN 201 WHEN s.r3 < 0.89 THEN 204
			 WHEN s.r3 < 0.92 THEN 400 WHEN s.r3 < 0.93 THEN 401 WHEN s.r3 < 0.97 THEN 404
			 WHEN s.r3 < 0.99 THEN 429 ELSE 500 END)::smallint AS response_code,
	   CASE WHEN s.r2 < 0.5 THEN 'doc_' || (s.g % 10000) END AS resource_id
  FROM (SELECT g, now() - interval '1 minute' - random() * interval '30 days' AS requested_at,
			   CASE WHEN g % 5 = 0 THEN 1 ELSE 2 + (g::bigint * 7919) % 999 END AS ki,
			   random() AS r2, random() AS r3,
			   CASE WHEN g % 5 = 0 THEN floor(random() * random() * 40)::int
					ELSE (((g::bigint * 7919) % 999) * 7 + floor(random() * 6)::int)::int % 40 END AS ep
		  FROM generate_series(:lo::bigint, :hi::bigint) AS g) AS s
  JOIN bench.dataset_keys AS k ON k.i = s.ki
 ORDER BY s.requested_at;
