/*-------------------------------------------------------------------------
 *
 * keys.c
 *		Key material, the key table lookups of the request path, verify_key,
 *		and invalidation of cached keys at commit.
 *
 * Table lookups open the key table and one of its indexes directly
 * (as core code reads a catalog: no SPI, no planning, no role switch; the
 * calling role has no privilege on the table and needs none, since no
 * name it supplies is ever resolved), with the latest snapshot, so a key
 * deleted by a committed transaction is never found even inside an older
 * REPEATABLE READ snapshot.
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
#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "executor/tuptable.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
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

/*
 * The key table as the request path reads it: like core code reads a
 * catalog (open the relation and one of its indexes, scan with a
 * snapshot), with no SPI, no planning and no role switch (table_open
 * checks no privilege; the caller never names the relation).  The OIDs
 * and attribute numbers are looked up once per backend and forgotten on
 * a relcache reset or an invalidation of the table or its indexes (DROP
 * EXTENSION, ALTER TABLE, REINDEX).
 */
typedef struct KeyTableInfo
{
	bool		valid;
	Oid			relid;
	Oid			hash_index;		/* hash (else btree) index on (key_hash) */
	StrategyNumber hash_strategy;	/* its equality strategy */
	Oid			id_index;		/* btree on (key_id) */
	Oid			previous_hash_index;	/* btree on (previous_key_hash), if any */
	AttrNumber	att_key_id;
	AttrNumber	att_workspace;
	AttrNumber	att_key_hash;
	AttrNumber	att_expires_at;
	AttrNumber	att_rate_limit;
	AttrNumber	att_rate_window;
	AttrNumber	att_last_used_at;
	AttrNumber	att_deleted_at;
	AttrNumber	att_previous_key_hash;	/* roll_key; Invalid before 0.2.0 */
	AttrNumber	att_previous_key_expires_at;
	/* the attributes above that exist, and the highest of them */
	AttrNumber	needed[16];
	int			nneeded;
	AttrNumber	max_needed;
} KeyTableInfo;

static KeyTableInfo key_table;
static bool key_table_callback_registered = false;

static void
key_table_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == key_table.relid ||
		relid == key_table.hash_index || relid == key_table.id_index ||
		relid == key_table.previous_hash_index)
		key_table.valid = false;
}

static AttrNumber
key_table_attnum(Oid relid, const char *name)
{
	AttrNumber	attnum = get_attnum(relid, name);

	if (attnum == InvalidAttrNumber)
		elog(ERROR, "apikey_usage.api_keys has no column \"%s\"", name);
	return attnum;
}

/*
 * A valid single-column index of access method am of the key table on
 * attnum, without a predicate; InvalidOid if there is none.
 */
static Oid
key_table_index_on(Relation rel, AttrNumber attnum, Oid am)
{
	return apikey_find_index(rel, &attnum, 1, true, am);
}

static void
key_table_load(void)
{
	Oid			nsp;
	Oid			relid = InvalidOid;
	Relation	rel;

	if (key_table.valid)
		return;
	if (!key_table_callback_registered)
	{
		CacheRegisterRelcacheCallback(key_table_invalidate, (Datum) 0);
		key_table_callback_registered = true;
	}
	nsp = get_namespace_oid("apikey_usage", true);
	if (OidIsValid(nsp))
		relid = get_relname_relid("api_keys", nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the apikey_usage extension is not installed in this database")));
	key_table.relid = relid;
	key_table.att_key_id = key_table_attnum(relid, "key_id");
	key_table.att_workspace = key_table_attnum(relid, "workspace");
	key_table.att_key_hash = key_table_attnum(relid, "key_hash");
	key_table.att_expires_at = key_table_attnum(relid, "expires_at");
	key_table.att_rate_limit = key_table_attnum(relid, "rate_limit");
	key_table.att_rate_window = key_table_attnum(relid, "rate_window");
	key_table.att_last_used_at = key_table_attnum(relid, "last_used_at");
	key_table.att_deleted_at = key_table_attnum(relid, "deleted_at");
	/* optional: a 0.1.0 table (not yet updated) has no previous key */
	key_table.att_previous_key_hash = get_attnum(relid, "previous_key_hash");
	key_table.att_previous_key_expires_at = get_attnum(relid, "previous_key_expires_at");
	rel = table_open(relid, AccessShareLock);
	/* a hash index answers an equality probe with fewer page visits */
	key_table.hash_index = key_table_index_on(rel, key_table.att_key_hash, HASH_AM_OID);
	key_table.hash_strategy = HTEqualStrategyNumber;
	if (!OidIsValid(key_table.hash_index))
	{
		key_table.hash_index = key_table_index_on(rel, key_table.att_key_hash, BTREE_AM_OID);
		key_table.hash_strategy = BTEqualStrategyNumber;
	}
	key_table.id_index = key_table_index_on(rel, key_table.att_key_id, BTREE_AM_OID);
	key_table.previous_hash_index = InvalidOid;
	if (key_table.att_previous_key_hash != InvalidAttrNumber &&
		key_table.att_previous_key_expires_at != InvalidAttrNumber)
		key_table.previous_hash_index =
			key_table_index_on(rel, key_table.att_previous_key_hash, BTREE_AM_OID);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(key_table.hash_index) || !OidIsValid(key_table.id_index))
		elog(ERROR, "apikey_usage.api_keys lacks its index on key_hash or key_id");

	/*
	 * The columns key_table_fetch() deforms and copies: every att_* above
	 * (a column read through KT_VALUE must be listed here).
	 */
	{
		AttrNumber	atts[] = {key_table.att_key_id, key_table.att_workspace,
			key_table.att_key_hash, key_table.att_expires_at,
			key_table.att_rate_limit, key_table.att_rate_window,
			key_table.att_last_used_at, key_table.att_deleted_at,
			key_table.att_previous_key_hash,
		key_table.att_previous_key_expires_at};
		int			i;

		StaticAssertStmt(lengthof(atts) <= lengthof(key_table.needed),
						 "KeyTableInfo.needed too small");
		key_table.nneeded = 0;
		key_table.max_needed = 0;
		for (i = 0; i < lengthof(atts); i++)
		{
			if (atts[i] == InvalidAttrNumber)
				continue;
			key_table.needed[key_table.nneeded++] = atts[i];
			key_table.max_needed = Max(key_table.max_needed, atts[i]);
		}
	}
	key_table.valid = true;
}

