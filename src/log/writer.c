/*-------------------------------------------------------------------------
 *
 * writer.c
 *		The one write path of the request log: every entry, from the ring,
 *		a spool file or import_requests, is checked, de-duplicated and
 *		written here, so the sources can never count differently.
 *
 * Per batch, in the caller's transaction:
 *	1. entries of another installation (the extension was dropped and
 *	   created again since they were logged) are discarded and counted;
 *	2. every entry is checked as log_request checks its arguments; one
 *	   that fails goes to apikey_usage.quarantine with the reason (or, for
 *	   an import, raises 22023 naming it).  The key id is not looked up
 *	   again: log_request checked it, possibly against a key its own
 *	   transaction had just created and not committed yet; the checksum
 *	   guards it against damage, the installation id against DROP/CREATE;
 *	3. duplicates are skipped: an entry whose request_id is already in
 *	   the batch or, when the caller chose the request id, already in the
 *	   raw log, with a requested_at in the same millisecond (the grain of
 *	   the time inside a UUIDv7; probed through the day partition's
 *	   (requested_at, request_id) index);
 *	4. the rest is written to each UTC day partition with the table access
 *	   method's multi-insert and index insertion (no SQL, no PL/pgSQL);
 *	5. the batch's counts per (key, UTC minute, method, endpoint, code) are
 *	   aggregated here and handed to apikey_usage._rollup_apply in one call.
 * When the tables refuse the batch (a data error: SQLSTATE classes 22, 23,
 * 54) it is retried entry by entry, each in a subtransaction, and the
 * refused ones are quarantined, so one bad entry never blocks the others.
 * Any other error (a lock timeout, a full disk) propagates: the caller
 * retries the whole batch later.
 *
 * Security: the writer runs only as apikey_usage_owner under
 * SECURITY_RESTRICTED_OPERATION (its callers switch once per batch, see
 * src/core/owner.c): that role owns the raw log and its partitions, so the
 * index expressions, CHECK constraints and anything else attached to them
 * that the inserts evaluate, and the SQL it runs (_ensure_partition,
 * _rollup_apply, the quarantine insert), never run as a superuser.
 *
 * Locking rules: the writer takes only the table locks of its inserts
 * (RowExclusiveLock).  The one background worker is the only writer of
 * live entries, so its duplicate probe (a fresh snapshot: everything
 * committed) sees every earlier batch.  An import runs beside it without
 * serialising (a long import must not stall live logging): an import and
 * the worker writing the same request at the same moment do not see each
 * other's uncommitted rows.  No shared memory of its own; outcome
 * counters and the heartbeat live in logbuf.c (atomics).  The per-process
 * caches here (installation id, prepared plans) are reset by a syscache
 * callback on pg_namespace, i.e. when schema apikey_usage is dropped or
 * created.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

#define INSERT_CHUNK		1000

/* the columns of request_log_raw, by RawLogColumn (apikey_usage.h) */
const char *const rawlog_col_names[NUM_COLS] = {
	"requested_at", "request_id", "api_key_id", "method", "endpoint",
	"response_code", "resource_id"
};

typedef struct DedupKey
{
	TimestampTz requested_at;
	pg_uuid_t	request_id;
} DedupKey;

static uint32 cached_installation = 0;
static bool callback_registered = false;
static SPIPlanPtr rollup_plan = NULL;
static SPIPlanPtr quarantine_plan = NULL;
static uint32 plans_installation = 0;

/*
 * Syscache callback: a schema was created, dropped or changed.  Forget
 * everything tied to the installation: its id, and the key ids this
 * backend has seen (a dropped installation's keys must become unknown).
 */
static void
namespace_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	cached_installation = 0;
	key_forget_workspaces();
}

/*
 * The installation id: the transaction id that created schema
 * apikey_usage (the raw xmin of its pg_namespace row, which freezing and
 * VACUUM FULL keep).  Every CREATE EXTENSION gets a new one, whereas the
 * schema's oid may be handed out again after a DROP.  Entries carry it so
 * that the writer discards the entries of a dropped installation.  0
 * (missing_ok) when the extension is not created.
 */
