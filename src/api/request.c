/*-------------------------------------------------------------------------
 *
 * request.c
 *		The request path: check_request and log_request, their argument
 *		checks, and time-ordered request ids (UUIDv7).
 *
 * Errors raised here never carry the statement text to the server log
 * (errhidestmt), because a caller may have written an API key literally
 * into the same statement.
 *
 * Shared state: none of its own (key cache: keycache.c; log: logbuf.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "keyformat.h"

#define UNIX_EPOCH_OFFSET_MS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)

#define bad_argument(code, ...) \
	ereport(ERROR, (errcode(code), errhidestmt(true), errmsg(__VA_ARGS__)))

/*
 * A UUIDv7 for ts: 48 bits of Unix milliseconds, the sub-millisecond part
 * in the 12 bits of rand_a (RFC 9562, method 3), 62 random bits.
 */
void
uuid_v7_generate(pg_uuid_t *uuid, TimestampTz ts)
{
	int64		unix_ms = ts / 1000 + UNIX_EPOCH_OFFSET_MS;
	uint32		sub_ms = (uint32) (((ts % 1000) + 1000) % 1000) * 4096 / 1000;
	uint64		random_bits = pg_prng_uint64(&pg_global_prng_state);
	int			i;

	for (i = 0; i < 6; i++)
		uuid->data[i] = (uint8) (unix_ms >> (8 * (5 - i)));
	uuid->data[6] = 0x70 | (uint8) (sub_ms >> 8);
	uuid->data[7] = (uint8) sub_ms;
	for (i = 8; i < 16; i++)
		uuid->data[i] = (uint8) (random_bits >> (8 * (15 - i)));
	uuid->data[8] = 0x80 | (uuid->data[8] & 0x3f);
}

/*
 * The millisecond timestamp inside a UUIDv7; false for other versions.
 */
static bool
uuid_v7_time(const pg_uuid_t *uuid, TimestampTz *ts)
{
	int64		unix_ms = 0;
	int			i;

	if ((uuid->data[6] >> 4) != 7 || (uuid->data[8] & 0xc0) != 0x80)
		return false;
	for (i = 0; i < 6; i++)
		unix_ms = (unix_ms << 8) | uuid->data[i];
	*ts = (unix_ms - UNIX_EPOCH_OFFSET_MS) * 1000;
	return true;
}

/* RFC 9110 tchar */
static inline bool
is_tchar(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static text *
required_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED, "%s must not be NULL", name);
	return PG_GETARG_TEXT_PP(argno);
}

/*
 * Check method, endpoint and resource_id and copy them into the entry
 * (method upper-cased).  Raises 22004 / 22023.
 */
static void
fill_request_fields(FunctionCallInfo fcinfo, int method_arg, int endpoint_arg,
					int resource_arg, LogEntry *entry)
{
	text	   *method = required_text(fcinfo, method_arg, "method");
	text	   *endpoint = required_text(fcinfo, endpoint_arg, "endpoint");
	const char *m = VARDATA_ANY(method);
	const char *e = VARDATA_ANY(endpoint);
	size_t		mlen = VARSIZE_ANY_EXHDR(method);
	size_t		elen = VARSIZE_ANY_EXHDR(endpoint);
	size_t		i;

	if (mlen < 1 || mlen > APIKEY_METHOD_MAX)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "method must be 1 to %d bytes long", APIKEY_METHOD_MAX);
	for (i = 0; i < mlen; i++)
	{
		unsigned char c = (unsigned char) m[i];

		if (!is_tchar(c))
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "method must be an HTTP method token (letters, digits and !#$%%&'*+-.^_`|~)");
		entry->method[i] = (c >= 'a' && c <= 'z') ? c - ('a' - 'A') : c;
	}
	entry->method_len = (uint8) mlen;

	if (elen < 1 || elen > APIKEY_ENDPOINT_MAX || e[0] != '/')
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "endpoint must start with \"/\" and be 1 to %d bytes long",
					 APIKEY_ENDPOINT_MAX);
	for (i = 0; i < elen; i++)
	{
		unsigned char c = (unsigned char) e[i];

		if (c < 0x20 || c == 0x7f)
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "endpoint must not contain control characters");
	}
	memcpy(entry->endpoint, e, elen);
	entry->endpoint_len = (uint16) elen;

	entry->has_resource = !PG_ARGISNULL(resource_arg);
	entry->resource_len = 0;
	if (entry->has_resource)
	{
		text	   *resource = PG_GETARG_TEXT_PP(resource_arg);
		size_t		rlen = VARSIZE_ANY_EXHDR(resource);

		if (rlen > APIKEY_RESOURCE_MAX)
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 "resource_id must be at most %d bytes long", APIKEY_RESOURCE_MAX);
		memcpy(entry->resource, VARDATA_ANY(resource), rlen);
		entry->resource_len = (uint16) rlen;
	}
}

static Interval *
window_interval(int64 window_us)
{
	Interval   *result = palloc0(sizeof(Interval));

	if (window_us == USECS_PER_DAY)
		result->day = 1;
	else
		result->time = window_us;
	return result;
}

static int32
ns_to_ms_ceil(int64 ns)
{
	int64		ms = (ns + 999999) / 1000000;

	return (int32) Min(ms, PG_INT32_MAX);
}

/*
 * check_request(api_key, method, endpoint, resource_id): the one call a
 * gateway makes before serving a request.  See API.md for the answers.
 */
