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

#include <sodium.h>

#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"
#include "keyformat.h"

#define UNIX_EPOCH_OFFSET_MS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)

#define bad_argument(code, ...) \
	ereport(ERROR, (errcode(code), errhidestmt(true), errmsg(__VA_ARGS__)))

/*
 * The random bits of request ids: a ChaCha20 keystream private to the
 * process, keyed from the kernel (libsodium's randombytes_buf: getrandom)
 * at its first use in each process, so that backends forked from the
 * postmaster never share a stream, whatever was drawn before the fork.
 * It is drawn 512 bytes (64 ids) at a time; every refill also replaces the
 * key (fast key erasure), so the memory of a backend never reveals ids it
 * handed out before.  Unpredictable like pg_strong_random(), without its
 * cost of a system call per id.
 */
#define ID_STREAM_BYTES 512
static uint8 id_key[crypto_stream_chacha20_KEYBYTES];
static uint8 id_stream[crypto_stream_chacha20_KEYBYTES + ID_STREAM_BYTES];
static int	id_stream_pos = sizeof(id_stream);
static int	id_stream_pid = 0;	/* the process the key was drawn for */

static uint64
request_id_random(void)
{
	static const uint8 nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
	uint64		bits;

	if (id_stream_pid != MyProcPid)
	{
		/* first use in this process: a fresh key, not the parent's */
		randombytes_buf(id_key, sizeof(id_key));
		id_stream_pid = MyProcPid;
		id_stream_pos = sizeof(id_stream);
	}
	if (id_stream_pos + sizeof(bits) > sizeof(id_stream))
	{
		crypto_stream_chacha20(id_stream, sizeof(id_stream), nonce, id_key);
		memcpy(id_key, id_stream, sizeof(id_key));
		sodium_memzero(id_stream, sizeof(id_key));
		id_stream_pos = sizeof(id_key);
	}
	memcpy(&bits, id_stream + id_stream_pos, sizeof(bits));
	memset(id_stream + id_stream_pos, 0, sizeof(bits));
	id_stream_pos += sizeof(bits);
	return bits;
}

/*
 * A UUIDv7 for ts: 48 bits of Unix milliseconds, the sub-millisecond part
 * in the 12 bits of rand_a (RFC 9562, method 3), 62 random bits.
 */
