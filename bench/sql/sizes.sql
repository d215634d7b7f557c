-- Sizes of the dashboard dataset, one line per table (partitions summed):
-- name | table bytes | index bytes | rows.  Every table of the extension
-- but api_keys, the naive table, the raw data as text, and the heavy
-- key's hourly rollup rows.
SELECT c.relname,
	   sum(pg_table_size(COALESCE(t.relid, c.oid))), sum(pg_indexes_size(COALESCE(t.relid, c.oid))),
	   (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %s', c.oid::regclass), false, true, '')))[1]::text::bigint
  FROM pg_class AS c
	   -- the partitions of a partitioned table; a plain table has none
	   LEFT JOIN LATERAL pg_partition_tree(c.oid) AS t ON c.relkind = 'p'
 WHERE c.relnamespace = 'apikey_usage'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND c.relname <> 'api_keys'
 GROUP BY c.oid, c.relname
UNION ALL
SELECT 'naive_log', pg_table_size('naive.log'), pg_indexes_size('naive.log'), (SELECT count(*) FROM naive.log)
UNION ALL
-- the rows as text (about the size of a CSV export): the raw data size
SELECT 'raw_text', (SELECT sum(octet_length(t::text) + 1) FROM naive.log AS t), 0, NULL
UNION ALL
SELECT 'heavy_rollup_rows', NULL, NULL,
	   (SELECT count(*) FROM apikey_usage.usage_hourly u JOIN bench.dataset_keys k ON k.key_id = u.api_key_id AND k.i = 1);
