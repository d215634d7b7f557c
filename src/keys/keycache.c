/*-------------------------------------------------------------------------
 *
 * keycache.c
 *		Shared-memory cache of API keys by hash, with each key's limiter
 *		state and last_used_at.
 *
 * Layout
 * ------
 * The cache is split into partitions by the first bits of the key hash
 * (BLAKE2b output, so already uniform: no further hashing).  Each
 * partition owns a fixed slice of the entry array (apikey_usage.max_keys
 * in all), a bucket array of chain heads (int32 entry indexes), a clock
 * hand, a free list, and a slice of the evicted-state slots.  An entry's
 * first 64 bytes hold what a hit reads (hash, chain link, clock bit, key
 * id, expiry); entries are 192 bytes, cache-line aligned.
 *
 * Locking rules
 * -------------
 * - partition->lock (LWLock, one per partition, tranche "apikey_usage key
 *	 cache"): shared to look an entry up and to use it; exclusive to
 *	 insert, remove, evict, mark for invalidation, and to read-modify-write
 *	 the partition's generation, clock hand, free list and evicted slots.
 *	 An entry pointer is valid only while its partition lock is held.  A
 *	 backend holds at most one partition lock at a time, except
 *	 keycache_clear(), which takes all of them in index order.
 * - KeyCacheEntry->mutex (spinlock): guards tat_ns, last_used and
 *	 last_stored of that entry against concurrent users holding the
 *	 partition lock in shared mode.  Taken with the partition lock held;
 *	 the dirty-ring spinlock may be taken inside it, never the reverse.
 * - usage (the clock bit) is written without a lock by whoever uses the
 *	 entry, and only when it changes: it only steers eviction.
 * - KeyCacheShared->dirty_mutex (spinlock): the last_used ring.
 * - KeyCacheShared->warn_mutex (spinlock): the sizing-warning window.
 * - Counters are atomics, one set per partition (the cache line that the
 *	 partition lock already dirties), summed by readers.
 *
 * Eviction
 * --------
 * A full partition evicts by clock sweep: the hand clears the usage bit of
 * each entry it passes and takes the first entry whose bit was clear (and
 * that no committing transaction is invalidating).  O(1) amortised per
 * miss, and only that partition's lock is held exclusively meanwhile.
 *
 * last_used_at
 * ------------
 * Each entry keeps last_used (stamped at most once a second, so a hot key
 * does not write its cache line on every call) and last_stored, the value
 * the key table has or is about to get.  When last_used is ahead of
 * last_stored by apikey_usage.last_used_resolution or more, at a use or
 * when the entry leaves the cache, (key_id, last_used) is appended to the
 * dirty ring; the worker drains only that ring (work proportional to what
 * changed, nothing when idle), so the table is never more than the
 * resolution behind.  A full ring drops the record (counted): a cached key
 * retries at its next stamp; an evicted one at its next use (its refill
 * reads the older table value).
 *
 * Revocation protocol (delete_key, set_rate_limit)
 * ------------------------------------------------
 * The changing transaction calls keycache_invalidate_at_commit(hash).  At
 * PRE_COMMIT the entry (if cached) is marked "invalidating": every lookup
 * of it then reads the key table with the latest snapshot, so it sees the
 * change exactly when the commit becomes visible, while it keeps using the
 * shared limiter state.  At COMMIT the entry is removed; at ABORT the mark
 * is cleared.  Both bump the partition's generation.  A backend that fills
 * the cache after a miss notes the generation before reading the table and
 * inserts only if it is unchanged, otherwise it starts over: so a table
 * read from before the commit can never bring a deleted key back.
 *
 * Limiter state survives eviction conservatively: an evicted entry whose
 * TAT lies in the future leaves it in its partition's evicted slot for
 * its hash, tagged with 64 bits of its hash.  A slot whose state has
 * passed is free; a slot wanted by two keys with live state keeps the max
 * of both, tagged MIXED.  A refilled key whose tag (or MIXED) is in its
 * slot starts from min(that TAT, now + its tolerance + its emission
 * interval), the furthest its own TAT can be ahead: it can only refuse
 * more, never allow more than the bound, and a key whose state is not in
 * its slot never had live state taken from it.  set_rate_limit starts the
 * key afresh under its new limit; delete_key needs no state.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

#define NS_PER_US INT64CONST(1000)

/* at most this many partitions, each with at least this many entries */
#define KEYCACHE_MAX_PARTITIONS		64
#define KEYCACHE_MIN_PER_PARTITION	32

