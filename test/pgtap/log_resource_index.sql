-- The raw log's resource index is a BRIN bloom index whose trailing block
-- ranges the writer leaves unsummarized; _summarize_log (called by the
-- worker every second) summarizes the closed ones.  Resource filters stay
-- exact whatever is summarized: through the index (bitmap scan, lossy
-- ranges rechecked) they count what a sequential scan counts, before and
-- after summarizing, and for rows written into ranges summarized before.
-- Workspace pgtap_resource is used by this file only.
BEGIN;
SELECT plan(18);

SELECT key_id AS k FROM apikey_usage.generate_key('pgtap_resource', 'resource filter') \gset

-- 20,000 rows, resource ids pgtap-res-0 .. -499 (40 rows each), one in ten
-- without a resource id: several ranges of 32 heap pages
SELECT is(apikey_usage.log_requests(
		array_fill(:'k'::uuid, ARRAY[20000]),
		array_fill('GET'::text, ARRAY[20000]),
		array_fill('/v1/res'::text, ARRAY[20000]),
		array_fill(200, ARRAY[20000]),
		(SELECT array_agg(CASE WHEN i % 10 = 0 THEN NULL ELSE 'pgtap-res-' || i % 500 END ORDER BY i)
		   FROM generate_series(1, 20000) i)),
	20000::bigint, 'logged 20,000 entries');
SELECT ok(apikey_usage.flush() >= 0, 'flush');

SELECT c.oid::regclass AS part, (c.relname || '_resource_idx') AS idx
  FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
 WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass
   AND c.oid = (SELECT tableoid FROM apikey_usage.request_log_raw WHERE api_key_id = :'k' LIMIT 1) \gset
SELECT is((SELECT a.amname::text FROM pg_class ic JOIN pg_am a ON a.oid = ic.relam
			WHERE ic.oid = ('apikey_usage.' || :'idx')::regclass),
	'brin', 'the resource index of a day partition is a BRIN index');
SELECT ok(pg_relation_size(:'part') / current_setting('block_size')::int >= 4 * 32,
	'the partition spans at least four ranges of 32 pages');

-- counts through the index only (bitmap scan: the resource index is the
-- only one on resource_id), and without it
CREATE TEMP TABLE expected AS
	SELECT 'pgtap-res-' || i AS r, CASE WHEN i % 10 = 0 THEN 0 ELSE 40 END::bigint AS n
	  FROM generate_series(0, 499) i;
CREATE FUNCTION pg_temp.counts_by_index() RETURNS TABLE (r text, n bigint)
	LANGUAGE sql SET enable_seqscan = off SET enable_indexscan = off SET enable_bitmapscan = on
	AS $$ SELECT e.r, (SELECT count(*) FROM apikey_usage.request_log_raw l
						WHERE l.resource_id = e.r) FROM expected e $$;
CREATE FUNCTION pg_temp.counts_by_scan() RETURNS TABLE (r text, n bigint)
	LANGUAGE sql SET enable_bitmapscan = off SET enable_indexscan = off
	AS $$ SELECT e.r, (SELECT count(*) FROM apikey_usage.request_log_raw l
						WHERE l.resource_id = e.r) FROM expected e $$;

SELECT is((SELECT count(*) FROM pg_temp.counts_by_index() c JOIN expected e USING (r) WHERE c.n <> e.n),
	0::bigint, 'every resource filter counts exactly through the index (whatever the worker summarized so far)');

SELECT is(apikey_usage._summarize_log('infinity'), 0::bigint, '_summarize_log skips partitions that end before since');
SELECT ok(apikey_usage._summarize_log(now() - interval '1 day') >= 0, '_summarize_log runs as the worker calls it (the last day)');
SELECT is((SELECT count(*) FROM generate_series(0, (pg_relation_size(:'part') / current_setting('block_size')::int - 1) / 32 - 1) r
			WHERE brin_summarize_range(('apikey_usage.' || :'idx')::regclass, r * 32) <> 0),
	0::bigint, 'after _summarize_log every closed range is summarized');
SELECT is((SELECT count(*) FROM pg_temp.counts_by_index() c JOIN expected e USING (r) WHERE c.n <> e.n),
	0::bigint, 'every resource filter counts exactly through the summarized index');
SELECT is((SELECT count(*) FROM pg_temp.counts_by_scan() c JOIN expected e USING (r) WHERE c.n <> e.n),
	0::bigint, 'and without it');

-- rows written after the summary, into new and (the summarized first
-- range of a partition built over rows) summarized ranges
SELECT is(apikey_usage.log_requests(
		array_fill(:'k'::uuid, ARRAY[5000]),
		array_fill('POST'::text, ARRAY[5000]),
		array_fill('/v1/res'::text, ARRAY[5000]),
		array_fill(201, ARRAY[5000]),
		(SELECT array_agg('pgtap-res-' || (i * 10 + 1) % 500 ORDER BY i) FROM generate_series(1, 5000) i)),
	5000::bigint, 'logged 5,000 more');
SELECT ok(apikey_usage.flush() >= 0, 'flush');
UPDATE expected SET n = n + 100 WHERE r IN (SELECT 'pgtap-res-' || (i * 10 + 1) % 500 FROM generate_series(1, 50) i);
SELECT is((SELECT count(*) FROM pg_temp.counts_by_index() c JOIN expected e USING (r) WHERE c.n <> e.n),
	0::bigint, 'resource filters still count exactly through the index');

-- the functions without a key: request_log and request_count plan this
-- one statement for the bloom index and put the planner settings back
SELECT is((SELECT count(*) FROM expected e
			WHERE apikey_usage.request_count(resource_id => e.r) <> e.n), 0::bigint,
	'request_count(resource_id) without a key counts every resource exactly');
SELECT is((SELECT count(*) FROM expected e
			WHERE (SELECT count(*) FROM apikey_usage.request_log(resource_id => e.r, max_rows => 10000)) <> e.n),
	0::bigint, 'request_log(resource_id) without a key returns every row of every resource');
SELECT results_eq(
	$$SELECT request_id, requested_at FROM apikey_usage.request_log(resource_id => 'pgtap-res-11', max_rows => 30)$$,
	$$SELECT request_id, requested_at FROM apikey_usage.request_log_raw WHERE resource_id = 'pgtap-res-11'
	   ORDER BY requested_at DESC, request_id DESC LIMIT 30$$,
	'request_log(resource_id) without a key: newest first, cut at max_rows');
SELECT is(ARRAY[current_setting('enable_seqscan'), current_setting('enable_indexscan'), current_setting('plan_cache_mode')],
	ARRAY['on', 'on', 'auto'], 'the planner settings are as before the calls');
SET LOCAL enable_seqscan = off;
SELECT is((SELECT ARRAY[apikey_usage.request_count(resource_id => 'pgtap-res-11')::text,
						current_setting('enable_seqscan'), current_setting('enable_indexscan')]),
	ARRAY['140', 'off', 'on'], 'a caller''s own setting is kept too');

SELECT * FROM finish();
ROLLBACK;
