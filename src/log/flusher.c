/*-------------------------------------------------------------------------
 *
 * flusher.c
 *		The background worker: drains the log buffer into the raw log and
 *		the hourly rollups, writes last_used_at, maintains partitions and
 *		summarizes the resource indexes.
 *
 * One worker, connected to apikey_usage.database.  Every flush_interval
 * (or when woken: ring half full, flush(), synchronous mode) it writes the
 * committed entries of the ring in batches through the one write path
 * (writer.c); each batch is one transaction that inserts the rows, adds
 * them to the rollups, quarantines what cannot be written and records the
 * new flushed sequence number in apikey_usage.flush_state, so a batch is
 * written exactly once even if the worker dies between commit and
 * advancing the ring.  It idles while the server is in recovery or the
 * extension is not created, reloads its configuration on SIGHUP, drains
 * the ring before exiting on SIGTERM, exits on postmaster death, and is
 * restarted by the postmaster after a crash.
 *
 * Security: the worker connects as the bootstrap superuser, but never
 * touches the extension's tables or calls its SQL as that role.  Every
 * transaction that does (the writer's inserts into the raw log, the
 * quarantine and the rollups, flush_state and spool_done, last_used_at,
 * partition creation and retention in _maintain, BRIN summarization in
 * _summarize_log) runs as apikey_usage_owner in a security-restricted
 * operation with search_path pinned (begin_tx / commit_tx, owner.c),
 * switched once per transaction.  That role owns the raw log, its
 * partitions and the definer functions and may create objects in the
 * schema, so whatever it attaches to them (index expressions, CHECK
 * constraints, a redefined _maintain) runs as itself, never as a
 * superuser.  Only the catalog reads of extension_ready run as the
 * bootstrap superuser.  An error restores the user in work_cycle's
 * handler before the transaction is aborted.
 *
 * Shared state: none of its own; it is the only process that advances the
 * ring's flushed_seq (see logbuf.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "alerts/alerts.h"

/*
 * Entries written per transaction: up to the ring's capacity, at most
 * FLUSH_BATCH_MAX.  When the ring is backlogged (the worker behind the
 * callers), fewer and larger transactions update each rollup row fewer
 * times per entry: on the live mix, 32,768-entry batches from a 65,536-entry
 * ring cost the worker 3.6 us of CPU per entry against 5.1 us for 10,000
 * (bench/flusher_mix.sh).  The batch array (sizeof(LogEntry), about 1.3 kB,
 * per entry) is allocated at start; its pages are touched only as far as
 * batches reach.
 */
#define FLUSH_BATCH_MAX			32768
#define SPOOL_BATCH				10000
#define LAST_USED_INTERVAL_MS	1000
#define LAST_USED_BATCH			10000
#define MAINTAIN_INTERVAL_MS	(10 * 60 * 1000)
#define SUMMARIZE_INTERVAL_MS	1000
#define ERROR_BACKOFF_MS		1000

void
flusher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "apikey_usage");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "apikey_usage_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "apikey_usage flusher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "apikey_usage flusher");
	RegisterBackgroundWorker(&worker);
}

static ArrayType *
make_array(Datum *values, bool *nulls, int n, Oid type, int typlen,
		   bool byval, char align)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};

	return construct_md_array(values, nulls, 1, dims, lbs, type, typlen, byval, align);
}

/* ---- the worker ---- */

static LogEntry *batch = NULL;
static int	flush_batch = 0;		/* entries batch holds */
static const char **batch_damage = NULL;
static MemoryContext work_context = NULL;
static Oid	synced_extension = InvalidOid;	/* ring checked against its table */
static TimestampTz last_maintain = 0;
static TimestampTz last_last_used = 0;
static TimestampTz last_summarize = 0;
static bool maintain_now = true;
static OwnerSwitch worker_owner = OWNER_SWITCH_INIT;	/* see the header */

