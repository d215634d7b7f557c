/*-------------------------------------------------------------------------
 *
 * alerts.c
 *		Spike alerts: every apikey_usage.alert_interval the background
 *		worker evaluates the alert rules (apikey_usage._evaluate_alerts(),
 *		SQL in sqlsrc/45_tenants.sql), which records each transition
 *		(firing, resolved) in the alert events and sends
 *		NOTIFY apikey_usage_alerts at its commit.
 *
 * Runs only in the worker, between its flush cycles (so the counts include
 * everything flushed so far), in its own transaction.  An error is
 * reported and retried at the next interval; it never stops the worker or
 * its flushing.  Nothing happens in recovery, without the extension, or
 * with an extension script older than 0.2.0 (no _evaluate_alerts yet).
 *
 * Shared state: none (the last evaluation time is private to the worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "alerts/alerts.h"

int			apikey_alert_interval_ms = 60000;

static TimestampTz last_evaluation = 0;

/*
 * Called from _PG_init while preloading, before the prefix is reserved.
 */
void
alerts_define_gucs(void)
{
	DefineCustomIntVariable("apikey_usage.alert_interval",
							"How often the background worker evaluates the alert rules.",
							NULL, &apikey_alert_interval_ms, 60000, 100, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

/*
 * One evaluation, in a transaction of its own; returns the transitions.
 */
static int64
evaluate_alerts(void)
{
	int64		transitions = 0;
	int			rc;
	bool		isnull;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "apikey_usage: evaluating alert rules");
	if (OidIsValid(get_extension_oid("apikey_usage", true)))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute("SELECT pg_catalog.to_regprocedure('apikey_usage._evaluate_alerts()') IS NOT NULL",
						 true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1 &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
		{
			rc = SPI_execute("SELECT apikey_usage._evaluate_alerts()", false, 1);
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "apikey_usage: evaluating alert rules failed: %s",
					 SPI_result_code_string(rc));
			transitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
		}
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return transitions;
}

/*
 * The worker's hook: evaluate the rules when alert_interval has passed
 * since the last evaluation.  Called outside any transaction.
 */
void
alerts_evaluate_if_due(void)
{
	MemoryContext caller_context = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	if (RecoveryInProgress() ||
		!TimestampDifferenceExceeds(last_evaluation, now, apikey_alert_interval_ms))
		return;
	last_evaluation = now;
	PG_TRY();
	{
		int64		transitions = evaluate_alerts();

		if (transitions > 0)
			elog(DEBUG1, "apikey_usage: %lld alert transitions", (long long) transitions);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller_context);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(caller_context);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller_context);
}