/*
 * Fetch the one row of the key table whose indexed column equals value
 * (through index indexoid, its equality strategy and function eqproc), with the latest
 * snapshot, into values/nulls (palloc'd in the caller's context, all
 * columns deformed).  With committed_only, the calling transaction's own
 * changes are hidden (rows it inserted or updated are invisible, rows it
 * deleted or updated still show their old version): what is read may go
 * into the shared cache, which must never hold a row that could still be
 * rolled back.  Returns false when there is no such row.
 */
static bool
key_table_fetch(Oid indexoid, StrategyNumber strategy, RegProcedure eqproc,
				Datum value, bool committed_only, Datum **values, bool **nulls)
{
	Relation	rel;
	Relation	index;
	Snapshot	snapshot;
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found = false;

	rel = table_open(key_table.relid, AccessShareLock);
	index = index_open(indexoid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	if (committed_only)
		snapshot->curcid = FirstCommandId;
	ScanKeyInit(&skey, 1, strategy, eqproc, value);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		int			natts = RelationGetDescr(rel)->natts;
		int			i;

		/*
		 * A hash index keeps only a 32-bit hash code of the value: it returns
		 * every row whose code matches (xs_recheck), so the row's own value
		 * must be compared, or a key whose hash merely shares the code of a
		 * stored one (about one random key in 4,300 at a million keys)
		 * would verify as that key.
		 */
		if (scan->xs_recheck)
		{
			bool		isnull;
			Datum		stored = slot_getattr(slot, index->rd_index->indkey.values[0],
											  &isnull);

			if (isnull ||
				!DatumGetBool(OidFunctionCall2Coll(eqproc, InvalidOid, value, stored)))
				continue;
		}

		/* deform and copy only the columns the lookups read */
		slot_getsomeattrs(slot, key_table.max_needed);
		*values = palloc0(sizeof(Datum) * natts);
		*nulls = palloc(sizeof(bool) * natts);
		memset(*nulls, true, sizeof(bool) * natts);
		for (i = 0; i < key_table.nneeded; i++)
		{
			int			at = key_table.needed[i] - 1;
			Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), at);

			(*nulls)[at] = slot->tts_isnull[at];
			if (!slot->tts_isnull[at])
				(*values)[at] = datumCopy(slot->tts_values[at], att->attbyval,
										  att->attlen);
		}
		found = true;
		break;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	/*
	 * Keep the locks until the end of the transaction, as a query reading
	 * the table would: releasing them at once costs a miss about 4 % and
	 * gains nothing.
	 */
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return found;
}

#define KT_VALUE(att)	(values[(att) - 1])
#define KT_NULL(att)	(nulls[(att) - 1])

