-- check_request of one key (:k, unlimited): verify + limiter, no table write
SELECT allowed FROM apikey_usage.check_request(:k, 'GET', '/v1/documents/{id}');