/* last_used is stamped at most this often per entry (microseconds) */
#define LAST_USED_STAMP_US			USECS_PER_SEC

/* sizing warning: window, minimum misses in it, and silence after one */
#define WARN_WINDOW_US				(10 * USECS_PER_SEC)
#define WARN_MIN_MISSES				1000
#define WARN_SILENCE_US				(300 * USECS_PER_SEC)

#define USAGE_MAX					2

typedef struct KeyCacheEntry
{
	/* what a lookup reads: the first 64 bytes */
	uint8		key_hash[APIKEY_HASH_BYTES];
	int32		next;			/* bucket chain or free list; -1 ends it */
	uint8		usage;			/* clock sweep: used since the hand passed */
	bool		in_use;
	int16		invalidating;	/* transactions about to commit a change */
	pg_uuid_t	key_id;
	TimestampTz expires_at;
	/* the rest */
	int32		rate_limit;		/* 0 = unlimited */
	slock_t		mutex;
	int64		rate_window_us;
	GcraParams	gcra;
	int64		tat_ns;			/* GCRA theoretical arrival time */
	TimestampTz last_used;		/* 0 = not used since cached */
	TimestampTz last_stored;	/* in (or queued for) the key table */
	char		workspace[APIKEY_WORKSPACE_INLINE];	/* "" when longer */
} KeyCacheEntry;

/*
 * Entries are aligned to the 64-byte cache line of current x86 and ARM
 * cores (PG_CACHE_LINE_SIZE is a conservative 128, which would waste 64
 * bytes per key): a lookup reads one line of each entry it compares.
 */
#define KEYCACHE_LINE_SIZE	64
#define ENTRY_SIZE	TYPEALIGN(KEYCACHE_LINE_SIZE, sizeof(KeyCacheEntry))

/* limiter state of evicted keys (see the header comment) */
typedef struct EvictedState
{
	uint64		tag;			/* 64 bits of the key hash, or EVICTED_MIXED */
	int64		tat_ns;
} EvictedState;

#define EVICTED_MIXED 0			/* real tags have their low bit set */

typedef struct KeyCachePartition
{
	LWLock	   *lock;
	int32		first_entry;	/* index of its first entry */
	int32		capacity;		/* entries it owns */
	int32		first_bucket;
	uint32		bucket_mask;	/* buckets - 1 (a power of two) */
	int32		first_slot;		/* evicted-state slots */
	int32		nslots;
	/* the rest only under the exclusive lock */
	int32		count;			/* entries in use */
	int32		unused;			/* entries never used yet (from the end) */
	int32		free_head;		/* entries freed by removal */
	int32		clock_hand;		/* 0 .. capacity - 1 */
	uint64		generation;
	pg_atomic_uint64 hits;
	pg_atomic_uint64 misses;
	pg_atomic_uint64 evictions;
} KeyCachePartition;

typedef union KeyCachePartitionPadded
{
	KeyCachePartition p;
	char		pad[2 * PG_CACHE_LINE_SIZE];
} KeyCachePartitionPadded;

/* one record of the last_used ring */
typedef struct DirtyRecord
{
	pg_uuid_t	key_id;
	TimestampTz used;
} DirtyRecord;

typedef struct KeyCacheShared
{
	int			nparts;
	int			dirty_capacity;
	slock_t		dirty_mutex;
	uint32		dirty_head;		/* next record to read */
	uint32		dirty_count;
	pg_atomic_uint64 dirty_queued;
	pg_atomic_uint64 dirty_dropped;
	slock_t		warn_mutex;
	TimestampTz warn_window_start;
	uint64		warn_hits;		/* totals at warn_window_start */
	uint64		warn_misses;
	TimestampTz last_warning;
} KeyCacheShared;

static KeyCacheShared *cache = NULL;
static KeyCachePartitionPadded *partitions = NULL;
static char *entries = NULL;	/* ENTRY_SIZE each */
static int32 *buckets = NULL;
static EvictedState *evicted = NULL;
static DirtyRecord *dirty = NULL;

/* apikey_usage.last_used_resolution, in microseconds (GUC in seconds) */
int			apikey_last_used_resolution_s = 600;

#define ENTRY(i)	((KeyCacheEntry *) (entries + (Size) (i) * ENTRY_SIZE))
#define PART(i)		(&partitions[i].p)