uint32
log_installation_id(bool missing_ok)
{
	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_changed, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACENAME, namespace_changed, (Datum) 0);
		callback_registered = true;
	}
	if (cached_installation == 0)
	{
		HeapTuple	tuple = SearchSysCache1(NAMESPACENAME, CStringGetDatum("apikey_usage"));

		if (!HeapTupleIsValid(tuple))
		{
			if (missing_ok)
				return 0;
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_SCHEMA),
					 errmsg("schema \"apikey_usage\" does not exist")));
		}
		cached_installation = (uint32) HeapTupleHeaderGetRawXmin(tuple->t_data);
		ReleaseSysCache(tuple);
	}
	return cached_installation;
}

/* RFC 9110 tchar, upper case only (entries are stored upper-cased) */
static inline bool
is_stored_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		(c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * Why an entry cannot be written, or NULL when it can: the checks of
 * log_request (except the key, checked per batch), applied again to what
 * was read back from the ring or a spool file.  now bounds the time.
 */
const char *
log_entry_problem(const LogEntry *entry, TimestampTz now)
{
	int			encoding = GetDatabaseEncoding();
	TimestampTz oldest;
	int			i;

	if (entry->response_code < 100 || entry->response_code > 599)
		return "response_code is not between 100 and 599";
	if (entry->method_len < 1 || entry->method_len > APIKEY_METHOD_MAX)
		return "method is not 1 to 32 bytes long";
	for (i = 0; i < entry->method_len; i++)
		if (!is_stored_tchar((unsigned char) entry->method[i]))
			return "method is not an upper-case HTTP method token";
	if (entry->endpoint_len < 1 || entry->endpoint_len > APIKEY_ENDPOINT_MAX ||
		entry->endpoint[0] != '/')
		return "endpoint does not start with \"/\" or is not 1 to 1024 bytes long";
	for (i = 0; i < entry->endpoint_len; i++)
	{
		unsigned char c = (unsigned char) entry->endpoint[i];

		if (c < 0x20 || c == 0x7f)
			return "endpoint contains control characters";
	}
	if (!pg_verify_mbstr(encoding, entry->endpoint, entry->endpoint_len, true))
		return "endpoint is not valid in the database encoding";
	if (entry->has_resource)
	{
		if (entry->resource_len > APIKEY_RESOURCE_MAX)
			return "resource_id is longer than 256 bytes";
		if (!pg_verify_mbstr(encoding, entry->resource, entry->resource_len, true))
			return "resource_id is not valid in the database encoding";
	}
	if (TIMESTAMP_NOT_FINITE(entry->requested_at) ||
		!IS_VALID_TIMESTAMP(entry->requested_at))
		return "requested_at is not a valid time";
	/* a day of slack below: the entry was in range when it was logged */
	oldest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													 TimestampTzGetDatum(now),
													 IntervalPGetDatum(apikey_retention())));
	if (entry->requested_at < oldest - USECS_PER_DAY ||
		entry->requested_at > now + 2 * USECS_PER_HOUR)
		return "requested_at is outside [now() - apikey_usage.retention, now() + 1 hour]";
	return NULL;
}

/* ---- per-batch helpers ---- */

/* The installation changed (or first use): drop what belonged to the old. */
static void
reset_for_installation(uint32 installation)
{
	if (plans_installation != installation)
	{
		if (rollup_plan != NULL)
			SPI_freeplan(rollup_plan);
		if (quarantine_plan != NULL)
			SPI_freeplan(quarantine_plan);
		rollup_plan = quarantine_plan = NULL;
		plans_installation = installation;
	}
}

/* A one-dimensional array of n values of a built-in type. */
static ArrayType *
make_array(Datum *values, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		byval;
	char		align;
	int			dims[1];
	int			lbs[1] = {1};

	dims[0] = n;
	get_typlenbyvalalign(type, &typlen, &byval, &align);
	return construct_md_array(values, nulls, 1, dims, lbs, type, typlen, byval, align);
}

