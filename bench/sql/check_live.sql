-- The live scenario's answers against the naive table (same rows, same
-- bounds, one snapshot): summary and the last hour per minute.
WITH b AS (SELECT (SELECT key_id FROM bench.live_key) AS h)
SELECT 'live_summary_matches',
	   (SELECT s::text FROM b, apikey_usage.usage_summary(b.h) s)
	   = (SELECT ROW(count(*), count(*) FILTER (WHERE response_code BETWEEN 100 AND 399),
					 count(*) FILTER (WHERE response_code NOT BETWEEN 100 AND 399 AND response_code <> 429),
					 count(*) FILTER (WHERE response_code = 429))::text
			FROM b, naive.live l WHERE l.api_key_id = b.h AND l.requested_at >= now() - interval '30 days' AND l.requested_at < now())
UNION ALL
SELECT 'live_minutes_match',
	   (SELECT array_agg(x.total_requests ORDER BY x.bucket_start) FROM b, apikey_usage.usage_timeseries(b.h, now() - interval '1 hour', now(), '1 minute') x)
	   = (SELECT array_agg(COALESCE(c.n, 0) ORDER BY g.b)
			FROM generate_series(date_bin('1 minute', now() - interval '1 hour', timestamptz 'epoch'), now() - interval '1 microsecond', interval '1 minute') AS g(b)
			LEFT JOIN (SELECT date_bin('1 minute', l.requested_at, timestamptz 'epoch') AS b, count(*) AS n
						 FROM b, naive.live l WHERE l.api_key_id = b.h AND l.requested_at >= now() - interval '1 hour' AND l.requested_at < now()
						GROUP BY 1) c USING (b));
