SELECT * FROM apikey_usage.usage_by_response_status(:h, now() - interval '30 days', now());
