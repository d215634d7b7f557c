-- Key-scale keys :lo .. :hi through the public generate_key (one call per key).
INSERT INTO bench.keys (i, key_id, api_key)
SELECT n, g.key_id, g.api_key
  FROM generate_series(:lo, :hi) AS n,
	   apikey_usage.generate_key('bench-scale', 'scale key ' || n) AS g;
