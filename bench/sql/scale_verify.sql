-- verify_key of one of :nkeys keys.
\set i random(1, :nkeys)
SELECT v.valid FROM bench.keys b CROSS JOIN LATERAL apikey_usage.verify_key(b.api_key) v WHERE b.i = :i;
