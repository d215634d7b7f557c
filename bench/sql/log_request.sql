-- log_request of a served request of key :kid (appends to the durable ring)
SELECT apikey_usage.log_request(:kid, 'GET', '/v1/documents/{id}', 200);
