/*-------------------------------------------------------------------------
 *
 * stats.c
 *		runtime_stats, flush(), and the live last_used_at for the keys view.
 *
 * Shared state: none of its own; reads counters through keycache.c and
 * logbuf.c, which own them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

PG_FUNCTION_INFO_V1(apikey_usage_runtime_stats);
Datum
apikey_usage_runtime_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[24];
	bool		nulls[24];
	int64		duplicates,
				quarantined,
				discarded;
	int64		logged,
				flushed,
				fallbacks,
				errors,
				recovered;
	KeyCacheStats kc;
	TimestampTz last_flush;
	int			worker_pid;
	uint64		reserved;

	apikey_require_preload();
	reserved = logbuf_reserved_seq();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	logbuf_stats(&logged, &flushed, &fallbacks, &errors, &last_flush,
				 &worker_pid, &recovered);
	keycache_stats(&kc);
	memset(nulls, false, sizeof(nulls));

	values[0] = Int64GetDatum((int64) logbuf_capacity());
	values[1] = Int64GetDatum((int64) (reserved - Min(reserved, logbuf_flushed_seq())));
	values[2] = Int64GetDatum((int64) logbuf_file_bytes());
	values[3] = Int64GetDatum(logged);
	values[4] = Int64GetDatum(flushed);
	values[5] = Int64GetDatum(fallbacks);
	values[6] = Int64GetDatum(errors);
	values[7] = Int64GetDatum((int64) apikey_max_keys);
	values[8] = Int64GetDatum(kc.size);
	values[9] = Int64GetDatum(kc.hits);
	values[10] = Int64GetDatum(kc.misses);
	values[11] = Int64GetDatum(kc.evictions);
	values[12] = TimestampTzGetDatum(last_flush);
	nulls[12] = (last_flush == 0);
	values[13] = Int32GetDatum(worker_pid);
	nulls[13] = (worker_pid == 0);
	values[14] = Int64GetDatum(recovered);
	values[15] = Int64GetDatum((int64) keycache_bytes());
	/* key cache at scale (0.2.0) */
	values[16] = Float8GetDatum(kc.hits + kc.misses == 0 ? 0.0 :
								(double) kc.misses / (double) (kc.hits + kc.misses));
	values[17] = Int32GetDatum(kc.partitions);
	values[18] = Int64GetDatum(kc.last_used_queued);
	values[19] = Int64GetDatum(kc.last_used_dropped);
	values[20] = Int64GetDatum(kc.last_used_pending);
	logbuf_outcome_stats(&duplicates, &quarantined, &discarded);
	values[21] = Int64GetDatum(duplicates);
	values[22] = Int64GetDatum(quarantined);
	values[23] = Int64GetDatum(discarded);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * flush(): wait until everything logged before the call is in the tables.
 */
PG_FUNCTION_INFO_V1(apikey_usage_flush);
Datum
apikey_usage_flush(PG_FUNCTION_ARGS)
{
	uint64		target;
	uint64		before;
	uint64		after;
	char	  **spooled;
	int			nspooled;

	apikey_require_preload();
	apikey_require_primary("flush");
	before = logbuf_flushed_seq();
	target = logbuf_reserved_seq();
	nspooled = spool_list(&spooled, INT_MAX);
	if (target > before)
		logbuf_wait_flushed(target);
	logbuf_wait_spooled(spooled, nspooled);
	after = Min(logbuf_flushed_seq(), target);
	PG_RETURN_INT64((int64) (after > before ? after - before : 0) + nspooled);
}

/*
 * _cache_last_used(): key_id and live last_used_at of every cached key.
 */
PG_FUNCTION_INFO_V1(apikey_usage_cache_last_used);
Datum
apikey_usage_cache_last_used(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	pg_uuid_t  *ids;
	TimestampTz *times;
	int			n;
	int			i;

	apikey_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	n = keycache_collect_last_used(&ids, &times);
	for (i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = UUIDPGetDatum(&ids[i]);
		values[1] = TimestampTzGetDatum(times[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
