/*
 * apikey_usage 0.2.0 — install script.
 *
 * Read top to bottom: guard, roles, tables, internal helpers, key
 * management (admin), request path (app), log maintenance (worker),
 * analytics (reader), views, grants.
 *
 * Every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp
 * and schema-qualifies every object it touches.
 */

\echo Use "CREATE EXTENSION apikey_usage" to load this file. \quit

-- The extension lives in exactly one database, the one its background
-- worker serves (apikey_usage.database).  This also fails with SQLSTATE
-- 55000 when the library is not in shared_preload_libraries.
CREATE OR REPLACE FUNCTION apikey_usage._check_install_database() RETURNS void
	LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'apikey_usage_check_install_database';
COMMENT ON FUNCTION apikey_usage._check_install_database() IS
	'Internal: refuse installation outside apikey_usage.database or without preloading; empty the key cache.';
SELECT apikey_usage._check_install_database();

------------------------------------------------------------------------
-- Roles (cluster-wide; created only when missing, never dropped by us)
------------------------------------------------------------------------
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_admin') THEN
		CREATE ROLE apikey_usage_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_app') THEN
		CREATE ROLE apikey_usage_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'apikey_usage_reader') THEN
		CREATE ROLE apikey_usage_reader NOLOGIN;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA apikey_usage FROM PUBLIC;
GRANT USAGE ON SCHEMA apikey_usage TO apikey_usage_admin, apikey_usage_app, apikey_usage_reader;

------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------

-- Keys.  key_hash and key_ciphertext are never granted to anyone: only
-- the SECURITY DEFINER functions below and the C code (which switches to
-- the extension owner for its lookups) read them.  A deleted key keeps its
-- row as a tombstone with the ciphertext destroyed: it keeps what is needed
-- to recognise the key (its one-way hash, so check_request and verify_key
-- answer "revoked" with the key id), never what is needed to use it.
CREATE TABLE apikey_usage.api_keys (
	key_id			uuid PRIMARY KEY,
	workspace		text NOT NULL,
	name			text NOT NULL,
	key_prefix		text NOT NULL,
	key_hash		bytea UNIQUE,
	key_ciphertext	bytea,
	created_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	expires_at		timestamptz,
	rate_limit		integer,
	rate_window		interval NOT NULL DEFAULT '1 minute',
	last_used_at	timestamptz,
	deleted_at		timestamptz,
	-- roll_key: the replaced key's hash, verifying as this key until
	-- previous_key_expires_at (0.2.0)
	previous_key_hash	bytea CONSTRAINT api_keys_previous_key_hash_key UNIQUE,
	previous_key_expires_at	timestamptz,
	CONSTRAINT api_keys_check CHECK (deleted_at IS NOT NULL OR key_hash IS NOT NULL),
	CONSTRAINT api_keys_check1 CHECK ((deleted_at IS NULL) = (key_ciphertext IS NOT NULL)),
	CONSTRAINT api_keys_previous_key_check
		CHECK ((previous_key_hash IS NULL) = (previous_key_expires_at IS NULL)
			   AND (deleted_at IS NULL OR previous_key_hash IS NULL))
);
CREATE INDEX api_keys_workspace_idx ON apikey_usage.api_keys (workspace);
COMMENT ON TABLE apikey_usage.api_keys IS
	'API keys and tombstones of deleted keys. Not readable by the app and reader roles; use the keys view.';

-- The raw request log, one row per request, partitioned by UTC day on
-- requested_at.  Partitions are created ahead and on demand, and dropped
-- after apikey_usage.retention by the background worker.  They are not
-- extension members, so pg_dump dumps them with their rows; their indexes
-- belong to each partition (_index_partition), not to the parent: a
-- partitioned index on the parent would make pg_restore's ATTACH
-- PARTITION create the indexes that the dump then creates again.
--
-- Text columns use the "C" collation: byte order is what an id or a route
-- wants, and it makes every index comparison a memcmp.  Indexes are
-- ascending although the log is read newest first: rows arrive in time
-- order, and btree inserts at the right end take a fast path (a backward
-- scan serves the newest-first order as well).
CREATE TABLE apikey_usage.request_log_raw (
	requested_at	timestamptz NOT NULL,
	request_id		uuid NOT NULL,
	api_key_id		uuid NOT NULL,
	method			text COLLATE "C" NOT NULL,
	endpoint		text COLLATE "C" NOT NULL,
	response_code	smallint NOT NULL,
	resource_id		text COLLATE "C"
) PARTITION BY RANGE (requested_at);
COMMENT ON TABLE apikey_usage.request_log_raw IS
	'Raw request log, partitioned by UTC day; written only by the background worker (or a synchronous fall-back). Query it through the requests view or request_log().';

