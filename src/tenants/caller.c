/*-------------------------------------------------------------------------
 *
 * caller.c
 *		Who is calling, and what it may see: _caller() and the cached
 *		visibility functions _visible_workspaces() / _visible_key_ids().
 *
 * Inside a SECURITY DEFINER function (every analytics function, the
 * visibility functions themselves) current_user is the owner, so SQL
 * cannot name the caller.  The "outer" user id is the session user or the
 * role chosen by SET ROLE; SECURITY DEFINER and SET ROLE inside functions
 * do not change it.  It is what a tenant logged in as, or switched to
 * with SET ROLE (which needs membership).  Inside a security-restricted
 * operation the outer user is not the role whose code runs: there the
 * caller is the current user, or nobody (caller_oid).
 *
 * The visibility functions are called by every view and analytics
 * function, sometimes once per row.  Their SQL definitions
 * (_visible_workspaces_uncached() / _visible_key_ids_uncached(), in
 * sqlsrc/15_visibility.sql) cost a query each; here the answer is kept
 * for as long as nothing it depends on can have changed as seen by the
 * caller: the same role, the same transaction and command, and a snapshot
 * taken when no transaction had completed since the cached one was
 * (snapXactCompletionCount: a grant or a membership committed by another
 * session bumps it, so the next statement recomputes the answer; the
 * snapshot's xmin and xmax alone are not enough, a commit can move
 * neither).
 *
 * Global callers (superusers, the extension owner, roles with the
 * privileges of apikey_usage_admin, _reader or _app: exactly the roles
 * _caller_is_global() accepts) see everything; that is decided here in C
 * first (caller_is_global), from the syscaches and the role-membership
 * cache, so a dashboard or request_log() call by such a role costs no
 * query at all.  Every other caller gets the SQL answer, cached.
 *
 * Shared state: none.  The cache is private to the backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "apikey_usage.h"

PG_FUNCTION_INFO_V1(apikey_usage_caller);
PG_FUNCTION_INFO_V1(apikey_usage_visible_workspaces);
PG_FUNCTION_INFO_V1(apikey_usage_visible_key_ids);

/*
 * Set by cached_visibility while its SQL runs: the caller it decided on,
 * for the _caller() calls of that SQL inside a security-restricted
 * operation (see caller_oid).
 */
static Oid	caller_override = InvalidOid;

static bool caller_is_global(Oid user);

static void
refuse_restricted(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("apikey_usage cannot be used inside a security-restricted operation"),
			 errdetail("Index expressions, constraints and materialized views are evaluated as their table's owner on behalf of whoever runs ANALYZE, VACUUM, REINDEX or REFRESH; the caller cannot be told apart.")));
}

/*
 * The role the calling session acts as (SET ROLE included), whatever
 * SECURITY DEFINER function of the extension it runs inside.
 *
 * Not inside a security-restricted operation: there PostgreSQL runs a
 * table owner's code (index expressions, constraints, a materialized
 * view's query) on behalf of whoever started ANALYZE, VACUUM, REINDEX,
 * CREATE INDEX, CLUSTER or CREATE / REFRESH MATERIALIZED VIEW (autovacuum
 * included, as the bootstrap superuser).  The outer user is then not the
 * role whose code runs, and answering with it would hand a tenant's index
 * function the rights of a superuser's ANALYZE.  There the caller is the
 * less privileged of the two: the current user (the role whose code runs,
 * when the extension is entered through a view or an invoker function),
 * unless it is global, then the outer user (so a tenant cannot borrow a
 * global role's SECURITY DEFINER function inside a materialized view of
 * its own).  When both are global, the current user, unless a SECURITY
 * DEFINER function stands between (refused: its caller is unknown).
 * Inside one of the extension's own SECURITY DEFINER functions the current
 * user is apikey_usage_owner and the role that called it cannot be known:
 * refused.
 */
static Oid
caller_oid(void)
{
	Oid			user;
	Oid			outer;
	bool		restricted;

	/*
	 * The worker runs only the extension's own functions, as
	 * apikey_usage_owner in a security-restricted operation (owner.c), on
	 * behalf of the extension itself: its outer user (the bootstrap
	 * superuser) is the caller there.
	 */
	if (apikey_am_worker)
		return GetOuterUserId();
	if (OidIsValid(caller_override))
		return caller_override;
	user = GetUserId();
	outer = GetOuterUserId();
	if (user == outer)
		return outer;			/* no definer function, no maintenance */
	restricted = InSecurityRestrictedOperation();

	/* the definer functions' owner (97_owner.sql), the writes' role too */
	if (user == apikey_writer_role())
	{
		/* inside one of the extension's own definer functions */
		if (restricted)
			refuse_restricted();
		return outer;
	}

	/*
	 * Some other role's code runs: its SECURITY DEFINER function, or a
	 * table's code in maintenance.  The less privileged of the two roles
	 * counts, so a global session gains nothing by calling a tenant's
	 * function, and a tenant nothing by calling a global role's.
	 */
	if (!caller_is_global(user))
		return user;
	if (!caller_is_global(outer))
		return outer;

	/*
	 * Both global, as when a superuser or autovacuum refreshes or analyzes
	 * a global role's table.  Unless, in maintenance, a SECURITY DEFINER
	 * function stands in between: then the current user is that function's
	 * owner, not the role whose code called it (a tenant's materialized view
	 * calling a global role's definer function), and who that was cannot be
	 * known.
	 */
	if (restricted)
	{
		Oid			current;
		int			sec_context;

		GetUserIdAndSecContext(&current, &sec_context);
		if (sec_context & SECURITY_LOCAL_USERID_CHANGE)
			refuse_restricted();
	}
	return user;
}

