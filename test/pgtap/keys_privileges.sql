-- Roles and privileges (API.md "Security model"), and SECURITY DEFINER
-- functions that objects planted in a caller's search_path cannot hijack.
-- the key is committed first: the request path sees committed keys only
CREATE TEMP TABLE k AS SELECT * FROM apikey_usage.generate_key('priv-ws', 'Privileges');

BEGIN;
SELECT plan(27);

CREATE ROLE t_app LOGIN IN ROLE apikey_usage_app;
CREATE ROLE t_reader LOGIN IN ROLE apikey_usage_reader;
CREATE ROLE t_admin LOGIN IN ROLE apikey_usage_admin;
CREATE ROLE t_nobody LOGIN;

GRANT SELECT ON k TO PUBLIC;

-- app: the request path only
SET ROLE t_app;
SELECT is((SELECT valid FROM apikey_usage.verify_key((SELECT api_key FROM k))), true, 'app can verify a key');
SELECT ok((SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM k), 'GET', '/p')), 'app can check a request');
SELECT lives_ok($$SELECT apikey_usage.log_request((SELECT key_id FROM k), 'GET', '/p', 200)$$, 'app can log a request');
SELECT throws_ok($$SELECT key_hash FROM apikey_usage.api_keys$$, '42501', NULL, 'app cannot read key hashes');
SELECT throws_ok($$SELECT key_ciphertext FROM apikey_usage.api_keys$$, '42501', NULL, 'app cannot read key ciphertexts');
SELECT throws_ok($$SELECT * FROM apikey_usage.generate_key('priv-ws', 'x')$$, '42501', NULL, 'app cannot generate keys');
SELECT throws_ok($$SELECT apikey_usage.copy_key((SELECT key_id FROM k))$$, '42501', NULL, 'app cannot copy keys');
SELECT throws_ok($$SELECT apikey_usage.delete_key((SELECT key_id FROM k))$$, '42501', NULL, 'app cannot delete keys');
SELECT throws_ok($$SELECT * FROM apikey_usage.requests$$, '42501', NULL, 'app cannot read the request log');
SELECT throws_ok($$SELECT apikey_usage._decrypt_key('\x00', (SELECT key_id FROM k))$$, '42501', NULL, 'app cannot call internal helpers');
RESET ROLE;

-- reader: views, never the key table or key management
SET ROLE t_reader;
SELECT is((SELECT name FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM k)), 'Privileges', 'reader sees the keys view');
SELECT lives_ok($$SELECT * FROM apikey_usage.requests LIMIT 1$$, 'reader can read the request log');
SELECT lives_ok($$SELECT * FROM apikey_usage.runtime_stats$$, 'reader can read runtime_stats');
SELECT throws_ok($$SELECT key_hash FROM apikey_usage.api_keys$$, '42501', NULL, 'reader cannot read key hashes');
SELECT throws_ok($$SELECT * FROM apikey_usage.generate_key('priv-ws', 'x')$$, '42501', NULL, 'reader cannot generate keys');
SELECT throws_ok($$SELECT apikey_usage.copy_key((SELECT key_id FROM k))$$, '42501', NULL, 'reader cannot copy keys');
SELECT throws_ok($$SELECT * FROM apikey_usage.check_request((SELECT api_key FROM k), 'GET', '/p')$$, '42501', NULL, 'reader cannot call the request path');
RESET ROLE;

-- admin: key management and reading, still not the key table
SET ROLE t_admin;
SELECT is((SELECT count(*) FROM apikey_usage.generate_key('priv-ws', 'By admin')), 1::bigint, 'admin can generate keys');
SELECT is(apikey_usage.copy_key((SELECT key_id FROM k)), (SELECT api_key FROM k), 'admin can copy keys');
SELECT lives_ok($$SELECT * FROM apikey_usage.keys$$, 'admin sees the keys view');
SELECT throws_ok($$SELECT key_hash FROM apikey_usage.api_keys$$, '42501', NULL, 'admin cannot read key hashes directly');
RESET ROLE;

-- nobody: nothing
SET ROLE t_nobody;
SELECT throws_ok($$SELECT * FROM apikey_usage.verify_key('x')$$, '42501', NULL, 'a role without grants cannot verify');
SELECT throws_ok($$SELECT * FROM apikey_usage.keys$$, '42501', NULL, 'a role without grants cannot list keys');
RESET ROLE;

-- objects planted earlier in the search_path are never used
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.octet_length(text) RETURNS integer LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'hijacked octet_length'; END$$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'hijacked now'; END$$;
CREATE FUNCTION evil.bytea_eq(bytea, bytea) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'hijacked ='; END$$;
CREATE OPERATOR evil.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.bytea_eq);
CREATE FUNCTION evil.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
	$$BEGIN RAISE EXCEPTION 'hijacked uuid ='; END$$;
CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.uuid_eq);
CREATE TABLE evil.api_keys (key_id uuid, key_hash bytea);

SET ROLE t_admin;
SET search_path = evil, pg_catalog, public;
SELECT lives_ok($$SELECT * FROM apikey_usage.generate_key('priv-ws', 'Planted path')$$, 'generate_key ignores planted functions');
SELECT lives_ok($$SELECT apikey_usage.rename_key((SELECT key_id FROM pg_temp.k), 'Renamed')$$, 'rename_key ignores planted functions');
RESET ROLE;
SET ROLE t_app;
SET search_path = evil, pg_catalog, public;
DISCARD PLANS;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM pg_temp.k))), 'valid', 'verify_key ignores planted operators and tables');
SELECT lives_ok($$SELECT apikey_usage.log_request((SELECT key_id FROM pg_temp.k), 'GET', '/p', 200)$$, 'log_request ignores planted operators');
RESET ROLE;
RESET search_path;

SELECT * FROM finish();
ROLLBACK;
DROP TABLE k;