/* ---- sizing ---- */

/*
 * Partitions for a cache of max_keys entries: a power of two, at most
 * KEYCACHE_MAX_PARTITIONS, keeping KEYCACHE_MIN_PER_PARTITION entries each
 * when the cache is large enough.
 */
static int
partition_count(void)
{
	int			n = KEYCACHE_MAX_PARTITIONS;

	while (n > 1 && apikey_max_keys / n < KEYCACHE_MIN_PER_PARTITION)
		n /= 2;
	return n;
}

static int32
partition_capacity(int nparts, int i)
{
	return apikey_max_keys / nparts + (i < apikey_max_keys % nparts ? 1 : 0);
}

static uint32
bucket_count(int32 capacity)
{
	uint32		n = 1;

	while (n < (uint32) capacity)
		n <<= 1;
	return n;
}

/*
 * Records of the last_used ring: one per cached key, at most 262,144 (the
 * worker drains it every second; a full ring only delays a write).
 */
static int
dirty_ring_capacity(void)
{
	return Min(Max(apikey_max_keys, 1024), 262144);
}

/* Offsets of the arrays in the one shared block. */
typedef struct KeyCacheLayout
{
	Size		partitions;
	Size		entries;
	Size		buckets;
	Size		evicted;
	Size		dirty;
	Size		total;
} KeyCacheLayout;

static void
compute_layout(KeyCacheLayout *layout)
{
	int			nparts = partition_count();
	Size		nbuckets = 0;
	int			i;
	Size		off;

	for (i = 0; i < nparts; i++)
		nbuckets += bucket_count(partition_capacity(nparts, i));
	off = CACHELINEALIGN(sizeof(KeyCacheShared));
	layout->partitions = off;
	off = add_size(off, mul_size(nparts, sizeof(KeyCachePartitionPadded)));
	off = CACHELINEALIGN(off);
	layout->entries = off;
	off = add_size(off, mul_size(apikey_max_keys, ENTRY_SIZE));
	layout->buckets = off;
	off = add_size(off, mul_size(nbuckets, sizeof(int32)));
	off = MAXALIGN(off);
	layout->evicted = off;
	off = add_size(off, mul_size(2 * (Size) apikey_max_keys, sizeof(EvictedState)));
	layout->dirty = off;
	off = add_size(off, mul_size(dirty_ring_capacity(), sizeof(DirtyRecord)));
	/* slack for the cache-line alignment of the block itself */
	layout->total = add_size(off, PG_CACHE_LINE_SIZE);
}

Size
keycache_shmem_size(void)
{
	KeyCacheLayout layout;

	compute_layout(&layout);
	return layout.total;
}

Size
keycache_bytes(void)
{
	return keycache_shmem_size();
}

/*
 * Called from the shmem_request hook: one LWLock per partition.
 */
void
keycache_shmem_request(void)
{
	RequestNamedLWLockTranche("apikey_usage key cache", partition_count());
}

/*
 * Create or attach; called with AddinShmemInitLock held.
 */
void
keycache_shmem_init(void)
{
	bool		found;
	KeyCacheLayout layout;
	char	   *base;
	int			nparts = partition_count();

	StaticAssertStmt(offsetof(KeyCacheEntry, rate_limit) == KEYCACHE_LINE_SIZE,
					 "a lookup must find what it reads in an entry's first cache line");
	compute_layout(&layout);
	base = ShmemInitStruct("apikey_usage key cache", layout.total, &found);
	base = (char *) CACHELINEALIGN(base);
	cache = (KeyCacheShared *) base;
	partitions = (KeyCachePartitionPadded *) (base + layout.partitions);
	entries = base + layout.entries;
	buckets = (int32 *) (base + layout.buckets);
	evicted = (EvictedState *) (base + layout.evicted);
	dirty = (DirtyRecord *) (base + layout.dirty);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("apikey_usage key cache");
		int32		next_entry = 0;
		int32		next_bucket = 0;
		int			i;

		memset(base, 0, layout.total - PG_CACHE_LINE_SIZE);
		cache->nparts = nparts;
		cache->dirty_capacity = dirty_ring_capacity();
		SpinLockInit(&cache->dirty_mutex);
		SpinLockInit(&cache->warn_mutex);
		pg_atomic_init_u64(&cache->dirty_queued, 0);
		pg_atomic_init_u64(&cache->dirty_dropped, 0);
		for (i = 0; i < nparts; i++)
		{
			KeyCachePartition *part = PART(i);
			int32		capacity = partition_capacity(nparts, i);

			part->lock = &locks[i].lock;
			part->first_entry = next_entry;
			part->capacity = capacity;
			part->first_bucket = next_bucket;
			part->bucket_mask = bucket_count(capacity) - 1;
			part->first_slot = 2 * next_entry;
			part->nslots = 2 * capacity;
			part->count = 0;
			part->unused = capacity;
			part->free_head = -1;
			part->clock_hand = 0;
			part->generation = 0;
			pg_atomic_init_u64(&part->hits, 0);
			pg_atomic_init_u64(&part->misses, 0);
			pg_atomic_init_u64(&part->evictions, 0);
			memset(&buckets[next_bucket], 0xff,
				   sizeof(int32) * (part->bucket_mask + 1));
			next_entry += capacity;
			next_bucket += part->bucket_mask + 1;
		}
	}
}

