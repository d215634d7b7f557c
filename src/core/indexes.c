/*-------------------------------------------------------------------------
 *
 * indexes.c
 *		Find an index of a relation by its key columns, from the syscaches,
 *		for the code that scans an index directly (the key table's
 *		lookups in keys.c, request_log's keyset scan in request_log.c).
 *
 * Shared state: none.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "apikey_usage.h"

/*
 * A valid index of access method am on rel whose key columns begin with
 * keys[0 .. nkeys - 1] (are exactly those when exact), each ascending, with
 * no predicate and no expression; InvalidOid if there is none.  Only the
 * syscaches are read: no index is opened (or locked) but the one the caller
 * then chooses.
 */
Oid
apikey_find_index(Relation rel, const AttrNumber *keys, int nkeys, bool exact, Oid am)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Oid			index_oid = lfirst_oid(lc);
		HeapTuple	index_tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index_oid));
		HeapTuple	class_tuple;
		Form_pg_index form;
		bool		ok;
		int			k;

		if (!HeapTupleIsValid(index_tuple))
			continue;
		form = (Form_pg_index) GETSTRUCT(index_tuple);
		ok = form->indisvalid && form->indnkeyatts >= nkeys &&
			(!exact || form->indnatts == nkeys) &&
			heap_attisnull(index_tuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(index_tuple, Anum_pg_index_indexprs, NULL);
		for (k = 0; ok && k < nkeys; k++)
			ok = form->indkey.values[k] == keys[k];
		if (ok)
		{
			bool		isnull;
			Datum		options = SysCacheGetAttr(INDEXRELID, index_tuple,
												  Anum_pg_index_indoption, &isnull);
			int2vector *indoption = (int2vector *) DatumGetPointer(options);

			for (k = 0; k < nkeys && !isnull; k++)
				if (indoption->values[k] & INDOPTION_DESC)
					ok = false;
		}
		ReleaseSysCache(index_tuple);
		if (!ok)
			continue;
		class_tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(index_oid));
		if (!HeapTupleIsValid(class_tuple))
			continue;
		ok = ((Form_pg_class) GETSTRUCT(class_tuple))->relam == am;
		ReleaseSysCache(class_tuple);
		if (ok)
		{
			found = index_oid;
			break;
		}
	}
	list_free(indexes);
	return found;
}
