-- check_request: the exact GCRA limiter, key states, refusals logged,
-- argument checks.  Workspace pgtap_limiter.
--
-- Not wrapped in BEGIN ... ROLLBACK: check_request and verify_key see key
-- changes only once they are committed (a transaction's own uncommitted
-- key changes never reach the shared key cache), so the keys are created
-- and changed in their own transactions here.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off

SELECT plan(63);

-- ---- keys (committed) ----
SELECT key_id AS k5_id, api_key AS k5 FROM apikey_usage.generate_key('pgtap_limiter', 'five per minute', 5) \gset
SELECT key_id AS ku_id, api_key AS ku FROM apikey_usage.generate_key('pgtap_limiter', 'unlimited') \gset
SELECT key_id AS kd_id, api_key AS kd FROM apikey_usage.generate_key('pgtap_limiter', 'deleted', 5) \gset
SELECT key_id AS ke1_id, api_key AS ke1 FROM apikey_usage.generate_key('pgtap_limiter', 'expires, used before',
	NULL, '1 minute', clock_timestamp() + interval '1 second') \gset
SELECT key_id AS ke2_id, api_key AS ke2 FROM apikey_usage.generate_key('pgtap_limiter', 'expires, first used after',
	10, '1 minute', clock_timestamp() + interval '1 second') \gset
SELECT key_id AS kr_id, api_key AS kr FROM apikey_usage.generate_key('pgtap_limiter', 'rolled back change', 5) \gset
SELECT apikey_usage.delete_key(:'kd_id') \g /dev/null

CREATE TEMP TABLE r AS
	SELECT 0 AS n, * FROM apikey_usage.check_request(NULL, 'GET', '/x') WHERE false;

-- ---- five allowed, the sixth refused ----
INSERT INTO r SELECT 1, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
INSERT INTO r SELECT 2, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
INSERT INTO r SELECT 3, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
INSERT INTO r SELECT 4, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
INSERT INTO r SELECT 5, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
INSERT INTO r SELECT 6, * FROM apikey_usage.check_request(:'k5', 'post', '/v1/things/{id}', 'doc-6');

SELECT results_eq(
	'SELECT n, allowed, remaining, response_code FROM r WHERE n BETWEEN 1 AND 5 ORDER BY n',
	$$VALUES (1, true, 4, NULL::int), (2, true, 3, NULL), (3, true, 2, NULL), (4, true, 1, NULL), (5, true, 0, NULL)$$,
	'limit 5 per minute: five requests allowed, remaining 4, 3, 2, 1, 0');
SELECT is((SELECT count(DISTINCT request_id) FROM r WHERE n BETWEEN 1 AND 5 AND request_id IS NOT NULL), 5::bigint,
	'each allowed request gets its own request_id');
SELECT ok((SELECT bool_and(substr(request_id::text, 15, 1) = '7') FROM r WHERE n BETWEEN 1 AND 6),
	'request ids are UUIDv7');
SELECT ok((SELECT bool_and(key_id = :'k5_id' AND workspace = 'pgtap_limiter') FROM r WHERE n BETWEEN 1 AND 6),
	'key_id and workspace are echoed');
SELECT ok((SELECT bool_and(rate_limit = 5 AND rate_window = interval '1 minute') FROM r WHERE n BETWEEN 1 AND 6),
	'rate_limit and rate_window are echoed');
SELECT is((SELECT allowed FROM r WHERE n = 6), false, 'the sixth request is refused');
SELECT is((SELECT response_code FROM r WHERE n = 6), 429, 'refused with 429');
SELECT is((SELECT remaining FROM r WHERE n = 6), 0, 'remaining 0 when refused');
SELECT ok((SELECT retry_after_ms > 0 AND retry_after_ms <= 12000 FROM r WHERE n = 6),
	'0 < retry_after_ms <= 12000 (one emission interval of 60 s / 5)');
SELECT isnt((SELECT request_id FROM r WHERE n = 6), NULL, 'the refusal has a request_id');

SELECT apikey_usage.flush() \g /dev/null
SELECT results_eq(
	$$SELECT status, response_code, api_key_id, method, endpoint, resource_id
	    FROM apikey_usage.requests WHERE request_id = (SELECT request_id FROM r WHERE n = 6)$$,
	$$VALUES ('rate_limited', 429, '$$ || :'k5_id' || $$'::uuid, 'POST', '/v1/things/{id}', 'doc-6')$$,
	'the refusal is logged at once as rate_limited with 429 under its request_id (method upper-cased)');
