-- Benchmark-only objects (throwaway cluster): the naive baselines in
-- schema naive, the harness's own helper tables in schema bench.
CREATE SCHEMA bench;
CREATE SCHEMA naive;

-- Request-path keys (100, unlimited).  The api_key strings live only in
-- this throwaway cluster and in a 0600 temp file of the run.
CREATE TABLE bench.req_keys (n int PRIMARY KEY, key_id uuid NOT NULL, api_key text NOT NULL);
-- Keys of the key-scale test, numbered 1..N for pgbench's random().
CREATE TABLE bench.keys (i int PRIMARY KEY, key_id uuid NOT NULL, api_key text NOT NULL);
-- Keys of the dashboard dataset: i = 1 is the heavy key.
CREATE TABLE bench.dataset_keys (i int PRIMARY KEY, key_id uuid NOT NULL);

-- Naive verify: sha256 of the key, unique index on the hash.
CREATE TABLE naive.keys (
	key_id		uuid PRIMARY KEY,
	workspace	text NOT NULL,
	key_hash	bytea NOT NULL UNIQUE
);

-- Naive limiter: one counter row per key, UPDATE ... RETURNING.
CREATE TABLE naive.limits (
	n			int PRIMARY KEY,
	key_id		uuid NOT NULL UNIQUE,
	count		bigint NOT NULL DEFAULT 0
);

-- Naive request log: one INSERT per request into a plain table indexed
-- like apikey_usage.request_log_raw.
CREATE TABLE naive.request_log (
	requested_at	timestamptz NOT NULL,
	request_id		uuid NOT NULL,
	api_key_id		uuid NOT NULL,
	method			text NOT NULL,
	endpoint		text NOT NULL,
	response_code	smallint NOT NULL,
	resource_id		text
);
CREATE INDEX ON naive.request_log (api_key_id, requested_at DESC, request_id DESC);
CREATE INDEX ON naive.request_log (requested_at DESC, request_id DESC);
CREATE INDEX ON naive.request_log (resource_id, requested_at DESC, request_id DESC)
	WHERE resource_id IS NOT NULL;

-- Naive dashboards: the same rows as the dashboard dataset in a plain
-- table with one btree on (key_id, ts); GROUP BY / ORDER BY ... OFFSET.
CREATE TABLE naive.log (
	requested_at	timestamptz NOT NULL,
	request_id		uuid NOT NULL,
	api_key_id		uuid NOT NULL,
	method			text NOT NULL,
	endpoint		text NOT NULL,
	response_code	smallint NOT NULL,
	resource_id		text
);
CREATE INDEX naive_log_key_ts_idx ON naive.log (api_key_id, requested_at);

-- Naive live edge: the live scenario's rows (one key, the last 40
-- minutes) in a plain table with one btree on (key_id, ts).
CREATE TABLE naive.live (LIKE naive.log);
CREATE INDEX naive_live_key_ts_idx ON naive.live (api_key_id, requested_at);
