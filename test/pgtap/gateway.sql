-- What a gateway needs from check_request / verify_key: a reason for every
-- answer, credentials checked before arguments, deleted keys recognised as
-- revoked (and their attempts logged under them), reset_after_ms.
-- Workspace pgtap_gateway.  Not wrapped in a transaction: the request path
-- sees committed key changes only.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

SELECT plan(31);

-- ---- keys (committed) ----
SELECT key_id AS kv_id, api_key AS kv FROM apikey_usage.generate_key('pgtap_gateway', 'valid, 4 per hour', 4, '1 hour') \gset
SELECT key_id AS ku_id, api_key AS ku FROM apikey_usage.generate_key('pgtap_gateway', 'unlimited') \gset
SELECT key_id AS ke_id, api_key AS ke FROM apikey_usage.generate_key('pgtap_gateway', 'expiring', 10, '1 minute',
	clock_timestamp() + interval '1 second') \gset
SELECT key_id AS kd_id, api_key AS kd FROM apikey_usage.generate_key('pgtap_gateway', 'deleted', 10) \gset
-- a well-formed key that is not in the table: generated, then rolled back
BEGIN;
SELECT api_key AS kn FROM apikey_usage.generate_key('pgtap_gateway', 'never committed') \gset
ROLLBACK;
-- cache the key that will be deleted, so revocation has to drop it
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'kd')), 'valid', 'the key to delete is valid (and cached)');
SELECT apikey_usage.delete_key(:'kd_id') \g /dev/null
SELECT pg_sleep(1.1) \g /dev/null

CREATE TEMP TABLE r AS
	SELECT 0 AS n, * FROM apikey_usage.check_request(NULL, 'GET', '/x') WHERE false;

-- ---- every reason ----
INSERT INTO r SELECT 1, * FROM apikey_usage.check_request(:'kv', 'GET', '/v1/a');
INSERT INTO r SELECT 2, * FROM apikey_usage.check_request('ak_not_a_key', 'GET', '/v1/a');
INSERT INTO r SELECT 3, * FROM apikey_usage.check_request(NULL, 'GET', '/v1/a');
INSERT INTO r SELECT 4, * FROM apikey_usage.check_request('', 'GET', '/v1/a');
INSERT INTO r SELECT 5, * FROM apikey_usage.check_request(:'kn', 'GET', '/v1/a');
INSERT INTO r SELECT 6, * FROM apikey_usage.check_request(:'ke', 'GET', '/v1/a');
INSERT INTO r SELECT 7, * FROM apikey_usage.check_request(:'kd', 'GET', '/v1/a', 'doc-7');
INSERT INTO r SELECT 8, * FROM apikey_usage.check_request(:'ku', 'GET', '/v1/a');
SELECT results_eq(
	'SELECT n, allowed, response_code, reason FROM r WHERE n BETWEEN 1 AND 8 ORDER BY n',
	$$VALUES (1, true, NULL::int, 'valid'), (2, false, 401, 'malformed'), (3, false, 401, 'malformed'),
	         (4, false, 401, 'malformed'), (5, false, 401, 'unknown'), (6, false, 401, 'expired'),
	         (7, false, 401, 'revoked'), (8, true, NULL, 'valid')$$,
	'reasons: valid, malformed (junk, NULL, empty), unknown, expired, revoked');
SELECT results_eq('SELECT key_id, workspace FROM r WHERE n IN (2, 3, 4, 5) ORDER BY n',
	$$VALUES (NULL::uuid, NULL::text), (NULL, NULL), (NULL, NULL), (NULL, NULL)$$,
	'malformed and unknown: no key_id, no workspace');
SELECT results_eq('SELECT key_id, workspace FROM r WHERE n IN (6, 7) ORDER BY n',
	format($$VALUES (%L::uuid, 'pgtap_gateway'), (%L::uuid, 'pgtap_gateway')$$, :'ke_id', :'kd_id'),
	'expired and revoked: key_id and workspace set');
SELECT ok((SELECT request_id IS NOT NULL AND rate_limit IS NULL AND remaining IS NULL AND reset_after_ms IS NULL
	FROM r WHERE n = 7), 'revoked: a request_id (the logged attempt), no limit');