/*
 * Look a live key up by its hash in the key table, as committed (the
 * calling transaction's own uncommitted key changes take effect at its
 * commit, like everyone else's).  Fills info (and the workspace, palloc'd
 * in the caller's context, when wanted) and returns KEY_FOUND, or
 * KEY_UNKNOWN.  This is the whole cost of a cache miss: one hash-index
 * probe, each row it returns compared on its key_hash (the index keeps a
 * 32-bit code of it only), and a btree probe more for a hash that is not a
 * current key's.  The hash may be a rolled
 * key's previous hash (roll_key): then info->via_previous is set, with the
 * end of its grace period and the key's current hash.  A deleted key's
 * tombstone keeps its hash (never its ciphertext), so it is recognised:
 * KEY_REVOKED, with only key_id and the workspace filled.
 */
KeyLookupResult
key_table_lookup_by_hash(const uint8 hash[APIKEY_HASH_BYTES], KeyInfo *info,
						 char **workspace)
{
	bytea	   *hash_datum = palloc(VARHDRSZ + APIKEY_HASH_BYTES);
	Datum	   *values;
	bool	   *nulls;
	Interval   *window;

	SET_VARSIZE(hash_datum, VARHDRSZ + APIKEY_HASH_BYTES);
	memcpy(VARDATA(hash_datum), hash, APIKEY_HASH_BYTES);
	key_table_load();
	info->via_previous = false;
	if (!key_table_fetch(key_table.hash_index, key_table.hash_strategy, F_BYTEAEQ,
						 PointerGetDatum(hash_datum), true, &values, &nulls))
	{
		/* a rolled key's previous key?  (see roll_key) */
		if (!OidIsValid(key_table.previous_hash_index) ||
			!key_table_fetch(key_table.previous_hash_index, BTEqualStrategyNumber, F_BYTEAEQ,
							 PointerGetDatum(hash_datum), true, &values, &nulls) ||
			KT_NULL(key_table.att_previous_key_expires_at) ||
			KT_NULL(key_table.att_key_hash))
			return KEY_UNKNOWN;
		info->via_previous = true;
		info->previous_valid_until =
			DatumGetTimestampTz(KT_VALUE(key_table.att_previous_key_expires_at));
		memcpy(info->current_hash,
			   VARDATA_ANY(DatumGetByteaPP(KT_VALUE(key_table.att_key_hash))),
			   APIKEY_HASH_BYTES);
	}
	memcpy(&info->key_id, DatumGetUUIDP(KT_VALUE(key_table.att_key_id)),
		   sizeof(pg_uuid_t));
	if (workspace)
		*workspace = TextDatumGetCString(KT_VALUE(key_table.att_workspace));
	if (!KT_NULL(key_table.att_deleted_at))
		return KEY_REVOKED;
	info->expires_at = KT_NULL(key_table.att_expires_at) ? DT_NOEND :
		DatumGetTimestampTz(KT_VALUE(key_table.att_expires_at));
	info->rate_limit = KT_NULL(key_table.att_rate_limit) ? 0 :
		DatumGetInt32(KT_VALUE(key_table.att_rate_limit));
	/* months are refused by set_rate_limit; count them as 30 days anyway */
	window = DatumGetIntervalP(KT_VALUE(key_table.att_rate_window));
	info->rate_window_us = window->time +
		(window->day + (int64) window->month * DAYS_PER_MONTH) * USECS_PER_DAY;
	info->last_used_at = KT_NULL(key_table.att_last_used_at) ? 0 :
		DatumGetTimestampTz(KT_VALUE(key_table.att_last_used_at));
	return KEY_FOUND;
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

	{
		Datum	   *values;
		bool	   *nulls;

		key_table_load();
		if (key_table_fetch(key_table.id_index, BTEqualStrategyNumber, F_UUID_EQ,
							UUIDPGetDatum(unconstify(pg_uuid_t *, key_id)),
							false, &values, &nulls))
			workspace = TextDatumGetCString(KT_VALUE(key_table.att_workspace));
	}
	if (workspace == NULL)
		return NULL;
	key_remember_workspace(key_id, workspace);
	entry = hash_search(workspace_cache, key_id, HASH_FIND, NULL);
	return entry->workspace;
}