SELECT is((SELECT count(*) FROM apikey_usage.request_log_raw
			WHERE request_id IN (SELECT request_id FROM r WHERE n BETWEEN 1 AND 5)), 0::bigint,
	'allowed requests are not logged by check_request (the application logs them)');

-- a refused request does not consume: still refused, still 429
INSERT INTO r SELECT 7, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
SELECT results_eq('SELECT allowed, response_code, remaining FROM r WHERE n = 7',
	$$VALUES (false, 429, 0)$$, 'the next request is refused as well');

-- bad arguments are rejected before the limiter step
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', 'GE T', '/x'),
	'22023', NULL, 'method with a space: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', '', '/x'),
	'22023', NULL, 'empty method: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', repeat('M', 33), '/x'),
	'22023', NULL, 'method of 33 bytes: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', 'GET', 'x'),
	'22023', NULL, 'endpoint not starting with /: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', 'GET', ''),
	'22023', NULL, 'empty endpoint: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', 'GET', E'/a\nb'),
	'22023', NULL, 'endpoint with a control character: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L)', :'k5', 'GET', '/' || repeat('e', 1024)),
	'22023', NULL, 'endpoint of 1025 bytes: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, %L, %L)', :'k5', 'GET', '/x', repeat('r', 257)),
	'22023', NULL, 'resource_id of 257 bytes: 22023');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, NULL, %L)', :'k5', '/x'),
	'22004', NULL, 'NULL method: 22004');
SELECT throws_ok(format('SELECT * FROM apikey_usage.check_request(%L, %L, NULL)', :'k5', 'GET'),
	'22004', NULL, 'NULL endpoint: 22004');
-- credentials come first: without a valid key, bad arguments are a 401
SELECT results_eq($$SELECT allowed, response_code, reason FROM apikey_usage.check_request(NULL, NULL, '/x')$$,
	$$VALUES (false, 401, 'malformed')$$, 'NULL method without a key: 401 malformed, no error');
SELECT results_eq($$SELECT allowed, response_code, reason FROM apikey_usage.check_request('ak_bad', 'GE T', '/x')$$,
	$$VALUES (false, 401, 'malformed')$$, 'bad method with a malformed key: 401 malformed, no error');

-- ---- set_rate_limit takes effect on the next request ----
-- The limiter state carries over a limit change conservatively (as over
-- an eviction): the theoretical arrival time stays, capped at now + the
-- new tolerance + emission interval (60 s here, as before).  So the raised
-- limit admits again once one new emission interval (0.6 s) has passed
-- since the first request.
SELECT apikey_usage.set_rate_limit(:'k5_id', 100) \g /dev/null
SELECT pg_sleep(0.7) \g /dev/null
INSERT INTO r SELECT 8, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
SELECT results_eq('SELECT allowed, response_code, rate_limit, rate_window FROM r WHERE n = 8',
	$$VALUES (true, NULL::int, 100, interval '1 minute')$$,
	'raised to 100 per minute: allowed again on the next request');
SELECT apikey_usage.set_rate_limit(:'k5_id', 2, '1 hour') \g /dev/null
INSERT INTO r SELECT 9, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
SELECT results_eq('SELECT rate_limit, rate_window FROM r WHERE n = 9',
	$$VALUES (2, interval '1 hour')$$,
	'lowered to 2 per hour: the next request shows the new limit');
SELECT ok((SELECT remaining <= 1 FROM r WHERE n = 9), 'lowered: remaining within the new limit');
SELECT apikey_usage.set_rate_limit(:'k5_id', NULL) \g /dev/null
INSERT INTO r SELECT 10, * FROM apikey_usage.check_request(:'k5', 'GET', '/v1/things');
SELECT results_eq('SELECT allowed, rate_limit, remaining, retry_after_ms, rate_window FROM r WHERE n = 10',
	$$VALUES (true, NULL::int, NULL::int, NULL::int, NULL::interval)$$,
	'limit removed: unlimited from the next request');

