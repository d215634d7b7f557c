SELECT * FROM apikey_usage.usage_by_method(:h);
