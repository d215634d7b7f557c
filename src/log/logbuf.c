/*-------------------------------------------------------------------------
 *
 * logbuf.c
 *		The log buffer: a ring of fixed-size slots in a file-backed shared
 *		mapping, so that no PostgreSQL crash loses a logged entry.
 *
 * The ring lives in the file apikey_usage.ring in the data directory,
 * mapped MAP_SHARED by the postmaster in _PG_init, before any child is
 * forked, so every process inherits the same mapping.  A process crash
 * does not touch the operating system's page cache: after any crash and
 * restart of PostgreSQL the worker finds every entry whose slot was
 * committed and writes it.  Only an operating-system crash can lose what
 * was logged since the last flush.
 *
 * Protocol and locking rules
 * --------------------------
 * - header->reserve_seq (atomic): the next sequence number to hand out.
 *	 A writer reserves seq by compare-and-swap, only while
 *	 seq - flushed_seq < nslots (the slot's previous occupant is flushed).
 * - The writer fills slot[seq % nslots] and its CRC-32C, issues a write
 *	 barrier, then sets slot->state = seq + 1 ("committed").  No error can be raised and no
 *	 lock is held between reservation and commit.
 * - header->flushed_seq (atomic): every seq below it is in the tables.
 *	 Only the background worker advances it, after the transaction that
 *	 wrote the entries (and recorded the same number in
 *	 apikey_usage.flush_state) has committed.  Exactly once: at start the
 *	 worker moves flushed_seq up to what flush_state says.
 * - A slot reserved by a process that died before committing it is marked
 *	 dead (state = (seq + 1) | DEAD) by the postmaster in
 *	 logbuf_shmem_init, when no other process exists, and skipped.  Its
 *	 caller never got an answer, so nothing acknowledged is lost.
 * - LogBufShared (PostgreSQL shared memory) holds the worker's latch and
 *	 pid, a condition variable for flush() waiters, and counters: all
 *	 atomics, or written only by the worker.
 * - Entries that find the ring full go to spool files (spool.c).
 * - Origin: the header names the cluster (system identifier) and the
 *	 timeline its entries were logged on.  A data directory copied by
 *	 pg_basebackup, a standby, or a restored file carries a copy of the
 *	 ring; before its first flush the worker (logbuf_check_origin) compares
 *	 the stamp and the sequence the tables hold with the ring, and a ring
 *	 that does not match has the entries it held at start discarded, with
 *	 a LOG line counting them, and gets a new ring_id, so flush_state is
 *	 never moved backwards and no entry is written twice.  Only entries
 *	 below start_reserve (there before any backend could append) are
 *	 considered; the worker alone writes the stamp and ring_id.
 * - The worker re-checks what it reads: lengths out of range or a
 *	 checksum mismatch make the entry go to the quarantine (writer.c),
 *	 never into the tables.  Slots found neither committed nor dead at
 *	 start, and rings renamed aside, are counted as discarded, with a LOG
 *	 line.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_crc32c.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

#define RING_FILE		"apikey_usage.ring"
#define RING_MAGIC		UINT64CONST(0x41504b5552494e47)	/* "APKURING" */
#define RING_VERSION	2		/* 2: per-slot checksum, installation id */
#define SLOT_DEAD		(UINT64CONST(1) << 63)

typedef struct RingHeader
{
	uint64		magic;
	uint32		version;
	uint32		slot_size;
	uint64		nslots;
	uint64		ring_id;
	/* origin stamp, set by the worker (0 = not stamped yet, as in 0.1.0) */
	uint64		system_identifier;
	uint32		timeline;
	uint32		origin_unused;
	char		pad1[PG_CACHE_LINE_SIZE - 48];
	pg_atomic_uint64 reserve_seq;
	char		pad2[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];
	pg_atomic_uint64 flushed_seq;
	char		pad3[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];
} RingHeader;

