-- Traffic for sql_check.mjs: three workspaces (one with a quote in its
-- name), five keys (one deleted after its requests), requests spread over
-- the last ~3.5 days with every status, lower-case methods, an endpoint and
-- a resource id with a quote in them.  Run as a superuser with
-- psql -v ON_ERROR_STOP=1 on a fresh database with the extension.
CREATE TEMP TABLE seed_keys (n int, key_id uuid);
INSERT INTO seed_keys
SELECT n, (apikey_usage.generate_key(ws, name)).key_id
  FROM (VALUES (1, 'acme', 'Zapier Integration'),
			   (2, 'acme', 'Billing Sync'),
			   (3, 'acme', 'Old Key'),
			   (4, 'globex', 'Mobile App'),
			   (5, 'o''hara', 'O''Hara''s key')) AS v(n, ws, name);

-- key n gets 60 * n + 100 requests, every (7 + n) minutes back from now
SELECT count(apikey_usage.log_request(
		k.key_id,
		(ARRAY['GET', 'POST', 'delete', 'GET', 'PUT'])[1 + g % 5],
		(ARRAY['/v1/documents/{id}', '/v1/users', '/v1/o''brien', '/v1/search', '/v1/users'])[1 + (g * 3 + k.n) % 5],
		(ARRAY[200, 200, 201, 204, 304, 400, 401, 404, 429, 500, 503, 200])[1 + (g * 7 + k.n) % 12],
		(ARRAY[NULL, 'doc-1', 'res''1', NULL])[1 + g % 4],
		NULL,
		now() - g * make_interval(mins => 7 + k.n) - k.n * interval '1 second'))
  FROM seed_keys k, generate_series(1, 60 * k.n + 100) AS g;

-- a burst in the last hour: 429s and 503s
SELECT count(apikey_usage.log_request(k.key_id, 'POST', '/v1/search',
		CASE WHEN g % 3 = 0 THEN 503 ELSE 429 END, NULL, NULL,
		now() - g * interval '41 seconds'))
  FROM seed_keys k, generate_series(1, 40) AS g
 WHERE k.n IN (1, 3);

SELECT apikey_usage.flush() >= 0 AS flushed;
SELECT apikey_usage.delete_key(key_id) FROM seed_keys WHERE n = 3;

-- a key made 40 days ago and never used since (the unused-keys panel)
SELECT count(*) FROM apikey_usage.generate_key('globex', 'Legacy Webhook');
UPDATE apikey_usage.api_keys SET created_at = now() - interval '40 days' WHERE name = 'Legacy Webhook';
