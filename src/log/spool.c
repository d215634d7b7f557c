/*-------------------------------------------------------------------------
 *
 * spool.c
 *		Overflow spool: one file per log entry that could not enter the
 *		full log buffer.
 *
 * When the ring stays full (worker slow or stalled) a writer does not
 * drop its entry and does not write it in its own transaction (that would
 * make logging transactional: a rollback would lose it).  It writes the
 * entry to a file of its own in apikey_usage_spool/ under the data
 * directory: written to a temporary name, fsync'ed, and renamed into
 * place (durable_rename), so a spooled entry survives any crash, even of
 * the operating system.  The background worker writes spooled entries to
 * the tables after the ring, exactly once: the file names it wrote are
 * recorded in apikey_usage.spool_done in the same transaction, and a file
 * whose name is recorded there is removed without being written again.
 *
 * Shared state: the directory.  Writers only create files with names
 * unique to their process; only the worker reads and removes them; a
 * name becomes visible only complete (rename).  No locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/timestamp.h"

#include "apikey_usage.h"

#define SPOOL_DIR		"apikey_usage_spool"
#define SPOOL_MAGIC		((uint32) 0x41505350)	/* "APSP" */
#define SPOOL_VERSION	2		/* 2: entry checksum, installation id */
#define SPOOL_SUFFIX	".entry"

typedef struct SpoolFileHeader
{
	uint32		magic;
	uint32		version;
	uint32		entry_size;
	uint32		crc;			/* log_entry_crc of the entry */
} SpoolFileHeader;

static uint64 spool_counter = 0;

/*
 * Create the spool directory if missing (postmaster, _PG_init).
 */
void
spool_init_dir(void)
{
	if (mkdir(SPOOL_DIR, S_IRWXU) != 0 && errno != EEXIST)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not create directory \"%s\": %m", SPOOL_DIR)));
}

/*
 * Write one entry durably; name_out (MAXPGPATH bytes) receives the file
 * name (without the directory).  Raises an error, with nothing logged,
 * when the file cannot be written.
 */
void
spool_write(const LogEntry *entry, char *name_out)
{
	char		tmp_path[MAXPGPATH];
	char		path[MAXPGPATH];
	SpoolFileHeader header = {SPOOL_MAGIC, SPOOL_VERSION, sizeof(LogEntry), log_entry_crc(entry)};
	int			fd;

	/* names sort by time, then process, then counter */
	snprintf(name_out, MAXPGPATH, "%016llx.%d.%llu" SPOOL_SUFFIX,
			 (unsigned long long) GetCurrentTimestamp(), MyProcPid,
			 (unsigned long long) spool_counter++);
	snprintf(tmp_path, sizeof(tmp_path), SPOOL_DIR "/tmp.%s", name_out);
	snprintf(path, sizeof(path), SPOOL_DIR "/%s", name_out);

	fd = OpenTransientFile(tmp_path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not create spool file \"%s\": %m", tmp_path)));
	if (write(fd, &header, sizeof(header)) != sizeof(header) ||
		write(fd, entry, sizeof(LogEntry)) != sizeof(LogEntry))
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		unlink(tmp_path);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not write spool file \"%s\": %m", tmp_path)));
	}
	CloseTransientFile(fd);
	/* fsyncs the file, renames, fsyncs the directory */
	durable_rename(tmp_path, path, ERROR);
}

bool
spool_exists(const char *name)
{
	char		path[MAXPGPATH];
	struct stat st;

	snprintf(path, sizeof(path), SPOOL_DIR "/%s", name);
	return stat(path, &st) == 0;
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * The complete spool files, sorted (oldest first), at most max of them.
 * Leftover temporary files of crashed writers are removed.
 */
int
spool_list(char ***names_out, int max)
{
	DIR		   *dir = AllocateDir(SPOOL_DIR);
	struct dirent *de;
	int			n = 0;
	int			cap = 16;
	char	  **names = palloc(sizeof(char *) * cap);

	while ((de = ReadDir(dir, SPOOL_DIR)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (strncmp(de->d_name, "tmp.", 4) == 0)
		{
			char		path[MAXPGPATH];
			struct stat st;

			/* a writer that died mid-write; its caller got no answer */
			snprintf(path, sizeof(path), SPOOL_DIR "/%s", de->d_name);
			if (stat(path, &st) == 0 && st.st_mtime < time(NULL) - 60)
				unlink(path);
			continue;
		}
		if (len <= strlen(SPOOL_SUFFIX) ||
			strcmp(de->d_name + len - strlen(SPOOL_SUFFIX), SPOOL_SUFFIX) != 0)
			continue;
		if (n == cap)
		{
			cap *= 2;
			names = repalloc(names, sizeof(char *) * cap);
		}
		names[n++] = pstrdup(de->d_name);
	}
	FreeDir(dir);
	qsort(names, n, sizeof(char *), compare_names);
	*names_out = names;
	return Min(n, max);
}

/*
 * Read a spool file.  False (with a LOG message, counted as discarded)
 * when it cannot be parsed at all: it is renamed aside, never silently
 * dropped.  True otherwise; *damage is then NULL, or why the entry must
 * go to the quarantine (lengths out of range, checksum mismatch).
 */
bool
spool_read(const char *name, LogEntry *entry, const char **damage)
{
	char		path[MAXPGPATH];
	SpoolFileHeader header;
	int			fd;
	bool		ok;

	snprintf(path, sizeof(path), SPOOL_DIR "/%s", name);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		return false;
	ok = read(fd, &header, sizeof(header)) == sizeof(header) &&
		header.magic == SPOOL_MAGIC && header.version == SPOOL_VERSION &&
		header.entry_size == sizeof(LogEntry) &&
		read(fd, entry, sizeof(LogEntry)) == sizeof(LogEntry);
	CloseTransientFile(fd);
	*damage = NULL;
	if (ok)
	{
		if (entry->method_len > APIKEY_METHOD_MAX ||
			entry->endpoint_len > APIKEY_ENDPOINT_MAX ||
			entry->resource_len > APIKEY_RESOURCE_MAX)
			*damage = "the spool file is damaged (lengths out of range)";
		else if (log_entry_crc(entry) != header.crc)
			*damage = "the spool file is damaged (checksum mismatch)";
		entry->method_len = Min(entry->method_len, APIKEY_METHOD_MAX);
		entry->endpoint_len = Min(entry->endpoint_len, APIKEY_ENDPOINT_MAX);
		entry->resource_len = Min(entry->resource_len, APIKEY_RESOURCE_MAX);
	}
	if (!ok)
	{
		char		aside[MAXPGPATH];

		snprintf(aside, sizeof(aside), "%s.damaged", path);
		(void) rename(path, aside);
		ereport(LOG,
				(errmsg("apikey_usage: spool file \"%s\" cannot be read (damaged, or written by another version); renamed it to \"%s\"; its log entry is discarded", path, aside)));
		logbuf_count_outcome(0, 0, 1);
	}
	return ok;
}

void
spool_remove(const char *name)
{
	char		path[MAXPGPATH];

	snprintf(path, sizeof(path), SPOOL_DIR "/%s", name);
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not remove spool file \"%s\": %m", path)));
}
