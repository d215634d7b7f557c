-- Flusher input: log_request over 100 keys, 40 endpoints, 90 % 200 / 10 % 404.
\set n random(1, 100)
\set e random(1, 40)
\set r random(1, 100)
SELECT apikey_usage.log_request((SELECT key_id FROM bench.req_keys WHERE n = :n), 'GET',
	'/v1/resource' || :e || '/{id}', CASE WHEN :r <= 90 THEN 200 ELSE 404 END);