-- Hourly rollups: request counts per key, hour, method, endpoint and
-- response code, written in the same transaction as the raw rows they
-- count, so that whole hours never need the raw log.
CREATE TABLE apikey_usage.usage_hourly (
	api_key_id		uuid NOT NULL,
	bucket_start	timestamptz NOT NULL,
	method			text COLLATE "C" NOT NULL,
	endpoint		text COLLATE "C" NOT NULL,
	response_code	smallint NOT NULL,
	requests		bigint NOT NULL,
	PRIMARY KEY (api_key_id, bucket_start, method, endpoint, response_code)
);
CREATE INDEX usage_hourly_bucket_idx ON apikey_usage.usage_hourly (bucket_start);
COMMENT ON TABLE apikey_usage.usage_hourly IS
	'Request counts per key, UTC hour, method, endpoint and response code; maintained with the raw log in one transaction.';

-- Exactly-once flushing of the durable log buffer: the highest sequence
-- number written to the tables, per buffer file (ring_id), updated in the
-- same transaction as the rows.
CREATE TABLE apikey_usage.flush_state (
	ring_id			bigint PRIMARY KEY,
	flushed_seq		bigint NOT NULL,
	updated_at		timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.flush_state IS
	'Per log-buffer file: the sequence number below which every entry is in the tables (exactly-once flushing).';

-- Spool files (entries that found the log buffer full) already written to
-- the tables, recorded in the same transaction as their rows; a file whose
-- name is here is only removed, never written twice.
CREATE TABLE apikey_usage.spool_done (
	name			text PRIMARY KEY,
	done_at			timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE apikey_usage.spool_done IS
	'Spool files already written to the tables (exactly-once flushing of overflow entries).';

------------------------------------------------------------------------
-- Internal helpers (C).  None is granted to anyone: only the extension
-- owner (through the SECURITY DEFINER functions) may call them.
------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION apikey_usage._key_material(key_prefix text, key_id uuid,
	OUT api_key text, OUT key_hash bytea, OUT key_ciphertext bytea, OUT display_prefix text)
	RETURNS record
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_key_material';
COMMENT ON FUNCTION apikey_usage._key_material(text, uuid) IS
	'Internal: a new random key with its hash, its ciphertext under the server secret and its display prefix.';

CREATE OR REPLACE FUNCTION apikey_usage._decrypt_key(key_ciphertext bytea, key_id uuid) RETURNS text
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_decrypt_key';
COMMENT ON FUNCTION apikey_usage._decrypt_key(bytea, uuid) IS
	'Internal: the key again, decrypted under the server secret.';

CREATE OR REPLACE FUNCTION apikey_usage._invalidate_key(key_hash bytea) RETURNS void
	LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_invalidate_key';
COMMENT ON FUNCTION apikey_usage._invalidate_key(bytea) IS
	'Internal: drop the key from the shared-memory cache at commit of the calling transaction.';

CREATE OR REPLACE FUNCTION apikey_usage._retention() RETURNS interval
	LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'apikey_usage_retention';
COMMENT ON FUNCTION apikey_usage._retention() IS
	'The value of apikey_usage.retention as an interval.';

CREATE OR REPLACE FUNCTION apikey_usage._cache_last_used(OUT key_id uuid, OUT last_used_at timestamptz)
	RETURNS SETOF record
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_cache_last_used';
COMMENT ON FUNCTION apikey_usage._cache_last_used() IS
	'Internal: last_used_at of every key in the shared-memory cache (the live value).';

-- Status of a response code, as API.md defines it.
-- Not STRICT, so that it is inlined into the views and queries using it.
CREATE OR REPLACE FUNCTION apikey_usage.status_of(response_code integer) RETURNS text
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	RETURN CASE WHEN response_code IS NULL THEN NULL
				WHEN response_code BETWEEN 100 AND 399 THEN 'completed'
				WHEN response_code = 429 THEN 'rate_limited'
				ELSE 'failed' END;
COMMENT ON FUNCTION apikey_usage.status_of(integer) IS
	'completed for 100-399, rate_limited for 429, failed for any other code.';

------------------------------------------------------------------------
-- Key management (apikey_usage_admin)
------------------------------------------------------------------------

-- Shared argument checks of the admin functions; raise 22004 / 22023.
CREATE OR REPLACE FUNCTION apikey_usage._check_name(name text) RETURNS void
	LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.octet_length(name) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'name must be 1 to 200 bytes long' USING ERRCODE = '22023';
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._check_name(text) IS 'Internal: validate a key name.';

CREATE OR REPLACE FUNCTION apikey_usage._check_rate_limit(rate_limit integer, rate_window interval) RETURNS void
	LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF rate_window IS NULL THEN
		RAISE EXCEPTION 'rate_window must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF rate_limit IS NOT NULL AND rate_limit NOT BETWEEN 1 AND 1000000000 THEN
		RAISE EXCEPTION 'rate_limit must be between 1 and 1000000000, or NULL for unlimited'
			USING ERRCODE = '22023';
	END IF;
	IF rate_window < interval '1 second' OR rate_window > interval '1 day'
		OR pg_catalog.date_part('month', rate_window) <> 0 THEN
		RAISE EXCEPTION 'rate_window must be between 1 second and 1 day'
			USING ERRCODE = '22023';
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._check_rate_limit(integer, interval) IS 'Internal: validate a rate limit and window.';

CREATE OR REPLACE FUNCTION apikey_usage.generate_key(
	workspace text,
	name text,
	rate_limit integer DEFAULT NULL,
	rate_window interval DEFAULT '1 minute',
	expires_at timestamptz DEFAULT NULL,
	key_prefix text DEFAULT 'ak')
	RETURNS TABLE (key_id uuid, api_key text)
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	new_id		uuid := apikey_usage._new_key_id();
	material	record;
BEGIN
	IF workspace IS NULL THEN
		RAISE EXCEPTION 'workspace must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF pg_catalog.octet_length(workspace) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'workspace must be 1 to 200 bytes long' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_name(name);
	PERFORM apikey_usage._check_rate_limit(rate_limit, rate_window);
	IF key_prefix IS NULL THEN
		RAISE EXCEPTION 'key_prefix must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF key_prefix !~ '^[a-z][a-z0-9]{0,15}$' THEN
		RAISE EXCEPTION 'key_prefix must match [a-z][a-z0-9]{0,15}' USING ERRCODE = '22023';
	END IF;
	IF expires_at IS NOT NULL AND expires_at <= pg_catalog.clock_timestamp() THEN
		RAISE EXCEPTION 'expires_at must be in the future' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_workspace_admin(workspace);

	material := apikey_usage._key_material(key_prefix, new_id);
	INSERT INTO apikey_usage.api_keys
		(key_id, workspace, name, key_prefix, key_hash, key_ciphertext,
		 expires_at, rate_limit, rate_window)
	VALUES (new_id, generate_key.workspace, generate_key.name, material.display_prefix,
			material.key_hash, material.key_ciphertext,
			generate_key.expires_at, generate_key.rate_limit, generate_key.rate_window);
	key_id := new_id;
	api_key := material.api_key;
	RETURN NEXT;
END
$$;
COMMENT ON FUNCTION apikey_usage.generate_key(text, text, integer, interval, timestamptz, text) IS
	'Create an API key for a workspace; returns its id and the secret key (shown again only by copy_key).';

CREATE OR REPLACE FUNCTION apikey_usage.copy_key(key_id uuid) RETURNS text
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	ciphertext	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_ciphertext INTO ciphertext
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = copy_key.key_id AND k.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	RETURN apikey_usage._decrypt_key(ciphertext, key_id);
END
$$;
COMMENT ON FUNCTION apikey_usage.copy_key(uuid) IS
	'The secret API key of a live key again (decrypted under the server secret).';

CREATE OR REPLACE FUNCTION apikey_usage.delete_key(key_id uuid) RETURNS boolean
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_hash INTO old_hash
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = delete_key.key_id AND k.deleted_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		IF EXISTS (SELECT FROM apikey_usage.api_keys k WHERE k.key_id = delete_key.key_id) THEN
			RETURN false;
		END IF;
		RAISE EXCEPTION 'no API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	-- the hash stays, so that the key is recognised as revoked
	UPDATE apikey_usage.api_keys k
	   SET key_ciphertext = NULL, deleted_at = pg_catalog.now(),
		   previous_key_hash = NULL, previous_key_expires_at = NULL
	 WHERE k.key_id = delete_key.key_id;
	PERFORM apikey_usage._invalidate_key(old_hash);
	RETURN true;
END
$$;
COMMENT ON FUNCTION apikey_usage.delete_key(uuid) IS
	'Delete a key for good: its ciphertext is destroyed (and a rolled key''s previous key ends), every backend answers revoked for it from commit on (the tombstone keeps only its hash); its usage history stays.';

CREATE OR REPLACE FUNCTION apikey_usage.rename_key(key_id uuid, name text) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_name(name);
	PERFORM apikey_usage._check_key_admin(key_id);
	UPDATE apikey_usage.api_keys k SET name = rename_key.name
	 WHERE k.key_id = rename_key.key_id AND k.deleted_at IS NULL;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage.rename_key(uuid, text) IS 'Change the name (description) of a live key.';

-- A new secret for the same key id (one usage history); the replaced key
-- keeps verifying as this key until now() + grace.  The previous hash is
-- never cached: each use of it reads the key table, so its grace ends in
-- every backend by the clock alone, and it is verified and rate-limited
-- through the current key's cache entry (one shared limit).  A key has at
-- most one previous key: rolling again ends the earlier one at once.
CREATE FUNCTION apikey_usage.roll_key(key_id uuid, grace interval DEFAULT '1 day') RETURNS text
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
	old_prefix	text;
	material	record;
BEGIN
	IF key_id IS NULL OR grace IS NULL THEN
		RAISE EXCEPTION 'key_id and grace must not be NULL' USING ERRCODE = '22004';
	END IF;
	IF grace < interval '0' THEN
		RAISE EXCEPTION 'grace must not be negative' USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._check_key_admin(key_id);
	SELECT k.key_hash, k.key_prefix INTO old_hash, old_prefix
	  FROM apikey_usage.api_keys k
	 WHERE k.key_id = roll_key.key_id AND k.deleted_at IS NULL
	   FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	-- the display prefix is "<prefix>_<first characters>"
	material := apikey_usage._key_material(pg_catalog.split_part(old_prefix, '_', 1), key_id);
	UPDATE apikey_usage.api_keys k
	   SET key_hash = material.key_hash, key_ciphertext = material.key_ciphertext,
		   key_prefix = material.display_prefix,
		   previous_key_hash = CASE WHEN grace > interval '0' THEN old_hash END,
		   previous_key_expires_at = CASE WHEN grace > interval '0' THEN pg_catalog.now() + grace END
	 WHERE k.key_id = roll_key.key_id;
	PERFORM apikey_usage._invalidate_key(old_hash);
	RETURN material.api_key;
END
$$;
COMMENT ON FUNCTION apikey_usage.roll_key(uuid, interval) IS
	'Replace a live key''s secret, keeping its id; the old key verifies as the same key until now() + grace (0 = until commit). Returns the new api_key.';

CREATE OR REPLACE FUNCTION apikey_usage.set_rate_limit(key_id uuid, rate_limit integer,
	rate_window interval DEFAULT '1 minute') RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	old_hash	bytea;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'key_id must not be NULL' USING ERRCODE = '22004';
	END IF;
	PERFORM apikey_usage._check_rate_limit(rate_limit, rate_window);
	PERFORM apikey_usage._check_key_admin(key_id);
	UPDATE apikey_usage.api_keys k
	   SET rate_limit = set_rate_limit.rate_limit, rate_window = set_rate_limit.rate_window
	 WHERE k.key_id = set_rate_limit.key_id AND k.deleted_at IS NULL
	RETURNING k.key_hash INTO old_hash;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no live API key with id %', key_id USING ERRCODE = '22023';
	END IF;
	PERFORM apikey_usage._invalidate_key(old_hash);
END
$$;
COMMENT ON FUNCTION apikey_usage.set_rate_limit(uuid, integer, interval) IS
	'Set (or, with NULL, remove) the rate limit of a live key; effective on the next request in every backend.';

------------------------------------------------------------------------
-- Request path (apikey_usage_app).  C functions, not SECURITY DEFINER:
-- they switch to the extension owner only for their own fully qualified
-- lookups, so no per-call privilege switch is paid on a cache hit.
-- verify_key and check_request return exactly one row, of a composite
-- type with the columns of API.md's TABLE(...) (in 0.1.0: OUT parameters,
-- the same columns): not a set-returning function, and, unlike a record
-- described by OUT parameters, a result type the executor takes from the
-- type cache instead of building it from pg_proc on every execution
-- (0.2.0: about 0.5 us of each call).
------------------------------------------------------------------------
CREATE TYPE apikey_usage.verify_key_result AS (
	valid boolean, key_id uuid, workspace text, reason text);
COMMENT ON TYPE apikey_usage.verify_key_result IS 'The row verify_key returns.';
CREATE FUNCTION apikey_usage.verify_key(api_key text)
	RETURNS apikey_usage.verify_key_result
	LANGUAGE c VOLATILE CALLED ON NULL INPUT
	AS 'MODULE_PATHNAME', 'apikey_usage_verify_key';
COMMENT ON FUNCTION apikey_usage.verify_key(text) IS
	'Check an API key: valid, or why not (malformed, unknown, expired, revoked). Served from the shared-memory key cache; never writes a table.';

CREATE TYPE apikey_usage.check_request_result AS (
	allowed boolean, key_id uuid, workspace text, response_code integer,
	rate_limit integer, remaining integer, retry_after_ms integer,
	request_id uuid, rate_window interval, reason text, reset_after_ms integer);
COMMENT ON TYPE apikey_usage.check_request_result IS 'The row check_request returns.';
CREATE FUNCTION apikey_usage.check_request(api_key text, method text, endpoint text,
	resource_id text DEFAULT NULL)
	RETURNS apikey_usage.check_request_result
	LANGUAGE c VOLATILE CALLED ON NULL INPUT
	AS 'MODULE_PATHNAME', 'apikey_usage_check_request';
COMMENT ON FUNCTION apikey_usage.check_request(text, text, text, text) IS
	'The gateway call before serving a request: credentials first, then the arguments and the rate limit (GCRA); logs refusals of recognised keys; returns what to answer and why (reason: valid, malformed, unknown, expired, revoked, rate_limited).';

CREATE OR REPLACE FUNCTION apikey_usage.log_request(key_id uuid, method text, endpoint text,
	response_code integer, resource_id text DEFAULT NULL, request_id uuid DEFAULT NULL,
	requested_at timestamptz DEFAULT NULL)
	RETURNS uuid
	LANGUAGE c VOLATILE CALLED ON NULL INPUT
	AS 'MODULE_PATHNAME', 'apikey_usage_log_request';
COMMENT ON FUNCTION apikey_usage.log_request(uuid, text, text, integer, text, uuid, timestamptz) IS
	'Log one served request (non-transactional, like a sequence); returns its request_id. Reaches the tables within flush_interval.';

CREATE OR REPLACE FUNCTION apikey_usage.flush() RETURNS bigint
	LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'apikey_usage_flush';
COMMENT ON FUNCTION apikey_usage.flush() IS
	'Wait until every request logged before the call is in the tables; returns the number of entries written meanwhile.';

------------------------------------------------------------------------
-- Log maintenance (called by the background worker, as the owner)
------------------------------------------------------------------------

-- The indexes of one day partition of the raw log (see request_log_raw).
-- Text columns are "C"; ascending order, see there.
--   (api_key_id, requested_at, request_id) btree: a key's log, newest first.
--   (requested_at, request_id) btree: the log across keys, newest first, and
--     the writer's duplicate probe; rows arrive in time order, so its
--     inserts take the rightmost-leaf fast path.
--   resource_id BRIN bloom (0.2.0): the resource filter is an equality on
--     ids that arrive in no order.  Each range of 32 heap pages keeps a
--     bloom filter of its resource ids (1 % false positives at 2,500 ids a
--     range).  The ranges the writer appends to are left unsummarized, so
--     an insert costs it one revmap lookup (a hash index cost one bucket
--     page per row, a btree a descent): the background worker summarizes
--     every closed range within a second (_summarize_log), off the write
--     path; autovacuum summarizes what it finds too.  A filter reads the
--     heap pages of matching and unsummarized ranges and rechecks every
--     row, so results are exact whatever is summarized.
CREATE FUNCTION apikey_usage._index_partition(part regclass) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	name	text;
BEGIN
	SELECT c.relname INTO STRICT name
	  FROM pg_catalog.pg_class c
	  JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid
	 WHERE c.oid = part AND i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass;
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I (api_key_id, requested_at, request_id)',
							  name || '_key_time_idx', name);
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I (requested_at, request_id)',
							  name || '_time_idx', name);
	EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON apikey_usage.%I USING brin'
							  ' (resource_id text_bloom_ops (n_distinct_per_range = 2500, false_positive_rate = 0.01))'
							  ' WITH (pages_per_range = 32) WHERE resource_id IS NOT NULL',
							  name || '_resource_idx', name);
	-- an empty partition: building summarized its (empty) first range;
	-- leave it to _summarize_log like every other range
	IF pg_catalog.pg_relation_size(part) = 0 THEN
		PERFORM pg_catalog.brin_desummarize_range(
			pg_catalog.format('apikey_usage.%I', name || '_resource_idx')::pg_catalog.regclass, 0);
	END IF;