/* ---- hash bits ---- */

static inline uint64
hash_word(const uint8 hash[APIKEY_HASH_BYTES], int word)
{
	uint64		bits;

	memcpy(&bits, hash + 8 * word, sizeof(bits));
	return bits;
}

static inline KeyCachePartition *
partition_of(const uint8 hash[APIKEY_HASH_BYTES])
{
	return PART(hash_word(hash, 0) & (uint64) (cache->nparts - 1));
}

static inline int32 *
bucket_of(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES])
{
	return &buckets[part->first_bucket +
					((uint32) (hash_word(hash, 0) >> 32) & part->bucket_mask)];
}

/* Ask the CPU for the cache lines of an entry (a hint only). */
static inline void
prefetch_entry(const KeyCacheEntry *entry)
{
#ifdef __GNUC__
	__builtin_prefetch(entry);
	__builtin_prefetch((const char *) entry + KEYCACHE_LINE_SIZE);
	__builtin_prefetch((const char *) entry + 2 * KEYCACHE_LINE_SIZE);
#endif
}

/*
 * Partition lock held: the entry with this hash, or NULL.  At a million
 * keys the bucket and the entry are rarely in the CPU cache: the entry's
 * three lines are all prefetched as soon as its index is known, so that a
 * hit waits for one memory access instead of three in a row.
 */
static inline KeyCacheEntry *
find_entry(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES])
{
	int32		i = *bucket_of(part, hash);
	uint64		first = hash_word(hash, 0);

	while (i >= 0)
	{
		KeyCacheEntry *entry = ENTRY(i);

		prefetch_entry(entry);
		if (hash_word(entry->key_hash, 0) == first &&
			memcmp(entry->key_hash, hash, APIKEY_HASH_BYTES) == 0)
			return entry;
		i = entry->next;
	}
	return NULL;
}

/* ---- evicted limiter state ---- */

static inline EvictedState *
evicted_slot(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES])
{
	return &evicted[part->first_slot +
					(int32) (hash_word(hash, 1) % (uint64) part->nslots)];
}

static inline uint64
evicted_tag(const uint8 hash[APIKEY_HASH_BYTES])
{
	return hash_word(hash, 2) | 1;
}

/* Exclusive lock held: keep a departing entry's future TAT. */
static void
remember_tat(KeyCachePartition *part, KeyCacheEntry *entry, int64 now_ns)
{
	EvictedState *slot;
	uint64		tag = evicted_tag(entry->key_hash);

	if (entry->tat_ns <= now_ns)
		return;					/* a full bucket: nothing to remember */
	slot = evicted_slot(part, entry->key_hash);
	if (slot->tat_ns <= now_ns)
		slot->tag = tag;		/* free (its state has passed) */
	else if (slot->tag != tag)
		slot->tag = EVICTED_MIXED;
	slot->tat_ns = Max(slot->tat_ns, entry->tat_ns);
}

/*
 * Exclusive lock held: the remembered TAT of a key being (re)filled, or 0.
 * A slot holding only this key's state is freed, the state moving back
 * into the entry.
 */
static int64
recall_tat(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES],
		   int64 now_ns)
{
	EvictedState *slot = evicted_slot(part, hash);
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
forget_tat(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES])
{
	EvictedState *slot = evicted_slot(part, hash);

	if (slot->tag == evicted_tag(hash))
		slot->tat_ns = 0;
}

/* ---- the last_used ring ---- */

/*
 * Append (key_id, used) to the dirty ring; false (and counted) when full.
 */
