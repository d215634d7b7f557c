/*-------------------------------------------------------------------------
 *
 * apikey_usage.h
 *		Declarations shared by the apikey_usage sources.
 *
 * One capability per file:
 *	apikey_usage.c	_PG_init, GUCs, shared-memory hooks
 *	keyformat.c		key text format (pure C)
 *	secret.c		server secret file, encryption of keys
 *	keys.c			key material, verify_key, invalidation at commit
 *	keycache.c		shared-memory key cache (partitioned, clock sweep), limiter
 *					state, last_used_at queue
 *	ratelimit.c		GCRA arithmetic (pure)
 *	logbuf.c		durable log ring in a file-backed shared mapping
 *	spool.c			overflow files for entries that find the ring full
 *	flusher.c		background worker
 *	writer.c		the one write path: checks, dedup, bulk insert, rollups
 *	request.c		check_request, log_request(s), argument validation
 *	import.c		import_requests (bulk history, through writer.c)
 *	stats.c			runtime_stats, flush(), helpers for views
 *	node.c			node_of(), key ids that carry the node (fleets)
 *	owner.c			run writes as apikey_usage_owner, security-restricted
 *
 *-------------------------------------------------------------------------
 */
#ifndef APIKEY_USAGE_H
#define APIKEY_USAGE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "fmgr.h"
#include "utils/relcache.h"
#include "utils/uuid.h"

#define APIKEY_HASH_BYTES	32	/* BLAKE2b-256 */

/* log entry field limits (API.md) */
#define APIKEY_METHOD_MAX	32
#define APIKEY_ENDPOINT_MAX 1024
#define APIKEY_RESOURCE_MAX 256

/* GUCs (apikey_usage.c) */
extern char *apikey_database;
extern int	apikey_max_keys;
extern int	apikey_log_buffer_entries;
extern int	apikey_flush_interval_ms;
extern char *apikey_retention_string;
extern char *apikey_secret_file;
extern int	apikey_log_mode;
extern int	apikey_node_id;

#define LOG_MODE_BUFFERED		0
#define LOG_MODE_SYNCHRONOUS	1

/* apikey_usage.c */
extern bool apikey_preloaded;
extern void apikey_require_preload(void);
extern Interval *apikey_retention(void);
extern void apikey_require_primary(const char *what);

/* indexes.c */
extern Oid	apikey_find_index(Relation rel, const AttrNumber *keys, int nkeys,
							  bool exact, Oid am);

/* owner.c */
typedef struct OwnerSwitch
{
	bool		active;
	Oid			save_userid;
	int			save_sec_context;
	int			nest_level;
} OwnerSwitch;

#define OWNER_SWITCH_INIT {false, InvalidOid, 0, 0}

extern Oid	apikey_writer_role(void);
extern void apikey_owner_begin(OwnerSwitch *sw);
extern void apikey_owner_end(OwnerSwitch *sw);
extern void apikey_owner_abort(OwnerSwitch *sw);

/* redact.c */
extern void redact_install_hook(void);

/* flusher.c: true in the background worker */
extern bool apikey_am_worker;
extern bool redact_keys_in_text(char *buf, size_t len);

/* secret.c */
extern void secret_load_or_create(void);
extern bytea *secret_encrypt_key(const char *api_key, size_t len,
								 const pg_uuid_t *key_id);
extern char *secret_decrypt_key(const bytea *ciphertext,
								const pg_uuid_t *key_id);


/* What a key lookup returns (cache or table). */
/* workspaces up to this length (with the NUL) are kept in the key cache */
#define APIKEY_WORKSPACE_INLINE 48

typedef struct KeyInfo
{
	pg_uuid_t	key_id;
	TimestampTz expires_at;		/* DT_NOEND when the key never expires */
	int32		rate_limit;		/* 0 when unlimited */
	int64		rate_window_us;
	TimestampTz last_used_at;	/* as stored in the table; 0 when NULL */
	char		workspace[APIKEY_WORKSPACE_INLINE];	/* "" when longer */

	/*
	 * Set by a table lookup that matched a rolled key's previous hash
	 * (roll_key): that key verifies as the key until previous_valid_until,
	 * through the current hash, which shares the key's limiter state.
	 */
	bool		via_previous;
	TimestampTz previous_valid_until;
	uint8		current_hash[APIKEY_HASH_BYTES];
} KeyInfo;