/* The UTC day number (days since 2000-01-01) of a time. */
static inline int32
utc_day(TimestampTz ts)
{
	int64		day = ts / USECS_PER_DAY;

	if (ts < 0 && ts % USECS_PER_DAY != 0)
		day--;
	return (int32) day;
}

/* The day partition of request_log_raw for a UTC day, created if missing. */
static Oid
day_partition(int32 day, Oid namespace, bool create)
{
	char		name[NAMEDATALEN];
	int			year,
				month,
				mday;
	Oid			relid;

	j2date(day + POSTGRES_EPOCH_JDATE, &year, &month, &mday);
	snprintf(name, sizeof(name), "request_log_raw_p%04d%02d%02d", year, month, mday);
	relid = get_relname_relid(name, namespace);
	if (OidIsValid(relid) || !create)
		return relid;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Datum		arg = TimestampTzGetDatum((TimestampTz) day * USECS_PER_DAY);
		Oid			argtype = TIMESTAMPTZOID;

		if (SPI_execute_with_args("SELECT apikey_usage._ensure_partition($1)",
								  1, &argtype, &arg, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "apikey_usage: could not create partition \"%s\"", name);
	}
	SPI_finish();
	relid = get_relname_relid(name, namespace);
	if (!OidIsValid(relid))
		elog(ERROR, "apikey_usage: partition \"%s\" is missing", name);
	return relid;
}

/* The partition's plain (requested_at, request_id, ...) index, if any. */
static Relation
find_probe_index(ResultRelInfo *rri, const AttrNumber *attnums)
{
	int			i;

	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		Relation	index = rri->ri_IndexRelationDescs[i];
		Form_pg_index form = index->rd_index;

		if (form->indnkeyatts >= 2 &&
			form->indkey.values[0] == attnums[COL_REQUESTED_AT] &&
			form->indkey.values[1] == attnums[COL_REQUEST_ID] &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			index->rd_rel->relam == BTREE_AM_OID)
			return index;
	}
	return NULL;
}

/* The millisecond of a time (the dedup grain: a UUIDv7 carries ms). */
static inline TimestampTz
millisecond_of(TimestampTz ts)
{
	TimestampTz rem = ts % 1000;

	if (rem < 0)
		rem += 1000;
	return ts - rem;
}

/* Is request_id already in the partition within the entry's millisecond? */
static bool
already_logged(Relation heap, Relation index, Snapshot snapshot,
			   TupleTableSlot *slot, const LogEntry *entry)
{
	ScanKeyData keys[3];
	IndexScanDesc scan;
	bool		found;
	TimestampTz ms = millisecond_of(entry->requested_at);

	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_TIMESTAMP_GE,
				TimestampTzGetDatum(ms));
	ScanKeyInit(&keys[1], 1, BTLessStrategyNumber, F_TIMESTAMP_LT,
				TimestampTzGetDatum(ms + 1000));
	ScanKeyInit(&keys[2], 2, BTEqualStrategyNumber, F_UUID_EQ,
				UUIDPGetDatum(unconstify(pg_uuid_t *, &entry->request_id)));
	scan = index_beginscan(heap, index, snapshot, 3, 0);
	index_rescan(scan, keys, 3, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	ExecClearTuple(slot);
	return found;
}

/*
 * Write the entries of one UTC day into its partition: probe the caller-
 * chosen ids, then multi-insert and insert the index tuples.  Entries
 * found already logged get dup[i] = true and are not written.  Returns
 * the rows written.
 */