typedef struct RingSlot
{
	pg_atomic_uint64 state;
	uint32		crc;			/* log_entry_crc of the entry */
	LogEntry	entry;
} RingSlot;

typedef struct LogBufShared
{
	Latch	   *worker_latch;
	pg_atomic_uint32 worker_pid;
	ConditionVariable flushed_cv;
	pg_atomic_uint64 flushed_count;
	pg_atomic_uint64 fallbacks;
	pg_atomic_uint64 errors;
	pg_atomic_uint64 recovered;
	pg_atomic_uint64 last_flush;
	pg_atomic_uint64 heartbeat;	/* bumped by the writer per chunk of rows */
	pg_atomic_uint32 wake_requested;	/* someone needs a flush now */
	pg_atomic_uint64 duplicates;
	pg_atomic_uint64 quarantined;
	pg_atomic_uint64 discarded;
	uint64		start_reserve;
	pg_atomic_uint32 sql_version_mismatch;	/* set by the worker */
} LogBufShared;

/* entries lost before shared memory existed (ring renamed aside) */
static uint64 discarded_at_map = 0;

static RingHeader *ring = NULL;
static RingSlot *slots = NULL;
static Size ring_bytes = 0;
static LogBufShared *shared = NULL;

#define SLOT_SIZE	MAXALIGN(sizeof(RingSlot))

static inline RingSlot *
slot_for(uint64 seq)
{
	return (RingSlot *) ((char *) slots + (seq % ring->nslots) * SLOT_SIZE);
}

static Size
ring_file_size(uint64 nslots)
{
	return add_size(sizeof(RingHeader), mul_size(nslots, SLOT_SIZE));
}

/* Create a fresh, zeroed ring file of the configured size. */
static int
create_ring_file(void)
{
	int			fd;
	int			rc;

	fd = open(RING_FILE, O_RDWR | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not create log buffer file \"%s\": %m", RING_FILE)));
	/* allocate every block now: a mapped page must never hit a full disk */
	rc = posix_fallocate(fd, 0, ring_file_size(apikey_log_buffer_entries));
	if (rc != 0)
	{
		errno = rc;
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not allocate log buffer file \"%s\": %m", RING_FILE)));
	}
	return fd;
}

/*
 * Map the ring file (postmaster, _PG_init).  An existing file is reused
 * only when its header matches this build and configuration; otherwise it
 * is renamed aside with a LOG message, never silently reused or deleted.
 */
