------------------------------------------------------------------------
-- Key cache at scale (0.2.0): runtime_stats gains, at the end, the miss
-- ratio, the lock partitions and the last_used_at queue counters.  A
-- view's columns cannot be appended through its function, so both are
-- dropped and created again (with their comments and grants).
------------------------------------------------------------------------
DROP VIEW apikey_usage.runtime_stats;
DROP FUNCTION apikey_usage._runtime_stats();

--@include 50_views.sql CREATE FUNCTION apikey_usage._runtime_stats(



--@include 50_views.sql CREATE VIEW apikey_usage.runtime_stats AS SELECT * FROM apikey_usage._runtime_stats();

GRANT SELECT ON apikey_usage.runtime_stats TO apikey_usage_reader;
GRANT EXECUTE ON FUNCTION apikey_usage._runtime_stats() TO apikey_usage_reader;

-- last_used_at updates HOT: a fifth of each page kept free (pages written
-- from now on; VACUUM FULL apikey_usage.api_keys applies it to all).
ALTER TABLE apikey_usage.api_keys SET (fillfactor = 80);

-- The request path's miss probes the key table by hash: a hash index
-- answers that equality with fewer page visits than the unique btree.
CREATE INDEX api_keys_key_hash_hash_idx ON apikey_usage.api_keys USING hash (key_hash);

-- verify_key and check_request return a composite type (the same columns
-- as their OUT parameters had): the executor takes its descriptor from the
-- type cache instead of building it from pg_proc on every execution.
-- The result type of a function cannot be changed in place: dropped and
-- created again, with their comments and grants.
DROP FUNCTION apikey_usage.verify_key(text);
DROP FUNCTION apikey_usage.check_request(text, text, text, text);

--@include 10_core.sql CREATE TYPE apikey_usage.verify_key_result AS (

--@include 10_core.sql CREATE TYPE apikey_usage.check_request_result AS (

REVOKE ALL ON FUNCTION apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apikey_usage.verify_key(text),
	apikey_usage.check_request(text, text, text, text) TO apikey_usage_app;
