SELECT * FROM apikey_usage.usage_summary(:h);