-- ---- unlimited key ----
INSERT INTO r SELECT 11, * FROM apikey_usage.check_request(:'ku', 'GET', '/x');
INSERT INTO r SELECT 12, * FROM apikey_usage.check_request(:'ku', 'GET', '/x');
SELECT results_eq('SELECT allowed, key_id, response_code, rate_limit, remaining, rate_window FROM r WHERE n IN (11, 12) ORDER BY n',
	format($$VALUES (true, %L::uuid, NULL::int, NULL::int, NULL::int, NULL::interval),
	                (true, %L::uuid, NULL::int, NULL::int, NULL::int, NULL::interval)$$, :'ku_id', :'ku_id'),
	'unlimited key: allowed, remaining, rate_limit and rate_window NULL');
SELECT ok((SELECT bool_and(request_id IS NOT NULL) FROM r WHERE n IN (11, 12)), 'unlimited key: request_id set');

-- ---- expired keys ----
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'ke1')), 'valid', 'a key about to expire is valid (and now cached)');
SELECT pg_sleep(1.2) \g /dev/null
INSERT INTO r SELECT 13, * FROM apikey_usage.check_request(:'ke1', 'GET', '/x');
INSERT INTO r SELECT 14, * FROM apikey_usage.check_request(:'ke2', 'GET', '/y');
SELECT results_eq('SELECT allowed, response_code, key_id FROM r WHERE n IN (13, 14) ORDER BY n',
	format($$VALUES (false, 401, %L::uuid), (false, 401, %L::uuid)$$, :'ke1_id', :'ke2_id'),
	'expired keys (cached before, or first seen after expiry): 401 with key_id');
SELECT ok((SELECT bool_and(request_id IS NOT NULL AND workspace = 'pgtap_limiter') FROM r WHERE n IN (13, 14)),
	'expired: request_id and workspace set');
SELECT is((SELECT remaining FROM r WHERE n = 14), NULL, 'expired: no remaining');
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'ke1')), 'expired', 'verify_key says expired');
SELECT apikey_usage.flush() \g /dev/null
SELECT results_eq(
	$$SELECT r.n, q.status, q.response_code, q.api_key_id FROM r JOIN apikey_usage.requests q USING (request_id)
	   WHERE r.n IN (13, 14) ORDER BY r.n$$,
	format($$VALUES (13, 'failed', 401, %L::uuid), (14, 'failed', 401, %L::uuid)$$, :'ke1_id', :'ke2_id'),
	'expired: logged as failed with 401 under the returned request_id');

-- ---- unknown, malformed, missing keys: 401, nothing logged ----
SELECT entries_logged AS logged_before FROM apikey_usage.runtime_stats \gset
INSERT INTO r SELECT 21, * FROM apikey_usage.check_request('ak_abc', 'GET', '/x');
INSERT INTO r SELECT 22, * FROM apikey_usage.check_request(
	left(:'ku', -1) || CASE WHEN right(:'ku', 1) = 'a' THEN 'b' ELSE 'a' END, 'GET', '/x');
INSERT INTO r SELECT 23, * FROM apikey_usage.check_request(NULL, 'GET', '/x');
INSERT INTO r SELECT 24, * FROM apikey_usage.check_request('', 'GET', '/x');
INSERT INTO r SELECT 25, * FROM apikey_usage.check_request(:'ku' || ' ', 'GET', '/x');
INSERT INTO r SELECT 26, * FROM apikey_usage.check_request(upper(:'ku'), 'GET', '/x');
SELECT results_eq(
	$$SELECT n, allowed, response_code, key_id, workspace, request_id, rate_limit, remaining, retry_after_ms, rate_window
	    FROM r WHERE n BETWEEN 21 AND 26 ORDER BY n$$,
	$$SELECT n, false, 401, NULL::uuid, NULL::text, NULL::uuid, NULL::int, NULL::int, NULL::int, NULL::interval
	    FROM generate_series(21, 26) n$$,
	'malformed, wrong-checksum, NULL, empty and altered keys: 401 with everything else NULL');
SELECT is((SELECT entries_logged FROM apikey_usage.runtime_stats), :'logged_before'::bigint,
	'nothing was logged for them');