static int64
insert_day(Oid relid, LogEntry **rows, bool *dup, int n)
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	BulkInsertState bistate = GetBulkInsertState();
	CommandId	cid = GetCurrentCommandId(true);
	MemoryContext chunk_context;
	MemoryContext old;
	AttrNumber	attnums[NUM_COLS];
	int			field_of[MaxHeapAttributeNumber];
	TupleTableSlot *slots[INSERT_CHUNK];
	Relation	probe_index;
	int64		written = 0;
	int			nslots = 0;
	int			i;
	int			a;
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	bool		check_constraints = (desc->constr != NULL);

	/* a range table of one entry, so constraint errors can name the row */
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	ExecInitRangeTable(estate, list_make1(rte));
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);

	for (i = 0; i < NUM_COLS; i++)
		attnums[i] = InvalidAttrNumber;
	for (a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute attr = TupleDescAttr(desc, a);

		field_of[a] = -1;
		if (attr->attisdropped)
			continue;
		for (i = 0; i < NUM_COLS; i++)
			if (strcmp(NameStr(attr->attname), rawlog_col_names[i]) == 0)
			{
				field_of[a] = i;
				attnums[i] = attr->attnum;
			}
	}

	/* duplicates of requests already in the table (caller-chosen ids) */
	probe_index = find_probe_index(rri, attnums);
	for (i = 0; i < n; i++)
		if (rows[i]->id_given)
			break;
	if (i < n)
	{
		Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
		TupleTableSlot *probe_slot = table_slot_create(rel, NULL);

		if (probe_index == NULL)
			elog(ERROR, "apikey_usage: partition \"%s\" has no (requested_at, request_id) index",
				 RelationGetRelationName(rel));
		for (; i < n; i++)
			if (rows[i]->id_given && !dup[i])
				dup[i] = already_logged(rel, probe_index, snapshot, probe_slot, rows[i]);
		ExecDropSingleTupleTableSlot(probe_slot);
		UnregisterSnapshot(snapshot);
	}

	chunk_context = AllocSetContextCreate(CurrentMemoryContext, "apikey_usage insert chunk",
										  ALLOCSET_DEFAULT_SIZES);
	/* slots are created lazily, up to INSERT_CHUNK of them */
	memset(slots, 0, sizeof(slots));
	old = MemoryContextSwitchTo(chunk_context);
	for (i = 0; i <= n; i++)
	{
		if (i < n && !dup[i])
		{
			const LogEntry *e = rows[i];
			TupleTableSlot *slot;

			if (slots[nslots] == NULL)
			{
				MemoryContextSwitchTo(old);
				slots[nslots] = table_slot_create(rel, NULL);
				MemoryContextSwitchTo(chunk_context);
			}
			slot = slots[nslots++];
			ExecClearTuple(slot);
			for (a = 0; a < desc->natts; a++)
			{
				slot->tts_isnull[a] = false;
				switch (field_of[a])
				{
					case COL_REQUESTED_AT:
						slot->tts_values[a] = TimestampTzGetDatum(e->requested_at);
						break;
					case COL_REQUEST_ID:
						slot->tts_values[a] = UUIDPGetDatum(unconstify(pg_uuid_t *, &e->request_id));
						break;
					case COL_API_KEY_ID:
						slot->tts_values[a] = UUIDPGetDatum(unconstify(pg_uuid_t *, &e->key_id));
						break;
					case COL_METHOD:
						slot->tts_values[a] = PointerGetDatum(cstring_to_text_with_len(e->method, e->method_len));
						break;
					case COL_ENDPOINT:
						slot->tts_values[a] = PointerGetDatum(cstring_to_text_with_len(e->endpoint, e->endpoint_len));
						break;
					case COL_RESPONSE_CODE:
						slot->tts_values[a] = Int16GetDatum(e->response_code);
						break;
					case COL_RESOURCE_ID:
						if (e->has_resource)
							slot->tts_values[a] = PointerGetDatum(cstring_to_text_with_len(e->resource, e->resource_len));
						else
							slot->tts_isnull[a] = true;
						break;
					default:
						slot->tts_isnull[a] = true;
						break;
				}
			}
			ExecStoreVirtualTuple(slot);
			/* NOT NULL and CHECK constraints, as COPY checks them */
			if (check_constraints)
				ExecConstraints(rri, slot, estate);
		}
		if (nslots > 0 && (nslots == INSERT_CHUNK || i == n))
		{
			int			s;

			table_multi_insert(rel, slots, nslots, cid, 0, bistate);
			for (s = 0; s < nslots; s++)
			{
				List	   *recheck;

				recheck = ExecInsertIndexTuples(rri, slots[s], estate, false, false, NULL, NIL);
				list_free(recheck);
				ResetPerTupleExprContext(estate);
			}
			written += nslots;
			nslots = 0;
			MemoryContextReset(chunk_context);
			/* callers waiting for room in a full ring see progress */
			logbuf_heartbeat();
		}
	}
	MemoryContextSwitchTo(old);

	for (i = 0; i < INSERT_CHUNK && slots[i] != NULL; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(chunk_context);
	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return written;
}

