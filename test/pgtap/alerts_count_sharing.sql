-- Rules of one workspace with the same key and window share one count per
-- evaluation pass; the sharing key must not let two different (workspace,
-- key) pairs meet: workspace 'pgtap_acs' watching key K, and a workspace
-- literally named 'pgtap_acs|<K>' watching all its keys, once counted the
-- same.  Workspaces pgtap_acs* are used by this file only.
BEGIN;
SELECT plan(3);

SELECT key_id AS k FROM apikey_usage.generate_key('pgtap_acs', 'busy') \gset
SELECT 'pgtap_acs|' || :'k' AS other_ws \gset
SELECT key_id AS quiet FROM apikey_usage.generate_key(:'other_ws', 'quiet') \gset

SELECT count(apikey_usage.log_request(:'k', 'GET', '/v1/x', 500)) FROM generate_series(1, 5);
SELECT ok(apikey_usage.flush() >= 0, 'five failed requests of K flushed');

-- the rule on K first (lower rule_id), then the one on the other workspace
SELECT apikey_usage.create_alert_rule('pgtap_acs', 'failed', 1, '1 hour', :'k') AS r1 \gset
SELECT apikey_usage.create_alert_rule(:'other_ws', 'failed', 1, '1 hour') AS r2 \gset
SELECT apikey_usage._evaluate_alerts(NULL);

SELECT is((SELECT last_value FROM apikey_usage.alert_rule WHERE rule_id = :'r1'), 5::numeric,
	'the rule on K counts its five failures');
SELECT is((SELECT last_value FROM apikey_usage.alert_rule WHERE rule_id = :'r2'), 0::numeric,
	'the workspace named after K''s pair counts its own (none)');

SELECT * FROM finish();
ROLLBACK;
