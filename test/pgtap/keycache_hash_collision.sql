-- A key whose hash shares the 32-bit hash code of a stored key's hash is
-- not that key.  The request path probes api_keys through a hash index on
-- key_hash, which keeps only hash_bytes(key_hash) and returns every row of
-- the same code: the row's key_hash must be compared.  Without that, about
-- one random well-formed key in 4,300 verified as some key of a table of a
-- million.
--
-- The two keys below were found by a birthday search (about 100,000 random
-- keys of prefix "coll", a port of PostgreSQL's hash_bytes in Python):
-- BLAKE2b-256 of each key text differs, hash_bytes of the two digests is
-- the same (3595891051).  Only the first is stored; the second must stay
-- unknown, before and after the first is cached, and must not be cached.
-- Not wrapped in a transaction: the request path sees committed rows only.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

SELECT plan(6);

\set stored 'coll_MYpMpaUiQwrGs3zPNpXUq2hSfrJzN7EU9ShMftHK2ta2IcZKK'
\set other 'coll_Jg8ujOA4jdXoG7ohQFSgzaVcbGODBwDB8wjXVyusNRh3ztMFB'
\set stored_hash 'c15864f274b37163bcd548de9e264878f1db08e13185d6725859be1b146e1416'
\set other_hash '13e0539743c99ea545fc12840bc0d2d729a8134836f78f6570e8c0e01400f82d'

-- the stored key: a row as generate_key writes it, with this key's hash
INSERT INTO apikey_usage.api_keys (key_id, workspace, name, key_prefix, key_hash, key_ciphertext)
VALUES ('0190d7a0-0000-7000-8000-00000000c011', 'pgtap_collision', 'stored', 'coll_MYpMpa',
        decode(:'stored_hash', 'hex'), '\x00');
SELECT apikey_usage._invalidate_key(decode(:'stored_hash', 'hex')) \g /dev/null

-- uncached: the other key is looked up in the table first
SELECT is((SELECT row(valid, key_id, reason)::text FROM apikey_usage.verify_key(:'other')),
	'(f,,unknown)', 'a key sharing the stored hash''s code is unknown (table lookup)');
SELECT is((SELECT row(allowed, key_id, response_code, reason)::text
             FROM apikey_usage.check_request(:'other', 'GET', '/x')),
	'(f,,401,unknown)', 'check_request refuses it as unknown, 401');
SELECT is((SELECT row(valid, key_id, reason)::text FROM apikey_usage.verify_key(:'stored')),
	'(t,0190d7a0-0000-7000-8000-00000000c011,valid)', 'the stored key is valid');
-- the stored key cached now; the other one still misses and stays unknown
SELECT is((SELECT row(valid, key_id, reason)::text FROM apikey_usage.verify_key(:'other')),
	'(f,,unknown)', 'still unknown with the stored key cached');
SELECT is((SELECT reason FROM apikey_usage.check_request(:'other', 'GET', '/x')),
	'unknown', 'check_request: still unknown');
SELECT is((SELECT row(valid, key_id, reason)::text FROM apikey_usage.verify_key(:'stored')),
	'(t,0190d7a0-0000-7000-8000-00000000c011,valid)', 'the stored key is still valid (from the cache)');

DELETE FROM apikey_usage.api_keys WHERE workspace = 'pgtap_collision';
SELECT * FROM finish();
