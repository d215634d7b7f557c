SELECT * FROM apikey_usage.request_log(key_id => :h, status => 'completed', method => 'GET', max_rows => 50);
