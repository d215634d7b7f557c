-- Fleets: node_of() reads the node from a key or key id, offline (README
-- "Scaling out").  This cluster is node 0 (the default); the fleet shell
-- test (test/shell/fleet.sh) covers nodes 1 and 2.
CREATE TEMP TABLE nk AS SELECT * FROM apikey_usage.generate_key('node-ws', 'Node zero');

BEGIN;
SELECT plan(22);
GRANT SELECT ON nk TO PUBLIC;

-- vectors computed independently (Python int + zlib.crc32)
SELECT is(apikey_usage.node_of('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf3CBj32'), 0,
	'a key without node digits (every 0.1.0 key) is node 0');
SELECT is(apikey_usage.node_of('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf013GDDIh'), 1,
	'node digits 01: node 1');
SELECT is(apikey_usage.node_of('live_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlfGV3g1a1H'), 1023,
	'node digits GV: node 1023');
SELECT is(apikey_usage.node_of('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf023GDDIh'), NULL,
	'a changed node digit breaks the checksum: NULL');
SELECT is(apikey_usage.node_of('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf3CBj33'), NULL,
	'wrong checksum: NULL');
SELECT is(apikey_usage.node_of(''), NULL, 'empty text: NULL');
SELECT is(apikey_usage.node_of(NULL::text), NULL, 'NULL key: NULL');
SELECT is(apikey_usage.node_of(repeat('x', 10240)), NULL, '10 KB of junk: NULL');

-- keys and ids made here: node 0, in the 0.1.0 shape
SELECT is(apikey_usage.node_of((SELECT api_key FROM nk)), 0, 'a key made on node 0 is node 0');
SELECT is(apikey_usage.node_of((SELECT key_id FROM nk)), 0, 'its key id is node 0');
SELECT is(length((SELECT api_key FROM nk)), 2 + 1 + 43 + 6, 'node-0 keys keep the 0.1.0 length');
SELECT is(substr((SELECT key_id FROM nk)::text, 15, 1), '4', 'node-0 key ids stay version 4');
SELECT is(apikey_usage.node_of((SELECT apikey_usage.copy_key(key_id) FROM nk)), 0, 'copy_key gives the same node');

-- key ids: version 8 carries the node in its first two bytes
SELECT is(apikey_usage.node_of('0002a1b2-c3d4-8e5f-9a0b-1c2d3e4f5a6b'::uuid), 2, 'v8 id 0002...: node 2');
SELECT is(apikey_usage.node_of('03ff0000-0000-8000-8000-000000000000'::uuid), 1023, 'v8 id 03ff...: node 1023');
SELECT is(apikey_usage.node_of('04000000-0000-8000-8000-000000000000'::uuid), NULL, 'v8 id naming node 1024: NULL');
SELECT is(apikey_usage.node_of('0002a1b2-c3d4-4e5f-9a0b-1c2d3e4f5a6b'::uuid), 0, 'a v4 id is node 0');

-- a well-formed key of another node is simply unknown here
SELECT is((SELECT reason FROM apikey_usage.verify_key('ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf013GDDIh')),
	'unknown', 'a node-1 key on node 0: unknown, not malformed');

-- pure: immutable, parallel safe, strict; callable by every extension role
SELECT is((SELECT string_agg(DISTINCT provolatile::text || proparallel::text || proisstrict::text, ',')
	FROM pg_proc WHERE oid IN ('apikey_usage.node_of(text)'::regprocedure, 'apikey_usage.node_of(uuid)'::regprocedure)),
	'istrue', 'node_of is immutable, parallel safe and strict');
SELECT is(current_setting('apikey_usage.node_id'), '0', 'apikey_usage.node_id defaults to 0');
CREATE ROLE t_node_app LOGIN IN ROLE apikey_usage_app;
SET ROLE t_node_app;
SELECT is(apikey_usage.node_of((SELECT key_id FROM nk)), 0, 'the app role may call node_of');
RESET ROLE;
CREATE ROLE t_node_nobody LOGIN;
SET ROLE t_node_nobody;
SELECT throws_ok($$SELECT apikey_usage.node_of('x'::text)$$, '42501', NULL, 'a role outside the extension may not');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
DROP TABLE nk;
