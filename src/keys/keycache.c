/*-------------------------------------------------------------------------
 *
 * keycache.c
 *		Shared-memory cache of API keys by hash, with each key's limiter
 *		state and last_used_at.
 *
 * Locking rules
 * -------------
 * - KeyCacheShared->lock (LWLock): shared to look an entry up and to use
 *	 it; exclusive to insert, remove, evict, mark for invalidation, and to
 *	 read-modify-write generation and evicted[].  An entry pointer is
 *	 valid only while the lock is held (in either mode).
 * - KeyCacheEntry->mutex (spinlock): guards tat_ns, last_used and
 *	 last_used_flushed of that entry.  Taken with the LWLock held, never the
 *	 other way round, and only around a few instructions.
 * - lru_time is written without a lock by whoever uses the entry: it only
 *	 steers eviction, so a lost update is harmless.
 * - Counters are atomics.
 *
 * Revocation protocol (delete_key, set_rate_limit)
 * ------------------------------------------------
 * The changing transaction calls keycache_invalidate_at_commit(hash).  At
 * PRE_COMMIT the entry (if cached) is marked "invalidating": every lookup
 * of it then reads the key table with the latest snapshot, so it sees the
 * change exactly when the commit becomes visible, while it keeps using the
 * shared limiter state.  At COMMIT the entry is removed; at ABORT the mark
 * is cleared.  Both bump generation.  A backend that fills the cache after
 * a miss notes generation before reading the table and inserts only if it
 * is unchanged, otherwise it starts over: so a table read from before the
 * commit can never bring a deleted key back.
 *
 * Limiter state survives eviction conservatively: an evicted entry whose
 * TAT lies in the future leaves it in evicted[slot of its hash], tagged
 * with 64 bits of its hash.  A slot whose state has passed is free; a slot
 * wanted by two keys with live state keeps the max of both, tagged MIXED.
 * A refilled key whose tag (or MIXED) is in its slot starts from
 * min(that TAT, now + its tolerance + its emission interval), the furthest
 * its own TAT can be ahead: it can only refuse more, never allow more than
 * the bound, and a key whose state is not in its slot never had live
 * state taken from it.  set_rate_limit starts the key afresh under its
 * new limit; delete_key needs no state.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

#define NS_PER_US INT64CONST(1000)

typedef struct KeyCacheEntry
{
	uint8		key_hash[APIKEY_HASH_BYTES];	/* hash table key */
	pg_uuid_t	key_id;
	TimestampTz expires_at;
	int32		rate_limit;		/* 0 = unlimited */
	int32		invalidating;	/* transactions about to commit a change */
	int64		rate_window_us;
	GcraParams	gcra;
	TimestampTz lru_time;
	slock_t		mutex;
	int64		tat_ns;			/* GCRA theoretical arrival time */
	TimestampTz last_used;
	TimestampTz last_used_flushed;
	char		workspace[APIKEY_WORKSPACE_INLINE];	/* "" when longer */
} KeyCacheEntry;

/* limiter state of evicted keys (see the header comment) */
typedef struct EvictedState
{
	uint64		tag;			/* 64 bits of the key hash, or EVICTED_MIXED */
	int64		tat_ns;
} EvictedState;

#define EVICTED_MIXED 0			/* real tags have their low bit set */
#define EVICTED_SLOTS (2 * apikey_max_keys)

typedef struct KeyCacheShared
{
	LWLock	   *lock;
	uint64		generation;
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;
	pg_atomic_uint64 evictions;
	EvictedState evicted[FLEXIBLE_ARRAY_MEMBER];	/* EVICTED_SLOTS */
} KeyCacheShared;

static KeyCacheShared *cache = NULL;
static HTAB *cache_htab = NULL;

static Size
shared_struct_size(void)
{
	return add_size(offsetof(KeyCacheShared, evicted),
					mul_size(EVICTED_SLOTS, sizeof(EvictedState)));
}

Size
keycache_shmem_size(void)
{
	return add_size(shared_struct_size(),
					hash_estimate_size(apikey_max_keys, sizeof(KeyCacheEntry)));
}

Size
keycache_bytes(void)
{
	return keycache_shmem_size();
}

/*
 * Create or attach; called with AddinShmemInitLock held.
 */
void
keycache_shmem_init(void)
{
	bool		found;
	HASHCTL		info;

	cache = ShmemInitStruct("apikey_usage key cache", shared_struct_size(), &found);
	if (!found)
	{
		cache->lock = &(GetNamedLWLockTranche("apikey_usage"))[0].lock;
		cache->generation = 0;
		pg_atomic_init_u64(&cache->hits, 0);
		pg_atomic_init_u64(&cache->misses, 0);
		pg_atomic_init_u64(&cache->evictions, 0);
		memset(cache->evicted, 0, sizeof(EvictedState) * EVICTED_SLOTS);
	}
	info.keysize = APIKEY_HASH_BYTES;
	info.entrysize = sizeof(KeyCacheEntry);
	cache_htab = ShmemInitHash("apikey_usage key cache hash",
							   apikey_max_keys, apikey_max_keys,
							   &info, HASH_ELEM | HASH_BLOBS);
}

