SELECT * FROM apikey_usage.usage_timeseries(:h);
