/*-------------------------------------------------------------------------
 *
 * request_log.c
 *		_request_log_by_key(): one page of one key's request log, newest
 *		first, read straight from the per-key btree of each day partition
 *		(no SPI, no planning).
 *
 * request_log() (sqlsrc/20_analytics.sql) calls this when a key is given
 * and the PL/pgSQL _request_log() otherwise (the by-resource and by-time
 * paths stay planner-driven: their indexes are the writer's to choose).
 *
 * The walk: the partitions of apikey_usage.request_log_raw come from the
 * relcache's partition descriptor (kept current by relcache invalidation,
 * so nothing is cached here), in bound order.  From the newest partition
 * that can hold a row below the upper bound (until, or the keyset cursor
 * before_requested_at) down to the one holding since, each partition's
 * (api_key_id, requested_at, request_id) btree is scanned backward with
 * the scan keys api_key_id = K and the time bounds, so it starts at the
 * newest qualifying entry and yields them in (requested_at, request_id)
 * descending order: exactly the order of the page.  The cursor's ties
 * (rows with requested_at = before_requested_at) are cut on request_id.
 * The other filters are applied to the heap tuple; the walk stops at
 * max_rows.  Heap tuples are fetched with the statement's snapshot,
 * registered for the duration of the walk.
 *
 * Rights: the function is not SECURITY DEFINER (a C definer function
 * would run as the extension owner, a superuser).  It reads the raw log
 * with the rights of the role the SQL definer functions run as
 * (apikey_usage_owner): that role must hold SELECT on request_log_raw,
 * as the PL/pgSQL _request_log() needs it.  Who may call it is decided by
 * EXECUTE grants (the reader and tenant roles, as for _request_log), and
 * what they see by _visible_key_ids(): a key the caller may not see
 * yields no rows, exactly like an unknown key.
 *
 * Status: the status filter uses the classes of apikey_usage.status_of()
 * (completed 100-399, rate_limited 429, failed otherwise), the ranges
 * _request_filter() also uses; the status column itself is computed by
 * request_log() with status_of(), so it has one definition.
 *
 * Shared state: none.  Locks: AccessShareLock on the parent (so no
 * partition is dropped or attached under the walk) and on each partition
 * and index scanned, held to the end of the transaction as a query would.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

#include "apikey_usage.h"

#define MAX_PAGE_ROWS	10000

/* result columns, in order */
enum
{
	OUT_REQUEST_ID,
	OUT_REQUESTED_AT,
	OUT_API_KEY_ID,
	OUT_METHOD,
	OUT_ENDPOINT,
	OUT_RESPONSE_CODE,
	OUT_RESOURCE_ID,
	NUM_OUT
};

/* the columns of request_log_raw read: RawLogColumn (apikey_usage.h) */

typedef enum
{
	STATUS_ANY,
	STATUS_COMPLETED,
	STATUS_RATE_LIMITED,
	STATUS_FAILED
} StatusFilter;

/* The filters and bounds of one call, checked. */
typedef struct PageRequest
{
	pg_uuid_t	key_id;
	text	   *resource_id;	/* NULL: any */
	text	   *method;			/* upper-cased; NULL: any */
	text	   *endpoint;		/* NULL: any */
	bool		has_code;
	int16		code;
	StatusFilter status;
	bool		has_since;
	TimestampTz since;			/* requested_at >= since */
	bool		has_until;
	TimestampTz until;			/* requested_at < until */
	bool		has_before;
	TimestampTz before_at;		/* (requested_at, request_id) < (before_at, */
	pg_uuid_t	before_id;		/* before_id) */
	int			max_rows;
} PageRequest;

/*
 * The status class of a response code, as apikey_usage.status_of()
 * defines it.
 */
static inline StatusFilter
status_class(int code)
{
	if (code >= 100 && code <= 399)
		return STATUS_COMPLETED;
	if (code == 429)
		return STATUS_RATE_LIMITED;
	return STATUS_FAILED;
}

/* Byte equality of two text values (the "C" collation of the columns). */
static inline bool
text_equal(text *a, text *b)
{
	Size		len = VARSIZE_ANY_EXHDR(a);

	return len == VARSIZE_ANY_EXHDR(b) && memcmp(VARDATA_ANY(a), VARDATA_ANY(b), len) == 0;
}

