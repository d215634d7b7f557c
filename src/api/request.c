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

/*
 * A bad request field found by request_fields_valid: the SQLSTATE and the
 * message to raise (never containing the value, which might be a key).
 */
typedef struct FieldError
{
	int			sqlstate;
	char	   *message;
} FieldError;

static bool
field_error(FieldError *error, int sqlstate, char *message)
{
	error->sqlstate = sqlstate;
	error->message = message;
	return false;
}

/*
 * Check method, endpoint and resource_id and copy them into the entry
 * (method upper-cased).  Returns false and fills *error (22004 / 22023)
 * at the first bad one, raising nothing: check_request looks at the
 * credentials before it decides whether a bad argument is an error.
 */
static bool
request_fields_valid(FunctionCallInfo fcinfo, int method_arg, int endpoint_arg,
					 int resource_arg, LogEntry *entry, FieldError *error)
{
	text	   *method;
	text	   *endpoint;
	const char *m;
	const char *e;
	size_t		mlen;
	size_t		elen;
	size_t		i;

	if (PG_ARGISNULL(method_arg))
		return field_error(error, ERRCODE_NULL_VALUE_NOT_ALLOWED,
						   "method must not be NULL");
	if (PG_ARGISNULL(endpoint_arg))
		return field_error(error, ERRCODE_NULL_VALUE_NOT_ALLOWED,
						   "endpoint must not be NULL");
	method = PG_GETARG_TEXT_PP(method_arg);
	endpoint = PG_GETARG_TEXT_PP(endpoint_arg);
	m = VARDATA_ANY(method);
	e = VARDATA_ANY(endpoint);
	mlen = VARSIZE_ANY_EXHDR(method);
	elen = VARSIZE_ANY_EXHDR(endpoint);

	if (mlen < 1 || mlen > APIKEY_METHOD_MAX)
		return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
						   psprintf("method must be 1 to %d bytes long",
									APIKEY_METHOD_MAX));
	for (i = 0; i < mlen; i++)
	{
		unsigned char c = (unsigned char) m[i];

		if (!is_tchar(c))
			return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
							   "method must be an HTTP method token (letters, digits and !#$%&'*+-.^_`|~)");
		entry->method[i] = (c >= 'a' && c <= 'z') ? c - ('a' - 'A') : c;
	}
	entry->method_len = (uint8) mlen;

	if (elen < 1 || elen > APIKEY_ENDPOINT_MAX || e[0] != '/')
		return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
						   psprintf("endpoint must start with \"/\" and be 1 to %d bytes long",
									APIKEY_ENDPOINT_MAX));
	for (i = 0; i < elen; i++)
	{
		unsigned char c = (unsigned char) e[i];

		if (c < 0x20 || c == 0x7f)
			return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
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
			return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
							   psprintf("resource_id must be at most %d bytes long",
										APIKEY_RESOURCE_MAX));
		memcpy(entry->resource, VARDATA_ANY(resource), rlen);
		entry->resource_len = (uint16) rlen;
	}
	return true;
}

/*
 * Check method, endpoint and resource_id and copy them into the entry
 * (method upper-cased).  Raises 22004 / 22023.
 */
