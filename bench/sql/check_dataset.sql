-- Sanity checks of the dashboard dataset (not timed): ours and naive agree.
-- 1: usage_summary equals the naive count for fixed bounds
-- 2: page 100 (keyset after walking 99 pages) equals the naive OFFSET 4950 page
WITH b AS (SELECT (SELECT key_id FROM bench.dataset_keys WHERE i = 1) AS h,
				  date_trunc('minute', now()) - interval '30 days' AS since, date_trunc('minute', now()) AS until)
SELECT 'summary_matches', (SELECT row(s.*)::text FROM apikey_usage.usage_summary(b.h, b.since, b.until) s)
	   = (SELECT row(count(*), count(*) FILTER (WHERE response_code BETWEEN 100 AND 399),
					 count(*) FILTER (WHERE response_code NOT BETWEEN 100 AND 399 AND response_code <> 429),
					 count(*) FILTER (WHERE response_code = 429))::text
			FROM naive.log WHERE api_key_id = b.h AND requested_at >= b.since AND requested_at < b.until)
  FROM b
UNION ALL
SELECT 'page100_matches',
	   (SELECT array_agg(l.request_id ORDER BY l.requested_at DESC, l.request_id DESC)
		  FROM bench.cursor c, apikey_usage.request_log(key_id => b.h, status => 'completed', method => 'GET', max_rows => 50,
														 before_requested_at => c.ts, before_request_id => c.id) AS l)
	   = (SELECT array_agg(request_id ORDER BY requested_at DESC, request_id DESC) FROM (
			SELECT request_id, requested_at FROM naive.log
			 WHERE api_key_id = b.h AND response_code BETWEEN 100 AND 399 AND method = 'GET'
			 ORDER BY requested_at DESC, request_id DESC OFFSET 4950 LIMIT 50) AS n)
  FROM b;