-- the rest of the 4 per hour, then rate_limited
INSERT INTO r SELECT 9, * FROM apikey_usage.check_request(:'kv', 'GET', '/v1/a');
INSERT INTO r SELECT 10, * FROM apikey_usage.check_request(:'kv', 'GET', '/v1/a');
INSERT INTO r SELECT 11, * FROM apikey_usage.check_request(:'kv', 'GET', '/v1/a');
INSERT INTO r SELECT 12, * FROM apikey_usage.check_request(:'kv', 'GET', '/v1/a');
SELECT results_eq('SELECT n, allowed, response_code, reason, remaining FROM r WHERE n BETWEEN 9 AND 12 ORDER BY n',
	$$VALUES (9, true, NULL::int, 'valid', 2), (10, true, NULL, 'valid', 1), (11, true, NULL, 'valid', 0),
	         (12, false, 429, 'rate_limited', 0)$$,
	'4 per hour: valid with remaining 2, 1, 0, then 429 rate_limited');

-- ---- verify_key answers the same reasons ----
SELECT results_eq(
	format($$SELECT reason, valid, key_id FROM apikey_usage.verify_key(%L)
	  UNION ALL SELECT reason, valid, key_id FROM apikey_usage.verify_key('ak_not_a_key')
	  UNION ALL SELECT reason, valid, key_id FROM apikey_usage.verify_key(%L)
	  UNION ALL SELECT reason, valid, key_id FROM apikey_usage.verify_key(%L)
	  UNION ALL SELECT reason, valid, key_id FROM apikey_usage.verify_key(%L)$$, :'ku', :'kn', :'ke', :'kd'),
	format($$VALUES ('valid', true, %L::uuid), ('malformed', false, NULL), ('unknown', false, NULL),
	                ('expired', false, %L), ('revoked', false, %L)$$, :'ku_id', :'ke_id', :'kd_id'),
	'verify_key: valid, malformed, unknown, expired, revoked (with the key id)');
SELECT is((SELECT workspace FROM apikey_usage.verify_key(:'kd')), 'pgtap_gateway', 'verify_key: a revoked key''s workspace');

-- ---- reset_after_ms: time until the full burst is back (TAT - now) ----
-- 4 per hour: emission interval 900 s.  After the first request the
-- bucket is one interval short, after the fourth four intervals.
SELECT is((SELECT reset_after_ms FROM r WHERE n = 1), 900000, 'first request of a fresh key: reset_after_ms = one emission interval');
SELECT ok((SELECT reset_after_ms BETWEEN 1799000 AND 1800000 FROM r WHERE n = 9), 'second: about two intervals');
SELECT ok((SELECT reset_after_ms BETWEEN 3599000 AND 3600000 FROM r WHERE n = 11), 'fourth (burst used up): about the whole window');
SELECT ok((SELECT reset_after_ms BETWEEN 3599000 AND 3600000 AND retry_after_ms BETWEEN 899000 AND 900000 FROM r WHERE n = 12),
	'refused: reset_after_ms unchanged (nothing consumed), retry_after_ms one interval');
SELECT ok((SELECT bool_and(reset_after_ms >= retry_after_ms) FROM r WHERE n IN (1, 9, 10, 11, 12)),
	'reset_after_ms is never below retry_after_ms');
SELECT is((SELECT reset_after_ms FROM r WHERE n = 8), NULL, 'unlimited key: reset_after_ms NULL');
SELECT ok((SELECT bool_and(reset_after_ms IS NULL) FROM r WHERE n BETWEEN 2 AND 7), '401: reset_after_ms NULL');
-- a key used earlier is full again once the state has passed
SELECT key_id AS kf_id, api_key AS kf FROM apikey_usage.generate_key('pgtap_gateway', '5 per second', 5, '1 second') \gset
SELECT reset_after_ms AS kf_first FROM apikey_usage.check_request(:'kf', 'GET', '/x') \gset
SELECT pg_sleep(0.3) \g /dev/null
SELECT is((SELECT reset_after_ms FROM apikey_usage.check_request(:'kf', 'GET', '/x')), 200,
	'5 per second, the second request 0.3 s after the first: the bucket was full again, reset_after_ms = 200');
SELECT is(:'kf_first'::int, 200, '5 per second: one emission interval is 200 ms');

-- ---- credentials before arguments ----
-- without a usable key, bad arguments never raise: the answer is the 401
SELECT results_eq(
	format($$SELECT reason FROM apikey_usage.check_request('junk', 'GET', '/' || repeat('x', 1100))
	  UNION ALL SELECT reason FROM apikey_usage.check_request(NULL, NULL, NULL)
	  UNION ALL SELECT reason FROM apikey_usage.check_request(%L, 'GE T', '/x')
	  UNION ALL SELECT reason FROM apikey_usage.check_request(%L, 'GET', E'/a\nb')
	  UNION ALL SELECT reason FROM apikey_usage.check_request(%L, 'GET', '/x', repeat('r', 300))$$,
	  :'kn', :'ke', :'kd'),
	$$VALUES ('malformed'), ('malformed'), ('unknown'), ('expired'), ('revoked')$$,
	'a malformed, missing, unknown, expired or revoked key with bad arguments: 401 with its reason, no error');
