-- Key-scale keys :lo .. :hi, set-based (superuser only): the same key
-- material generate_key uses (apikey_usage._key_material), inserted
-- directly into apikey_usage.api_keys, one statement for all rows.
WITH m AS MATERIALIZED (
	SELECT g.n, g.id, k.api_key, k.key_hash, k.key_ciphertext, k.display_prefix
	  FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(:lo, :hi) AS n) AS g,
		   apikey_usage._key_material('ak', g.id) AS k
), ins AS (
	INSERT INTO apikey_usage.api_keys (key_id, workspace, name, key_prefix, key_hash, key_ciphertext)
	SELECT id, 'bench-scale', 'scale key ' || n, display_prefix, key_hash, key_ciphertext FROM m
)
INSERT INTO bench.keys (i, key_id, api_key) SELECT n, id, api_key FROM m;
