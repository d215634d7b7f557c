-- roll_key: a new secret for the same key id, the old one verifying as the
-- same key during the grace period and answering unknown after it (by the
-- clock, with no further call); one shared rate limit; delete_key ends
-- both.  No wrapping transaction: key changes reach the request path at
-- commit.
SELECT plan(31);

CREATE TEMP TABLE r0 AS SELECT * FROM apikey_usage.generate_key('roll-ws', 'Rolled', 3, '1 hour');
CREATE TEMP TABLE r1 AS SELECT apikey_usage.roll_key((SELECT key_id FROM r0)) AS api_key;

SELECT isnt((SELECT api_key FROM r1), (SELECT api_key FROM r0), 'roll_key returns a new key');
SELECT is((SELECT key_id FROM apikey_usage.verify_key((SELECT api_key FROM r1))), (SELECT key_id FROM r0), 'the new key is the same key id');
SELECT is((SELECT row(valid, key_id, workspace, reason)::text FROM apikey_usage.verify_key((SELECT api_key FROM r0))),
	(SELECT row(true, key_id, 'roll-ws', 'valid')::text FROM r0), 'the old key still verifies as that key id');
SELECT is(apikey_usage.copy_key((SELECT key_id FROM r0)), (SELECT api_key FROM r1), 'copy_key returns the new key');
SELECT ok((SELECT previous_key_expires_at BETWEEN now() + interval '1 day' - interval '1 minute' AND now() + interval '1 day'
			 FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM r0)), 'keys.previous_key_expires_at is now() + grace');
SELECT ok((SELECT api_key FROM r1) LIKE (SELECT key_prefix FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM r0)) || '%',
	'key_prefix shows the new key');

-- one rate limit for both keys (3 per hour; the roll started a fresh bucket)
SELECT is(ARRAY[
	(SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM r0), 'GET', '/roll')),
	(SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM r1), 'GET', '/roll')),
	(SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM r0), 'GET', '/roll')),
	(SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM r1), 'GET', '/roll')),
	(SELECT allowed FROM apikey_usage.check_request((SELECT api_key FROM r0), 'GET', '/roll'))],
	ARRAY[true, true, true, false, false], 'old and new key share one rate limit');
SELECT is((SELECT key_id FROM apikey_usage.check_request((SELECT api_key FROM r0), 'GET', '/roll')), (SELECT key_id FROM r0),
	'a refusal of the old key is logged under the key id');

-- bad input changes nothing
SELECT throws_ok($$SELECT apikey_usage.roll_key((SELECT key_id FROM r0), interval '-1 second')$$, '22023', NULL, 'negative grace is 22023');
SELECT throws_ok($$SELECT apikey_usage.roll_key((SELECT key_id FROM r0), NULL)$$, '22004', NULL, 'NULL grace is 22004');
SELECT throws_ok($$SELECT apikey_usage.roll_key(NULL)$$, '22004', NULL, 'NULL key id is 22004');
SELECT throws_ok($$SELECT apikey_usage.roll_key(gen_random_uuid())$$, '22023', NULL, 'an unknown key is 22023');
SELECT is(apikey_usage.copy_key((SELECT key_id FROM r0)), (SELECT api_key FROM r1), 'failed rolls changed nothing');

-- a short grace ends by the clock alone
CREATE TEMP TABLE r2 AS SELECT apikey_usage.roll_key((SELECT key_id FROM r0), interval '2 seconds') AS api_key;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r1))), 'valid', 'the key replaced by a second roll verifies in its grace');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r0))), 'unknown', 'rolling again ends the earlier previous key at once');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r2))), 'valid', 'the newest key verifies');
DO $$ BEGIN PERFORM pg_sleep(2.2); END $$;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r1))), 'unknown', 'after the grace the old key is unknown');
SELECT is((SELECT row(allowed, key_id, response_code)::text FROM apikey_usage.check_request((SELECT api_key FROM r1), 'GET', '/roll')),
	row(false, NULL::uuid, 401)::text, 'and check_request answers 401 with no key id');
SELECT is((SELECT previous_key_expires_at FROM apikey_usage.keys WHERE key_id = (SELECT key_id FROM r0)), NULL, 'the keys view shows no previous key any more');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r2))), 'valid', 'the current key is unaffected');

-- grace 0: the old key ends at commit, like delete_key
CREATE TEMP TABLE r3 AS SELECT apikey_usage.roll_key((SELECT key_id FROM r0), interval '0') AS api_key;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r2))), 'unknown', 'grace 0: the old key is unknown from the commit on');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r3))), 'valid', 'grace 0: the new key verifies');

-- an aborted roll changes nothing
BEGIN;
DO $$ BEGIN PERFORM apikey_usage.roll_key((SELECT key_id FROM r0)); END $$;
ROLLBACK;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r3))), 'valid', 'a rolled-back roll leaves the key as it was');
SELECT is(apikey_usage.copy_key((SELECT key_id FROM r0)), (SELECT api_key FROM r3), 'and copy_key still returns it');

-- delete_key ends both keys at once
CREATE TEMP TABLE r4 AS SELECT apikey_usage.roll_key((SELECT key_id FROM r0)) AS api_key;
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r3))), 'valid', 'before delete_key the previous key verifies');
SELECT ok(apikey_usage.delete_key((SELECT key_id FROM r0)), 'delete_key');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r3))), 'unknown', 'delete_key ends the previous key');
SELECT is((SELECT reason FROM apikey_usage.verify_key((SELECT api_key FROM r4))), 'revoked', 'and the current one (revoked)');
SELECT throws_ok($$SELECT apikey_usage.roll_key((SELECT key_id FROM r0))$$, '22023', NULL, 'a deleted key cannot be rolled');

-- history stays under one key id
SELECT ok(apikey_usage.flush() >= 0, 'flush');
SELECT is((SELECT count(*) FROM apikey_usage.requests WHERE api_key_id = (SELECT key_id FROM r0) AND status = 'rate_limited'), 3::bigint,
	'the refusals of the old and the new key are one history');

SELECT * FROM finish();