/* qsort: day order, then the ring's order (the index stays stable) */
static int
compare_by_day(const void *a, const void *b)
{
	const LogEntry *ea = *(LogEntry *const *) a;
	const LogEntry *eb = *(LogEntry *const *) b;
	int32		da = utc_day(ea->requested_at);
	int32		db = utc_day(eb->requested_at);

	if (da != db)
		return da < db ? -1 : 1;
	return ea < eb ? -1 : (ea > eb ? 1 : 0);
}

/* The start of the UTC minute of a time (the grain handed to the rollups). */
static inline TimestampTz
minute_of(TimestampTz ts)
{
	TimestampTz rem = ts % USECS_PER_MINUTE;

	if (rem < 0)
		rem += USECS_PER_MINUTE;
	return ts - rem;
}

/* qsort: the rollup group (key, minute, method, endpoint, code) */
static int
compare_by_group(const void *a, const void *b)
{
	const LogEntry *ea = *(LogEntry *const *) a;
	const LogEntry *eb = *(LogEntry *const *) b;
	int			c;
	TimestampTz ma,
				mb;

	c = memcmp(&ea->key_id, &eb->key_id, sizeof(pg_uuid_t));
	if (c != 0)
		return c;
	ma = minute_of(ea->requested_at);
	mb = minute_of(eb->requested_at);
	if (ma != mb)
		return ma < mb ? -1 : 1;
	c = memcmp(ea->method, eb->method, Min(ea->method_len, eb->method_len));
	if (c != 0 || ea->method_len != eb->method_len)
		return c != 0 ? c : (ea->method_len < eb->method_len ? -1 : 1);
	c = memcmp(ea->endpoint, eb->endpoint, Min(ea->endpoint_len, eb->endpoint_len));
	if (c != 0 || ea->endpoint_len != eb->endpoint_len)
		return c != 0 ? c : (ea->endpoint_len < eb->endpoint_len ? -1 : 1);
	return (int) ea->response_code - (int) eb->response_code;
}

/*
 * Add the written entries to the rollups: counts per group, aggregated
 * here, applied by apikey_usage._rollup_apply in one call.
 */
