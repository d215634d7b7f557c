/*-------------------------------------------------------------------------
 *
 * caller.c
 *		Who is calling: the role the visibility functions judge.
 *
 * Inside a SECURITY DEFINER function (every analytics function, the
 * visibility functions themselves) current_user is the owner, so SQL
 * cannot name the caller.  The "outer" user id is the session user or the
 * role chosen by SET ROLE; SECURITY DEFINER and SET ROLE inside functions
 * do not change it.  It is what a tenant logged in as, or switched to
 * with SET ROLE (which needs membership).
 *
 * Shared state: none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

PG_FUNCTION_INFO_V1(apikey_usage_caller);

/*
 * _caller(): the oid of the role the calling session acts as (SET ROLE
 * included), whatever SECURITY DEFINER function it runs inside.
 */
Datum
apikey_usage_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(GetOuterUserId());
}
