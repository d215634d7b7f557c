/*-------------------------------------------------------------------------
 *
 * apikey_usage.c
 *		Module entry point: GUCs, shared-memory hooks, worker registration.
 *
 * The library must be in shared_preload_libraries.  When it is not,
 * _PG_init defines nothing and every SQL function that needs shared memory
 * raises SQLSTATE 55000 through apikey_require_preload().
 *
 * Shared state owned here: none of its own.  The shmem hooks only ask
 * keycache.c and logbuf.c to size and initialise theirs (under
 * AddinShmemInitLock, see those files for their locking rules).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "alerts/alerts.h"
#include "keyformat.h"

PG_MODULE_MAGIC;

char	   *apikey_database = NULL;
int			apikey_max_keys = 100000;
int			apikey_log_buffer_entries = 65536;
int			apikey_flush_interval_ms = 200;
char	   *apikey_retention_string = NULL;
char	   *apikey_secret_file = NULL;
int			apikey_log_mode = LOG_MODE_BUFFERED;
int			apikey_node_id = 0;

bool		apikey_preloaded = false;

static Interval retention_value;

static const struct config_enum_entry log_mode_options[] = {
	{"buffered", LOG_MODE_BUFFERED, false},
	{"synchronous", LOG_MODE_SYNCHRONOUS, false},
	{NULL, 0, false}
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);
static void apikey_shmem_request(void);
static void apikey_shmem_startup(void);

/*
 * Parse an interval without raising errors (check hooks also run in the
 * postmaster).  Returns false when the text is not an interval.
 */
static bool
parse_interval_quietly(const char *text, Interval *result)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm_in;
	int			dterr;

	if (text == NULL || strlen(text) >= sizeof(workbuf))
		return false;
	dterr = ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE,
							   &dtype, &itm_in);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(unconstify(char *, text), &dtype, &itm_in);
	if (dterr != 0 || dtype != DTK_DELTA)
		return false;
	return itmin2interval(&itm_in, result) == 0;
}

/*
 * Retention must be a positive interval of at least one hour (the
 * granularity of the rollups) without months, which have no fixed length.
 */
static bool
check_retention(char **newval, void **extra, GucSource source)
{
	Interval	value;

	if (!parse_interval_quietly(*newval, &value))
	{
		GUC_check_errdetail("\"%s\" is not an interval.", *newval);
		return false;
	}
	if (value.month != 0 ||
		value.day * USECS_PER_DAY + value.time < USECS_PER_HOUR)
	{
		GUC_check_errdetail("apikey_usage.retention must be at least 1 hour and given in days, hours or smaller units.");
		return false;
	}
	return true;
}

static void
assign_retention(const char *newval, void *extra)
{
	if (!parse_interval_quietly(newval, &retention_value))
		memset(&retention_value, 0, sizeof(retention_value));
}

/*
 * The current apikey_usage.retention, as an interval.
 */
Interval *
apikey_retention(void)
{
	Interval   *result = palloc(sizeof(Interval));

	*result = retention_value;
	return result;
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	if (sodium_init() < 0)
		ereport(FATAL,
				(errmsg("apikey_usage: libsodium could not be initialised")));

	DefineCustomStringVariable("apikey_usage.database",
							   "Database the background worker serves; the only one where the extension may be created.",
							   NULL, &apikey_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey_usage.max_keys",
							"Keys the shared-memory key cache holds.",
							"Beyond it, keys not used recently are evicted (clock sweep); a miss reads the key table.",
							&apikey_max_keys, 100000, 16, 50000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey_usage.last_used_resolution",
							"How stale last_used_at in the key table may get while a key is in use.",
							"The worker writes a key's last_used_at when it has advanced by this much, or when the key leaves the cache.",
							&apikey_last_used_resolution_s, 600, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey_usage.log_buffer_entries",
							"Entries the durable log buffer holds.",
							"The buffer is a file-backed shared mapping in the data directory.",
							&apikey_log_buffer_entries, 65536, 64, 4194304,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("apikey_usage.flush_interval",
							"How often the background worker writes the log buffer to the tables.",
							NULL, &apikey_flush_interval_ms, 200, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("apikey_usage.retention",
							   "How long the raw request log is kept (whole days are dropped).",
							   NULL, &apikey_retention_string, "90 days",
							   PGC_SIGHUP, 0, check_retention,
							   assign_retention, NULL);
	DefineCustomStringVariable("apikey_usage.secret_file",
							   "File holding the server secret that encrypts stored keys (relative to the data directory).",
							   NULL, &apikey_secret_file, "apikey_usage.secret",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("apikey_usage.log_mode",
							 "buffered: log_request returns once the entry is in the durable buffer; synchronous: once it is in the tables.",
							 NULL, &apikey_log_mode, LOG_MODE_BUFFERED,
							 log_mode_options, PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("apikey_usage.node_id",
							"This node's number in a fleet (0 = a fleet of one).",
							"New keys and key ids carry it; node_of() reads it back.",
							&apikey_node_id, 0, 0, KEYFMT_NODE_MAX,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);

	alerts_define_gucs();
	MarkGUCPrefixReserved("apikey_usage");

	redact_install_hook();
	secret_load_or_create();
	logbuf_map_file();
	spool_init_dir();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = apikey_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = apikey_shmem_startup;

	flusher_register();
	apikey_preloaded = true;
}

static void
apikey_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(add_size(keycache_shmem_size(),
									logbuf_shmem_size()));
	RequestNamedLWLockTranche("apikey_usage", 1);
	keycache_shmem_request();
}

static void
apikey_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	keycache_shmem_init();
	logbuf_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Raise SQLSTATE 55000 unless the library was preloaded.
 */
void
apikey_require_preload(void)
{
	if (!apikey_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("apikey_usage must be loaded via shared_preload_libraries"),
				 errhint("Add apikey_usage to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Raise SQLSTATE 25006 on a hot standby: the request path logs every
 * request it answers, and a standby cannot write.  Nothing is buffered.
 */
void
apikey_require_primary(const char *what)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errhidestmt(true),
				 errmsg("cannot execute %s during recovery", what),
				 errdetail("%s logs the requests it answers, and a hot standby cannot write.", what),
				 errhint("Send check_request, log_request and flush to the primary; verify_key, the analytics and the views work on a standby.")));
}

/*
 * Called first by the install script: the extension belongs in the one
 * database its background worker serves.
 */
PG_FUNCTION_INFO_V1(apikey_usage_check_install_database);
Datum
apikey_usage_check_install_database(PG_FUNCTION_ARGS)
{
	const char *current;

	apikey_require_preload();
	current = get_database_name(MyDatabaseId);
	if (current == NULL || strcmp(current, apikey_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("apikey_usage can only be created in database \"%s\"",
						apikey_database),
				 errdetail("The current database is \"%s\"; apikey_usage.database names the one database the background worker serves.",
						   current ? current : "?"),
				 errhint("Create the extension in \"%s\", or set apikey_usage.database and restart the server.",
						 apikey_database)));
	/* a fresh installation: forget keys cached for an earlier one */
	keycache_clear();
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(apikey_usage_retention);
Datum
apikey_usage_retention(PG_FUNCTION_ARGS)
{
	apikey_require_preload();
	PG_RETURN_INTERVAL_P(apikey_retention());
}
