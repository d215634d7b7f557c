-- The naive twins of key-scale keys :lo .. :hi.
INSERT INTO naive.keys (key_id, workspace, key_hash)
SELECT key_id, 'bench-scale', sha256(convert_to(api_key, 'UTF8')) FROM bench.keys WHERE i BETWEEN :lo AND :hi;