SELECT results_eq(
	format($$SELECT reason FROM apikey_usage.verify_key(%L)
	   UNION ALL SELECT reason FROM apikey_usage.verify_key('ak_abc')
	   UNION ALL SELECT reason FROM apikey_usage.verify_key(left(%L, -1) || CASE WHEN right(%L, 1) = 'a' THEN 'b' ELSE 'a' END)
	   UNION ALL SELECT reason FROM apikey_usage.verify_key(NULL)
	   UNION ALL SELECT reason FROM apikey_usage.verify_key('')$$, :'kd', :'ku', :'ku'),
	$$VALUES ('revoked'), ('malformed'), ('malformed'), ('malformed'), ('malformed')$$,
	'verify_key: deleted key revoked; bad checksum, NULL and empty malformed');
-- a deleted key is recognised: 401 revoked, logged as failed under it
INSERT INTO r SELECT 20, * FROM apikey_usage.check_request(:'kd', 'GET', '/x');
SELECT results_eq('SELECT allowed, response_code, key_id, workspace, rate_limit, remaining FROM r WHERE n = 20',
	format($$VALUES (false, 401, %L::uuid, 'pgtap_limiter', NULL::int, NULL::int)$$, :'kd_id'),
	'deleted key: 401 with its key_id, no limit');
SELECT apikey_usage.flush() \g /dev/null
SELECT results_eq(format($$SELECT status, response_code, request_id FROM apikey_usage.requests WHERE api_key_id = %L$$, :'kd_id'),
	$$SELECT 'failed'::text, 401, request_id FROM r WHERE n = 20$$,
	'the deleted key''s attempt is logged as failed 401 under it, with the returned request_id');

-- ---- retry_after_ms: at most one emission interval, and honest ----
SELECT key_id AS k3_id, api_key AS k3 FROM apikey_usage.generate_key('pgtap_limiter', 'three per second', 3, '1 second') \gset
SELECT set_config('lim.k3', :'k3', false) \g /dev/null
INSERT INTO r SELECT 30, * FROM apikey_usage.check_request(:'k3', 'GET', '/x');
SELECT results_eq('SELECT allowed, remaining, rate_limit, rate_window FROM r WHERE n = 30',
	$$VALUES (true, 2, 3, interval '1 second')$$, 'a fresh key starts with its full burst');
-- request until refused, wait retry_after_ms, request again
DO $$
DECLARE
	c record;
	i int;
BEGIN
	FOR i IN 1..50 LOOP
		SELECT * INTO c FROM apikey_usage.check_request(current_setting('lim.k3'), 'GET', '/x');
		IF NOT c.allowed THEN
			INSERT INTO r VALUES (31, c.allowed, c.key_id, c.workspace, c.response_code, c.rate_limit,
				c.remaining, c.retry_after_ms, c.request_id, c.rate_window);
			PERFORM pg_sleep(c.retry_after_ms / 1000.0 + 0.01);
			INSERT INTO r SELECT 32, * FROM apikey_usage.check_request(current_setting('lim.k3'), 'GET', '/x');
			RETURN;
		END IF;
	END LOOP;
END
$$;
SELECT ok((SELECT retry_after_ms > 0 AND retry_after_ms <= 334 FROM r WHERE n = 31),
	'3 per second: refused with 0 < retry_after_ms <= 334 (one emission interval)');
SELECT is((SELECT allowed FROM r WHERE n = 32), true, 'allowed again once retry_after_ms has passed');

-- ---- key changes of an open transaction are seen only at its commit,
--      and a rolled-back change never reaches the shared cache ----
BEGIN;
SELECT apikey_usage.set_rate_limit(:'kr_id', 1000) \g /dev/null
SELECT rate_limit AS in_xact_limit FROM apikey_usage.check_request(:'kr', 'GET', '/x') \gset
SELECT key_id AS kn_id, api_key AS kn FROM apikey_usage.generate_key('pgtap_limiter', 'never committed', 5) \gset
SELECT reason AS kn_reason_in_xact FROM apikey_usage.verify_key(:'kn') \gset
SELECT allowed AS kn_allowed_in_xact FROM apikey_usage.check_request(:'kn', 'GET', '/x') \gset
ROLLBACK;
SELECT is(:'in_xact_limit'::int, 5,
	'inside a transaction that changed the limit, the committed limit applies');
SELECT is(:'kn_reason_in_xact'::text, 'unknown',
	'a key generated in the still-open transaction is not yet known (takes effect at commit)');