/*
 * May the calling role see key_id?  Asks apikey_usage._visible_key_ids()
 * (NULL: every key), looked up and called like SQL calls it, so that
 * whatever that function is (its C entry in src/tenants/caller.c, cached;
 * a stub in a test) decides.
 */
static bool
key_is_visible(const pg_uuid_t *key_id)
{
	LOCAL_FCINFO(fcinfo, 0);
	FmgrInfo	flinfo;
	Oid			function;
	Datum		visible;
	ArrayType  *array;
	Datum	   *ids;
	bool	   *nulls;
	int			n;
	int			i;

	function = LookupFuncName(list_make2(makeString("apikey_usage"), makeString("_visible_key_ids")),
							  0, NULL, false);
	fmgr_info(function, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 0, InvalidOid, NULL, NULL);
	visible = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		return true;
	array = DatumGetArrayTypeP(visible);
	deconstruct_array(array, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR, &ids, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i] && memcmp(DatumGetUUIDP(ids[i]), key_id, UUID_LEN) == 0)
			return true;
	return false;
}

/*
 * Check that the role the raw log is read as may read it (42501 if not):
 * apikey_usage_owner (the owner of the SQL definer functions, which
 * _request_log() runs as), else the extension's owner.
 */
static void
check_read_right(Oid parent)
{
	Oid			reader = get_role_oid("apikey_usage_owner", true);

	if (!OidIsValid(reader))
		reader = apikey_owner_oid();
	if (pg_class_aclcheck(parent, reader, ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(parent));
}

/*
 * Scan one partition's per-key btree backward and append the qualifying
 * rows to the tuplestore.  Returns the rows appended (at most want).
 */
static int
scan_partition(Oid partition_oid, const PageRequest *req, Snapshot snapshot,
			   Tuplestorestate *store, TupleDesc out_desc, int want)
{
	Relation	heap = table_open(partition_oid, AccessShareLock);
	AttrNumber	attnums[NUM_COLS];
	Oid			index_oid;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[5];
	int			nkeys = 0;
	int			got = 0;
	int			i;

	for (i = 0; i < NUM_COLS; i++)
	{
		attnums[i] = get_attnum(partition_oid, rawlog_col_names[i]);
		if (attnums[i] == InvalidAttrNumber)
			elog(ERROR, "apikey_usage: partition \"%s\" has no column \"%s\"",
				 RelationGetRelationName(heap), rawlog_col_names[i]);
	}
	/* its btree on (api_key_id, requested_at, request_id), all ascending */
	{
		AttrNumber	keys[3] = {attnums[COL_API_KEY_ID], attnums[COL_REQUESTED_AT],
		attnums[COL_REQUEST_ID]};

		index_oid = apikey_find_index(heap, keys, 3, false, BTREE_AM_OID);
	}
	if (!OidIsValid(index_oid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partition \"%s\" of the request log has no (api_key_id, requested_at, request_id) index",
						RelationGetRelationName(heap)),
				 errhint("Run SELECT apikey_usage._index_partition('apikey_usage.%s') as the extension owner.",
						 RelationGetRelationName(heap))));
	index = index_open(index_oid, AccessShareLock);

	ScanKeyInit(&keys[nkeys++], 1, BTEqualStrategyNumber, F_UUID_EQ,
				UUIDPGetDatum(unconstify(pg_uuid_t *, &req->key_id)));
	if (req->has_until)
		ScanKeyInit(&keys[nkeys++], 2, BTLessStrategyNumber, F_TIMESTAMP_LT,
					TimestampTzGetDatum(req->until));
	if (req->has_before)
		ScanKeyInit(&keys[nkeys++], 2, BTLessEqualStrategyNumber, F_TIMESTAMP_LE,
					TimestampTzGetDatum(req->before_at));
	if (req->has_since)
		ScanKeyInit(&keys[nkeys++], 2, BTGreaterEqualStrategyNumber, F_TIMESTAMP_GE,
					TimestampTzGetDatum(req->since));

	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (got < want && index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		Datum		values[NUM_OUT];
		bool		nulls[NUM_OUT];
		Datum		v[NUM_COLS];
		bool		isnull[NUM_COLS];
		int16		code;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		for (i = 0; i < NUM_COLS; i++)
		{
			v[i] = slot->tts_values[attnums[i] - 1];
			isnull[i] = slot->tts_isnull[attnums[i] - 1];
		}
		if (isnull[COL_REQUESTED_AT] || isnull[COL_REQUEST_ID] || isnull[COL_API_KEY_ID] ||
			isnull[COL_METHOD] || isnull[COL_ENDPOINT] || isnull[COL_RESPONSE_CODE])
			continue;			/* NOT NULL columns: cannot happen */

		/* the keyset cursor's ties: same requested_at, request_id not below */
		if (req->has_before &&
			DatumGetTimestampTz(v[COL_REQUESTED_AT]) == req->before_at &&
			memcmp(DatumGetUUIDP(v[COL_REQUEST_ID]), &req->before_id, UUID_LEN) >= 0)
			continue;

		code = DatumGetInt16(v[COL_RESPONSE_CODE]);
		if (req->has_code && code != req->code)
			continue;
		if (req->status != STATUS_ANY && status_class(code) != req->status)
			continue;
		if (req->method != NULL &&
			!text_equal(DatumGetTextPP(v[COL_METHOD]), req->method))
			continue;
		if (req->endpoint != NULL &&
			!text_equal(DatumGetTextPP(v[COL_ENDPOINT]), req->endpoint))
			continue;
		if (req->resource_id != NULL &&
			(isnull[COL_RESOURCE_ID] ||
			 !text_equal(DatumGetTextPP(v[COL_RESOURCE_ID]), req->resource_id)))
			continue;

		values[OUT_REQUEST_ID] = v[COL_REQUEST_ID];
		values[OUT_REQUESTED_AT] = v[COL_REQUESTED_AT];
		values[OUT_API_KEY_ID] = v[COL_API_KEY_ID];
		values[OUT_METHOD] = v[COL_METHOD];
		values[OUT_ENDPOINT] = v[COL_ENDPOINT];
		values[OUT_RESPONSE_CODE] = Int32GetDatum((int32) code);
		values[OUT_RESOURCE_ID] = v[COL_RESOURCE_ID];
		memset(nulls, false, sizeof(nulls));
		nulls[OUT_RESOURCE_ID] = isnull[COL_RESOURCE_ID];
		tuplestore_putvalues(store, out_desc, values, nulls);
		got++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return got;
}

/*
 * Walk the day partitions from the newest that may hold a row below the
 * upper bound down to the one holding since, filling the page.
 */
static void
walk_partitions(const PageRequest *req, Tuplestorestate *store, TupleDesc out_desc)
{
	Oid			namespace = get_namespace_oid("apikey_usage", false);
	Oid			parent_oid = get_relname_relid("request_log_raw", namespace);
	Relation	parent;
	PartitionDesc partdesc;
	PartitionBoundInfo bounds;
	Snapshot	snapshot;
	int			remaining = req->max_rows;
	int			j;

	if (!OidIsValid(parent_oid))
		elog(ERROR, "apikey_usage: relation \"request_log_raw\" is missing");
	check_read_right(parent_oid);
	parent = table_open(parent_oid, AccessShareLock);
	if (parent->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		elog(ERROR, "apikey_usage: request_log_raw is not partitioned");
	partdesc = RelationGetPartitionDesc(parent, true);
	bounds = partdesc->boundinfo;
	if (partdesc->nparts == 0)
	{
		table_close(parent, NoLock);
		return;
	}
	/* day partitions only: ranges on requested_at, no default, no sub-partitions */
	if (bounds->strategy != PARTITION_STRATEGY_RANGE || partition_bound_has_default(bounds))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("request_log_raw must have only range partitions by day")));

	snapshot = RegisterSnapshot(GetActiveSnapshot());

	/*
	 * bounds->datums[j] is the upper bound of partition indexes[j] (-1: a
	 * gap), whose lower bound is datums[j - 1]; ascending.
	 */
	for (j = bounds->ndatums - 1; j >= 0 && remaining > 0; j--)
	{
		int			part = bounds->indexes[j];
		bool		upper_finite = bounds->kind[j][0] == PARTITION_RANGE_DATUM_VALUE;
		bool		upper_min = bounds->kind[j][0] == PARTITION_RANGE_DATUM_MINVALUE;
		TimestampTz upper = DatumGetTimestampTz(bounds->datums[j][0]);
		bool		lower_finite = j > 0 && bounds->kind[j - 1][0] == PARTITION_RANGE_DATUM_VALUE;
		TimestampTz lower = lower_finite ? DatumGetTimestampTz(bounds->datums[j - 1][0]) : 0;

		/* rows of this partition are < upper: none >= since once upper <= since */
		if (req->has_since && (upper_min || (upper_finite && upper <= req->since)))
			break;
		if (part < 0)
			continue;
		if (!partdesc->is_leaf[part])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("request_log_raw must have only range partitions by day")));
		/* rows of this partition are >= lower: none below the upper bounds? */
		if (lower_finite &&
			((req->has_until && lower >= req->until) ||
			 (req->has_before && lower > req->before_at)))
			continue;
		remaining -= scan_partition(partdesc->oids[part], req, snapshot, store, out_desc, remaining);
	}
	UnregisterSnapshot(snapshot);
	table_close(parent, NoLock);
}

