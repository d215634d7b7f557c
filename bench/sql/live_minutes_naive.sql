SELECT g.b AS bucket_start, COALESCE(c.total, 0), COALESCE(c.completed, 0), COALESCE(c.failed, 0), COALESCE(c.rate_limited, 0)
  FROM generate_series(date_bin('1 minute', now() - interval '1 hour', timestamptz 'epoch'),
					   now() - interval '1 microsecond', interval '1 minute') AS g(b)
  LEFT JOIN (SELECT date_bin('1 minute', requested_at, timestamptz 'epoch') AS b, count(*) AS total,
					count(*) FILTER (WHERE response_code BETWEEN 100 AND 399) AS completed,
					count(*) FILTER (WHERE response_code NOT BETWEEN 100 AND 399 AND response_code <> 429) AS failed,
					count(*) FILTER (WHERE response_code = 429) AS rate_limited
			   FROM naive.live WHERE api_key_id = :h AND requested_at >= now() - interval '1 hour' AND requested_at < now() GROUP BY 1) AS c USING (b)
 ORDER BY 1;
