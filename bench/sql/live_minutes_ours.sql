SELECT * FROM apikey_usage.usage_timeseries(:h, now() - interval '1 hour', now(), interval '1 minute');
