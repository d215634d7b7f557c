-- Key lifecycle and the errors of the admin functions (API.md, "Key management").
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS apikey_usage;
RESET client_min_messages;
\set VERBOSITY terse

-- errors as 'SQLSTATE: message', with key ids masked
CREATE FUNCTION pg_temp.err(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE query;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f-]{27}', '<key_id>');
END
$$;

-- generate two keys, like the API Keys page does
CREATE TEMP TABLE k AS
SELECT 'zapier' AS tag, * FROM apikey_usage.generate_key('acme', 'Zapier Integration', 100, '1 minute')
UNION ALL
SELECT 'power', * FROM apikey_usage.generate_key('acme', 'PowerAutomate');

-- format: <prefix>_<43 body chars><6 checksum chars>, all base62
SELECT tag, api_key ~ '^ak_[0-9A-Za-z]{49}$' AS well_formed, length(api_key) FROM k ORDER BY tag;
SELECT count(DISTINCT api_key) AS distinct_keys FROM k;

-- custom prefix
SELECT api_key ~ '^live2_[0-9A-Za-z]{49}$' AS custom_prefix
  FROM apikey_usage.generate_key('acme', 'Custom', key_prefix => 'live2');

-- verify, copy
SELECT tag, v.valid, v.key_id = k.key_id AS same_id, v.workspace, v.reason
  FROM k, apikey_usage.verify_key(k.api_key) v ORDER BY tag;
SELECT tag, apikey_usage.copy_key(key_id) = api_key AS copy_matches FROM k ORDER BY tag;

-- the keys view: names, prefixes that start the key, limits
SELECT name, k.api_key LIKE v.key_prefix || '%' AS prefix_matches, length(v.key_prefix),
       v.rate_limit, v.rate_window, v.expires_at
  FROM apikey_usage.keys v JOIN k USING (key_id) ORDER BY name;

-- the key table holds a hash and a ciphertext, never the key itself
SELECT count(*) AS plaintext_stored
  FROM apikey_usage.api_keys a, k
 WHERE position(convert_to(k.api_key, 'UTF8') IN a.key_ciphertext) > 0
    OR a.key_hash = convert_to(k.api_key, 'UTF8')
    OR a.key_prefix = k.api_key;

-- rename and set_rate_limit
SELECT apikey_usage.rename_key(key_id, 'Zapier (prod)') FROM k WHERE tag = 'zapier';
SELECT apikey_usage.set_rate_limit(key_id, 10, '1 second') FROM k WHERE tag = 'zapier';
SELECT name, rate_limit, rate_window FROM apikey_usage.keys JOIN k USING (key_id) WHERE tag = 'zapier';
SELECT apikey_usage.set_rate_limit(key_id, NULL) FROM k WHERE tag = 'zapier';
SELECT rate_limit FROM apikey_usage.keys JOIN k USING (key_id) WHERE tag = 'zapier';

-- delete: true once, false after; the key is revoked at once; tombstone kept
-- (with the hash that recognises the key, without the ciphertext that could show it)
SELECT apikey_usage.delete_key(key_id) FROM k WHERE tag = 'power';
SELECT apikey_usage.delete_key(key_id) FROM k WHERE tag = 'power';
SELECT v.valid, v.reason FROM k, apikey_usage.verify_key(k.api_key) v WHERE tag = 'power';
SELECT count(*) AS listed FROM apikey_usage.keys JOIN k USING (key_id) WHERE tag = 'power';
SELECT name, workspace, key_hash IS NOT NULL AS hash_kept, key_ciphertext IS NULL AS ciphertext_destroyed,
       deleted_at IS NOT NULL AS deleted
  FROM apikey_usage.api_keys JOIN k USING (key_id) WHERE tag = 'power';