void
logbuf_map_file(void)
{
	Size		want = ring_file_size(apikey_log_buffer_entries);
	int			fd;
	struct stat st;
	bool		fresh = false;
	void	   *map;

	fd = open(RING_FILE, O_RDWR | PG_BINARY);
	if (fd < 0 && errno != ENOENT)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not open log buffer file \"%s\": %m", RING_FILE)));
	if (fd >= 0)
	{
		RingHeader	header;
		bool		ok;

		bool		have_header;
		const char *why = NULL;
		uint64		pending = 0;

		have_header = fstat(fd, &st) == 0 &&
			pread(fd, &header, sizeof(header), 0) == sizeof(header);
		if (!have_header)
			why = "it is shorter than a header";
		else if (header.magic != RING_MAGIC)
			why = "its header is not a log buffer header (damaged)";
		else if (header.version != RING_VERSION || header.slot_size != SLOT_SIZE)
			why = "it was written by another version of apikey_usage";
		else if (header.nslots != (uint64) apikey_log_buffer_entries)
			why = "apikey_usage.log_buffer_entries has changed";
		else if ((Size) st.st_size != want)
			why = "it is truncated or extended (damaged)";
		ok = (why == NULL);
		if (!ok && have_header && header.magic == RING_MAGIC)
		{
			uint64		r = pg_atomic_read_u64(&header.reserve_seq);
			uint64		f = pg_atomic_read_u64(&header.flushed_seq);

			if (r >= f && r - f <= header.nslots)
				pending = r - f;
		}
		if (!ok)
		{
			char		aside[MAXPGPATH];

			close(fd);
			snprintf(aside, sizeof(aside), "%s.%ld.old", RING_FILE, (long) time(NULL));
			if (rename(RING_FILE, aside) != 0)
				ereport(FATAL,
						(errcode_for_file_access(),
						 errmsg("apikey_usage: could not rename \"%s\" to \"%s\": %m", RING_FILE, aside)));
			ereport(LOG,
					(errmsg("apikey_usage: log buffer file \"%s\" cannot be used because %s; renamed it to \"%s\"; " UINT64_FORMAT " unflushed log entries in it are discarded",
							RING_FILE, why, aside, pending)));
			discarded_at_map += pending;
			fd = -1;
		}
	}
	if (fd < 0)
	{
		fd = create_ring_file();
		fresh = true;
	}

	map = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		ereport(FATAL,
				(errmsg("apikey_usage: could not map log buffer file \"%s\": %m", RING_FILE)));
	close(fd);
	ring = (RingHeader *) map;
	slots = (RingSlot *) ((char *) map + sizeof(RingHeader));
	ring_bytes = want;

	if (fresh)
	{
		ring->magic = RING_MAGIC;
		ring->version = RING_VERSION;
		ring->slot_size = SLOT_SIZE;
		ring->nslots = apikey_log_buffer_entries;
		randombytes_buf(&ring->ring_id, sizeof(ring->ring_id));
		ring->ring_id &= ~SLOT_DEAD;	/* keep it a positive bigint */
		pg_atomic_init_u64(&ring->reserve_seq, 0);
		pg_atomic_init_u64(&ring->flushed_seq, 0);
	}
}

Size
logbuf_shmem_size(void)
{
	return MAXALIGN(sizeof(LogBufShared));
}

/*
 * Set up the shared part; called with AddinShmemInitLock held, in the
 * postmaster at start and after every crash, when no other process is
 * alive: reserved slots never committed are marked dead now.
 */
void
logbuf_shmem_init(void)
{
	bool		found;

	shared = ShmemInitStruct("apikey_usage log buffer", sizeof(LogBufShared), &found);
	if (!found)
	{
		uint64		reserve = pg_atomic_read_u64(&ring->reserve_seq);
		uint64		flushed = pg_atomic_read_u64(&ring->flushed_seq);
		uint64		seq;
		uint64		pending = 0;
		uint64		dead = 0;

		shared->worker_latch = NULL;
		pg_atomic_init_u32(&shared->worker_pid, 0);
		ConditionVariableInit(&shared->flushed_cv);
		pg_atomic_init_u64(&shared->flushed_count, 0);
		pg_atomic_init_u64(&shared->fallbacks, 0);
		pg_atomic_init_u64(&shared->errors, 0);
		pg_atomic_init_u64(&shared->last_flush, 0);
		pg_atomic_init_u32(&shared->sql_version_mismatch, 0);
		pg_atomic_init_u64(&shared->heartbeat, 0);
		pg_atomic_init_u32(&shared->wake_requested, 0);
		pg_atomic_init_u64(&shared->duplicates, 0);
		pg_atomic_init_u64(&shared->quarantined, 0);
		pg_atomic_init_u64(&shared->discarded, discarded_at_map);

		if (reserve < flushed || reserve - flushed > ring->nslots)
		{
			uint64		lost = reserve >= flushed ? ring->nslots : 0;

			ereport(LOG,
					(errmsg("apikey_usage: log buffer counters are inconsistent (reserved " UINT64_FORMAT ", flushed " UINT64_FORMAT "); starting empty; up to " UINT64_FORMAT " unflushed entries are discarded",
							reserve, flushed, lost)));
			pg_atomic_fetch_add_u64(&shared->discarded, lost);
			pg_atomic_write_u64(&ring->flushed_seq, reserve);
			flushed = reserve;
		}
		for (seq = flushed; seq < reserve; seq++)
		{
			RingSlot   *slot = slot_for(seq);
			uint64		state = pg_atomic_read_u64(&slot->state);

			if (state == seq + 1)
				pending++;
			else if (state != ((seq + 1) | SLOT_DEAD))
			{
				pg_atomic_write_u64(&slot->state, (seq + 1) | SLOT_DEAD);
				dead++;
			}
		}
		if (dead > 0)
		{
			ereport(LOG,
					(errmsg("apikey_usage: " UINT64_FORMAT " log buffer slots were reserved but never committed (their callers got no answer) or their state is damaged; discarded",
							dead)));
			pg_atomic_fetch_add_u64(&shared->discarded, dead);
		}
		pg_atomic_init_u64(&shared->recovered, pending);
		shared->start_reserve = reserve;
		if (pending > 0)
			ereport(LOG,
					(errmsg("apikey_usage: " UINT64_FORMAT " logged requests found in the log buffer will be written to the tables",
							pending)));
	}
}