static bool
dirty_push(const pg_uuid_t *key_id, TimestampTz used)
{
	bool		pushed = false;

	SpinLockAcquire(&cache->dirty_mutex);
	if (cache->dirty_count < (uint32) cache->dirty_capacity)
	{
		uint32		at = (cache->dirty_head + cache->dirty_count) %
			(uint32) cache->dirty_capacity;

		dirty[at].key_id = *key_id;
		dirty[at].used = used;
		cache->dirty_count++;
		pushed = true;
	}
	SpinLockRelease(&cache->dirty_mutex);
	if (pushed)
		pg_atomic_fetch_add_u64(&cache->dirty_queued, 1);
	else
		pg_atomic_fetch_add_u64(&cache->dirty_dropped, 1);
	return pushed;
}

/*
 * Whether last_used is far enough ahead of what the table has to be
 * written (apikey_usage.last_used_resolution).
 */
static inline bool
last_used_due(TimestampTz last_used, TimestampTz last_stored)
{
	return last_used - last_stored >=
		(int64) apikey_last_used_resolution_s * USECS_PER_SEC;
}

/*
 * Exclusive lock held: an entry leaves the cache; queue its last use if
 * the table's value is older than the resolution allows.
 */
static void
release_last_used(KeyCacheEntry *entry)
{
	if (entry->last_used != 0 &&
		last_used_due(entry->last_used, entry->last_stored))
		(void) dirty_push(&entry->key_id, entry->last_used);
}

/*
 * Take up to max records from the dirty ring (the worker).  Returns the
 * count; the caller writes them to the table.
 */
int
keycache_take_last_used(int max, pg_uuid_t *ids, TimestampTz *times)
{
	int			n = 0;

	SpinLockAcquire(&cache->dirty_mutex);
	while (n < max && cache->dirty_count > 0)
	{
		DirtyRecord *rec = &dirty[cache->dirty_head];

		ids[n] = rec->key_id;
		times[n] = rec->used;
		n++;
		cache->dirty_head = (cache->dirty_head + 1) % (uint32) cache->dirty_capacity;
		cache->dirty_count--;
	}
	SpinLockRelease(&cache->dirty_mutex);
	return n;
}

/* ---- entries ---- */

/* Exclusive lock held: unlink an entry from its chain and free it. */
static void
remove_entry(KeyCachePartition *part, KeyCacheEntry *entry)
{
	int32	   *link = bucket_of(part, entry->key_hash);
	int32		index = (int32) (((char *) entry - entries) / ENTRY_SIZE);

	while (*link != index)
	{
		Assert(*link >= 0);
		link = &ENTRY(*link)->next;
	}
	*link = entry->next;
	entry->in_use = false;
	entry->next = part->free_head;
	part->free_head = index;
	part->count--;
}

/*
 * Exclusive lock held, partition full: clock sweep to a victim, which is
 * evicted (its limiter state and last use kept).  Returns false when every
 * entry is being invalidated (then nothing can be evicted).
 */
static bool
evict_one(KeyCachePartition *part, int64 now_ns)
{
	int32		steps;

	for (steps = 0; steps < (USAGE_MAX + 1) * part->capacity + 1; steps++)
	{
		KeyCacheEntry *entry = ENTRY(part->first_entry + part->clock_hand);

		part->clock_hand = (part->clock_hand + 1) % part->capacity;
		if (!entry->in_use || entry->invalidating > 0)
			continue;
		if (entry->usage > 0)
		{
			entry->usage--;
			continue;
		}
		remember_tat(part, entry, now_ns);
		release_last_used(entry);
		remove_entry(part, entry);
		pg_atomic_fetch_add_u64(&part->evictions, 1);
		return true;
	}
	return false;
}

/*
 * Exclusive lock held: a free entry for this hash, linked into its bucket
 * (evicting one when the partition is full), or NULL when none can be had.
 */