/*
 * _caller(): the oid of the role the calling session acts as.
 */
Datum
apikey_usage_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(caller_oid());
}

/* One cached answer (an array, or NULL for "everything"). */
typedef struct VisibilityCache
{
	bool		valid;
	Oid			user;
	LocalTransactionId lxid;
	CommandId	cid;
	TransactionId xmin;
	TransactionId xmax;
	uint64		completions;	/* snapshot's snapXactCompletionCount */
	bool		isnull;
	Datum		value;			/* in TopMemoryContext */
} VisibilityCache;

static VisibilityCache workspaces_cache;
static VisibilityCache key_ids_cache;

/* Has user the privileges of the named role (pg_has_role(..., 'USAGE'))? */
static bool
has_privs_of_named_role(Oid user, const char *name)
{
	Oid			role = get_role_oid(name, true);

	return OidIsValid(role) && has_privs_of_role(user, role);
}

/* The owner of extension apikey_usage (pg_extension.extowner), if installed. */
static Oid
extension_owner(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("apikey_usage"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * Is user a global caller, as _caller_is_global('any') decides (the SQL
 * definition in sqlsrc/15_visibility.sql; test/pgtap/tenants.sql checks
 * that both agree)?  false means "ask SQL", never "sees nothing".
 */
static bool
caller_is_global(Oid user)
{
	return superuser_arg(user) ||
		has_privs_of_named_role(user, "apikey_usage_admin") ||
		has_privs_of_named_role(user, "apikey_usage_reader") ||
		has_privs_of_named_role(user, "apikey_usage_app") ||
		user == extension_owner();
}

/*
 * The answer of sql (one row, one array column) for the caller, from the
 * cache when its key still matches, else computed and remembered.  The
 * result is palloc'd in the caller's memory context.
 */
static Datum
cached_visibility(VisibilityCache *cache, const char *sql, bool *isnull)
{
	Oid			user = caller_oid();
	Oid			saved_override;
	LocalTransactionId lxid = MyProc->lxid;
	CommandId	cid = GetCurrentCommandId(false);
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;
	MemoryContext caller_context = CurrentMemoryContext;
	bool		null_result;
	Datum		result;
	int			rc;

	/* both visibility functions answer NULL (everything) for these */
	if (caller_is_global(user))
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (cache->valid && snapshot != NULL && cache->user == user &&
		cache->lxid == lxid && cache->cid == cid &&
		cache->xmin == snapshot->xmin && cache->xmax == snapshot->xmax &&
		cache->completions == snapshot->snapXactCompletionCount)
	{
		*isnull = cache->isnull;
		return cache->isnull ? (Datum) 0 : datumCopy(cache->value, false, -1);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the SQL's own _caller() calls get the caller decided here */
	saved_override = caller_override;
	caller_override = user;
	PG_TRY();
	{
		rc = SPI_execute(sql, true, 1);
	}
	PG_FINALLY();
	{
		caller_override = saved_override;
	}
	PG_END_TRY();
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "apikey_usage: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &null_result);

	/* remember it (replacing the previous answer), and copy it out */
	if (cache->valid && !cache->isnull)
	{
		cache->valid = false;
		pfree(DatumGetPointer(cache->value));
	}
	cache->valid = false;
	cache->isnull = null_result;
	if (!null_result)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		cache->value = datumCopy(result, false, -1);
		MemoryContextSwitchTo(old);
	}
	/* a snapshot without a completion count (not from GetSnapshotData) is not cached */
	if (snapshot != NULL && snapshot->snapXactCompletionCount != 0)
	{
		cache->user = user;
		cache->lxid = lxid;
		cache->cid = cid;
		cache->xmin = snapshot->xmin;
		cache->xmax = snapshot->xmax;
		cache->completions = snapshot->snapXactCompletionCount;
		cache->valid = true;
	}
	SPI_finish();

	*isnull = null_result;
	if (null_result)
		return (Datum) 0;
	MemoryContextSwitchTo(caller_context);
	return datumCopy(cache->value, false, -1);
}

/*
 * _visible_workspaces(): the workspaces the caller may see, or NULL for
 * all (a global role).
 */
Datum
apikey_usage_visible_workspaces(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result = cached_visibility(&workspaces_cache,
										   "SELECT apikey_usage._visible_workspaces_uncached()",
										   &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * _visible_key_ids(): the key ids (live and deleted) the caller may see,
 * or NULL for all.
 */
Datum
apikey_usage_visible_key_ids(PG_FUNCTION_ARGS)
{
	bool		isnull;
	Datum		result = cached_visibility(&key_ids_cache,
										   "SELECT apikey_usage._visible_key_ids_uncached()",
										   &isnull);

	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
