-- One API request as a gateway makes it: check_request before serving,
-- log_request with its request_id and the response code after.
SELECT key_id, request_id FROM apikey_usage.check_request(:k, 'GET', '/v1/documents/{id}') \gset
SELECT apikey_usage.log_request(:key_id, 'GET', '/v1/documents/{id}', 200, NULL, :request_id);
