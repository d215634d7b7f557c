/*-------------------------------------------------------------------------
 *
 * owner.c
 *		Run the extension's own writes as apikey_usage_owner, in a
 *		security-restricted operation: import_requests' writes (import.c)
 *		and every transaction of the background worker that touches the
 *		extension's tables (flusher.c, alerts.c).
 *
 * Why: apikey_usage_owner owns the raw log, its day partitions and the
 * SQL definer functions, and has CREATE on the schema, so it can attach
 * code (index expressions, CHECK constraints, a redefined function) that
 * the writes evaluate.  The worker connects as the bootstrap superuser and
 * a caller of import_requests may be anyone; either would run that code
 * with its own rights.  Between apikey_owner_begin and apikey_owner_end
 * the current user is apikey_usage_owner (the extension owner when that
 * role does not exist) with SECURITY_RESTRICTED_OPERATION, as PostgreSQL
 * itself runs index expressions for VACUUM, ANALYZE, CREATE INDEX and
 * REFRESH MATERIALIZED VIEW: that code runs as the owner, cannot SET ROLE
 * back, create temporary objects, LISTEN, PREPARE or hold cursors; and
 * search_path is pinned to pg_catalog, pg_temp.  Nothing the writer or
 * the worker does itself needs any of those.
 *
 * Use: apikey_owner_begin inside a transaction; apikey_owner_end on
 * success (rolls back the GUC settings made since, restores the user); on
 * an error, apikey_owner_abort (restores the user; the transaction or
 * subtransaction abort that must follow rolls back the GUC nest level).
 * Each is a no-op on a switch that is not active, so error paths may call
 * it unconditionally.
 *
 * Shared state: none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "apikey_usage.h"

/*
 * The role the extension's writes run as: apikey_usage_owner, else (an
 * installation without it) the owner of the extension's tables.
 */
Oid
apikey_writer_role(void)
{
	Oid			role = get_role_oid("apikey_usage_owner", true);

	if (!OidIsValid(role))
		role = apikey_owner_oid();
	return role;
}

/* Become the writer role, restricted, with a pinned search_path. */
void
apikey_owner_begin(OwnerSwitch *sw)
{
	Oid			role = apikey_writer_role();

	Assert(!sw->active);
	GetUserIdAndSecContext(&sw->save_userid, &sw->save_sec_context);
	SetUserIdAndSecContext(role,
						   sw->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	sw->active = true;
	sw->nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

/*
 * Back to the saved user.  Settings changed since apikey_owner_begin (by
 * anything the restricted code ran) are rolled back, as PostgreSQL does
 * after its own security-restricted operations.
 */
void
apikey_owner_end(OwnerSwitch *sw)
{
	if (!sw->active)
		return;
	sw->active = false;
	AtEOXact_GUC(false, sw->nest_level);
	SetUserIdAndSecContext(sw->save_userid, sw->save_sec_context);
}

/*
 * Error path: back to the saved user at once.  The GUC nest level is left
 * to the (sub)transaction abort that follows any error (a subtransaction
 * opened inside may not be cleaned up yet, so popping it here could
 * unwind the wrong level).
 */
void
apikey_owner_abort(OwnerSwitch *sw)
{
	if (!sw->active)
		return;
	sw->active = false;
	SetUserIdAndSecContext(sw->save_userid, sw->save_sec_context);
}