void
uuid_v7_generate(pg_uuid_t *uuid, TimestampTz ts)
{
	int64		unix_ms = ts / 1000 + UNIX_EPOCH_OFFSET_MS;
	uint32		sub_ms = (uint32) (((ts % 1000) + 1000) % 1000) * 4096 / 1000;
	uint64		random_bits = request_id_random();
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
bool
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
 * (method upper-cased; an API key with a valid checksum inside endpoint
 * or resource_id is masked, keeping its prefix).  Returns false and fills
 * *error (22004 / 22023) at the first bad one, raising nothing:
 * check_request looks at the credentials before it decides whether a bad
 * argument is an error.
 */
static bool
texts_valid(text *method, text *endpoint, text *resource, LogEntry *entry,
			FieldError *error)
{
	const char *m;
	const char *e;
	size_t		mlen;
	size_t		elen;
	size_t		i;

	if (method == NULL)
		return field_error(error, ERRCODE_NULL_VALUE_NOT_ALLOWED,
						   "method must not be NULL");
	if (endpoint == NULL)
		return field_error(error, ERRCODE_NULL_VALUE_NOT_ALLOWED,
						   "endpoint must not be NULL");
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
	/* an API key inside it (say, a query string) is stored masked */
	(void) redact_keys_in_text(entry->endpoint, elen);

	entry->has_resource = (resource != NULL);
	entry->resource_len = 0;
	if (entry->has_resource)
	{
		size_t		rlen = VARSIZE_ANY_EXHDR(resource);

		if (rlen > APIKEY_RESOURCE_MAX)
			return field_error(error, ERRCODE_INVALID_PARAMETER_VALUE,
							   psprintf("resource_id must be at most %d bytes long",
										APIKEY_RESOURCE_MAX));
		memcpy(entry->resource, VARDATA_ANY(resource), rlen);
		entry->resource_len = (uint16) rlen;
		(void) redact_keys_in_text(entry->resource, rlen);
	}
	return true;
}

/* fcinfo argument as text, NULL when SQL NULL */
#define ARG_TEXT_OR_NULL(n) (PG_ARGISNULL(n) ? NULL : PG_GETARG_TEXT_PP(n))

/* texts_valid on arguments of fcinfo */
static bool
request_fields_valid(FunctionCallInfo fcinfo, int method_arg, int endpoint_arg,
					 int resource_arg, LogEntry *entry, FieldError *error)
{
	return texts_valid(ARG_TEXT_OR_NULL(method_arg), ARG_TEXT_OR_NULL(endpoint_arg),
					   ARG_TEXT_OR_NULL(resource_arg), entry, error);
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

/* how field_error names an element: "element" (log_requests), "row" (import) */
const char *request_element_word = "element";

/*
 * Raise a bad-argument error; element > 0 names the element of a
 * log_requests batch (or the row of an import) it is about.
 */
static void
pg_attribute_noreturn()
pg_attribute_printf(3, 4)
raise_field_error(int element, int code, const char *fmt,...)
{
	char		message[512];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(message, sizeof(message), fmt, args);
	va_end(args);
	if (element > 0)
		ereport(ERROR, (errcode(code), errhidestmt(true),
						errmsg("%s %d: %s", request_element_word, element, message)));
	ereport(ERROR, (errcode(code), errhidestmt(true), errmsg("%s", message)));
	pg_unreachable();
}

/*
 * Check method, endpoint and resource_id (NULL when absent) and copy them
 * into the entry (method upper-cased).  Raises 22004 / 22023, naming the
 * element when element > 0.
 */
void
request_check_fields(text *method, text *endpoint, text *resource, int element,
					 LogEntry *entry)
{
	FieldError	error;

	if (!texts_valid(method, endpoint, resource, entry, &error))
		raise_field_error(element, error.sqlstate, "%s", error.message);
}

/*
 * The rest of a log entry: response code, request id (generated when
 * NULL), requested_at (given, else the time inside a UUIDv7 request_id,
 * else now) and key id, checked as log_request documents.  request_id
 * and requested_at may be NULL.
 */
void
request_check_rest(const pg_uuid_t *key_id, int32 code, bool code_null,
		   const pg_uuid_t *request_id, const TimestampTz *requested_at,
		   TimestampTz tx_now, int element, LogEntry *entry)
{
	if (key_id == NULL)
		raise_field_error(element, ERRCODE_NULL_VALUE_NOT_ALLOWED, "key_id must not be NULL");
	if (code_null)
		raise_field_error(element, ERRCODE_NULL_VALUE_NOT_ALLOWED, "response_code must not be NULL");
	if (code < 100 || code > 599)
		raise_field_error(element, ERRCODE_INVALID_PARAMETER_VALUE,
					"response_code must be between 100 and 599");
	entry->response_code = (int16) code;

	entry->id_given = (request_id != NULL);
	if (request_id != NULL)
		entry->request_id = *request_id;
	if (requested_at != NULL)
		entry->requested_at = *requested_at;
	else if (request_id == NULL || !uuid_v7_time(request_id, &entry->requested_at))
		entry->requested_at = GetCurrentTimestamp();
	if (request_id == NULL)
		uuid_v7_generate(&entry->request_id, entry->requested_at);

	/* a given time, or one taken from a given UUIDv7, must be in range */
	if (requested_at != NULL || request_id != NULL)
	{
		Interval   *retention = apikey_retention();
		TimestampTz oldest;
		TimestampTz newest;

		oldest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(tx_now),
														 IntervalPGetDatum(retention)));
		newest = tx_now + USECS_PER_HOUR;
		if (entry->requested_at < oldest || entry->requested_at > newest)
			raise_field_error(element, ERRCODE_INVALID_PARAMETER_VALUE,
						requested_at == NULL ?
						"the time inside request_id must lie between now() - apikey_usage.retention and now() + 1 hour" :
						"requested_at must lie between now() - apikey_usage.retention and now() + 1 hour");
	}

	if (key_workspace(key_id) == NULL)
		raise_field_error(element, ERRCODE_INVALID_PARAMETER_VALUE,
					"no API key with id %s",
					DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(unconstify(pg_uuid_t *, key_id)))));
	entry->key_id = *key_id;
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

/* their types, in that order */
static const Oid cr_types[CR_NCOLUMNS] = {BOOLOID, UUIDOID, TEXTOID, INT4OID,
	INT4OID, INT4OID, INT4OID, UUIDOID, INTERVALOID, TEXTOID, INT4OID};

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
	apikey_require_primary("check_request");
	entry.installation = log_installation_id(false);

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
		return return_one_row(fcinfo, values, nulls, cr_types, CR_NCOLUMNS);

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
		return return_one_row(fcinfo, values, nulls, cr_types, CR_NCOLUMNS);
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
			return return_one_row(fcinfo, values, nulls, cr_types, CR_NCOLUMNS);
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
		return return_one_row(fcinfo, values, nulls, cr_types, CR_NCOLUMNS);
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
	entry.id_given = false;
	entry.requested_at = now;
	entry.key_id = info.key_id;
	logbuf_append(&entry);
	return return_one_row(fcinfo, values, nulls, cr_types, CR_NCOLUMNS);
}

/*
 * log_request(key_id, method, endpoint, response_code, resource_id,
 * request_id, requested_at): log one served request; returns its id.
 * Idempotent per (request_id, requested_at): the writer skips an entry
 * already logged (writer.c).
 */