/*
 * _request_log_by_key(key_id, resource_id, since, until, status, method,
 * endpoint, response_code, max_rows, before_requested_at,
 * before_request_id): see the file header.  Checks and SQLSTATEs are
 * those of _request_log(), in the same order.
 */
PG_FUNCTION_INFO_V1(apikey_usage_request_log_by_key);
Datum
apikey_usage_request_log_by_key(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PageRequest req;
	int32		max_rows;

	memset(&req, 0, sizeof(req));
	InitMaterializedSRF(fcinfo, 0);

	if (PG_ARGISNULL(8))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_rows must not be NULL")));
	max_rows = PG_GETARG_INT32(8);
	if (max_rows < 1 || max_rows > MAX_PAGE_ROWS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_rows must be between 1 and %d", MAX_PAGE_ROWS)));
	req.max_rows = max_rows;
	req.has_since = !PG_ARGISNULL(2);
	if (req.has_since)
		req.since = PG_GETARG_TIMESTAMPTZ(2);
	req.has_until = !PG_ARGISNULL(3);
	if (req.has_until)
		req.until = PG_GETARG_TIMESTAMPTZ(3);
	if (req.has_since && req.has_until && req.since > req.until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("since must not be later than until"),
				 errdetail("since = %s, until = %s",
						   DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(req.since))),
						   DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(req.until))))));
	if (PG_ARGISNULL(9) != PG_ARGISNULL(10))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_requested_at and before_request_id go together"),
				 errhint("Pass the requested_at and request_id of the last row of the previous page.")));
	req.has_before = !PG_ARGISNULL(9);
	if (req.has_before)
	{
		req.before_at = PG_GETARG_TIMESTAMPTZ(9);
		req.before_id = *PG_GETARG_UUID_P(10);
	}
	req.status = STATUS_ANY;
	if (!PG_ARGISNULL(4))
	{
		char	   *status = text_to_cstring(PG_GETARG_TEXT_PP(4));

		if (strcmp(status, "completed") == 0)
			req.status = STATUS_COMPLETED;
		else if (strcmp(status, "rate_limited") == 0)
			req.status = STATUS_RATE_LIMITED;
		else if (strcmp(status, "failed") == 0)
			req.status = STATUS_FAILED;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown status \"%s\"", status),
					 errhint("status is one of completed, failed, rate_limited.")));
	}
	/* no key: request_log() takes the planner-driven path instead */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key_id must not be NULL")));
	req.key_id = *PG_GETARG_UUID_P(0);
	if (!key_is_visible(&req.key_id))
		return (Datum) 0;		/* a key the caller may not see: no rows */
	if (!PG_ARGISNULL(7))
	{
		int32		code = PG_GETARG_INT32(7);

		if (code < PG_INT16_MIN || code > PG_INT16_MAX)
			return (Datum) 0;	/* no smallint code equals it */
		req.has_code = true;
		req.code = (int16) code;
	}
	if (!PG_ARGISNULL(1))
		req.resource_id = PG_GETARG_TEXT_PP(1);
	if (!PG_ARGISNULL(5))
		req.method = DatumGetTextPP(DirectFunctionCall1Coll(upper, DEFAULT_COLLATION_OID,
															PG_GETARG_DATUM(5)));
	if (!PG_ARGISNULL(6))
		req.endpoint = PG_GETARG_TEXT_PP(6);
	walk_partitions(&req, rsinfo->setResult, rsinfo->setDesc);
	return (Datum) 0;
}
