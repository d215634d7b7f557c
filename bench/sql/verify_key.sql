-- verify_key of one key (:k)
SELECT valid FROM apikey_usage.verify_key(:k);