static inline EvictedState *
evicted_slot(const uint8 hash[APIKEY_HASH_BYTES])
{
	uint32		bits;

	memcpy(&bits, hash, sizeof(bits));
	return &cache->evicted[bits % (uint32) EVICTED_SLOTS];
}

static inline uint64
evicted_tag(const uint8 hash[APIKEY_HASH_BYTES])
{
	uint64		tag;

	memcpy(&tag, hash + 8, sizeof(tag));
	return tag | 1;
}

/* Exclusive lock held: keep a departing entry's future TAT. */
static void
remember_tat(KeyCacheEntry *entry, int64 now_ns)
{
	int64		tat;
	EvictedState *slot;
	uint64		tag = evicted_tag(entry->key_hash);

	SpinLockAcquire(&entry->mutex);
	tat = entry->tat_ns;
	SpinLockRelease(&entry->mutex);
	if (tat <= now_ns)
		return;					/* a full bucket: nothing to remember */
	slot = evicted_slot(entry->key_hash);
	if (slot->tat_ns <= now_ns)
		slot->tag = tag;		/* free (its state has passed) */
	else if (slot->tag != tag)
		slot->tag = EVICTED_MIXED;
	slot->tat_ns = Max(slot->tat_ns, tat);
}

/*
 * Exclusive lock held: the remembered TAT of a key being (re)filled, or 0.
 * A slot holding only this key's state is freed, the state moving back
 * into the entry.
 */
static int64
recall_tat(const uint8 hash[APIKEY_HASH_BYTES], int64 now_ns)
{
	EvictedState *slot = evicted_slot(hash);
	uint64		tag = evicted_tag(hash);
	int64		tat;

	if (slot->tat_ns <= now_ns ||
		(slot->tag != tag && slot->tag != EVICTED_MIXED))
		return 0;
	tat = slot->tat_ns;
	if (slot->tag == tag)
		slot->tat_ns = 0;
	return tat;
}

/* Exclusive lock held: forget a key's remembered state (new limit). */
static void
forget_tat(const uint8 hash[APIKEY_HASH_BYTES])
{
	EvictedState *slot = evicted_slot(hash);

	if (slot->tag == evicted_tag(hash))
		slot->tat_ns = 0;
}

static int
compare_timestamps(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return (x > y) - (x < y);
}

/*
 * Exclusive lock held, cache full: evict the least recently used ~1% of
 * the entries (at least one), never one being invalidated.
 */
static void
evict_entries(int64 now_ns)
{
	long		n = hash_get_num_entries(cache_htab);
	TimestampTz *times = palloc(sizeof(TimestampTz) * n);
	long		i = 0;
	long		to_evict = Max(1, n / 100);
	TimestampTz cutoff;
	HASH_SEQ_STATUS status;
	KeyCacheEntry *entry;
	long		evicted = 0;

	hash_seq_init(&status, cache_htab);
	while ((entry = hash_seq_search(&status)) != NULL && i < n)
		times[i++] = entry->lru_time;
	if (entry != NULL)
		hash_seq_term(&status);
	qsort(times, i, sizeof(TimestampTz), compare_timestamps);
	cutoff = times[Min(to_evict, i) - 1];
	pfree(times);

	hash_seq_init(&status, cache_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->lru_time > cutoff || entry->invalidating > 0)
			continue;
		remember_tat(entry, now_ns);
		hash_search(cache_htab, entry->key_hash, HASH_REMOVE, NULL);
		evicted++;
	}
	pg_atomic_fetch_add_u64(&cache->evictions, evicted);
}

static void
copy_info(const KeyCacheEntry *entry, KeyInfo *info)
{
	info->key_id = entry->key_id;
	info->expires_at = entry->expires_at;
	info->rate_limit = entry->rate_limit;
	info->rate_window_us = entry->rate_window_us;
	memcpy(info->workspace, entry->workspace, APIKEY_WORKSPACE_INLINE);
}

/*
 * Use a cached entry (either lock mode held): limiter step when asked and
 * the key is live, and last_used.
 */