/* ---- writers ---- */

/*
 * Copy an entry: the fixed part, then only the used bytes of the text
 * fields.  Lengths are clamped to the fields (a damaged slot may claim
 * more); returns false when one had to be.
 */
static bool
copy_entry(LogEntry *dst, const LogEntry *src)
{
	bool		ok;

	memcpy(dst, src, offsetof(LogEntry, method));
	ok = dst->method_len <= APIKEY_METHOD_MAX &&
		dst->endpoint_len <= APIKEY_ENDPOINT_MAX &&
		dst->resource_len <= APIKEY_RESOURCE_MAX;
	dst->method_len = Min(dst->method_len, APIKEY_METHOD_MAX);
	dst->endpoint_len = Min(dst->endpoint_len, APIKEY_ENDPOINT_MAX);
	dst->resource_len = Min(dst->resource_len, APIKEY_RESOURCE_MAX);
	memcpy(dst->method, src->method, dst->method_len);
	memcpy(dst->endpoint, src->endpoint, dst->endpoint_len);
	if (dst->has_resource)
		memcpy(dst->resource, src->resource, dst->resource_len);
	return ok;
}

/*
 * CRC-32C of an entry's meaningful bytes: the fixed part and the used
 * bytes of the text fields (lengths clamped).
 */
uint32
log_entry_crc(const LogEntry *entry)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, entry, offsetof(LogEntry, method));
	COMP_CRC32C(crc, entry->method, Min(entry->method_len, APIKEY_METHOD_MAX));
	COMP_CRC32C(crc, entry->endpoint, Min(entry->endpoint_len, APIKEY_ENDPOINT_MAX));
	if (entry->has_resource)
		COMP_CRC32C(crc, entry->resource, Min(entry->resource_len, APIKEY_RESOURCE_MAX));
	FIN_CRC32C(crc);
	return crc;
}

/*
 * Try to put an entry in the ring.  Returns false when the ring is full;
 * on success *seq_out is the entry's sequence number.
 */
static bool
try_append(const LogEntry *entry, uint64 *seq_out)
{
	uint64		seq = pg_atomic_read_u64(&ring->reserve_seq);
	RingSlot   *slot;

	for (;;)
	{
		uint64		flushed = pg_atomic_read_u64(&ring->flushed_seq);

		if (seq - flushed >= ring->nslots)
			return false;
		if (pg_atomic_compare_exchange_u64(&ring->reserve_seq, &seq, seq + 1))
			break;
	}
	slot = slot_for(seq);
	(void) copy_entry(&slot->entry, entry);
	slot->crc = log_entry_crc(entry);
	pg_write_barrier();
	pg_atomic_write_u64(&slot->state, seq + 1);

	/* wake the worker early when the ring is half full */
	if (seq + 1 - pg_atomic_read_u64(&ring->flushed_seq) == ring->nslots / 2)
		logbuf_wake_worker();
	*seq_out = seq;
	return true;
}