static void
apply_rollups(LogEntry **rows, int n)
{
	Datum	   *keys = palloc(sizeof(Datum) * n);
	Datum	   *minutes = palloc(sizeof(Datum) * n);
	Datum	   *methods = palloc(sizeof(Datum) * n);
	Datum	   *endpoints = palloc(sizeof(Datum) * n);
	Datum	   *codes = palloc(sizeof(Datum) * n);
	Datum	   *counts = palloc(sizeof(Datum) * n);
	Datum		args[6];
	int			groups = 0;
	int			i;

	if (n == 0)
		return;
	qsort(rows, n, sizeof(LogEntry *), compare_by_group);
	for (i = 0; i < n; i++)
	{
		const LogEntry *e = rows[i];

		if (i > 0 && compare_by_group(&rows[i - 1], &rows[i]) == 0)
		{
			counts[groups - 1] = Int64GetDatum(DatumGetInt64(counts[groups - 1]) + 1);
			continue;
		}
		keys[groups] = UUIDPGetDatum(unconstify(pg_uuid_t *, &e->key_id));
		minutes[groups] = TimestampTzGetDatum(minute_of(e->requested_at));
		methods[groups] = PointerGetDatum(cstring_to_text_with_len(e->method, e->method_len));
		endpoints[groups] = PointerGetDatum(cstring_to_text_with_len(e->endpoint, e->endpoint_len));
		codes[groups] = Int16GetDatum(e->response_code);
		counts[groups] = Int64GetDatum(1);
		groups++;
	}
	args[0] = PointerGetDatum(make_array(keys, NULL, groups, UUIDOID));
	args[1] = PointerGetDatum(make_array(minutes, NULL, groups, TIMESTAMPTZOID));
	args[2] = PointerGetDatum(make_array(methods, NULL, groups, TEXTOID));
	args[3] = PointerGetDatum(make_array(endpoints, NULL, groups, TEXTOID));
	args[4] = PointerGetDatum(make_array(codes, NULL, groups, INT2OID));
	args[5] = PointerGetDatum(make_array(counts, NULL, groups, INT8OID));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (rollup_plan == NULL)
	{
		Oid			types[6] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, INT2ARRAYOID, INT8ARRAYOID};
		SPIPlanPtr	plan = SPI_prepare("SELECT apikey_usage._rollup_apply($1, $2, $3, $4, $5, $6)",
									   6, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		rollup_plan = plan;
	}
	if (SPI_execute_plan(rollup_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "apikey_usage: applying the rollups failed");
	SPI_finish();
}

/*
 * Write accepted entries (no duplicates inside the list): per day
 * partition, then the rollups.  dup[] receives the entries found already
 * logged.  Returns the rows written.
 */
static int64
insert_rows(LogEntry **rows, bool *dup, int n, Oid namespace)
{
	int64		written = 0;
	int			start = 0;
	int			i;
	int			nfresh = 0;
	LogEntry  **fresh;

	if (n == 0)
		return 0;
	qsort(rows, n, sizeof(LogEntry *), compare_by_day);
	while (start < n)
	{
		int32		day = utc_day(rows[start]->requested_at);
		int			end = start;

		while (end < n && utc_day(rows[end]->requested_at) == day)
			end++;
		written += insert_day(day_partition(day, namespace, true),
							  rows + start, dup + start, end - start);
		start = end;
	}
	fresh = palloc(sizeof(LogEntry *) * n);
	for (i = 0; i < n; i++)
		if (!dup[i])
			fresh[nfresh++] = rows[i];
	apply_rollups(fresh, nfresh);
	/* the rollups of a large batch take a while: show progress again */
	logbuf_heartbeat();
	return written;
}

/* Classes of errors that mean "the tables refuse this data". */
static bool
is_data_error(int sqlerrcode)
{
	int			class = ERRCODE_TO_CATEGORY(sqlerrcode);

	return class == ERRCODE_DATA_EXCEPTION ||
		class == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		class == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/*
 * Run insert_rows in a subtransaction.  Returns NULL on success, or the
 * message of a data error (the subtransaction rolled back); other errors
 * are re-thrown.
 */
static char *
try_insert_rows(LogEntry **rows, bool *dup, int n, Oid namespace, int64 *written)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile failure = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		*written = insert_rows(rows, dup, n, namespace);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		if (!is_data_error(edata->sqlerrcode))
			ReThrowError(edata);
		failure = psprintf("refused by the tables: %s", edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return failure;
}

/* Record quarantined entries, with their reasons, in one statement. */
static void
quarantine_entries(LogEntry **rows, const char **reasons, int n,
				   WriterSource source)
{
	Datum	   *reason_d = palloc(sizeof(Datum) * n);
	Datum	   *id_d = palloc(sizeof(Datum) * n);
	Datum	   *at_d = palloc(sizeof(Datum) * n);
	bool	   *at_null = palloc(sizeof(bool) * n);
	Datum	   *key_d = palloc(sizeof(Datum) * n);
	Datum	   *code_d = palloc(sizeof(Datum) * n);
	Datum	   *method_d = palloc(sizeof(Datum) * n);
	Datum	   *endpoint_d = palloc(sizeof(Datum) * n);
	Datum	   *resource_d = palloc(sizeof(Datum) * n);
	bool	   *resource_null = palloc(sizeof(bool) * n);
	Datum		args[10];
	int			i;

	if (n == 0)
		return;
	for (i = 0; i < n; i++)
	{
		const LogEntry *e = rows[i];

		reason_d[i] = CStringGetTextDatum(reasons[i]);
		id_d[i] = UUIDPGetDatum(unconstify(pg_uuid_t *, &e->request_id));
		at_null[i] = TIMESTAMP_NOT_FINITE(e->requested_at) || !IS_VALID_TIMESTAMP(e->requested_at);
		at_d[i] = TimestampTzGetDatum(e->requested_at);
		key_d[i] = UUIDPGetDatum(unconstify(pg_uuid_t *, &e->key_id));
		code_d[i] = Int32GetDatum((int32) e->response_code);
		method_d[i] = PointerGetDatum(cstring_to_text_with_len(e->method, Min(e->method_len, APIKEY_METHOD_MAX)));
		endpoint_d[i] = PointerGetDatum(cstring_to_text_with_len(e->endpoint, Min(e->endpoint_len, APIKEY_ENDPOINT_MAX)));
		resource_null[i] = !e->has_resource;
		resource_d[i] = PointerGetDatum(cstring_to_text_with_len(e->resource, Min(e->resource_len, APIKEY_RESOURCE_MAX)));
	}
	args[0] = CStringGetTextDatum(source == WRITER_RING ? "ring" :
								  source == WRITER_SPOOL ? "spool" : "import");
	args[1] = PointerGetDatum(make_array(reason_d, NULL, n, TEXTOID));
	args[2] = PointerGetDatum(make_array(id_d, NULL, n, UUIDOID));
	args[3] = PointerGetDatum(make_array(at_d, at_null, n, TIMESTAMPTZOID));
	args[4] = PointerGetDatum(make_array(key_d, NULL, n, UUIDOID));
	args[5] = PointerGetDatum(make_array(code_d, NULL, n, INT4OID));
	/* raw bytes: they may not be valid text */
	args[6] = PointerGetDatum(make_array(method_d, NULL, n, BYTEAOID));
	args[7] = PointerGetDatum(make_array(endpoint_d, NULL, n, BYTEAOID));
	args[8] = PointerGetDatum(make_array(resource_d, resource_null, n, BYTEAOID));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (quarantine_plan == NULL)
	{
		Oid			types[9] = {TEXTOID, TEXTARRAYOID, UUIDARRAYOID, TIMESTAMPTZARRAYOID,
			UUIDARRAYOID, INT4ARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID};
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO apikey_usage.quarantine"
									   " (source, reason, request_id, requested_at, api_key_id,"
									   "  response_code, method, endpoint, resource_id)"
									   " SELECT $1, q.* FROM unnest($2, $3, $4, $5, $6, $7, $8, $9)"
									   " AS q(reason, request_id, requested_at, api_key_id, response_code,"
									   "      method, endpoint, resource_id)",
									   9, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		quarantine_plan = plan;
	}
	if (SPI_execute_plan(quarantine_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "apikey_usage: writing the quarantine failed");
	SPI_finish();
	for (i = 0; i < n; i++)
	{
		char		id[UUID_LEN * 2 + 5];

		snprintf(id, sizeof(id), "%s",
				 DatumGetCString(DirectFunctionCall1(uuid_out, id_d[i])));
		ereport(LOG,
				(errmsg("apikey_usage: log entry %s from the %s quarantined: %s",
						id, source == WRITER_RING ? "log buffer" :
						source == WRITER_SPOOL ? "spool" : "import", reasons[i])));
	}
}

/*
 * Write a batch: see the file header.  damage[i], when not NULL, is a
 * problem the reader already found (a checksum mismatch): the entry is
 * quarantined.  For WRITER_IMPORT every problem raises 22023 naming the
 * entry's 1-based index instead (the caller checked its arguments; all or
 * nothing), and nothing is quarantined.  Runs in the caller's transaction
 * with the rights of the caller, which is always apikey_usage_owner in a
 * security-restricted operation (apikey_owner_begin, owner.c: the worker's
 * transactions and import_requests): the index expressions, constraints
 * and SQL it evaluates on that role's tables run as that role.
 */
void
writer_write(LogEntry *entries, const char *const *damage, int count,
			 WriterSource source, WriterCounts *counts)
{
	uint32		installation;
	Oid			namespace;
	TimestampTz now = GetCurrentTimestamp();
	bool	   *skip = palloc0(sizeof(bool) * count);
	const char **reasons = palloc(sizeof(char *) * count);
	LogEntry  **bad = palloc(sizeof(LogEntry *) * count);
	LogEntry  **rows = palloc(sizeof(LogEntry *) * count);
	bool	   *dup;
	int			nbad = 0;
	int			nrows = 0;
	bool		any_given = false;
	HTAB	   *seen = NULL;
	int			i;
	char	   *failure;
	int64		written = 0;

	memset(counts, 0, sizeof(*counts));
	if (count == 0)
		return;

	installation = log_installation_id(false);
	namespace = get_namespace_oid("apikey_usage", false);
	reset_for_installation(installation);

	/* 1. other installations, 2. checks */
	for (i = 0; i < count; i++)
	{
		const char *problem;

		if (source != WRITER_IMPORT && entries[i].installation != installation)
		{
			skip[i] = true;
			counts->discarded++;
			continue;
		}
		problem = (damage != NULL && damage[i] != NULL) ? damage[i] :
			log_entry_problem(&entries[i], now);
		if (problem != NULL)
		{
			if (source == WRITER_IMPORT)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("element %d: %s", i + 1, problem)));
			skip[i] = true;
			reasons[nbad] = problem;
			bad[nbad++] = &entries[i];
		}
	}

	/* 3. duplicates inside the batch (the first one wins) */
	for (i = 0; i < count; i++)
		if (!skip[i] && entries[i].id_given)
			any_given = true;
	if (any_given)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(DedupKey);
		ctl.entrysize = sizeof(DedupKey);
		ctl.hcxt = CurrentMemoryContext;
		seen = hash_create("apikey_usage batch ids", count, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	for (i = 0; i < count; i++)
	{
		if (skip[i])
			continue;
		if (seen != NULL)
		{
			DedupKey	key;
			bool		found;

			memset(&key, 0, sizeof(key));
			key.requested_at = millisecond_of(entries[i].requested_at);
			key.request_id = entries[i].request_id;
			hash_search(seen, &key, HASH_ENTER, &found);
			if (found)
			{
				counts->duplicates++;
				continue;
			}
		}
		rows[nrows++] = &entries[i];
	}

	/* 4, 5: write; on a data error, entry by entry */
	dup = palloc0(sizeof(bool) * Max(nrows, 1));
	if (source == WRITER_IMPORT)
		written = insert_rows(rows, dup, nrows, namespace);
	else if ((failure = try_insert_rows(rows, dup, nrows, namespace, &written)) != NULL)
	{
		written = 0;
		for (i = 0; i < nrows; i++)
		{
			int64		one = 0;

			dup[i] = false;
			failure = try_insert_rows(&rows[i], &dup[i], 1, namespace, &one);
			if (failure != NULL)
			{
				reasons[nbad] = failure;
				bad[nbad++] = rows[i];
			}
			written += one;
		}
	}
	for (i = 0; i < nrows; i++)
		if (dup[i])
			counts->duplicates++;
	counts->written = written;
	counts->quarantined = nbad;
	quarantine_entries(bad, reasons, nbad, source);
	if (counts->discarded > 0)
		ereport(LOG,
				(errmsg("apikey_usage: discarded " INT64_FORMAT " log entries of a dropped installation of the extension",
						counts->discarded)));
	logbuf_count_outcome(counts->duplicates, counts->quarantined, counts->discarded);
}