/* The workspace of a key found by keycache_verify. */
#define KEYINFO_WORKSPACE(info) \
	((info)->workspace[0] != '\0' ? (const char *) (info)->workspace : \
	 key_workspace(&(info)->key_id))

/*
 * Outcome of a key lookup by hash.  The internal lookup API:
 *	keycache_verify()			the request path: cache, else table (fills)
 *	key_table_lookup_by_hash()	the table read of a miss (no SPI, committed
 *								rows only); a new outcome (e.g. a revoked
 *								key) is added here and passed through
 *								keycache_verify() uncached
 */
typedef enum KeyLookupResult
{
	KEY_FOUND,
	KEY_UNKNOWN,
	KEY_REVOKED					/* a deleted key, recognised by the hash its
								 * tombstone keeps: key_id and workspace set */
} KeyLookupResult;

/* Result of one limiter step. */
typedef struct LimitDecision
{
	bool		allowed;
	bool		expired;		/* the key was found but has expired */
	int64		remaining;		/* -1 when unlimited */
	int64		retry_after_ns;
	int64		reset_after_ns; /* until the full burst is back: TAT - now,
								 * 0 when full or unlimited */
} LimitDecision;

/* keys.c */
extern void key_hash_compute(const char *api_key, size_t len,
							 uint8 hash[APIKEY_HASH_BYTES]);
extern KeyLookupResult key_table_lookup_by_hash(const uint8 hash[APIKEY_HASH_BYTES],
												KeyInfo *info, char **workspace);
extern void key_remember_workspace(const pg_uuid_t *key_id,
								   const char *workspace);
extern const char *key_workspace(const pg_uuid_t *key_id);
extern void key_forget_workspaces(void);
extern Datum return_one_row(FunctionCallInfo fcinfo, Datum *values,
							bool *nulls, const Oid *types, int ncolumns);

/* keycache.c */
typedef struct KeyCacheStats
{
	int64		size;
	int64		hits;
	int64		misses;
	int64		evictions;
	int32		partitions;
	int64		last_used_queued;	/* records put in the last_used ring */
	int64		last_used_dropped;	/* records the full ring refused */
	int64		last_used_pending;	/* records waiting for the worker */
} KeyCacheStats;

extern int	apikey_last_used_resolution_s;
extern Size keycache_shmem_size(void);
extern void keycache_shmem_request(void);
extern void keycache_shmem_init(void);
extern KeyLookupResult keycache_verify(const uint8 hash[APIKEY_HASH_BYTES],
									   bool apply_limit, KeyInfo *info,
									   LimitDecision *decision);
extern void keycache_invalidate_at_commit(const uint8 hash[APIKEY_HASH_BYTES]);
extern void keycache_stats(KeyCacheStats *stats);
extern int	keycache_collect_last_used(pg_uuid_t **ids, TimestampTz **times);
extern int	keycache_take_last_used(int max, pg_uuid_t *ids, TimestampTz *times);
extern Size keycache_bytes(void);
extern void keycache_clear(void);

/* ratelimit.c */
typedef struct GcraParams
{
	int64		emission_interval_ns;	/* T = ceil(window / limit) */
	int64		tolerance_ns;	/* (limit - 1) * T: the burst */
} GcraParams;
extern void gcra_params(int32 rate_limit, int64 rate_window_us,
						GcraParams *params);
extern void gcra_step(const GcraParams *params, int64 *tat_ns, int64 now_ns,
					  LimitDecision *decision);

/* logbuf.c */
typedef struct LogEntry
{
	pg_uuid_t	request_id;
	TimestampTz requested_at;
	pg_uuid_t	key_id;
	uint32		installation;	/* log_installation_id() when logged */
	int16		response_code;
	bool		id_given;		/* request_id came from the caller */
	bool		has_resource;
	uint8		method_len;
	uint16		endpoint_len;
	uint16		resource_len;
	char		method[APIKEY_METHOD_MAX];
	char		endpoint[APIKEY_ENDPOINT_MAX];
	char		resource[APIKEY_RESOURCE_MAX];
} LogEntry;

