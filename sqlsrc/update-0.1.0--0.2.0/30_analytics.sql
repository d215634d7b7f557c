
-- Analytics and rollups (0.2.0)

/*
 * The one entry point from the log writer into the rollups: a batch's
 * counts per (key, UTC minute, method, endpoint, response code), already
 * aggregated by the writer, added to every rollup grain in the writer's
 * transaction.  The writer knows nothing of the grains; this function
 * does.  Rows are upserted in primary-key order so concurrent writers
 * lock them in one order.
 */
CREATE FUNCTION apikey_usage._rollup_apply(
	key_ids uuid[], minute_starts timestamptz[], methods text[], endpoints text[],
	response_codes smallint[], counts bigint[]) RETURNS void
	LANGUAGE sql VOLATILE
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		INSERT INTO apikey_usage.usage_hourly AS u
			(api_key_id, bucket_start, method, endpoint, response_code, requests)
		SELECT b.api_key_id,
			   pg_catalog.date_trunc('hour', b.minute_start, 'UTC'),
			   b.method, b.endpoint, b.response_code, pg_catalog.sum(b.n)::bigint
		  FROM unnest(key_ids, minute_starts, methods, endpoints, response_codes, counts)
			AS b(api_key_id, minute_start, method, endpoint, response_code, n)
		 GROUP BY 1, 2, 3, 4, 5
		 ORDER BY 1, 2, 3, 4, 5
		ON CONFLICT (api_key_id, bucket_start, method, endpoint, response_code)
		DO UPDATE SET requests = u.requests OPERATOR(pg_catalog.+) excluded.requests;
	END;
COMMENT ON FUNCTION apikey_usage._rollup_apply(uuid[], timestamptz[], text[], text[], smallint[], bigint[]) IS
	'Internal: add a batch''s pre-aggregated counts (per key, minute, method, endpoint, code) to every rollup grain.';