PG_FUNCTION_INFO_V1(apikey_usage_log_request);
Datum
apikey_usage_log_request(PG_FUNCTION_ARGS)
{
	LogEntry	entry;
	pg_uuid_t  *result;
	TimestampTz requested_at;

	apikey_require_preload();
	apikey_require_primary("log_request");
	entry.installation = log_installation_id(false);
	if (PG_ARGISNULL(0))
		raise_field_error(0, ERRCODE_NULL_VALUE_NOT_ALLOWED, "key_id must not be NULL");
	fill_request_fields(fcinfo, 1, 2, 4, &entry);
	if (!PG_ARGISNULL(6))
		requested_at = PG_GETARG_TIMESTAMPTZ(6);
	request_check_rest(PG_GETARG_UUID_P(0), PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3),
			   PG_ARGISNULL(3), PG_ARGISNULL(5) ? NULL : PG_GETARG_UUID_P(5),
			   PG_ARGISNULL(6) ? NULL : &requested_at,
			   GetCurrentTransactionStartTimestamp(), 0, &entry);
	logbuf_append(&entry);
	result = palloc(sizeof(pg_uuid_t));
	*result = entry.request_id;
	PG_RETURN_UUID_P(result);
}

/* Deconstruct a one-dimensional array argument (NULL: n = 0, all NULL). */
static int
array_arg(FunctionCallInfo fcinfo, int argno, Oid type, const char *name,
		  Datum **values, bool **nulls)
{
	ArrayType  *array;
	int16		typlen;
	bool		byval;
	char		align;
	int			n;

	*values = NULL;
	*nulls = NULL;
	if (PG_ARGISNULL(argno))
		return -1;
	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		raise_field_error(0, ERRCODE_INVALID_PARAMETER_VALUE, "%s must be a one-dimensional array", name);
	get_typlenbyvalalign(type, &typlen, &byval, &align);
	deconstruct_array(array, type, typlen, byval, align, values, nulls, &n);
	return n;
}

/*
 * log_requests(key_ids, methods, endpoints, response_codes, resource_ids,
 * request_ids, requested_ats): log a batch in one call.  Every element is
 * checked as log_request checks its arguments before any is logged (all
 * or nothing; the error names the first bad element, 1-based).  Returns
 * the number of entries logged.
 */
PG_FUNCTION_INFO_V1(apikey_usage_log_requests);
Datum
apikey_usage_log_requests(PG_FUNCTION_ARGS)
{
	static const char *const names[7] = {"key_ids", "methods", "endpoints",
	"response_codes", "resource_ids", "request_ids", "requested_ats"};
	static const Oid types[7] = {UUIDOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	UUIDOID, TIMESTAMPTZOID};
	Datum	   *values[7];
	bool	   *nulls[7];
	int			lens[7];
	int			n;
	int			a;
	int			i;
	LogEntry   *entries;
	uint32		installation;
	TimestampTz tx_now = GetCurrentTransactionStartTimestamp();

	apikey_require_preload();
	apikey_require_primary("log_requests");
	request_element_word = "element";
	installation = log_installation_id(false);
	for (a = 0; a < 4; a++)
		if (PG_ARGISNULL(a))
			raise_field_error(0, ERRCODE_NULL_VALUE_NOT_ALLOWED, "%s must not be NULL", names[a]);
	for (a = 0; a < 7; a++)
		lens[a] = array_arg(fcinfo, a, types[a], names[a], &values[a], &nulls[a]);
	n = lens[0];
	for (a = 1; a < 7; a++)
		if (lens[a] >= 0 && lens[a] != n)
			raise_field_error(0, ERRCODE_INVALID_PARAMETER_VALUE,
						"%s has %d elements, key_ids has %d: the arrays must have the same length",
						names[a], lens[a], n);

	entries = palloc(sizeof(LogEntry) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		LogEntry   *entry = &entries[i];
		TimestampTz at;
		bool		have_id = lens[5] >= 0 && !nulls[5][i];
		bool		have_at = lens[6] >= 0 && !nulls[6][i];

		if (have_at)
			at = DatumGetTimestampTz(values[6][i]);
		entry->installation = installation;
		request_check_fields(nulls[1][i] ? NULL : DatumGetTextPP(values[1][i]),
					 nulls[2][i] ? NULL : DatumGetTextPP(values[2][i]),
					 (lens[4] < 0 || nulls[4][i]) ? NULL : DatumGetTextPP(values[4][i]),
					 i + 1, entry);
		request_check_rest(nulls[0][i] ? NULL : DatumGetUUIDP(values[0][i]),
				   nulls[3][i] ? 0 : DatumGetInt32(values[3][i]), nulls[3][i],
				   have_id ? DatumGetUUIDP(values[5][i]) : NULL,
				   have_at ? &at : NULL, tx_now, i + 1, entry);
	}
	logbuf_append_batch(entries, n);
	PG_RETURN_INT64((int64) n);
}
