SELECT * FROM apikey_usage.top_endpoints(:h);
