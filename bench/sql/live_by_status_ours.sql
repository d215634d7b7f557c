SELECT * FROM apikey_usage.usage_by_response_status(:h);
