-- 100 unlimited request-path keys (n = 1 is the hot key) and their naive twins.
INSERT INTO bench.req_keys (n, key_id, api_key)
SELECT n, g.key_id, g.api_key
  FROM generate_series(1, 100) AS n,
	   apikey_usage.generate_key('bench-req', 'request key ' || n) AS g;
INSERT INTO naive.keys (key_id, workspace, key_hash)
SELECT key_id, 'bench-req', sha256(convert_to(api_key, 'UTF8')) FROM bench.req_keys;
INSERT INTO naive.limits (n, key_id) SELECT n, key_id FROM bench.req_keys;
-- the 1,000 keys of the dashboard dataset (no secrets needed)
INSERT INTO bench.dataset_keys (i, key_id)
SELECT n, g.key_id
  FROM generate_series(1, 1000) AS n,
	   apikey_usage.generate_key('bench-data', CASE n WHEN 1 THEN 'heavy key' ELSE 'light key ' || n END) AS g;
VACUUM ANALYZE bench.req_keys;
VACUUM ANALYZE naive.keys;
VACUUM ANALYZE naive.limits;
VACUUM ANALYZE bench.dataset_keys;
