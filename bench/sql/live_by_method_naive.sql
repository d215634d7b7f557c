SELECT method, count(*) AS requests FROM naive.live WHERE api_key_id = :h AND requested_at >= now() - interval '30 days' AND requested_at < now()
 GROUP BY method ORDER BY requests DESC, method;