END
$$;
COMMENT ON FUNCTION apikey_usage._index_partition(regclass) IS
	'Internal: create the indexes of a day partition of request_log_raw (by key and time, by time, by resource).';

-- Summarize the closed block ranges of the raw log's resource indexes
-- (BRIN bloom, see _index_partition): the ranges wholly below the one the
-- last heap page is in, newest first, down to the first one already
-- summarized (ranges are summarized in order: by this function, by
-- autovacuum, or when an index is built).  Only partitions that end after
-- since (NULL: all).  A partition locked by autovacuum or DDL (even
-- against reading its size) is skipped until the next call, so a session
-- holding a lock on the log never makes the worker's cycle fail.  Returns the number of ranges summarized.
CREATE FUNCTION apikey_usage._summarize_log(since timestamptz DEFAULT NULL) RETURNS bigint
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp SET lock_timeout = '10ms' AS $$
DECLARE
	r		record;
	done	bigint := 0;
	top		bigint;
	n		integer;
BEGIN
	FOR r IN
		SELECT x.indexrelid::pg_catalog.regclass AS idx, x.indrelid AS part,
			   COALESCE((SELECT o.option_value::integer
						   FROM pg_catalog.pg_options_to_table(ic.reloptions) o
						  WHERE o.option_name = 'pages_per_range'), 128) AS per_range
		  FROM pg_catalog.pg_inherits i
		  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		  JOIN pg_catalog.pg_index x ON x.indrelid = i.inhrelid
		  JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
		  JOIN pg_catalog.pg_am a ON a.oid = ic.relam
		 WHERE i.inhparent = 'apikey_usage.request_log_raw'::pg_catalog.regclass
		   AND a.amname = 'brin'
		   -- the bound from the name (pg_get_expr would wait for a lock)
		   AND CASE WHEN since IS NULL OR c.relname !~ '^request_log_raw_p[0-9]{8}$' THEN true
					ELSE ((pg_catalog.to_date(pg_catalog.right(c.relname, 8), 'YYYYMMDD') + 1)::timestamp
						  AT TIME ZONE 'UTC') > since END
	LOOP
		BEGIN
			top := pg_catalog.pg_relation_size(r.part) / pg_catalog.current_setting('block_size')::integer;
			top := (top - 1) / r.per_range - 1;		-- the newest closed range
			WHILE top >= 0 LOOP
				n := pg_catalog.brin_summarize_range(r.idx, top * r.per_range);
				EXIT WHEN n = 0;
				done := done + n;
				top := top - 1;
			END LOOP;
		EXCEPTION WHEN lock_not_available OR undefined_table OR undefined_object THEN
			NULL;	-- locked (autovacuum, DDL) or just dropped: next time
		END;
	END LOOP;
	RETURN done;