/*
 * Put one entry in the ring, or in a spool file (see logbuf_append).
 * Returns true with *seq_out set when it went to the ring; false with
 * spool_name (MAXPGPATH bytes) set when it was spooled.  Never waits for
 * the tables.
 */
static bool
append_one(const LogEntry *entry, uint64 *seq_out, char *spool_name)
{
	int			attempt;
	int			stalled = 0;
	uint64		progress = pg_atomic_read_u64(&ring->flushed_seq) +
		pg_atomic_read_u64(&shared->heartbeat);

	for (attempt = 0; attempt < 5000 && stalled < 250; attempt++)
	{
		uint64		now_progress;

		if (try_append(entry, seq_out))
			return true;
		logbuf_wake_worker();
		pg_usleep(200L);
		now_progress = pg_atomic_read_u64(&ring->flushed_seq) +
			pg_atomic_read_u64(&shared->heartbeat);
		if (now_progress != progress)
		{
			progress = now_progress;
			stalled = 0;
		}
		else
			stalled++;
	}
	spool_write(entry, spool_name);
	pg_atomic_fetch_add_u64(&shared->fallbacks, 1);
	logbuf_wake_worker();
	return false;
}

/*
 * Log one entry.  Buffered mode returns once it is in the ring (or the
 * spool); synchronous mode once it is in the tables.  A full ring slows
 * the caller down to the worker's pace while the worker makes progress
 * (its flushed sequence or its heartbeat moves; up to 1 s); when it stays
 * full with no progress for about 50 ms (the worker is stalled: a spool
 * file costs two fsyncs, as much as a slow commit of the worker) the
 * entry goes to a spool file of its own (counted as a fall-back): never a
 * silent drop, and never written in the caller's transaction, so a
 * rollback cannot take it back.
 */
void
logbuf_append(const LogEntry *entry)
{
	logbuf_append_batch(entry, 1);
}

/*
 * Log a batch of entries (log_requests): each as logbuf_append, but a
 * synchronous caller waits once, for the whole batch.
 */
void
logbuf_append_batch(const LogEntry *entries, int count)
{
	uint64		last_seq = 0;
	bool		in_ring = false;
	char	  **spooled = NULL;
	int			nspooled = 0;
	int			i;

	for (i = 0; i < count; i++)
	{
		uint64		seq;
		char		name[MAXPGPATH];

		if (append_one(&entries[i], &seq, name))
		{
			last_seq = Max(last_seq, seq);
			in_ring = true;
		}
		else if (apikey_log_mode == LOG_MODE_SYNCHRONOUS)
		{
			if (spooled == NULL)
				spooled = palloc(sizeof(char *) * count);
			spooled[nspooled++] = pstrdup(name);
		}
	}
	if (apikey_log_mode == LOG_MODE_SYNCHRONOUS)
	{
		if (in_ring)
			logbuf_wait_flushed(last_seq + 1);
		if (nspooled > 0)
			logbuf_wait_spooled(spooled, nspooled);
	}
}

/*
 * Waiters fail, rather than wait for ever, while the worker does not
 * write because the installed SQL objects are of another version.
 */
static void
check_sql_version(void)
{
	if (pg_atomic_read_u32(&shared->sql_version_mismatch) != 0)
	{
		Oid			extension = get_extension_oid("apikey_usage", true);
		char	   *version = OidIsValid(extension) ? apikey_installed_version(extension) : NULL;

		/* updated meanwhile: the worker notices within one cycle */
		if (version != NULL && strcmp(version, APIKEY_USAGE_VERSION) == 0)
		{
			logbuf_wake_worker();
			return;
		}
		ConditionVariableCancelSleep();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the apikey_usage library was updated but the extension's SQL objects were not"),
				 errdetail("Logged entries stay in the buffer until the update; the background worker does not write them into tables of another version."),
				 errhint("Run ALTER EXTENSION apikey_usage UPDATE in database \"%s\".",
						 apikey_database)));
	}
}

