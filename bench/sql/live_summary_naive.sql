SELECT count(*) AS total_requests,
	   count(*) FILTER (WHERE response_code BETWEEN 100 AND 399) AS completed,
	   count(*) FILTER (WHERE response_code NOT BETWEEN 100 AND 399 AND response_code <> 429) AS failed,
	   count(*) FILTER (WHERE response_code = 429) AS rate_limited
  FROM naive.live WHERE api_key_id = :h AND requested_at >= now() - interval '30 days' AND requested_at < now();
