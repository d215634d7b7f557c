/*-------------------------------------------------------------------------
 *
 * import.c
 *		import_requests(source regclass): bulk-load request history through
 *		the one write path (writer.c).
 *
 * Why this cannot escalate privileges: import_requests is SECURITY
 * INVOKER.  The caller's relation (a table, a view, whatever its columns,
 * defaults, casts or functions do) is read through SPI with the caller's
 * own rights, so any code it runs, runs as the caller.  Only the plain
 * values read (uuid, timestamptz, text, integer) are handed to the writer,
 * and only around that call does the function switch to the role that
 * owns the definer functions (apikey_usage_owner, not a superuser), in a
 * restricted security context with search_path pinned to
 * pg_catalog, pg_temp (apikey_owner_begin, src/core/owner.c; restored on
 * error too): the writer evaluates nothing the caller supplied, and what
 * the owner role attached to its tables runs as that role, never as a
 * superuser caller.
 *
 * Shared state: none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

/*
 * Rows per writer call.  Each call pre-aggregates its rows per (key,
 * minute, method, endpoint, code) and upserts every rollup grain once:
 * on time-ordered history, 50,000 rows (about 70 MB of LogEntry) give
 * markedly fewer rollup upserts per row than 10,000 (a 1M-row import of
 * the bench dataset at 3M rows: 48 s against 90 s).
 */
#define IMPORT_CHUNK	50000

/*
 * Write entries as the role that owns the definer functions
 * (apikey_usage_owner, not a superuser; the extension owner when that
 * role does not exist), in a restricted security context with a pinned
 * search_path (owner.c).
 */
static void
write_as_owner(LogEntry *entries, int n, WriterCounts *counts)
{
	OwnerSwitch sw = OWNER_SWITCH_INIT;

	apikey_owner_begin(&sw);
	PG_TRY();
	{
		writer_write(entries, NULL, n, WRITER_IMPORT, counts);
	}
	PG_CATCH();
	{
		apikey_owner_abort(&sw);
		PG_RE_THROW();
	}
	PG_END_TRY();
	apikey_owner_end(&sw);
}

/*
 * import_requests(source): see the file header.  Every row is checked as
 * log_request checks its arguments (22004 / 22023 naming the first bad
 * row, 1-based in the order read); all or nothing.  Rows whose (requested_at,
 * request_id) is already logged are skipped, so re-importing rows that
 * carry their request_id adds nothing.  Returns the rows written.
 */
PG_FUNCTION_INFO_V1(apikey_usage_import_requests);
Datum
apikey_usage_import_requests(PG_FUNCTION_ARGS)
{
	static const char *const required[] = {"requested_at", "api_key_id", "method",
	"endpoint", "response_code"};
	Oid			source;
	char	   *source_name;
	char	   *query;
	bool		has_request_id;
	bool		has_resource_id;
	Portal		portal;
	LogEntry   *entries;
	uint32		installation;
	TimestampTz tx_now = GetCurrentTransactionStartTimestamp();
	int64		row = 0;
	int64		written = 0;
	int			i;

	apikey_require_preload();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be NULL")));
	source = PG_GETARG_OID(0);
	source_name = DatumGetCString(DirectFunctionCall1(regclassout, ObjectIdGetDatum(source)));
	if (get_rel_relkind(source) == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", source)));
	for (i = 0; i < lengthof(required); i++)
		if (get_attnum(source, required[i]) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("source %s has no column %s", source_name, required[i]),
					 errhint("Columns: request_id (optional), requested_at, api_key_id, method, endpoint, response_code, resource_id (optional).")));
	has_request_id = get_attnum(source, "request_id") != InvalidAttrNumber;
	has_resource_id = get_attnum(source, "resource_id") != InvalidAttrNumber;

	/* read with the caller's rights: whatever the source runs, runs as them */
	query = psprintf("SELECT %s, s.requested_at::pg_catalog.timestamptz, s.api_key_id::pg_catalog.uuid,"
					 " s.method::pg_catalog.text, s.endpoint::pg_catalog.text,"
					 " s.response_code::pg_catalog.int4, %s FROM %s s",
					 has_request_id ? "s.request_id::pg_catalog.uuid" : "NULL::pg_catalog.uuid",
					 has_resource_id ? "s.resource_id::pg_catalog.text" : "NULL::pg_catalog.text",
					 source_name);
	installation = log_installation_id(false);
	request_element_word = "source row";
	entries = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(LogEntry) * IMPORT_CHUNK);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		r;
		int			n;
		WriterCounts counts;

		SPI_cursor_fetch(portal, true, IMPORT_CHUNK);
		n = (int) SPI_processed;
		if (n == 0)
			break;
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tuple = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull[7];
			Datum		v[7];
			LogEntry   *entry = &entries[r];
			TimestampTz at;
			int			c;
			int			element;

			for (c = 0; c < 7; c++)
				v[c] = SPI_getbinval(tuple, desc, c + 1, &isnull[c]);
			row++;
			element = (int) Min(row, PG_INT32_MAX);
			if (isnull[1])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("source row %d: requested_at must not be NULL", element)));
			at = DatumGetTimestampTz(v[1]);
			entry->installation = installation;
			request_check_fields(isnull[3] ? NULL : DatumGetTextPP(v[3]),
								 isnull[4] ? NULL : DatumGetTextPP(v[4]),
								 isnull[6] ? NULL : DatumGetTextPP(v[6]),
								 element, entry);
			request_check_rest(isnull[2] ? NULL : DatumGetUUIDP(v[2]),
							   isnull[5] ? 0 : DatumGetInt32(v[5]), isnull[5],
							   isnull[0] ? NULL : DatumGetUUIDP(v[0]),
							   &at, tx_now, element, entry);
		}
		SPI_freetuptable(SPI_tuptable);
		write_as_owner(entries, n, &counts);
		written += counts.written;
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	PG_RETURN_INT64(written);
}
