-- page 100: (:bts, :bid) is the last row of page 99, found by walking 99 pages
SELECT * FROM apikey_usage.request_log(key_id => :h, status => 'completed', method => 'GET', max_rows => 50,
	before_requested_at => :bts, before_request_id => :bid);
