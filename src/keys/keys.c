/*-------------------------------------------------------------------------
 *
 * keys.c
 *		Key material, the key table lookups of the request path, verify_key,
 *		and invalidation of cached keys at commit.
 *
 * Table lookups run through SPI as the owner of the extension's tables
 * (the calling role has no privilege on them), with every name and
 * operator schema-qualified so a caller's search_path cannot interfere,
 * and with the latest snapshot, so a key deleted by a committed
 * transaction is never found even inside an older REPEATABLE READ
 * snapshot.
 *
 * Shared state: none here (see keycache.c).  The backend-local workspace
 * cache is private to each backend; a key's workspace never changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "keyformat.h"

/*
 * BLAKE2b-256 of the key text: the only form in which a key is looked up.
 */
void
key_hash_compute(const char *api_key, size_t len, uint8 hash[APIKEY_HASH_BYTES])
{
	crypto_generichash(hash, APIKEY_HASH_BYTES,
					   (const unsigned char *) api_key, len, NULL, 0);
}

/*
 * The role that owns the extension's tables; table lookups of the request
 * path run as this role.
 */
Oid
apikey_owner_oid(void)
{
	Oid			nsp = get_namespace_oid("apikey_usage", false);
	Oid			relid = get_relname_relid("api_keys", nsp);
	HeapTuple	tuple;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the apikey_usage extension is not installed in this database")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/* Prepared plans of this backend (kept across transactions). */
static SPIPlanPtr lookup_by_hash_plan = NULL;
static SPIPlanPtr lookup_by_id_plan = NULL;

/*
 * Run a prepared one-row lookup as the extension owner with the latest
 * snapshot.  Returns the number of rows (0 or 1); the caller reads
 * SPI_tuptable before SPI_finish.
 */
static int
run_owner_lookup(SPIPlanPtr *plan, const char *sql, Oid argtype, Datum arg,
				 bool committed_only)
{
	Oid			save_userid;
	int			save_sec_context;
	Snapshot	snapshot;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(apikey_owner_oid(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, 1, &argtype);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	/*
	 * With committed_only, hide the calling transaction's own changes (rows
	 * it inserted or updated are invisible, rows it deleted or updated still
	 * show their old version): what is read may go into the shared cache,
	 * which must never hold a row that could still be rolled back.
	 */
	if (committed_only)
		snapshot->curcid = FirstCommandId;
	rc = SPI_execute_snapshot(*plan, &arg, NULL, snapshot, InvalidSnapshot,
							  true, false, 1);
	UnregisterSnapshot(snapshot);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "key lookup failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/*
 * Look a live key up by its hash in the key table, as committed (the
 * calling transaction's own uncommitted key changes take effect at its
 * commit, like everyone else's).  Fills info (and the workspace, palloc'd
 * in the caller's context, when wanted) and returns true when found.
 */
bool
key_table_lookup_by_hash(const uint8 hash[APIKEY_HASH_BYTES], KeyInfo *info,
						 char **workspace)
{
	bytea	   *hash_datum = palloc(VARHDRSZ + APIKEY_HASH_BYTES);
	MemoryContext caller = CurrentMemoryContext;
	bool		found = false;

	SET_VARSIZE(hash_datum, VARHDRSZ + APIKEY_HASH_BYTES);
	memcpy(VARDATA(hash_datum), hash, APIKEY_HASH_BYTES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (run_owner_lookup(&lookup_by_hash_plan,
						 "SELECT key_id, workspace, expires_at, rate_limit,"
						 " (pg_catalog.date_part('epoch', rate_window) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8"
						 " FROM apikey_usage.api_keys"
						 " WHERE key_hash OPERATOR(pg_catalog.=) $1 AND deleted_at IS NULL",
						 BYTEAOID, PointerGetDatum(hash_datum), true) == 1)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		memcpy(&info->key_id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)),
			   sizeof(pg_uuid_t));
		if (workspace)
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			*workspace = TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull));
			MemoryContextSwitchTo(old);
		}
		d = SPI_getbinval(tuple, desc, 3, &isnull);
		info->expires_at = isnull ? DT_NOEND : DatumGetTimestampTz(d);
		d = SPI_getbinval(tuple, desc, 4, &isnull);
		info->rate_limit = isnull ? 0 : DatumGetInt32(d);
		info->rate_window_us = DatumGetInt64(SPI_getbinval(tuple, desc, 5, &isnull));
		found = true;
	}
	SPI_finish();
	pfree(hash_datum);
	return found;
}