static void
use_entry(KeyCacheEntry *entry, bool apply_limit, TimestampTz now,
		  LimitDecision *decision)
{
	bool		live = entry->expires_at > now;
	LimitDecision local;

	if (decision == NULL)
		decision = &local;
	decision->allowed = live;
	decision->expired = !live;
	decision->remaining = -1;
	decision->retry_after_ns = 0;
	entry->lru_time = now;
	if (!live)
		return;
	SpinLockAcquire(&entry->mutex);
	if (apply_limit && entry->rate_limit > 0)
		gcra_step(&entry->gcra, &entry->tat_ns, now * NS_PER_US, decision);
	entry->last_used = now;
	SpinLockRelease(&entry->mutex);
}

/*
 * Look a key up by hash, from the cache or else the key table (filling the
 * cache), and apply one limiter step when apply_limit.  A rolled key's
 * previous hash is looked up in the table on every use and then answers
 * through the key's current hash (see roll_key).  For a key found
 * but expired, decision->allowed is false and no limiter step is taken.
 */
KeyLookupResult
keycache_verify(const uint8 lookup_hash[APIKEY_HASH_BYTES], bool apply_limit,
				KeyInfo *info, LimitDecision *decision)
{
	uint8		hash[APIKEY_HASH_BYTES];

	memcpy(hash, lookup_hash, APIKEY_HASH_BYTES);
	for (;;)
	{
		KeyCacheEntry *entry;
		uint64		generation;
		char	   *workspace;
		bool		found;
		TimestampTz now;

		LWLockAcquire(cache->lock, LW_SHARED);
		entry = hash_search(cache_htab, hash, HASH_FIND, NULL);
		if (entry != NULL && entry->invalidating == 0)
		{
			now = GetCurrentTimestamp();
			copy_info(entry, info);
			use_entry(entry, apply_limit, now, decision);
			LWLockRelease(cache->lock);
			pg_atomic_fetch_add_u64(&cache->hits, 1);
			return KEY_FOUND;
		}
		generation = cache->generation;
		LWLockRelease(cache->lock);

		pg_atomic_fetch_add_u64(&cache->misses, 1);
		if (!key_table_lookup_by_hash(hash, info, &workspace))
			return KEY_UNKNOWN;
		if (info->via_previous)
		{
			/*
			 * A rolled key's previous hash (never cached itself, so its grace
			 * ends in every backend by the clock alone): within the grace
			 * period it is the key, verified and limited through the current
			 * hash's entry.
			 */
			if (GetCurrentTimestamp() >= info->previous_valid_until)
				return KEY_UNKNOWN;
			memcpy(hash, info->current_hash, APIKEY_HASH_BYTES);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		key_remember_workspace(&info->key_id, workspace);
		if (strlen(workspace) < APIKEY_WORKSPACE_INLINE)
			strcpy(info->workspace, workspace);
		else
			info->workspace[0] = '\0';

		LWLockAcquire(cache->lock, LW_EXCLUSIVE);
		if (cache->generation != generation)
		{
			/* a change committed meanwhile: our table read may be stale */
			LWLockRelease(cache->lock);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		now = GetCurrentTimestamp();
		entry = hash_search(cache_htab, hash, HASH_FIND, NULL);
		if (entry == NULL)
		{
			int64		recalled;

			if (hash_get_num_entries(cache_htab) >= apikey_max_keys)
				evict_entries(now * NS_PER_US);
			entry = hash_search(cache_htab, hash, HASH_ENTER_NULL, &found);
			if (entry == NULL)
			{
				LWLockRelease(cache->lock);
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("apikey_usage key cache is out of shared memory")));
			}
			entry->key_id = info->key_id;
			entry->expires_at = info->expires_at;
			entry->rate_limit = info->rate_limit;
			entry->rate_window_us = info->rate_window_us;
			memcpy(entry->workspace, info->workspace, APIKEY_WORKSPACE_INLINE);
			entry->invalidating = 0;
			entry->lru_time = now;
			SpinLockInit(&entry->mutex);
			entry->tat_ns = 0;
			entry->last_used = 0;
			entry->last_used_flushed = 0;
			if (info->rate_limit > 0)
			{
				gcra_params(info->rate_limit, info->rate_window_us, &entry->gcra);

				/*
				 * The key's own TAT was at most (its last allowed request) +
				 * tau + T <= now + tau + T, and the slot holds at least it,
				 * so the cap keeps the state conservative.  (A cap of now +
				 * tau would allow one more request after every eviction.)
				 */
				recalled = recall_tat(hash, now * NS_PER_US);
				if (recalled > 0)
					entry->tat_ns = Min(recalled,
										now * NS_PER_US + entry->gcra.tolerance_ns +
										entry->gcra.emission_interval_ns);
			}
		}
		else
		{
			/*
			 * Cached meanwhile, or marked invalidating by a transaction not
			 * yet committed (then the row we read is still the current one).
			 */
			copy_info(entry, info);
		}
		use_entry(entry, apply_limit, now, decision);
		LWLockRelease(cache->lock);
		return KEY_FOUND;
	}
}