SELECT pg_temp.err($q$SELECT apikey_usage.copy_key(key_id) FROM pg_temp.k WHERE tag = 'power'$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.rename_key(key_id, 'x') FROM pg_temp.k WHERE tag = 'power'$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.set_rate_limit(key_id, 1) FROM pg_temp.k WHERE tag = 'power'$q$);

-- verify_key never raises, whatever the text
SELECT valid, key_id, workspace, reason FROM apikey_usage.verify_key(NULL);
SELECT valid, reason FROM apikey_usage.verify_key('');
SELECT valid, reason FROM apikey_usage.verify_key(repeat('x', 10240));
-- wrong checksum, surrounding or embedded whitespace, trailing newline
SELECT v.valid, v.reason FROM k, apikey_usage.verify_key(left(api_key, -1) || CASE WHEN right(api_key, 1) = 'A' THEN 'B' ELSE 'A' END) v WHERE tag = 'zapier';
SELECT v.valid, v.reason FROM k, apikey_usage.verify_key(' ' || api_key) v WHERE tag = 'zapier';
SELECT v.valid, v.reason FROM k, apikey_usage.verify_key(api_key || E'\n') v WHERE tag = 'zapier';
SELECT v.valid, v.reason FROM k, apikey_usage.verify_key(left(api_key, 10) || ' ' || substr(api_key, 12)) v WHERE tag = 'zapier';

-- a well-formed key with a right checksum that was never issued
SELECT valid, reason FROM apikey_usage.verify_key('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf3CBj32');

-- expiry
CREATE TEMP TABLE e AS
SELECT * FROM apikey_usage.generate_key('acme', 'Short-lived', expires_at => clock_timestamp() + interval '2 s');
SELECT valid, reason FROM e, apikey_usage.verify_key(e.api_key);
SELECT pg_sleep(2.2);
SELECT valid, v.key_id = e.key_id AS same_id, workspace, reason FROM e, apikey_usage.verify_key(e.api_key) v;

-- bad input: each is an error (SQLSTATE: message) and creates nothing
SELECT count(*) AS keys_before FROM apikey_usage.api_keys \gset
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key(NULL, 'n')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('', 'n')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key(repeat('w', 201), 'n')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', NULL)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', '')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', repeat('n', 201))$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', key_prefix => 'Ak')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', key_prefix => '1ak')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', key_prefix => 'a_b')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', key_prefix => 'abcdefghijklmnopq')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', key_prefix => NULL)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', 0)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', -5)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', 1000000001)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', 10, '999 milliseconds')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', 10, '1 day 1 second')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', 10, NULL)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.generate_key('acme', 'n', expires_at => now() - interval '1 minute')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.copy_key('00000000-0000-0000-0000-000000000000')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.copy_key(NULL)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.delete_key('00000000-0000-0000-0000-000000000000')$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.delete_key(NULL)$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.rename_key('00000000-0000-0000-0000-000000000000', 'x')$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.rename_key(key_id, '') FROM pg_temp.k WHERE tag = 'zapier'$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.rename_key(key_id, NULL) FROM pg_temp.k WHERE tag = 'zapier'$q$);
SELECT pg_temp.err($q$SELECT * FROM apikey_usage.set_rate_limit('00000000-0000-0000-0000-000000000000', 5)$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.set_rate_limit(key_id, 0) FROM pg_temp.k WHERE tag = 'zapier'$q$);
SELECT pg_temp.err($q$SELECT apikey_usage.set_rate_limit(key_id, 5, '2 days') FROM pg_temp.k WHERE tag = 'zapier'$q$);
SELECT count(*) - :keys_before AS keys_created_by_bad_input FROM apikey_usage.api_keys;
SELECT name, rate_limit FROM apikey_usage.keys JOIN k USING (key_id) WHERE tag = 'zapier';

-- the extension belongs to one database
CREATE DATABASE apikey_other;
\c apikey_other
CREATE EXTENSION apikey_usage;
\c contrib_regression
DROP DATABASE apikey_other;
