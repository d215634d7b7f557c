-- One API request, as a gateway makes it: check_request before serving,
-- log_request with the response code after.  pgbench picks the key
-- (:key set by -D per script weight) and the request shape at random.
\set m random(1, 100)
\set e random(1, 6)
\set r random(1, 100)
\set doc random(1, 400)
SELECT apikey_usage.log_request(c.key_id,
		CASE WHEN :m <= 55 THEN 'GET' WHEN :m <= 80 THEN 'POST' WHEN :m <= 90 THEN 'PUT'
			 WHEN :m <= 96 THEN 'DELETE' ELSE 'PATCH' END,
		(ARRAY['/v1/documents', '/v1/documents/{id}', '/v1/search', '/v1/users/{id}',
			   '/v1/webhooks', '/v1/files/{id}'])[:e],
		CASE WHEN :r <= 72 THEN 200 WHEN :r <= 82 THEN 201 WHEN :r <= 85 THEN 204
			 WHEN :r <= 90 THEN 404 WHEN :r <= 94 THEN 400 WHEN :r <= 96 THEN 401
			 WHEN :r <= 98 THEN 500 ELSE 503 END,
		'doc_' || :doc, c.request_id)
  FROM apikey_usage.check_request(:key, 'GET', '/v1/documents') c
 WHERE c.allowed;