END
$$;
COMMENT ON FUNCTION apikey_usage._summarize_log(timestamptz) IS
	'Internal: summarize the closed block ranges of the raw log''s resource indexes (partitions ending after since; NULL: all); returns how many.';

-- Create the day partition holding ts unless it exists.
-- lock_timeout: creating a partition locks the parent table; a session
-- that reads the log and then waits in flush() must not block the worker
-- for ever (the worker retries later instead).
CREATE OR REPLACE FUNCTION apikey_usage._ensure_partition(ts timestamptz) RETURNS void
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
	day		date := (ts AT TIME ZONE 'UTC')::date;
	part	text := 'request_log_raw_p' || pg_catalog.to_char(day, 'YYYYMMDD');
BEGIN
	IF pg_catalog.to_regclass('apikey_usage.' || part) IS NOT NULL THEN
		RETURN;
	END IF;
	-- serialise creators (worker, synchronous fall-backs)
	PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('apikey_usage._ensure_partition'));
	IF pg_catalog.to_regclass('apikey_usage.' || part) IS NOT NULL THEN
		RETURN;
	END IF;
	-- to_regclass reads the backend's catalog cache, which a transaction
	-- that ran for a while may not have refreshed since another creator
	-- committed the partition: CREATE TABLE (which does refresh it) then
	-- says so, and the partition is there
	BEGIN
		EXECUTE pg_catalog.format(
			'CREATE TABLE apikey_usage.%I PARTITION OF apikey_usage.request_log_raw
			   FOR VALUES FROM (%L) TO (%L)',
			part,
			(day::timestamp AT TIME ZONE 'UTC'),
			((day + 1)::timestamp AT TIME ZONE 'UTC'));
	EXCEPTION WHEN duplicate_table THEN
		RETURN;
	END;
	PERFORM apikey_usage._index_partition(('apikey_usage.' || part)::regclass);
