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
 * everything flushed so far), in its own transaction: an evaluation that
 * fails or is cancelled rolls back only itself, never a flush.  It must
 * not hold up flushing for long, whatever rules tenants create: a pass
 * starts no rule after ALERT_PASS_BUDGET_MS (the rules least recently
 * evaluated go first, so the next pass takes up those not reached), and a
 * timer cancels it after ALERT_PASS_TIMEOUT_MS (a single rule that slow is
 * skipped by _evaluate_alerts and the pass ends).  While rules are left
 * over, the next pass runs in the worker's next round, after a flush,
 * instead of an alert_interval later.  Errors and cancellations are
 * logged at most once every ALERT_REPORT_INTERVAL_MS (with the number not
 * logged); they never stop the worker or its flushing.  Nothing happens
 * in recovery, without the extension, or with an extension script older
 * than 0.2.0 (no _evaluate_alerts yet).
 *
 * Security: the worker is connected as the bootstrap superuser, but the
 * evaluation runs as apikey_usage_owner in a security-restricted operation
 * (owner.c): that role owns _evaluate_alerts and may create objects in the
 * schema, so what it could change there must never run as a superuser.
 * The handler restores the user before aborting on an error.
 *
 * Shared state: none (the schedule is private to the worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "alerts/alerts.h"

/* a pass starts no rule after this long ... */
#define ALERT_PASS_BUDGET_MS		100
/* ... and is cancelled after this long */
#define ALERT_PASS_TIMEOUT_MS		500
/* failures and cancellations are logged at most this often */
#define ALERT_REPORT_INTERVAL_MS	(5 * 60 * 1000)

int			apikey_alert_interval_ms = 60000;

static TimestampTz last_evaluation = 0;
static bool rules_left = false;		/* the last pass did not reach every rule */
static TimestampTz last_report = 0;
static int64 unreported = 0;		/* failures not logged since last_report */
static OwnerSwitch alerts_owner = OWNER_SWITCH_INIT;

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
 * Log a failure or cancellation of a pass, at most once every
 * ALERT_REPORT_INTERVAL_MS: the first one, then one with the number of
 * those not logged since.  edata NULL: a rule was skipped.
 */
static void
report_problem(ErrorData *edata)
{
	TimestampTz now = GetCurrentTimestamp();

	if (last_report != 0 &&
		!TimestampDifferenceExceeds(last_report, now, ALERT_REPORT_INTERVAL_MS))
	{
		unreported++;
		return;
	}
	if (edata == NULL)
		ereport(LOG,
				(errmsg("apikey_usage: an alert evaluation pass reached its limit of %d ms",
						ALERT_PASS_TIMEOUT_MS),
				 unreported > 0 ? errdetail("%lld earlier failures or skips of alert evaluation were not logged.",
											(long long) unreported) : 0,
				 errhint("The rule being evaluated then is retried first in the next pass; one that alone took that long is skipped (its last_value in apikey_usage.alert_rules is NULL).")));
	else
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("apikey_usage: evaluating alert rules failed: %s", edata->message),
				 unreported > 0 ? errdetail("%lld earlier failures or skips of alert evaluation were not logged.",
											(long long) unreported) : 0,
				 edata->sqlerrcode == ERRCODE_QUERY_CANCELED ?
				 errhint("An evaluation pass may take at most %d ms; it is retried at the next one.",
						 ALERT_PASS_TIMEOUT_MS) : 0));
	last_report = now;
	unreported = 0;
}

/*
 * One pass, in a transaction of its own, under the pass timer; returns the
 * transitions and sets rules_left.
 */
static int64
evaluate_alerts(void)
{
	int64		transitions = 0;
	int			rc;
	bool		isnull;
	bool		skipped = false;

	rules_left = false;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "apikey_usage: evaluating alert rules");
	if (OidIsValid(get_extension_oid("apikey_usage", true)))
	{
		apikey_owner_begin(&alerts_owner);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute("SELECT pg_catalog.to_regprocedure('apikey_usage._evaluate_alerts(interval)') IS NOT NULL",
						 true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1 &&
			DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
		{
			char		sql[128];

			/*
			 * statement_timeout is armed by the top-level query loop only,
			 * never for SPI in a background worker: arm it here.
			 */
			snprintf(sql, sizeof(sql),
					 "SELECT apikey_usage._evaluate_alerts('%d milliseconds'::pg_catalog.interval)",
					 ALERT_PASS_BUDGET_MS);
			enable_timeout_after(STATEMENT_TIMEOUT, ALERT_PASS_TIMEOUT_MS);
			rc = SPI_execute(sql, false, 1);
			/*
			 * The timer fired: _evaluate_alerts caught the cancel and ended
			 * the pass, or it fired after the pass; either way its cancel
			 * means nothing any more (left pending, it would fail the
			 * worker's next interrupt check instead).
			 */
			skipped = !get_timeout_active(STATEMENT_TIMEOUT);
			disable_timeout(STATEMENT_TIMEOUT, true);
			/* (it may also have fired just before it was disabled) */
			if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
				skipped = true;
			if (skipped)
				QueryCancelPending = false;
			if (rc != SPI_OK_SELECT)
				elog(ERROR, "apikey_usage: evaluating alert rules failed: %s",
					 SPI_result_code_string(rc));
			transitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
			/*
			 * rules this round has not reached yet (those another session
			 * holds locked are skipped, as the pass skipped them)
			 */
			{
				Oid			argtypes[1] = {TIMESTAMPTZOID};
				Datum		args[1] = {TimestampTzGetDatum(last_evaluation)};

				rc = SPI_execute_with_args("SELECT FROM apikey_usage.alert_rule r"
										   " WHERE r.last_evaluated_at IS NULL"
										   " OR r.last_evaluated_at OPERATOR(pg_catalog.<) $1"
										   " LIMIT 1 FOR UPDATE SKIP LOCKED",
										   1, argtypes, args, NULL, false, 1);
				rules_left = (rc == SPI_OK_SELECT && SPI_processed > 0);
			}
		}
		SPI_finish();
		apikey_owner_end(&alerts_owner);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (skipped)
		report_problem(NULL);
	return transitions;
}

/*
 * The worker's hook: evaluate the rules when alert_interval has passed
 * since the last evaluation began, or when the last pass left rules over.
 * Called outside any transaction.
 */
void
alerts_evaluate_if_due(void)
{
	MemoryContext caller_context = CurrentMemoryContext;
	TimestampTz now = GetCurrentTimestamp();

	if (RecoveryInProgress())
		return;
	if (TimestampDifferenceExceeds(last_evaluation, now, apikey_alert_interval_ms))
		last_evaluation = now;	/* a new round */
	else if (!rules_left)
		return;

	PG_TRY();
	{
		int64		transitions = evaluate_alerts();

		if (transitions > 0)
			elog(DEBUG1, "apikey_usage: %lld alert transitions", (long long) transitions);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		/* as PostgresMain does after an error: no cancel outlives it */
		QueryCancelPending = false;
		MemoryContextSwitchTo(caller_context);
		apikey_owner_abort(&alerts_owner);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(caller_context);
		/* retried at the next alert_interval, not in the next round */
		rules_left = false;
		report_problem(edata);
		FreeErrorData(edata);
		MemoryContextSwitchTo(caller_context);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller_context);
}