extern Size logbuf_shmem_size(void);
extern void logbuf_shmem_init(void);
extern void logbuf_map_file(void);
extern void logbuf_append(const LogEntry *entry);
extern void logbuf_append_batch(const LogEntry *entries, int count);
extern uint64 logbuf_reserved_seq(void);
extern uint64 logbuf_flushed_seq(void);
extern uint64 logbuf_capacity(void);
extern Size logbuf_file_bytes(void);
extern uint64 logbuf_ring_id(void);
extern bool logbuf_check_origin(uint64 sysid, uint32 timeline,
								int64 table_seq, uint64 *discarded);
extern void logbuf_set_sql_version_mismatch(bool mismatch);
extern int	logbuf_take_batch(uint64 from_seq, int max_entries,
							  LogEntry *entries, const char **damage,
							  uint64 *next_seq);
extern void logbuf_set_flushed(uint64 seq);
extern void logbuf_wait_flushed(uint64 seq);
extern void logbuf_wake_worker(void);
extern bool logbuf_take_wake_request(void);
extern void logbuf_set_worker_latch(Latch *latch, int pid);
extern void logbuf_broadcast_flushed(void);
extern void logbuf_wait_spooled(char **names, int count);
extern void logbuf_stats(int64 *logged, int64 *flushed, int64 *fallbacks,
						 int64 *errors, TimestampTz *last_flush,
						 int *worker_pid, int64 *recovered);
extern void logbuf_count_flush(int64 n, bool recovered);
extern void logbuf_count_error(void);
extern void logbuf_heartbeat(void);
extern void logbuf_count_outcome(int64 duplicates, int64 quarantined,
								 int64 discarded);
extern void logbuf_outcome_stats(int64 *duplicates, int64 *quarantined,
								 int64 *discarded);
extern uint32 log_entry_crc(const LogEntry *entry);

/*
 * writer.c: the columns of request_log_raw that the writer fills and
 * request_log.c reads, looked up by name in each day partition (a
 * partition's attribute numbers may differ from the parent's).
 */
typedef enum RawLogColumn
{
	COL_REQUESTED_AT,
	COL_REQUEST_ID,
	COL_API_KEY_ID,
	COL_METHOD,
	COL_ENDPOINT,
	COL_RESPONSE_CODE,
	COL_RESOURCE_ID,
	NUM_COLS
} RawLogColumn;

extern const char *const rawlog_col_names[NUM_COLS];

typedef enum WriterSource
{
	WRITER_RING,
	WRITER_SPOOL,
	WRITER_IMPORT
} WriterSource;

typedef struct WriterCounts
{
	int64		written;		/* rows inserted */
	int64		duplicates;		/* already logged: skipped */
	int64		quarantined;	/* moved to apikey_usage.quarantine */
	int64		discarded;		/* of a dropped installation */
} WriterCounts;

extern uint32 log_installation_id(bool missing_ok);
extern const char *log_entry_problem(const LogEntry *entry, TimestampTz now);
extern void writer_write(LogEntry *entries, const char *const *damage,
						 int count, WriterSource source,
						 WriterCounts *counts);

/* spool.c */
extern void spool_init_dir(void);
extern void spool_write(const LogEntry *entry, char *name_out);
extern bool spool_exists(const char *name);
extern int	spool_list(char ***names_out, int max);
extern bool spool_read(const char *name, LogEntry *entry, const char **damage);
extern void spool_remove(const char *name);

/* flusher.c */
extern void flusher_register(void);
extern PGDLLEXPORT void apikey_usage_worker_main(Datum main_arg);
extern char *apikey_installed_version(Oid extension);

/* request.c */
extern void uuid_v7_generate(pg_uuid_t *uuid, TimestampTz ts);
extern bool uuid_v7_time(const pg_uuid_t *uuid, TimestampTz *ts);
extern const char *request_element_word;
extern void request_check_fields(text *method, text *endpoint, text *resource,
								 int element, LogEntry *entry);
extern void request_check_rest(const pg_uuid_t *key_id, int32 code,
							   bool code_null, const pg_uuid_t *request_id,
							   const TimestampTz *requested_at,
							   TimestampTz tx_now, int element,
							   LogEntry *entry);
extern Oid	apikey_owner_oid(void);

#endif							/* APIKEY_USAGE_H */