/*
 * Backend-local cache of key_id -> workspace.  A key's workspace never
 * changes and key ids are never reused, so entries never go stale; the
 * table is simply reset when it grows past a bound.
 */
typedef struct WorkspaceEntry
{
	pg_uuid_t	key_id;			/* hash key */
	char	   *workspace;		/* in TopMemoryContext */
} WorkspaceEntry;

#define WORKSPACE_CACHE_MAX 65536
static HTAB *workspace_cache = NULL;
static MemoryContext workspace_context = NULL;

static void
workspace_cache_init(void)
{
	HASHCTL		ctl;

	if (workspace_context == NULL)
		workspace_context = AllocSetContextCreate(TopMemoryContext,
												  "apikey_usage workspaces",
												  ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(workspace_context);
	ctl.keysize = sizeof(pg_uuid_t);
	ctl.entrysize = sizeof(WorkspaceEntry);
	ctl.hcxt = workspace_context;
	workspace_cache = hash_create("apikey_usage workspaces", 256, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Remember the workspace of a key (called after a table lookup).
 */
void
key_remember_workspace(const pg_uuid_t *key_id, const char *workspace)
{
	WorkspaceEntry *entry;
	bool		found;

	if (workspace_cache == NULL ||
		hash_get_num_entries(workspace_cache) >= WORKSPACE_CACHE_MAX)
		workspace_cache_init();
	entry = hash_search(workspace_cache, key_id, HASH_ENTER, &found);
	if (!found)
		entry->workspace = MemoryContextStrdup(workspace_context, workspace);
}

/*
 * Forget every remembered workspace: called when schema apikey_usage is
 * dropped or created (writer.c), since the key ids of a dropped
 * installation must become unknown.
 */
void
key_forget_workspaces(void)
{
	workspace_cache = NULL;
	if (workspace_context != NULL)
		MemoryContextReset(workspace_context);
}

/*
 * The workspace of a key, live or deleted; NULL when no key with that id
 * ever existed.  The result is owned by the cache: do not free it.
 */
const char *
key_workspace(const pg_uuid_t *key_id)
{
	WorkspaceEntry *entry = NULL;
	char	   *workspace = NULL;

	if (workspace_cache != NULL)
		entry = hash_search(workspace_cache, key_id, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->workspace;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (run_owner_lookup(&lookup_by_id_plan,
						 "SELECT workspace FROM apikey_usage.api_keys"
						 " WHERE key_id OPERATOR(pg_catalog.=) $1",
						 UUIDOID, UUIDPGetDatum(unconstify(pg_uuid_t *, key_id)),
						 false) == 1)
	{
		bool		isnull;

		workspace = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  1, &isnull));
	}
	SPI_finish();
	if (workspace == NULL)
		return NULL;
	key_remember_workspace(key_id, workspace);
	entry = hash_search(workspace_cache, key_id, HASH_FIND, NULL);
	return entry->workspace;
}

/*
 * _key_material(key_prefix, key_id): a fresh key from 32 random bytes,
 * its hash, its ciphertext and its display prefix.  The plaintext buffer
 * is wiped before returning; the key leaves only as the result.
 */
PG_FUNCTION_INFO_V1(apikey_usage_key_material);
Datum
apikey_usage_key_material(PG_FUNCTION_ARGS)
{
	text	   *prefix_text = PG_GETARG_TEXT_PP(0);
	pg_uuid_t  *key_id = PG_GETARG_UUID_P(1);
	const char *prefix = VARDATA_ANY(prefix_text);
	size_t		prefix_len = VARSIZE_ANY_EXHDR(prefix_text);
	uint8		secret_bytes[KEYFMT_SECRET_BYTES];
	char		key[KEYFMT_MAX_KEY_LEN + 1];
	size_t		key_len;
	uint8		hash[APIKEY_HASH_BYTES];
	bytea	   *hash_datum;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	char		display[KEYFMT_PREFIX_MAX + 1 + KEYFMT_DISPLAY_BODY_CHARS + 1];

	apikey_require_preload();
	if (!keyfmt_prefix_valid(prefix, prefix_len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix must match [a-z][a-z0-9]{0,15}")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	randombytes_buf(secret_bytes, sizeof(secret_bytes));
	key_len = keyfmt_encode(prefix, prefix_len, secret_bytes, key);
	sodium_memzero(secret_bytes, sizeof(secret_bytes));

	key_hash_compute(key, key_len, hash);
	hash_datum = palloc(VARHDRSZ + APIKEY_HASH_BYTES);
	SET_VARSIZE(hash_datum, VARHDRSZ + APIKEY_HASH_BYTES);
	memcpy(VARDATA(hash_datum), hash, APIKEY_HASH_BYTES);

	memcpy(display, key, prefix_len + 1 + KEYFMT_DISPLAY_BODY_CHARS);
	display[prefix_len + 1 + KEYFMT_DISPLAY_BODY_CHARS] = '\0';

	values[0] = PointerGetDatum(cstring_to_text_with_len(key, key_len));
	values[1] = PointerGetDatum(hash_datum);
	values[2] = PointerGetDatum(secret_encrypt_key(key, key_len, key_id));
	values[3] = CStringGetTextDatum(display);
	sodium_memzero(key, sizeof(key));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * _decrypt_key(ciphertext, key_id): the key again.
 */
PG_FUNCTION_INFO_V1(apikey_usage_decrypt_key);
Datum
apikey_usage_decrypt_key(PG_FUNCTION_ARGS)
{
	bytea	   *ciphertext = PG_GETARG_BYTEA_PP(0);
	pg_uuid_t  *key_id = PG_GETARG_UUID_P(1);
	char	   *plain;
	text	   *result;

	apikey_require_preload();
	plain = secret_decrypt_key(ciphertext, key_id);
	result = cstring_to_text(plain);
	sodium_memzero(plain, strlen(plain));
	PG_RETURN_TEXT_P(result);
}

/*
 * _invalidate_key(key_hash): drop the key from the shared cache when the
 * calling transaction commits (see keycache.c for the protocol).
 */
PG_FUNCTION_INFO_V1(apikey_usage_invalidate_key);
Datum
apikey_usage_invalidate_key(PG_FUNCTION_ARGS)
{
	bytea	   *hash = PG_GETARG_BYTEA_PP(0);

	apikey_require_preload();
	if (VARSIZE_ANY_EXHDR(hash) != APIKEY_HASH_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key hash must be %d bytes", APIKEY_HASH_BYTES)));
	keycache_invalidate_at_commit((const uint8 *) VARDATA_ANY(hash));
	PG_RETURN_VOID();
}

/*
 * Return one row from a function with OUT parameters.  The blessed result
 * descriptor is built once per call site and kept in fn_extra: building it
 * from pg_proc on every call costs more than the lookup itself.
 */
Datum
return_one_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		fcinfo->flinfo->fn_extra = desc;
		MemoryContextSwitchTo(old);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * verify_key(api_key): valid, or why not.  Never raises an error for any
 * text, so the key cannot reach the server log through an error report.
 */
PG_FUNCTION_INFO_V1(apikey_usage_verify_key);
Datum
apikey_usage_verify_key(PG_FUNCTION_ARGS)
{
	Datum		values[4];
	bool		nulls[4] = {false, true, true, false};
	const char *reason = "malformed";

	apikey_require_preload();

	values[0] = BoolGetDatum(false);
	if (!PG_ARGISNULL(0))
	{
		text	   *key_text = PG_GETARG_TEXT_PP(0);
		const char *key = VARDATA_ANY(key_text);
		size_t		len = VARSIZE_ANY_EXHDR(key_text);
		size_t		prefix_len;

		if (keyfmt_parse(key, len, &prefix_len))
		{
			uint8		hash[APIKEY_HASH_BYTES];
			KeyInfo		info;
			pg_uuid_t  *key_id;
			const char *workspace = NULL;

			key_hash_compute(key, len, hash);

			/*
			 * A cached key whose row is gone (the extension was dropped and
			 * created again) is unknown too.
			 */
			if (keycache_verify(hash, false, &info, NULL) == KEY_UNKNOWN ||
				(workspace = KEYINFO_WORKSPACE(&info)) == NULL)
				reason = "unknown";
			else
			{
				key_id = palloc(sizeof(pg_uuid_t));
				*key_id = info.key_id;
				values[1] = UUIDPGetDatum(key_id);
				values[2] = CStringGetTextDatum(workspace);
				nulls[1] = nulls[2] = false;
				if (info.expires_at <= GetCurrentTimestamp())
					reason = "expired";
				else
				{
					reason = "valid";
					values[0] = BoolGetDatum(true);
				}
			}
		}
	}
	values[3] = CStringGetTextDatum(reason);
	return return_one_row(fcinfo, values, nulls);
}