/*
 * _key_material(key_prefix, key_id): a fresh key from 32 random bytes,
 * carrying the node its key id names, its hash, its ciphertext and its
 * display prefix.  The plaintext buffer
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
	int			node;

	apikey_require_preload();
	if (!keyfmt_prefix_valid(prefix, prefix_len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key_prefix must match [a-z][a-z0-9]{0,15}")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	/* the key names the node its key id names (keyformat.h) */
	node = keyfmt_key_id_node(key_id->data);
	if (node < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key id names a node above %d", KEYFMT_NODE_MAX)));

	randombytes_buf(secret_bytes, sizeof(secret_bytes));
	key_len = keyfmt_encode_node(prefix, prefix_len, secret_bytes, node, key);
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
 * Blessed result descriptors of the functions that return one row, kept
 * per backend by function oid.  A FunctionScan builds a new FmgrInfo (an
 * empty fn_extra) for every execution of a statement, even a prepared
 * one, and building the descriptor from pg_proc (one pg_type lookup per
 * column) cost more than the key lookup itself.  Forgotten at any change
 * of pg_proc (a function dropped and created again may get an old oid) and
 * at a change of a cached composite type (ALTER TYPE invalidates its
 * relation).
 */
#define RESULT_DESCS 8
typedef struct ResultDesc
{
	Oid			fn_oid;
	Oid			typrelid;		/* the composite type's relation, or 0 */
	TupleDesc	desc;			/* in TopMemoryContext */
} ResultDesc;
static ResultDesc result_descs[RESULT_DESCS];
static int	n_result_descs = 0;
static bool result_desc_callbacks_registered = false;

/*
 * Forget the descriptors (no caller holds one across a catalog access:
 * return_one_row uses it at once).
 */
static void
result_descs_reset(void)
{
	int			i;

	for (i = 0; i < n_result_descs; i++)
		FreeTupleDesc(result_descs[i].desc);
	n_result_descs = 0;
}

static void
result_descs_proc_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	result_descs_reset();
}

static void
result_descs_rel_changed(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < n_result_descs; i++)
		if (!OidIsValid(relid) || result_descs[i].typrelid == relid)
		{
			result_descs_reset();
			return;
		}
}

/*
 * The blessed result descriptor of the function being called, checked
 * against the column types the C function fills: the same, or a prefix of
 * them (an older version's shorter result, before ALTER EXTENSION UPDATE).
 */
static TupleDesc
result_desc(FunctionCallInfo fcinfo, const Oid *types, int ncolumns)
{
	Oid			fn_oid = fcinfo->flinfo->fn_oid;
	TupleDesc	desc;
	MemoryContext old;
	int			i;

	for (i = 0; i < n_result_descs; i++)
		if (result_descs[i].fn_oid == fn_oid)
			return result_descs[i].desc;

	if (!result_desc_callbacks_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, result_descs_proc_changed, (Datum) 0);
		CacheRegisterRelcacheCallback(result_descs_rel_changed, (Datum) 0);
		result_desc_callbacks_registered = true;
	}
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (desc->natts > ncolumns)
		elog(ERROR, "function %u returns %d columns, at most %d expected",
			 fn_oid, desc->natts, ncolumns);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != types[i])
			elog(ERROR, "column %d of the result of function %u has an unexpected type",
				 i + 1, fn_oid);
	}
	if (!OidIsValid(fn_oid) || n_result_descs == RESULT_DESCS)
	{
		/* not cacheable (no oid) or no room: for this call only */
		return BlessTupleDesc(CreateTupleDescCopy(desc));
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	result_descs[n_result_descs].typrelid = OidIsValid(desc->tdtypeid) ?
		get_typ_typrelid(desc->tdtypeid) : InvalidOid;
	desc = BlessTupleDesc(CreateTupleDescCopy(desc));
	MemoryContextSwitchTo(old);
	result_descs[n_result_descs].fn_oid = fn_oid;
	result_descs[n_result_descs].desc = desc;
	n_result_descs++;
	return desc;
}

/*
 * Return one row from a function with a composite result (or OUT
 * parameters): values/nulls hold ncolumns columns of the given types.
 */
Datum
return_one_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls,
			   const Oid *types, int ncolumns)
{
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(result_desc(fcinfo, types, ncolumns),
													  values, nulls)));
}

/*
 * verify_key(api_key): valid, or why not (malformed, unknown, expired,
 * revoked; key_id and workspace set for the last two).  Never raises an error for any
 * text, so the key cannot reach the server log through an error report.
 */
static const Oid verify_key_types[] = {BOOLOID, UUIDOID, TEXTOID, TEXTOID};

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
			KeyLookupResult found;

			key_hash_compute(key, len, hash);

			/*
			 * A cached key whose row is gone (the extension was dropped and
			 * created again) is unknown too.
			 */
			found = keycache_verify(hash, false, &info, NULL);
			if (found == KEY_UNKNOWN ||
				(workspace = KEYINFO_WORKSPACE(&info)) == NULL)
				reason = "unknown";
			else
			{
				key_id = palloc(sizeof(pg_uuid_t));
				*key_id = info.key_id;
				values[1] = UUIDPGetDatum(key_id);
				values[2] = CStringGetTextDatum(workspace);
				nulls[1] = nulls[2] = false;
				if (found == KEY_REVOKED)
					reason = "revoked";
				else if (info.expires_at <= GetCurrentTimestamp())
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
	return return_one_row(fcinfo, values, nulls, verify_key_types,
						  lengthof(verify_key_types));
}