/* ---- invalidation at commit ---- */

static List *pending_hashes = NIL;	/* uint8[32] in TopMemoryContext */
static bool pending_marked = false;
static bool callback_registered = false;

/* Exclusive lock held: apply one phase to every pending hash. */
static void
apply_pending(XactEvent event)
{
	ListCell   *lc;

	foreach(lc, pending_hashes)
	{
		uint8	   *hash = lfirst(lc);
		KeyCacheEntry *entry = hash_search(cache_htab, hash, HASH_FIND, NULL);

		if (entry == NULL)
			continue;
		if (event == XACT_EVENT_PRE_COMMIT)
			entry->invalidating++;
		else if (event == XACT_EVENT_COMMIT)
		{
			/* deleted, or a new limit: which starts afresh */
			forget_tat(hash);
			hash_search(cache_htab, hash, HASH_REMOVE, NULL);
		}
		else if (entry->invalidating > 0)
			entry->invalidating--;
	}
	cache->generation++;
}

static void
invalidation_xact_callback(XactEvent event, void *arg)
{
	if (pending_hashes == NIL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			LWLockAcquire(cache->lock, LW_EXCLUSIVE);
			apply_pending(event);
			pending_marked = true;
			LWLockRelease(cache->lock);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			if (pending_marked || event == XACT_EVENT_COMMIT)
			{
				LWLockAcquire(cache->lock, LW_EXCLUSIVE);
				apply_pending(event);
				LWLockRelease(cache->lock);
			}
			list_free_deep(pending_hashes);
			pending_hashes = NIL;
			pending_marked = false;
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that deleted or changed API keys")));
			break;
		default:
			break;
	}
}

/*
 * Drop the key with this hash from the cache when the current transaction
 * commits (nothing happens if it aborts).
 */
void
keycache_invalidate_at_commit(const uint8 hash[APIKEY_HASH_BYTES])
{
	MemoryContext old;
	uint8	   *copy;

	if (!callback_registered)
	{
		RegisterXactCallback(invalidation_xact_callback, NULL);
		callback_registered = true;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	copy = palloc(APIKEY_HASH_BYTES);
	memcpy(copy, hash, APIKEY_HASH_BYTES);
	pending_hashes = lappend(pending_hashes, copy);
	MemoryContextSwitchTo(old);
}

/* ---- for the worker and the views ---- */

/*
 * Key ids and last_used of cached keys (palloc'd arrays); with only_dirty,
 * just those not yet written to the table, which are then counted as
 * written.  Returns the count.
 */
int
keycache_collect_last_used(bool only_dirty, pg_uuid_t **ids, TimestampTz **times)
{
	HASH_SEQ_STATUS status;
	KeyCacheEntry *entry;
	int			n = 0;
	long		max;

	LWLockAcquire(cache->lock, LW_SHARED);
	max = hash_get_num_entries(cache_htab);
	*ids = palloc(sizeof(pg_uuid_t) * (max + 1));
	*times = palloc(sizeof(TimestampTz) * (max + 1));
	hash_seq_init(&status, cache_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		TimestampTz used;
		bool		take;

		SpinLockAcquire(&entry->mutex);
		used = entry->last_used;
		take = used != 0 && (!only_dirty || used > entry->last_used_flushed);
		if (take && only_dirty)
			entry->last_used_flushed = used;
		SpinLockRelease(&entry->mutex);
		if (take && n < max)
		{
			(*ids)[n] = entry->key_id;
			(*times)[n] = used;
			n++;
		}
	}
	LWLockRelease(cache->lock);
	return n;
}

/*
 * Empty the cache (CREATE EXTENSION: keys of an earlier installation must
 * not answer for the new one).
 */
void
keycache_clear(void)
{
	HASH_SEQ_STATUS status;
	KeyCacheEntry *entry;

	LWLockAcquire(cache->lock, LW_EXCLUSIVE);
	hash_seq_init(&status, cache_htab);
	while ((entry = hash_seq_search(&status)) != NULL)
		hash_search(cache_htab, entry->key_hash, HASH_REMOVE, NULL);
	memset(cache->evicted, 0, sizeof(EvictedState) * EVICTED_SLOTS);
	cache->generation++;
	LWLockRelease(cache->lock);
}

void
keycache_stats(int64 *size, int64 *hits, int64 *misses, int64 *evictions)
{
	LWLockAcquire(cache->lock, LW_SHARED);
	*size = hash_get_num_entries(cache_htab);
	LWLockRelease(cache->lock);
	*hits = (int64) pg_atomic_read_u64(&cache->hits);
	*misses = (int64) pg_atomic_read_u64(&cache->misses);
	*evictions = (int64) pg_atomic_read_u64(&cache->evictions);
}
