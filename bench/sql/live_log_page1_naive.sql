SELECT request_id, requested_at, api_key_id, method, endpoint, response_code, resource_id
  FROM naive.live WHERE api_key_id = :h AND response_code BETWEEN 100 AND 399 AND method = 'GET'
 ORDER BY requested_at DESC, request_id DESC LIMIT 50;
