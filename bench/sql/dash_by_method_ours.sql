SELECT * FROM apikey_usage.usage_by_method(:h, now() - interval '30 days', now());