/* Run one SQL statement with up to two parameters in its own SPI scope. */
static void
run_sql(const char *sql, int nargs, Oid *types, Datum *values)
{
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "apikey_usage worker: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	SPI_finish();
}

/* Start a transaction as the worker's own (superuser) role. */
static void
start_tx(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/*
 * Start a transaction that works on the extension's tables: as
 * apikey_usage_owner, security-restricted (see the file header).
 */
static void
begin_tx(const char *activity)
{
	start_tx(activity);
	apikey_owner_begin(&worker_owner);
}

/* Commit either kind, back to the worker's own role first. */
static void
commit_tx(void)
{
	apikey_owner_end(&worker_owner);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(work_context);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Once per worker start (and per installation): check that the ring
 * belongs to this cluster, its timeline and these tables, make its
 * flushed_seq agree with the table (logbuf_check_origin), and register
 * the ring in flush_state.
 */
static void
sync_ring_with_table(void)
{
	Datum		args[2];
	Oid			types[2] = {INT8OID, INT8OID};
	int			rc;
	int64		table_seq = -1;
	uint64		discarded;

	args[0] = Int64GetDatum((int64) logbuf_ring_id());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("SELECT flushed_seq FROM apikey_usage.flush_state WHERE ring_id = $1",
							   1, types, args, NULL, true, 1);
	if (rc == SPI_OK_SELECT && SPI_processed == 1)
	{
		bool		isnull;

		table_seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	}
	(void) logbuf_check_origin(GetSystemIdentifier(),
							   (uint32) GetWALInsertionTimeLine(),
							   table_seq, &discarded);
	args[0] = Int64GetDatum((int64) logbuf_ring_id());
	args[1] = Int64GetDatum((int64) logbuf_flushed_seq());
	SPI_execute_with_args("INSERT INTO apikey_usage.flush_state (ring_id, flushed_seq) VALUES ($1, $2)"
						  " ON CONFLICT (ring_id) DO NOTHING",
						  2, types, args, NULL, false, 0);
	SPI_finish();
}

/*
 * Write everything committed in the ring, batch by batch.  Returns the
 * number of entries written.
 */
static int64
drain_ring(void)
{
	int64		total = 0;

	for (;;)
	{
		uint64		from = logbuf_flushed_seq();
		uint64		next;
		int			n = logbuf_take_batch(from, flush_batch, batch, batch_damage, &next);
		WriterCounts counts;
		Datum		args[2];
		Oid			types[2] = {INT8OID, INT8OID};

		if (next == from)
			break;
		if (n > 0)
		{
			begin_tx("apikey_usage: flushing the log buffer");
			writer_write(batch, batch_damage, n, WRITER_RING, &counts);
			args[0] = Int64GetDatum((int64) next);
			args[1] = Int64GetDatum((int64) logbuf_ring_id());
			run_sql("INSERT INTO apikey_usage.flush_state AS f (flushed_seq, ring_id) VALUES ($1, $2)"
					" ON CONFLICT (ring_id) DO UPDATE SET flushed_seq = excluded.flushed_seq,"
					" updated_at = pg_catalog.now()", 2, types, args);
			commit_tx();

			/*
			 * The ring's slots may be reused once flushed_seq passes them:
			 * make sure the commit record is on disk first, whatever
			 * synchronous_commit says, or a crash could lose entries that
			 * are no longer in the ring either.
			 */
			XLogFlush(XactLastCommitEnd);
			logbuf_count_flush(counts.written, false);
		}
		logbuf_set_flushed(next);
		logbuf_broadcast_flushed();
		total += n;
		if (n < flush_batch && next == logbuf_reserved_seq())
			break;
		CHECK_FOR_INTERRUPTS();
	}
	return total;
}

/*
 * Write the spooled entries (those that found the ring full), oldest
 * first, exactly once: the names written are recorded in spool_done in
 * the same transaction; a recorded name is only removed, never rewritten.
 * Returns the number of files handled.
 */
static int64
drain_spool(void)
{
	char	  **names;
	int			n = spool_list(&names, SPOOL_BATCH);
	LogEntry   *entries;
	const char **damage;
	WriterCounts counts;
	Datum	   *name_datums;
	int			count = 0;
	int			i;
	Datum		args[1];
	Oid			types[1] = {TEXTARRAYOID};

	if (n == 0)
		return 0;
	entries = palloc(sizeof(LogEntry) * n);
	damage = palloc(sizeof(char *) * n);
	name_datums = palloc(sizeof(Datum) * n);
	begin_tx("apikey_usage: flushing spooled entries");
	for (i = 0; i < n; i++)
	{
		bool		done;
		Datum		name_arg = CStringGetTextDatum(names[i]);
		Oid			name_type = TEXTOID;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		SPI_execute_with_args("SELECT FROM apikey_usage.spool_done WHERE name = $1",
							  1, &name_type, &name_arg, NULL, true, 1);
		done = SPI_processed > 0;
		SPI_finish();
		if (done || !spool_read(names[i], &entries[count], &damage[count]))
			continue;
		name_datums[count++] = name_arg;
	}
	if (count > 0)
	{
		writer_write(entries, damage, count, WRITER_SPOOL, &counts);
		args[0] = PointerGetDatum(make_array(name_datums, NULL, count, TEXTOID, -1, false, TYPALIGN_INT));
		run_sql("INSERT INTO apikey_usage.spool_done (name) SELECT unnest($1::text[])", 1, types, args);
	}
	commit_tx();
	XLogFlush(XactLastCommitEnd);
	if (count > 0)
		logbuf_count_flush(counts.written, false);

	/* the files are in the tables: remove them, then forget their names */
	for (i = 0; i < n; i++)
		spool_remove(names[i]);
	name_datums = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		name_datums[i] = CStringGetTextDatum(names[i]);
	args[0] = PointerGetDatum(make_array(name_datums, NULL, n, TEXTOID, -1, false, TYPALIGN_INT));
	begin_tx("apikey_usage: forgetting spooled entries");
	run_sql("DELETE FROM apikey_usage.spool_done WHERE name = ANY ($1)", 1, types, args);
	commit_tx();
	logbuf_broadcast_flushed();
	return n;
}

/* order (key_id, used) pairs by key, then time */
typedef struct LastUsedPair
{
	pg_uuid_t	key_id;
	TimestampTz used;
} LastUsedPair;

static int
compare_last_used(const void *a, const void *b)
{
	const LastUsedPair *x = a;
	const LastUsedPair *y = b;
	int			c = memcmp(&x->key_id, &y->key_id, sizeof(pg_uuid_t));

	if (c != 0)
		return c;
	return (x->used > y->used) - (x->used < y->used);
}

/*
 * Write the last uses queued in the key cache's dirty ring (only keys
 * used since the last pass; nothing to do when idle), one row per key
 * with its latest time, in batches of LAST_USED_BATCH.
 */
static void
store_last_used(void)
{
	pg_uuid_t  *ids = palloc(sizeof(pg_uuid_t) * LAST_USED_BATCH);
	TimestampTz *times = palloc(sizeof(TimestampTz) * LAST_USED_BATCH);
	LastUsedPair *pairs = palloc(sizeof(LastUsedPair) * LAST_USED_BATCH);
	Datum	   *id_datums = palloc(sizeof(Datum) * LAST_USED_BATCH);
	Datum	   *time_datums = palloc(sizeof(Datum) * LAST_USED_BATCH);
	int			n;

	while ((n = keycache_take_last_used(LAST_USED_BATCH, ids, times)) > 0)
	{
		Datum		args[2];
		Oid			types[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};
		int			i;
		int			m = 0;

		for (i = 0; i < n; i++)
		{
			pairs[i].key_id = ids[i];
			pairs[i].used = times[i];
		}
		qsort(pairs, n, sizeof(LastUsedPair), compare_last_used);
		for (i = 0; i < n; i++)
		{
			/* the last of a run of one key is its latest use */
			if (i + 1 < n && memcmp(&pairs[i].key_id, &pairs[i + 1].key_id,
									sizeof(pg_uuid_t)) == 0)
				continue;
			id_datums[m] = UUIDPGetDatum(&pairs[i].key_id);
			time_datums[m] = TimestampTzGetDatum(pairs[i].used);
			m++;
		}
		args[0] = PointerGetDatum(make_array(id_datums, NULL, m, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		args[1] = PointerGetDatum(make_array(time_datums, NULL, m, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		begin_tx("apikey_usage: storing last_used_at");
		run_sql("SELECT apikey_usage._store_last_used($1, $2)", 2, types, args);
		commit_tx();
		if (n < LAST_USED_BATCH)
			break;
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The installed version of the extension, or NULL (palloc'd).  Needs a
 * transaction.
 */
char *
apikey_installed_version(Oid extension)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extension));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * True when the extension exists in this database with the SQL objects of
 * this library's version.  Between installing a new library and ALTER
 * EXTENSION ... UPDATE the worker writes nothing (the tables and internal
 * functions may differ): entries wait in the ring, flush() and
 * synchronous logging fail with a hint, and a LOG line says why, once.
 */
static bool
extension_ready(void)
{
	static bool mismatch_logged = false;
	Oid			extension;
	char	   *version;

	start_tx("apikey_usage: checking for the extension");
	extension = get_extension_oid("apikey_usage", true);
	version = OidIsValid(extension) ? apikey_installed_version(extension) : NULL;
	if (version != NULL && strcmp(version, APIKEY_USAGE_VERSION) != 0)
	{
		if (!mismatch_logged)
			ereport(LOG,
					(errmsg("apikey_usage: database \"%s\" has the SQL objects of version %s, this library is version %s; logged requests are kept in the buffer until ALTER EXTENSION apikey_usage UPDATE",
							apikey_database, version, APIKEY_USAGE_VERSION)));
		mismatch_logged = true;
		logbuf_set_sql_version_mismatch(true);
		commit_tx();
		return false;
	}
	if (mismatch_logged)
	{
		mismatch_logged = false;
		logbuf_set_sql_version_mismatch(false);
		synced_extension = InvalidOid;	/* check the ring again */
	}
	if (OidIsValid(extension) && extension != synced_extension)
	{
		/* first time, or the extension was dropped and created again */
		apikey_owner_begin(&worker_owner);
		sync_ring_with_table();
		synced_extension = extension;
		maintain_now = true;
	}
	commit_tx();
	return OidIsValid(extension);
}

/*
 * When a drain was last attempted (it sets the pace: one per
 * flush_interval unless asked), and whether one is owed (at start, after
 * a failed one).
 */
static TimestampTz last_drain = 0;
static bool drain_owed = true;

/* true in the worker process (see caller.c) */
bool		apikey_am_worker = false;

/*
 * One round of work.  The ring and the spool are drained when drain is
 * true (flush_interval elapsed, or someone asked); the other tasks keep
 * their own schedules.  Errors are reported, counted and retried on the
 * next round; they never kill the worker.
 */
static void
work_cycle(bool drain)
{
	MemoryContext cycle_context = CurrentMemoryContext;

	if (drain)
		last_drain = GetCurrentTimestamp();
	PG_TRY();
	{
		TimestampTz now;

		if (!RecoveryInProgress() && extension_ready())
		{
			if (drain)
			{
				drain_owed = true;
				drain_ring();
				while (drain_spool() == SPOOL_BATCH)
					CHECK_FOR_INTERRUPTS();
				drain_owed = false;
			}
			now = GetCurrentTimestamp();
			if (TimestampDifferenceExceeds(last_last_used, now, LAST_USED_INTERVAL_MS))
			{
				store_last_used();
				last_last_used = now;
			}
			if (maintain_now ||
				TimestampDifferenceExceeds(last_maintain, now, MAINTAIN_INTERVAL_MS))
			{
				begin_tx("apikey_usage: maintaining partitions");
				run_sql("SELECT apikey_usage._maintain(NULL)", 0, NULL, NULL);
				commit_tx();
				/* every partition's resource index (imports write old days) */
				begin_tx("apikey_usage: summarizing the resource indexes");
				run_sql("SELECT apikey_usage._summarize_log(NULL)", 0, NULL, NULL);
				commit_tx();
				last_maintain = now;
				last_summarize = now;
				maintain_now = false;
			}
			else if (TimestampDifferenceExceeds(last_summarize, now, SUMMARIZE_INTERVAL_MS))
			{
				/*
				 * The resource index ranges the writer closed since (BRIN
				 * bloom: see _index_partition), in the partitions of the
				 * last two days, off the write path.
				 */
				begin_tx("apikey_usage: summarizing the resource indexes");
				run_sql("SELECT apikey_usage._summarize_log(pg_catalog.now() - interval '1 day')",
						0, NULL, NULL);
				commit_tx();
				last_summarize = now;
			}
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cycle_context);
		apikey_owner_abort(&worker_owner);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cycle_context);
		logbuf_count_error();
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ERROR_BACKOFF_MS, PG_WAIT_EXTENSION);
	}
	PG_END_TRY();
}

static void
worker_exit(int code, Datum arg)
{
	logbuf_set_worker_latch(NULL, 0);
}

void
apikey_usage_worker_main(Datum main_arg)
{
	apikey_am_worker = true;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(apikey_database, NULL, 0);
	pgstat_report_appname("apikey_usage flusher");

	flush_batch = (int) Min((uint64) FLUSH_BATCH_MAX, logbuf_capacity());
	batch = MemoryContextAllocHuge(TopMemoryContext, sizeof(LogEntry) * flush_batch);
	batch_damage = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * flush_batch);

	/*
	 * Never wait long for a lock (someone holding one on the raw log): the
	 * flush fails, is counted, and is retried; flush() callers get their
	 * 55000 within its bound instead of waiting with the worker.
	 */
	SetConfigOption("lock_timeout", "2s", PGC_SUSET, PGC_S_OVERRIDE);
	/* nothing planted in a schema on the default path can be picked up */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	work_context = AllocSetContextCreate(TopMemoryContext, "apikey_usage worker",
										 ALLOCSET_DEFAULT_SIZES);
	logbuf_set_worker_latch(MyLatch, MyProcPid);
	before_shmem_exit(worker_exit, (Datum) 0);

	while (!ShutdownRequestPending)
	{
		MemoryContextSwitchTo(work_context);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			maintain_now = true;	/* the retention may have changed */
		}
		{
			TimestampTz now = GetCurrentTimestamp();
			bool		asked = logbuf_take_wake_request();

			work_cycle(asked || drain_owed ||
					   TimestampDifferenceExceeds(last_drain, now, apikey_flush_interval_ms));
		}
		alerts_evaluate_if_due();
		/* let autovacuum see the worker's inserts and upserts */
		pgstat_report_stat(false);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(work_context);
		{
			long		secs;
			int			usecs;
			long		wait_ms;

			/* sleep until the next drain is due (other wake-ups re-check) */
			TimestampDifference(last_drain, GetCurrentTimestamp(), &secs, &usecs);
			wait_ms = apikey_flush_interval_ms - (secs * 1000 + usecs / 1000);
			wait_ms = Max(wait_ms, 1);
			wait_ms = Min(wait_ms, apikey_flush_interval_ms);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
		}
		ResetLatch(MyLatch);
		/* absorb proc-signal barriers (DROP DATABASE waits for them) */
		CHECK_FOR_INTERRUPTS();
	}

	/* shutting down: write what is in the ring, then exit to be restarted */
	MemoryContextSwitchTo(work_context);
	work_cycle(true);
	proc_exit(1);
}