SELECT results_eq(format($$SELECT response_code, request_id FROM apikey_usage.check_request(%L, 'GE T', '/x')$$, :'kd'),
	$$VALUES (401, NULL::uuid)$$, 'revoked key with bad arguments: 401, not logged (request_id NULL)');
-- a live key with bad arguments is the caller's error (22023 / 22004),
-- raised before the limiter step
SELECT key_id AS kl_id, api_key AS kl FROM apikey_usage.generate_key('pgtap_gateway', '3 per hour', 3, '1 hour') \gset
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'kl', 'GET', '/' || repeat('x', 1100)),
	'22023', NULL, 'live key, endpoint too long: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, NULL, %L)', :'kl', '/x'),
	'22004', NULL, 'live key, NULL method: 22004');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L, %L)', :'kl', 'GET', '/x', repeat('r', 257)),
	'22023', NULL, 'live key, resource_id too long: 22023');
SELECT is((SELECT remaining FROM apikey_usage.check_request(:'kl', 'GET', '/x')), 2,
	'the refused calls took nothing from the limit (remaining 2 after the first good request)');

-- ---- revoked attempts are logged as failed 401 under the key ----
INSERT INTO r SELECT 20, * FROM apikey_usage.check_request(:'kd', 'POST', '/v1/b');
INSERT INTO r SELECT 21, * FROM apikey_usage.check_request(:'kd', 'GET', '/v1/a');
SELECT apikey_usage.flush() \g /dev/null
SELECT results_eq(
	format($$SELECT request_id, status, response_code, method, endpoint FROM apikey_usage.requests
	          WHERE api_key_id = %L ORDER BY requested_at, request_id$$, :'kd_id'),
	$$SELECT request_id, 'failed'::text, 401, method, endpoint
	    FROM (SELECT n, request_id, CASE n WHEN 20 THEN 'POST' ELSE 'GET' END AS method,
	                 CASE n WHEN 20 THEN '/v1/b' ELSE '/v1/a' END AS endpoint FROM r WHERE n IN (7, 20, 21)) x
	   ORDER BY n$$,
	'every revoked attempt with valid arguments is in the log, as failed 401, under its request_id');
SELECT results_eq(format($$SELECT total_requests, completed, failed, rate_limited FROM apikey_usage.usage_summary(%L)$$, :'kd_id'),
	$$VALUES (3::bigint, 0::bigint, 3::bigint, 0::bigint)$$,
	'the deleted key''s usage page shows its attempts');
SELECT is((SELECT resource_id FROM apikey_usage.requests WHERE request_id = (SELECT request_id FROM r WHERE n = 7)), 'doc-7',
	'the attempt keeps its resource_id');
-- the expired and rate-limited refusals are logged too; malformed / unknown are not
SELECT results_eq(
	$$SELECT r.n, q.status, q.response_code FROM r JOIN apikey_usage.requests q USING (request_id)
	   WHERE r.n IN (6, 12) ORDER BY r.n$$,
	$$VALUES (6, 'failed', 401), (12, 'rate_limited', 429)$$,
	'expired: failed 401; over the limit: rate_limited 429');
SELECT ok((SELECT bool_and(request_id IS NULL) FROM r WHERE n BETWEEN 2 AND 5),
	'malformed and unknown keys: nothing to log under (request_id NULL)');

-- ---- the tombstone keeps what recognises the key, never what uses it ----
SELECT results_eq(format($$SELECT key_hash IS NOT NULL, key_ciphertext IS NULL, deleted_at IS NOT NULL
	FROM apikey_usage.api_keys WHERE key_id = %L$$, :'kd_id'),
	$$VALUES (true, true, true)$$, 'tombstone: hash kept, ciphertext destroyed');
SELECT throws_ok(format('SELECT apikey_usage.copy_key(%L)', :'kd_id'), '22023', NULL, 'a revoked key cannot be copied');
SELECT is((SELECT count(*) FROM apikey_usage.keys WHERE key_id = :'kd_id'), 0::bigint, 'a revoked key is not listed');

SELECT * FROM finish();
