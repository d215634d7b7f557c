/*-------------------------------------------------------------------------
 *
 * node.c
 *		Fleets: the node number carried by keys and key ids.
 *
 * A workspace lives on one node of a fleet (README, "Scaling out").  Keys
 * and key ids made on node apikey_usage.node_id carry that number
 * (keyformat.h says how), so a gateway or the PL/Proxy coordinator can
 * route a call to the owning node without any lookup: node_of() only reads
 * its argument.  Keys and ids made before fleets existed are node 0.
 *
 * Shared state: none (apikey_usage.node_id is a postmaster GUC).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "apikey_usage.h"
#include "keyformat.h"

/*
 * node_of(api_key text): the node a key belongs to, NULL when the text is
 * not a well-formed key with a correct checksum.  Pure: needs neither the
 * preloaded library nor any table, and never raises an error, so a key
 * cannot reach the server log through it.
 */
PG_FUNCTION_INFO_V1(apikey_usage_node_of_key);
Datum
apikey_usage_node_of_key(PG_FUNCTION_ARGS)
{
	text	   *key_text = PG_GETARG_TEXT_PP(0);
	int			node;

	node = keyfmt_node(VARDATA_ANY(key_text), VARSIZE_ANY_EXHDR(key_text));
	if (node < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(node);
}

/*
 * node_of(key_id uuid): the node a key id names; 0 for ids that carry no
 * node (version-4 ids of node 0 and of keys made before fleets), NULL for a
 * version-8 id naming a node above the highest one.
 */
PG_FUNCTION_INFO_V1(apikey_usage_node_of_key_id);
Datum
apikey_usage_node_of_key_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *key_id = PG_GETARG_UUID_P(0);
	int			node;

	node = keyfmt_key_id_node(key_id->data);
	if (node < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(node);
}

/*
 * _new_key_id(): a fresh random key id of this node (apikey_usage.node_id),
 * from libsodium's generator like the keys themselves.
 */
PG_FUNCTION_INFO_V1(apikey_usage_new_key_id);
Datum
apikey_usage_new_key_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *key_id = palloc(sizeof(pg_uuid_t));

	apikey_require_preload();
	randombytes_buf(key_id->data, UUID_LEN);
	if (!keyfmt_key_id_make(key_id->data, apikey_node_id))
		elog(ERROR, "apikey_usage.node_id %d is out of range", apikey_node_id);
	PG_RETURN_UUID_P(key_id);
}