END
$$;
COMMENT ON FUNCTION apikey_usage._ensure_partition(timestamptz) IS
	'Internal: create the UTC-day partition of request_log_raw that holds ts, if missing.';

-- Batches are written by the C writer (src/log/writer.c): multi-insert
-- into the day partition, index insertion, rollups through _rollup_apply.

-- Create the partitions for the coming days and drop the ones wholly
-- older than the retention (with the rollup rows of the same hours).
-- Returns the number of partitions dropped.
CREATE OR REPLACE FUNCTION apikey_usage._maintain(retention interval DEFAULT NULL) RETURNS integer
	LANGUAGE plpgsql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
DECLARE
	keep_from	timestamptz := pg_catalog.now() - coalesce(retention, apikey_usage._retention());
	part		record;
	dropped		integer := 0;
	upper_bound	timestamptz;
	cutoff		timestamptz := '-infinity';
BEGIN
	-- a database being restored from pg_dump brings its own partitions
	IF apikey_usage._restore_pending() THEN
		RETURN 0;
	END IF;
	FOR d IN 0..2 LOOP
		PERFORM apikey_usage._ensure_partition(pg_catalog.now() + pg_catalog.make_interval(days => d));
	END LOOP;
	FOR part IN
		SELECT c.oid::regclass AS rel, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
		  FROM pg_catalog.pg_inherits i
		  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'apikey_usage.request_log_raw'::regclass
	LOOP
		upper_bound := pg_catalog.substring(part.bound, 'TO \(''([^'']+)''\)')::timestamptz;
		IF upper_bound <= keep_from THEN
			EXECUTE pg_catalog.format('DROP TABLE %s', part.rel);
			dropped := dropped + 1;
			cutoff := GREATEST(cutoff, upper_bound);
		END IF;
	END LOOP;
	IF dropped > 0 THEN
		PERFORM apikey_usage._rollup_forget(cutoff);
	END IF;
	RETURN dropped;
END
$$;
COMMENT ON FUNCTION apikey_usage._maintain(interval) IS
	'Internal: create the next days'' partitions, drop those past the retention (and their rollups); returns how many were dropped.';

-- Write last_used_at values gathered from shared memory.
CREATE OR REPLACE FUNCTION apikey_usage._store_last_used(key_ids uuid[], last_used timestamptz[]) RETURNS void
	LANGUAGE sql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		UPDATE apikey_usage.api_keys k
		   SET last_used_at = u.ts
		  FROM unnest(key_ids, last_used) AS u(id, ts)
		 WHERE k.key_id OPERATOR(pg_catalog.=) u.id
		   AND (k.last_used_at IS NULL OR k.last_used_at OPERATOR(pg_catalog.<) u.ts);
	END;
COMMENT ON FUNCTION apikey_usage._store_last_used(uuid[], timestamptz[]) IS
	'Internal: persist last_used_at values kept in shared memory.';
