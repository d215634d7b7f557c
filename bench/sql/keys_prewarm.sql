-- Verify keys :lo .. :hi once, set-based: every one is a cache miss (read
-- from apikey_usage.api_keys) and is cached afterwards.  Prints how many
-- were valid (must be all).
SELECT count(*) FILTER (WHERE v.valid)
  FROM bench.keys AS b CROSS JOIN LATERAL apikey_usage.verify_key(b.api_key) AS v
 WHERE b.i BETWEEN :lo AND :hi;
