SELECT * FROM apikey_usage.usage_summary(:h, now() - interval '30 days', now());