/*
 * The error of a wait that made no progress for 10 seconds: the worker is
 * missing, blocked (a lock) or failing.  Nothing is lost: the entries stay
 * buffered and are written once the cause is gone.
 */
static void
no_progress_error(void)
{
	bool		running = pg_atomic_read_u32(&shared->worker_pid) != 0;

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 running ?
			 errmsg("the apikey_usage background worker has written nothing for 10 seconds") :
			 errmsg("the apikey_usage background worker is not running"),
			 errdetail("The logged entries stay in the buffer and are written once the cause is fixed; logging a request again with the same request_id adds nothing."),
			 running ?
			 errhint("See the errors of the \"apikey_usage flusher\" process in the server log, and locks held on the apikey_usage tables.") :
			 errhint("Check the server log; the worker serves database \"%s\" (apikey_usage.database).",
					 apikey_database)));
}

/*
 * Wait until every entry below seq is in the tables.  Gives up with an
 * error (55000) after 10 seconds without progress, whatever the reason:
 * no worker, a worker whose flushes fail, or one waiting for a lock.
 */
void
logbuf_wait_flushed(uint64 seq)
{
	TimestampTz progress_at = GetCurrentTimestamp();
	uint64		last_flushed = pg_atomic_read_u64(&ring->flushed_seq);

	logbuf_wake_worker();
	ConditionVariablePrepareToSleep(&shared->flushed_cv);
	while (pg_atomic_read_u64(&ring->flushed_seq) < seq)
	{
		TimestampTz now = GetCurrentTimestamp();
		uint64		flushed = pg_atomic_read_u64(&ring->flushed_seq);

		if (flushed != last_flushed)
		{
			last_flushed = flushed;
			progress_at = now;
		}
		else if (TimestampDifferenceExceeds(progress_at, now, 10000))
		{
			ConditionVariableCancelSleep();
			no_progress_error();
		}
		check_sql_version();
		logbuf_wake_worker();
		ConditionVariableTimedSleep(&shared->flushed_cv, 100, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/*
 * Wait until the worker has written (and removed) the given spool files,
 * within the bound of logbuf_wait_flushed.
 */
void
logbuf_wait_spooled(char **names, int count)
{
	int			i;
	TimestampTz progress_at = GetCurrentTimestamp();

	for (i = 0; i < count; i++)
	{
		while (spool_exists(names[i]))
		{
			CHECK_FOR_INTERRUPTS();
			check_sql_version();
			if (TimestampDifferenceExceeds(progress_at, GetCurrentTimestamp(), 10000))
			{
				ConditionVariableCancelSleep();
				no_progress_error();
			}
			logbuf_wake_worker();
			ConditionVariableTimedSleep(&shared->flushed_cv, 20, PG_WAIT_EXTENSION);
		}
		progress_at = GetCurrentTimestamp();
	}
	ConditionVariableCancelSleep();
}

void
logbuf_wake_worker(void)
{
	Latch	   *latch = shared->worker_latch;

	pg_atomic_write_u32(&shared->wake_requested, 1);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Worker: was a flush asked for (ring half full, flush(), a synchronous
 * caller) since the last call?  Other wake-ups of its latch (sinval
 * catch-up, signals) do not make it flush before flush_interval.
 */
bool
logbuf_take_wake_request(void)
{
	return pg_atomic_exchange_u32(&shared->wake_requested, 0) != 0;
}

/* ---- the worker's side ---- */

void
logbuf_set_worker_latch(Latch *latch, int pid)
{
	shared->worker_latch = latch;
	pg_atomic_write_u32(&shared->worker_pid, (uint32) pid);
}

/*
 * Copy up to max_entries committed entries starting at from_seq; dead
 * slots are skipped.  *next_seq is where the next batch starts: the worker
 * may set flushed_seq to it once the copied entries are in the tables.
 */
int
logbuf_take_batch(uint64 from_seq, int max_entries, LogEntry *entries,
				  const char **damage, uint64 *next_seq)
{
	uint64		reserve = pg_atomic_read_u64(&ring->reserve_seq);
	uint64		seq;
	int			n = 0;

	for (seq = from_seq; seq < reserve && n < max_entries; seq++)
	{
		RingSlot   *slot = slot_for(seq);
		uint64		state = pg_atomic_read_u64(&slot->state);

		if (state == ((seq + 1) | SLOT_DEAD))
			continue;
		if (state != seq + 1)
			break;				/* still being written */
		pg_read_barrier();
		if (!copy_entry(&entries[n], &slot->entry))
			damage[n] = "the log buffer slot is damaged (lengths out of range)";
		else if (log_entry_crc(&entries[n]) != slot->crc)
			damage[n] = "the log buffer slot is damaged (checksum mismatch)";
		else
			damage[n] = NULL;
		n++;
	}
	*next_seq = seq;
	return n;
}

void
logbuf_set_flushed(uint64 seq)
{
	if (seq > pg_atomic_read_u64(&ring->flushed_seq))
		pg_atomic_write_u64(&ring->flushed_seq, seq);
}

/*
 * Worker: tell waiters whether the installed SQL objects are of another
 * version than this library (they then fail instead of waiting).
 */
void
logbuf_set_sql_version_mismatch(bool mismatch)
{
	pg_atomic_write_u32(&shared->sql_version_mismatch, mismatch ? 1 : 0);
	if (mismatch)
		ConditionVariableBroadcast(&shared->flushed_cv);
}

void
logbuf_broadcast_flushed(void)
{
	ConditionVariableBroadcast(&shared->flushed_cv);
}

void
logbuf_count_flush(int64 n, bool recovered)
{
	pg_atomic_fetch_add_u64(&shared->flushed_count, n);
	pg_atomic_write_u64(&shared->last_flush, (uint64) GetCurrentTimestamp());
}

void
logbuf_count_error(void)
{
	pg_atomic_fetch_add_u64(&shared->errors, 1);
}

/* The writer is making progress (a chunk of rows inserted). */
void
logbuf_heartbeat(void)
{
	pg_atomic_fetch_add_u64(&shared->heartbeat, 1);
}

/* Count what a batch did not write (writer.c). */
void
logbuf_count_outcome(int64 duplicates, int64 quarantined, int64 discarded)
{
	if (duplicates > 0)
		pg_atomic_fetch_add_u64(&shared->duplicates, duplicates);
	if (quarantined > 0)
		pg_atomic_fetch_add_u64(&shared->quarantined, quarantined);
	if (discarded > 0)
		pg_atomic_fetch_add_u64(&shared->discarded, discarded);
}

void
logbuf_outcome_stats(int64 *duplicates, int64 *quarantined, int64 *discarded)
{
	*duplicates = (int64) pg_atomic_read_u64(&shared->duplicates);
	*quarantined = (int64) pg_atomic_read_u64(&shared->quarantined);
	*discarded = (int64) pg_atomic_read_u64(&shared->discarded);
}

uint64
logbuf_reserved_seq(void)
{
	return pg_atomic_read_u64(&ring->reserve_seq);
}

uint64
logbuf_flushed_seq(void)
{
	return pg_atomic_read_u64(&ring->flushed_seq);
}

uint64
logbuf_capacity(void)
{
	return ring->nslots;
}

Size
logbuf_file_bytes(void)
{
	return ring_bytes;
}

uint64
logbuf_ring_id(void)
{
	return ring->ring_id;
}

/*
 * Worker, before its first flush of an installation: decide whether the
 * ring belongs to this cluster and its current history.  table_seq is
 * what apikey_usage.flush_state holds for this ring_id (-1 when it has no
 * row).  A ring stamped by another cluster or on another timeline, or one
 * that ends before what the tables already hold (an older copy), loses
 * the entries it held when the server started: they are counted, logged
 * and skipped, and the ring takes a new ring_id, so the sequence recorded
 * in flush_state for the old id never moves backwards.  Otherwise, when
 * the tables are ahead of the ring (a crash between commit and advancing
 * the ring), the ring skips what is already written.  Stamps the ring
 * with sysid and timeline.  Returns true when the ring_id changed.
 */
bool
logbuf_check_origin(uint64 sysid, uint32 timeline, int64 table_seq,
					uint64 *discarded)
{
	uint64		inherited_end = shared->start_reserve;
	uint64		flushed = pg_atomic_read_u64(&ring->flushed_seq);
	bool		renew = false;
	char		reason[256];

	*discarded = 0;
	reason[0] = '\0';
	if (ring->system_identifier != 0 && ring->system_identifier != sysid)
		snprintf(reason, sizeof(reason),
				 "it was written by another cluster (system identifier " UINT64_FORMAT ", this cluster's is " UINT64_FORMAT ")",
				 ring->system_identifier, sysid);
	else if (ring->timeline != 0 && ring->timeline != timeline)
		snprintf(reason, sizeof(reason),
				 "it was written on timeline %u and the server is on timeline %u now (a copy from a base backup, a standby or a restore)",
				 ring->timeline, timeline);
	else if (table_seq >= 0 && (uint64) table_seq > inherited_end)
		snprintf(reason, sizeof(reason),
				 "it is older than the tables (it ends at sequence " UINT64_FORMAT ", apikey_usage.flush_state holds " INT64_FORMAT ")",
				 inherited_end, table_seq);

	if (reason[0] != '\0')
	{
		uint64		seq;

		for (seq = flushed; seq < inherited_end; seq++)
		{
			if (pg_atomic_read_u64(&slot_for(seq)->state) == seq + 1)
				(*discarded)++;
		}
		if (inherited_end > flushed)
			pg_atomic_write_u64(&ring->flushed_seq, inherited_end);
		randombytes_buf(&ring->ring_id, sizeof(ring->ring_id));
		ring->ring_id &= ~SLOT_DEAD;
		renew = true;
		pg_atomic_fetch_add_u64(&shared->discarded, *discarded);
		ereport(LOG,
				(errmsg("apikey_usage: discarded " UINT64_FORMAT " log entries found in log buffer file \"%s\": %s",
						*discarded, RING_FILE, reason),
				 errdetail("Entries logged before this point by this cluster are in its tables already, or were lost with the history they belonged to; writing them again would count them twice.")));
	}
	else if (table_seq >= 0 && (uint64) table_seq > flushed)
	{
		ereport(LOG,
				(errmsg("apikey_usage: skipping " UINT64_FORMAT " log entries already written before a crash",
						(uint64) table_seq - flushed)));
		pg_atomic_write_u64(&ring->flushed_seq, (uint64) table_seq);
	}
	ring->system_identifier = sysid;
	ring->timeline = timeline;
	pg_write_barrier();
	return renew;
}

void
logbuf_stats(int64 *logged, int64 *flushed, int64 *fallbacks, int64 *errors,
			 TimestampTz *last_flush, int *worker_pid, int64 *recovered)
{
	*logged = (int64) (pg_atomic_read_u64(&ring->reserve_seq) - shared->start_reserve);
	*flushed = (int64) pg_atomic_read_u64(&shared->flushed_count);
	*fallbacks = (int64) pg_atomic_read_u64(&shared->fallbacks);
	*errors = (int64) pg_atomic_read_u64(&shared->errors);
	*last_flush = (TimestampTz) pg_atomic_read_u64(&shared->last_flush);
	*worker_pid = (int) pg_atomic_read_u32(&shared->worker_pid);
	*recovered = (int64) pg_atomic_read_u64(&shared->recovered);
}