static void
fill_request_fields(FunctionCallInfo fcinfo, int method_arg, int endpoint_arg,
					int resource_arg, LogEntry *entry)
{
	FieldError	error;

	if (!request_fields_valid(fcinfo, method_arg, endpoint_arg, resource_arg,
							  entry, &error))
		bad_argument(error.sqlstate, "%s", error.message);
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

/* check_request's result columns */
enum
{
	CR_ALLOWED,
	CR_KEY_ID,
	CR_WORKSPACE,
	CR_RESPONSE_CODE,
	CR_RATE_LIMIT,
	CR_REMAINING,
	CR_RETRY_AFTER_MS,
	CR_REQUEST_ID,
	CR_RATE_WINDOW,
	CR_REASON,
	CR_RESET_AFTER_MS,
	CR_NCOLUMNS
};

/*
 * check_request(api_key, method, endpoint, resource_id): the one call a
 * gateway makes before serving a request.  See README for the answers.
 *
 * Credentials come first: a malformed, unknown, revoked or expired key is
 * a 401 whatever the other arguments hold (a refusal of a recognised key
 * is logged under it when those arguments are valid, and not logged
 * otherwise).  Only a live key with a bad argument raises 22023 / 22004,
 * before any limiter step.
 */
PG_FUNCTION_INFO_V1(apikey_usage_check_request);
Datum
apikey_usage_check_request(PG_FUNCTION_ARGS)
{
	Datum		values[CR_NCOLUMNS];
	bool		nulls[CR_NCOLUMNS];
	LogEntry	entry;
	FieldError	field_error;
	bool		fields_ok;
	const char *key = NULL;
	size_t		key_len = 0;
	size_t		prefix_len;
	uint8		hash[APIKEY_HASH_BYTES];
	KeyInfo		info;
	LimitDecision decision;
	KeyLookupResult found;
	pg_uuid_t  *key_id;
	pg_uuid_t  *request_id;
	const char *workspace = NULL;
	TimestampTz now;

	apikey_require_preload();

	memset(nulls, true, sizeof(nulls));
	values[CR_ALLOWED] = BoolGetDatum(false);
	nulls[CR_ALLOWED] = false;
	values[CR_RESPONSE_CODE] = Int32GetDatum(401);
	nulls[CR_RESPONSE_CODE] = false;
	values[CR_REASON] = CStringGetTextDatum("malformed");
	nulls[CR_REASON] = false;

	if (!PG_ARGISNULL(0))
	{
		text	   *key_text = PG_GETARG_TEXT_PP(0);

		key = VARDATA_ANY(key_text);
		key_len = VARSIZE_ANY_EXHDR(key_text);
	}
	if (key == NULL || !keyfmt_parse(key, key_len, &prefix_len))
		return return_one_row(fcinfo, values, nulls);

	/* no limiter step for a request that will be refused as bad input */
	fields_ok = request_fields_valid(fcinfo, 1, 2, 3, &entry, &field_error);
	key_hash_compute(key, key_len, hash);
	memset(&decision, 0, sizeof(decision));
	found = keycache_verify(hash, fields_ok, &info, &decision);
	/* unknown, or cached but its row is gone (extension dropped and created) */
	if (found == KEY_UNKNOWN ||
		(workspace = KEYINFO_WORKSPACE(&info)) == NULL)
	{
		values[CR_REASON] = CStringGetTextDatum("unknown");
		return return_one_row(fcinfo, values, nulls);
	}

	key_id = palloc(sizeof(pg_uuid_t));
	*key_id = info.key_id;
	values[CR_KEY_ID] = UUIDPGetDatum(key_id);
	values[CR_WORKSPACE] = CStringGetTextDatum(workspace);
	nulls[CR_KEY_ID] = nulls[CR_WORKSPACE] = false;

	if (found == KEY_FOUND && !decision.expired && fields_ok)
	{
		/* a live key: its limit applies */
		if (info.rate_limit > 0)
		{
			values[CR_RATE_LIMIT] = Int32GetDatum(info.rate_limit);
			values[CR_RATE_WINDOW] = IntervalPGetDatum(window_interval(info.rate_window_us));
			nulls[CR_RATE_LIMIT] = nulls[CR_RATE_WINDOW] = false;
		}
	}
	else if (found == KEY_FOUND && !decision.expired)
	{
		/* a live key and a bad argument: the caller's error */
		bad_argument(field_error.sqlstate, "%s", field_error.message);
	}
	else if (found == KEY_FOUND && info.rate_limit > 0)
	{
		/* expired: the limit is echoed as before, nothing else */
		values[CR_RATE_LIMIT] = Int32GetDatum(info.rate_limit);
		values[CR_RATE_WINDOW] = IntervalPGetDatum(window_interval(info.rate_window_us));
		nulls[CR_RATE_LIMIT] = nulls[CR_RATE_WINDOW] = false;
	}

	if (found == KEY_REVOKED || decision.expired)
	{
		values[CR_REASON] = CStringGetTextDatum(found == KEY_REVOKED ? "revoked" : "expired");
		/* an attempt with a recognised key: logged as failed 401 under it */
		if (!fields_ok)
			return return_one_row(fcinfo, values, nulls);
		entry.response_code = 401;
	}
	else if (decision.allowed)
	{
		now = GetCurrentTimestamp();
		request_id = palloc(sizeof(pg_uuid_t));
		uuid_v7_generate(request_id, now);
		values[CR_REQUEST_ID] = UUIDPGetDatum(request_id);
		nulls[CR_REQUEST_ID] = false;
		values[CR_ALLOWED] = BoolGetDatum(true);
		nulls[CR_RESPONSE_CODE] = true;
		values[CR_REASON] = CStringGetTextDatum("valid");
		if (decision.remaining >= 0)
		{
			values[CR_REMAINING] = Int32GetDatum((int32) decision.remaining);
			values[CR_RETRY_AFTER_MS] = Int32GetDatum(ns_to_ms_ceil(decision.retry_after_ns));
			values[CR_RESET_AFTER_MS] = Int32GetDatum(ns_to_ms_ceil(decision.reset_after_ns));
			nulls[CR_REMAINING] = nulls[CR_RETRY_AFTER_MS] = nulls[CR_RESET_AFTER_MS] = false;
		}
		return return_one_row(fcinfo, values, nulls);
	}
	else
	{
		/* over the limit: 429, logged as rate_limited */
		entry.response_code = 429;
		values[CR_RESPONSE_CODE] = Int32GetDatum(429);
		values[CR_REASON] = CStringGetTextDatum("rate_limited");
		values[CR_REMAINING] = Int32GetDatum(0);
		values[CR_RETRY_AFTER_MS] = Int32GetDatum(Max(1, ns_to_ms_ceil(decision.retry_after_ns)));
		values[CR_RESET_AFTER_MS] = Int32GetDatum(Max(1, ns_to_ms_ceil(decision.reset_after_ns)));
		nulls[CR_REMAINING] = nulls[CR_RETRY_AFTER_MS] = nulls[CR_RESET_AFTER_MS] = false;
	}

	/* refused and logged now: expired, revoked (401) or over the limit (429) */
	now = GetCurrentTimestamp();
	request_id = palloc(sizeof(pg_uuid_t));
	uuid_v7_generate(request_id, now);
	values[CR_REQUEST_ID] = UUIDPGetDatum(request_id);
	nulls[CR_REQUEST_ID] = false;
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
