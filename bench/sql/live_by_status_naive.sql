SELECT response_code::integer, count(*) AS requests FROM naive.live WHERE api_key_id = :h AND requested_at >= now() - interval '30 days' AND requested_at < now()
 GROUP BY response_code ORDER BY requests DESC, response_code;