SELECT is(:'kn_allowed_in_xact'::boolean, false, 'check_request agrees');
INSERT INTO r SELECT 42, * FROM apikey_usage.check_request(:'kr', 'GET', '/x');
SELECT results_eq('SELECT allowed, rate_limit, remaining FROM r WHERE n = 42',
	$$VALUES (true, 5, 3)$$,
	'a rolled-back set_rate_limit is not in effect (and the key kept its limiter state)');
INSERT INTO r SELECT 43, * FROM apikey_usage.check_request(:'kn', 'GET', '/x');
SELECT results_eq('SELECT allowed, response_code, key_id FROM r WHERE n = 43',
	$$VALUES (false, 401, NULL::uuid)$$,
	'a key generated in a rolled-back transaction is unknown');
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'kn')), 'unknown', 'verify_key agrees');

BEGIN;
SELECT apikey_usage.set_rate_limit(:'kr_id', 1000) \g /dev/null
SELECT is((SELECT rate_limit FROM apikey_usage.check_request(:'kr', 'GET', '/x')), 5,
	'inside the changing transaction the committed limit still applies');
COMMIT;
SELECT is((SELECT rate_limit FROM apikey_usage.check_request(:'kr', 'GET', '/x')), 1000,
	'from the commit on the new limit applies');
BEGIN;
SELECT apikey_usage.delete_key(:'kr_id') \g /dev/null
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'kr')), 'valid', 'deleted but not committed: still valid');
COMMIT;
SELECT is((SELECT reason FROM apikey_usage.verify_key(:'kr')), 'revoked', 'deleted and committed: revoked');
SELECT results_eq(format($$SELECT allowed, response_code, key_id, reason FROM apikey_usage.check_request(%L, 'GET', '/x')$$, :'kr'),
	format($$VALUES (false, 401, %L::uuid, 'revoked')$$, :'kr_id'), 'check_request of the deleted key: 401 revoked with its key_id');

-- ---- log_request of an allowed request keeps check_request's request_id and time ----
INSERT INTO r SELECT 50, * FROM apikey_usage.check_request(:'ku', 'get', '/v1/docs/{id}', 'doc-50');
SELECT is(apikey_usage.log_request(key_id, 'GET', '/v1/docs/{id}', 200, 'doc-50', request_id), request_id,
	'log_request returns the request_id it was given') FROM r WHERE n = 50;
SELECT apikey_usage.flush() \g /dev/null
SELECT results_eq(
	$$SELECT q.status, q.response_code, q.api_key_id, q.resource_id FROM r JOIN apikey_usage.requests q USING (request_id) WHERE r.n = 50$$,
	format($$VALUES ('completed', 200, %L::uuid, 'doc-50')$$, :'ku_id'),
	'the served request is logged once, under check_request''s request_id');
SELECT ok((SELECT abs(extract(epoch FROM q.requested_at - now())) < 3600
			FROM r JOIN apikey_usage.requests q USING (request_id) WHERE r.n = 50),
	'requested_at comes from the request_id (sane value)');

-- ---- a window of one day ----
SELECT key_id AS kb_id, api_key AS kb FROM apikey_usage.generate_key('pgtap_limiter', 'two per day', 2, '1 day') \gset
SELECT results_eq(format($$SELECT allowed, remaining FROM apikey_usage.check_request(%L, 'GET', '/x')$$, :'kb'),
	$$VALUES (true, 1)$$, 'two per day: first allowed, remaining 1');
SELECT results_eq(format($$SELECT allowed, remaining FROM apikey_usage.check_request(%L, 'GET', '/x')$$, :'kb'),
	$$VALUES (true, 0)$$, 'second allowed, remaining 0');
SELECT results_eq(format($$SELECT allowed, response_code, remaining, rate_window FROM apikey_usage.check_request(%L, 'GET', '/x')$$, :'kb'),
	$$VALUES (false, 429, 0, interval '1 day')$$, 'third refused, window 1 day echoed');
SELECT ok((SELECT retry_after_ms BETWEEN 43100000 AND 43200000 FROM apikey_usage.check_request(:'kb', 'GET', '/x')),
	'2 per day: retry after about 12 hours');

SELECT * FROM finish();
