SELECT * FROM apikey_usage.top_endpoints(:h, now() - interval '30 days', now(), 10);
