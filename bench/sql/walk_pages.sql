-- Walk the heavy key's request log 99 pages deep (50 rows a page, two
-- filters: status completed and method GET) with the keyset cursor, and
-- keep the cursor of page 99's last row for the page-100 scenario.
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.cursor;
CREATE TABLE bench.cursor (ts timestamptz, id uuid, walk_ms double precision);
DO $$
DECLARE
	h		uuid := (SELECT key_id FROM bench.dataset_keys WHERE i = 1);
	ts		timestamptz;
	id		uuid;
	t0		timestamptz := clock_timestamp();
BEGIN
	FOR p IN 1..99 LOOP
		SELECT l.requested_at, l.request_id INTO ts, id
		  FROM apikey_usage.request_log(key_id => h, status => 'completed', method => 'GET', max_rows => 50,
										before_requested_at => ts, before_request_id => id) AS l
		 ORDER BY l.requested_at, l.request_id LIMIT 1;
	END LOOP;
	INSERT INTO bench.cursor VALUES (ts, id, extract(epoch FROM clock_timestamp() - t0) * 1000);
END
$$;
-- the harness reads: ts (ISO 8601, no spaces), id, walk time
SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00"'), id, round(walk_ms::numeric, 1) FROM bench.cursor;
