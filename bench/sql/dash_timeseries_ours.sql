SELECT * FROM apikey_usage.usage_timeseries(:h, now() - interval '30 days', now(), interval '1 hour');