static KeyCacheEntry *
allocate_entry(KeyCachePartition *part, const uint8 hash[APIKEY_HASH_BYTES],
			   int64 now_ns)
{
	int32		index;
	KeyCacheEntry *entry;
	int32	   *head;

	if (part->free_head < 0 && part->unused == 0 && !evict_one(part, now_ns))
		return NULL;
	if (part->free_head >= 0)
	{
		index = part->free_head;
		part->free_head = ENTRY(index)->next;
	}
	else
	{
		Assert(part->unused > 0);
		index = part->first_entry + part->capacity - part->unused;
		part->unused--;
	}
	entry = ENTRY(index);
	memcpy(entry->key_hash, hash, APIKEY_HASH_BYTES);
	head = bucket_of(part, hash);
	entry->next = *head;
	*head = index;
	entry->in_use = true;
	part->count++;
	return entry;
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
 * the key is live, clock bit, and last_used.  Writes to the entry only
 * what changes: a hit on an unlimited key whose last_used is less than a
 * second old writes nothing.
 */
static void
use_entry(KeyCacheEntry *entry, bool apply_limit, TimestampTz now,
		  LimitDecision *decision)
{
	bool		live = entry->expires_at > now;
	bool		limit = apply_limit && entry->rate_limit > 0;
	LimitDecision local;

	if (decision == NULL)
		decision = &local;
	decision->allowed = live;
	decision->expired = !live;
	decision->remaining = -1;
	decision->retry_after_ns = 0;
	decision->reset_after_ns = 0;
	if (entry->usage < USAGE_MAX)
		entry->usage++;
	if (!live)
		return;
	if (!limit && now - entry->last_used < LAST_USED_STAMP_US)
		return;
	SpinLockAcquire(&entry->mutex);
	if (limit)
		gcra_step(&entry->gcra, &entry->tat_ns, now * NS_PER_US, decision);
	if (now - entry->last_used >= LAST_USED_STAMP_US)
	{
		entry->last_used = now;
		if (last_used_due(now, entry->last_stored) &&
			dirty_push(&entry->key_id, now))
			entry->last_stored = now;
	}
	SpinLockRelease(&entry->mutex);
}

/* ---- sizing warning ---- */

static void
sum_counters(uint64 *hits, uint64 *misses, uint64 *evictions, int64 *size)
{
	int			i;

	*hits = *misses = *evictions = 0;
	if (size)
		*size = 0;
	for (i = 0; i < cache->nparts; i++)
	{
		KeyCachePartition *part = PART(i);

		*hits += pg_atomic_read_u64(&part->hits);
		*misses += pg_atomic_read_u64(&part->misses);
		*evictions += pg_atomic_read_u64(&part->evictions);
		if (size)
			*size += part->count;	/* unlocked: a snapshot is enough */
	}
}

/*
 * Called every few hundred misses of a backend: every 10 s (for the
 * whole server) look at the lookups since the last look, and when misses
 * dominate while the cache evicts, warn, at most once every 5 minutes.
 */
static void
maybe_warn_sizing(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		hits,
				misses,
				evictions;
	uint64		window_hits = 0,
				window_misses = 0;
	bool		warn = false;

	sum_counters(&hits, &misses, &evictions, NULL);
	SpinLockAcquire(&cache->warn_mutex);
	if (now - cache->warn_window_start >= WARN_WINDOW_US)
	{
		window_hits = hits - cache->warn_hits;
		window_misses = misses - cache->warn_misses;
		warn = cache->warn_window_start != 0 &&
			window_misses >= WARN_MIN_MISSES && window_misses > window_hits &&
			evictions > 0 &&
			now - cache->last_warning >= WARN_SILENCE_US;
		cache->warn_window_start = now;
		cache->warn_hits = hits;
		cache->warn_misses = misses;
		if (warn)
			cache->last_warning = now;
	}
	SpinLockRelease(&cache->warn_mutex);
	if (warn)
		ereport(WARNING,
				(errmsg("apikey_usage key cache: %.0f%% of the last %llu key lookups missed the cache",
						100.0 * window_misses / (window_hits + window_misses),
						(unsigned long long) (window_hits + window_misses)),
				 errdetail("More keys are in use than apikey_usage.max_keys (%d) holds; every miss reads the key table and evicts a cached key.",
						   apikey_max_keys),
				 errhint("Raise apikey_usage.max_keys (about %d bytes of shared memory per key) and restart the server.",
						 (int) (keycache_bytes() / Max(apikey_max_keys, 1))),
				 errhidestmt(true)));
}

/* ---- lookup ---- */

/*
 * Look a key up by hash, from the cache or else the key table (filling the
 * cache), and apply one limiter step when apply_limit.  For a key found
 * but expired, decision->allowed is false and no limiter step is taken.
 * A rolled key's previous hash is looked up in the table on every use and
 * then answers through the key's current hash (see roll_key).
 *
 * This is the request path's one entry point: KEY_FOUND with info filled,
 * or what key_table_lookup_by_hash() answered for a key it did not find
 * (KEY_REVOKED fills key_id and workspace only, and leaves decision as it
 * was).
 */
KeyLookupResult
keycache_verify(const uint8 lookup_hash[APIKEY_HASH_BYTES], bool apply_limit,
				KeyInfo *info, LimitDecision *decision)
{
	uint8		hash[APIKEY_HASH_BYTES];
	KeyCachePartition *part;
	static uint32 backend_misses = 0;

	memcpy(hash, lookup_hash, APIKEY_HASH_BYTES);
	part = partition_of(hash);

	for (;;)
	{
		KeyCacheEntry *entry;
		uint64		generation;
		char	   *workspace;
		TimestampTz now;
		KeyLookupResult result;

#ifdef __GNUC__
		/* fetch the bucket while the lock is being taken */
		__builtin_prefetch(bucket_of(part, hash));
#endif
		LWLockAcquire(part->lock, LW_SHARED);
		entry = find_entry(part, hash);
		if (entry != NULL && entry->invalidating == 0)
		{
			now = GetCurrentTimestamp();
			copy_info(entry, info);
			use_entry(entry, apply_limit, now, decision);
			pg_atomic_fetch_add_u64(&part->hits, 1);
			LWLockRelease(part->lock);
			return KEY_FOUND;
		}
		generation = part->generation;
		pg_atomic_fetch_add_u64(&part->misses, 1);
		LWLockRelease(part->lock);

		if (++backend_misses % 256 == 0)
			maybe_warn_sizing();

		result = key_table_lookup_by_hash(hash, info, &workspace);
		if (result == KEY_UNKNOWN)
			return result;
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
			part = partition_of(hash);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		/*
		 * A short workspace travels inline (cache entry, KeyInfo); a long
		 * one is kept in the backend's key_id -> workspace map, where
		 * KEYINFO_WORKSPACE finds it without a second table read.
		 */
		if (strlen(workspace) < APIKEY_WORKSPACE_INLINE)
			strcpy(info->workspace, workspace);
		else
		{
			key_remember_workspace(&info->key_id, workspace);
			info->workspace[0] = '\0';
		}

		/*
		 * A deleted key (KEY_REVOKED: its tombstone keeps the hash) is never
		 * cached and has no limiter state: key_id and workspace are all the
		 * caller gets.
		 */
		if (result != KEY_FOUND)
			return result;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		if (part->generation != generation)
		{
			/* a change committed meanwhile: our table read may be stale */
			LWLockRelease(part->lock);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		now = GetCurrentTimestamp();
		entry = find_entry(part, hash);
		if (entry == NULL)
		{
			int64		recalled;

			entry = allocate_entry(part, hash, now * NS_PER_US);
			if (entry == NULL)
			{
				LWLockRelease(part->lock);
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("apikey_usage key cache has no evictable entry"),
						 errdetail("Every key of its partition is being changed by a committing transaction."),
						 errhidestmt(true)));
			}
			entry->key_id = info->key_id;
			entry->expires_at = info->expires_at;
			entry->rate_limit = info->rate_limit;
			entry->rate_window_us = info->rate_window_us;
			memcpy(entry->workspace, info->workspace, APIKEY_WORKSPACE_INLINE);
			entry->invalidating = 0;
			entry->usage = 0;
			SpinLockInit(&entry->mutex);
			entry->tat_ns = 0;
			entry->last_used = 0;
			entry->last_stored = info->last_used_at;
			memset(&entry->gcra, 0, sizeof(entry->gcra));
			if (info->rate_limit > 0)
			{
				gcra_params(info->rate_limit, info->rate_window_us, &entry->gcra);

				/*
				 * The key's own TAT was at most (its last allowed request) +
				 * tau + T <= now + tau + T, and the slot holds at least it,
				 * so the cap keeps the state conservative.  (A cap of now +
				 * tau would allow one more request after every eviction.)
				 */
				recalled = recall_tat(part, hash, now * NS_PER_US);
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
		LWLockRelease(part->lock);
		return KEY_FOUND;
	}
}

/* ---- invalidation at commit ---- */

static List *pending_hashes = NIL;	/* uint8[32] in TopMemoryContext */
static bool pending_marked = false;
static bool callback_registered = false;

/* Apply one phase to every pending hash, each under its partition lock. */
static void
apply_pending(XactEvent event)
{
	ListCell   *lc;

	foreach(lc, pending_hashes)
	{
		uint8	   *hash = lfirst(lc);
		KeyCachePartition *part = partition_of(hash);
		KeyCacheEntry *entry;

		LWLockAcquire(part->lock, LW_EXCLUSIVE);
		entry = find_entry(part, hash);
		if (event == XACT_EVENT_COMMIT)
			forget_tat(part, hash); /* deleted, or a new limit: afresh */
		if (entry != NULL)
		{
			if (event == XACT_EVENT_PRE_COMMIT)
				entry->invalidating++;
			else if (event == XACT_EVENT_COMMIT)
			{
				release_last_used(entry);
				remove_entry(part, entry);
			}
			else if (entry->invalidating > 0)
				entry->invalidating--;
		}
		part->generation++;
		LWLockRelease(part->lock);
	}
}

static void
invalidation_xact_callback(XactEvent event, void *arg)
{
	if (pending_hashes == NIL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			apply_pending(event);
			pending_marked = true;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			if (pending_marked || event == XACT_EVENT_COMMIT)
				apply_pending(event);
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

/* ---- for the views ---- */

/*
 * Key ids and live last_used of every cached key that was used since it
 * was cached (palloc'd arrays), for the keys view.  Takes each partition's
 * lock in shared mode in turn.  Returns the count.
 */
int
keycache_collect_last_used(pg_uuid_t **ids, TimestampTz **times)
{
	int			n = 0;
	int			max = apikey_max_keys;
	int			p;

	*ids = palloc(sizeof(pg_uuid_t) * max);
	*times = palloc(sizeof(TimestampTz) * max);
	for (p = 0; p < cache->nparts; p++)
	{
		KeyCachePartition *part = PART(p);
		int32		i;

		LWLockAcquire(part->lock, LW_SHARED);
		for (i = 0; i < part->capacity - part->unused; i++)
		{
			KeyCacheEntry *entry = ENTRY(part->first_entry + i);
			TimestampTz used;

			if (!entry->in_use)
				continue;
			SpinLockAcquire(&entry->mutex);
			used = entry->last_used;
			SpinLockRelease(&entry->mutex);
			if (used != 0 && n < max)
			{
				(*ids)[n] = entry->key_id;
				(*times)[n] = used;
				n++;
			}
		}
		LWLockRelease(part->lock);
	}
	return n;
}

/*
 * Empty the cache (CREATE EXTENSION: keys of an earlier installation must
 * not answer for the new one, nor their last uses be written into it).
 */
void
keycache_clear(void)
{
	int			p;

	for (p = 0; p < cache->nparts; p++)
		LWLockAcquire(PART(p)->lock, LW_EXCLUSIVE);
	for (p = 0; p < cache->nparts; p++)
	{
		KeyCachePartition *part = PART(p);
		int32		i;

		for (i = 0; i < part->capacity; i++)
			ENTRY(part->first_entry + i)->in_use = false;
		memset(&buckets[part->first_bucket], 0xff,
			   sizeof(int32) * (part->bucket_mask + 1));
		memset(&evicted[part->first_slot], 0,
			   sizeof(EvictedState) * part->nslots);
		part->count = 0;
		part->unused = part->capacity;
		part->free_head = -1;
		part->clock_hand = 0;
		part->generation++;
	}
	SpinLockAcquire(&cache->dirty_mutex);
	cache->dirty_head = 0;
	cache->dirty_count = 0;
	SpinLockRelease(&cache->dirty_mutex);
	for (p = cache->nparts - 1; p >= 0; p--)
		LWLockRelease(PART(p)->lock);
}

/*
 * Counters for runtime_stats.
 */
void
keycache_stats(KeyCacheStats *stats)
{
	uint64		hits,
				misses,
				evictions;
	int64		size;

	sum_counters(&hits, &misses, &evictions, &size);
	stats->size = size;
	stats->hits = (int64) hits;
	stats->misses = (int64) misses;
	stats->evictions = (int64) evictions;
	stats->partitions = cache->nparts;
	stats->last_used_queued = (int64) pg_atomic_read_u64(&cache->dirty_queued);
	stats->last_used_dropped = (int64) pg_atomic_read_u64(&cache->dirty_dropped);
	SpinLockAcquire(&cache->dirty_mutex);
	stats->last_used_pending = cache->dirty_count;
	SpinLockRelease(&cache->dirty_mutex);
}