PG_FUNCTION_INFO_V1(apikey_usage_check_request);
Datum
apikey_usage_check_request(PG_FUNCTION_ARGS)
{
	Datum		values[9];
	bool		nulls[9];
	LogEntry	entry;
	const char *key = NULL;
	size_t		key_len = 0;
	size_t		prefix_len;
	uint8		hash[APIKEY_HASH_BYTES];
	KeyInfo		info;
	LimitDecision decision;
	pg_uuid_t  *key_id;
	pg_uuid_t  *request_id;
	const char *workspace = NULL;
	TimestampTz now;

	apikey_require_preload();
	apikey_require_primary("check_request");
	fill_request_fields(fcinfo, 1, 2, 3, &entry);

	memset(nulls, true, sizeof(nulls));
	values[0] = BoolGetDatum(false);
	nulls[0] = false;
	values[3] = Int32GetDatum(401);
	nulls[3] = false;

	if (!PG_ARGISNULL(0))
	{
		text	   *key_text = PG_GETARG_TEXT_PP(0);

		key = VARDATA_ANY(key_text);
		key_len = VARSIZE_ANY_EXHDR(key_text);
	}
	if (key == NULL || !keyfmt_parse(key, key_len, &prefix_len))
		return return_one_row(fcinfo, values, nulls);
	key_hash_compute(key, key_len, hash);
	/* unknown, or cached but its row is gone (extension dropped and created) */
	if (keycache_verify(hash, true, &info, &decision) == KEY_UNKNOWN ||
		(workspace = KEYINFO_WORKSPACE(&info)) == NULL)
		return return_one_row(fcinfo, values, nulls);

	key_id = palloc(sizeof(pg_uuid_t));
	*key_id = info.key_id;
	values[1] = UUIDPGetDatum(key_id);
	values[2] = CStringGetTextDatum(workspace);
	nulls[1] = nulls[2] = false;
	if (info.rate_limit > 0)
	{
		values[4] = Int32GetDatum(info.rate_limit);
		values[8] = IntervalPGetDatum(window_interval(info.rate_window_us));
		nulls[4] = nulls[8] = false;
	}

	now = GetCurrentTimestamp();
	request_id = palloc(sizeof(pg_uuid_t));
	uuid_v7_generate(request_id, now);
	values[7] = UUIDPGetDatum(request_id);
	nulls[7] = false;

	if (decision.allowed)
	{
		values[0] = BoolGetDatum(true);
		nulls[3] = true;
		if (decision.remaining >= 0)
		{
			values[5] = Int32GetDatum((int32) decision.remaining);
			values[6] = Int32GetDatum(ns_to_ms_ceil(decision.retry_after_ns));
			nulls[5] = nulls[6] = false;
		}
		return return_one_row(fcinfo, values, nulls);
	}

	/* refused: expired (401, failed) or over the limit (429): log it now */
	if (decision.expired)
		entry.response_code = 401;
	else
	{
		entry.response_code = 429;
		values[3] = Int32GetDatum(429);
		values[5] = Int32GetDatum(0);
		values[6] = Int32GetDatum(Max(1, ns_to_ms_ceil(decision.retry_after_ns)));
		nulls[5] = nulls[6] = false;
	}
	entry.request_id = *request_id;
	entry.requested_at = now;
	entry.key_id = info.key_id;
	logbuf_append(&entry);
	return return_one_row(fcinfo, values, nulls);
}

/*
 * log_request(key_id, method, endpoint, response_code, resource_id,
 * request_id, requested_at): log one served request; returns its id.
 */
PG_FUNCTION_INFO_V1(apikey_usage_log_request);
Datum
apikey_usage_log_request(PG_FUNCTION_ARGS)
{
	LogEntry	entry;
	pg_uuid_t  *key_id;
	int32		code;
	pg_uuid_t  *result;
	TimestampTz tx_now = GetCurrentTransactionStartTimestamp();

	apikey_require_preload();
	apikey_require_primary("log_request");
	if (PG_ARGISNULL(0))
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED, "key_id must not be NULL");
	key_id = PG_GETARG_UUID_P(0);
	fill_request_fields(fcinfo, 1, 2, 4, &entry);
	if (PG_ARGISNULL(3))
		bad_argument(ERRCODE_NULL_VALUE_NOT_ALLOWED, "response_code must not be NULL");
	code = PG_GETARG_INT32(3);
	if (code < 100 || code > 599)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "response_code must be between 100 and 599");
	entry.response_code = (int16) code;

	result = palloc(sizeof(pg_uuid_t));
	if (!PG_ARGISNULL(5))
		*result = *PG_GETARG_UUID_P(5);
	if (!PG_ARGISNULL(6))
		entry.requested_at = PG_GETARG_TIMESTAMPTZ(6);
	else if (PG_ARGISNULL(5) || !uuid_v7_time(result, &entry.requested_at))
		entry.requested_at = GetCurrentTimestamp();
	if (PG_ARGISNULL(5))
		uuid_v7_generate(result, entry.requested_at);

	/* a given time, or one taken from a given UUIDv7, must be in range */
	if (!PG_ARGISNULL(6) || !PG_ARGISNULL(5))
	{
		Interval   *retention = apikey_retention();
		TimestampTz oldest;
		TimestampTz newest;

		oldest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(tx_now),
														 IntervalPGetDatum(retention)));
		newest = tx_now + USECS_PER_HOUR;
		if (entry.requested_at < oldest || entry.requested_at > newest)
			bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
						 PG_ARGISNULL(6) ?
						 "the time inside request_id must lie between now() - apikey_usage.retention and now() + 1 hour" :
						 "requested_at must lie between now() - apikey_usage.retention and now() + 1 hour");
	}

	if (key_workspace(key_id) == NULL)
		bad_argument(ERRCODE_INVALID_PARAMETER_VALUE,
					 "no API key with id %s",
					 DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(key_id))));
	entry.key_id = *key_id;
	entry.request_id = *result;
	logbuf_append(&entry);
	PG_RETURN_UUID_P(result);
}
