-- The naive equivalent of check_request + log_request: verify by hash,
-- increment the key's counter (committed before serving), insert the log row.
SELECT key_id FROM naive.keys WHERE key_hash = (SELECT sha256(convert_to(:k, 'UTF8'))) \gset
UPDATE naive.limits SET count = count + 1 WHERE key_id = :key_id RETURNING count;
INSERT INTO naive.request_log (requested_at, request_id, api_key_id, method, endpoint, response_code)
VALUES (now(), gen_random_uuid(), :key_id, 'GET', '/v1/documents/{id}', 200);
