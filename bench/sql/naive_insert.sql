-- Naive log: one INSERT per request into a plain table indexed like the
-- raw log (synchronous_commit set by the harness through PGOPTIONS).
INSERT INTO naive.request_log (requested_at, request_id, api_key_id, method, endpoint, response_code)
VALUES (now(), gen_random_uuid(), :kid, 'GET', '/v1/documents/{id}', 200);
