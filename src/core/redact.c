/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Keep presented API keys out of the server log, whatever the
 *		logging settings.
 *
 * A key is <prefix>_<43 base62>[<2 base62 node>]<6 base62 checksum>
 * (keyformat.c).  An emit_log_hook, set in the postmaster and inherited
 * by every process, rewrites every message field that reaches the server
 * log (message, detail, detail_log, hint, context, internal query) and the
 * statement text that elog.c prints from debug_query_string (the
 * STATEMENT line, csvlog/jsonlog "query").  That covers log_statement,
 * bind parameters (DETAIL: parameters: $1 = '...'), duration logging,
 * errors, PL/pgSQL contexts and plans that auto_explain logs as messages.
 *
 * What is masked in a log line is anything that could hold most of a key,
 * checksum or not, whole or cut short: every run of at least
 * LOG_SUSPECT_CHARS base62 characters that follows a '_' or a "%5F" (a
 * key, a key with a typo, a key cut by log_parameter_max_length, a key
 * lower-cased as an unquoted identifier, two keys written back to back, a
 * URL-encoded key) or that follows "..." (PostgreSQL's mark for a line it
 * cut at the start, as in a JSON error context); with it, the runs that
 * follow a separator apart when each has LOG_LINKED_CHARS or more (a key
 * with a space, a line break, a no-break or zero-width space pasted into
 * it: see separator_end).  The run is
 * replaced by '*' of the same length, so error cursor positions stay
 * right; the prefix is kept.  Fewer characters leave more than 2^119
 * guesses for the rest of the body.  Node-tree dumps (debug_print_parse,
 * debug_print_rewritten, debug_print_plan) are wrapped at 78 columns in
 * the middle of words, so there a run goes on across a line break and its
 * indentation; they print a constant as its bytes in decimal, and every
 * constant of LOG_SUSPECT_BYTES bytes or more (or of a size that cannot be
 * read) has its bytes replaced by zeros there.
 *
 * PostgreSQL hands the hook the one copy of each field that it then sends
 * both to the log and to the client, so the client sees the same masking
 * (an application's own error detail with such a run is masked for it
 * too).  Lines that PostgreSQL sends only to the client, not to the log,
 * never reach the hook.
 *
 * Data is treated more narrowly: redact_keys_in_text masks only real keys
 * (a valid checksum) in an endpoint or resource_id before it is logged, so
 * that an identifier which merely looks like a key is stored as given.
 *
 * Shared state: none.  Per process: the redacted copy of the current
 * statement text (TopMemoryContext), replaced when the statement changes,
 * and a recursion guard.  Nothing in the hook raises an error (the copy is
 * allocated with MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE, so neither its size
 * nor a failing malloc can throw); the guard is nevertheless reset by
 * PG_FINALLY, because a guard left set by an error escaping the hook would
 * silently turn redaction off for the rest of the session (fail open).
 * When the copy cannot be allocated, the statement text is withheld from
 * the log instead of being printed unredacted (fail closed).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "apikey_usage.h"
#include "keyformat.h"

/* characters after the '_': body and checksum, plus the node on nodes >= 1 */
#define KEY_TAIL_CHARS	(KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS)
#define KEY_TAIL_CHARS_NODE	(KEY_TAIL_CHARS + KEYFMT_NODE_CHARS)

/*
 * A run of base62 characters this long, after a '_', "%5F" or "...", is masked
 * in the log: a run of 23 reveals at most 23 of the 43 body characters,
 * leaving 62^20 (more than 2^119) possibilities for the rest.
 */
#define LOG_SUSPECT_CHARS	24

/* a run a separator after a suspect run is masked with it from this long */
#define LOG_LINKED_CHARS	8
/* a separator of white space and non-ASCII bytes is at most this long */
#define LOG_SEPARATOR_BYTES	4

/* node dumps: constants of at least this many bytes are zeroed */
#define LOG_SUSPECT_BYTES	(1 + LOG_SUSPECT_CHARS)

static emit_log_hook_type prev_emit_log_hook = NULL;
static char *redacted_statement = NULL;
static bool in_redact_hook = false;

/* printed instead of a statement that could not be copied to redact it */
static const char withheld_statement[] =
"(statement not logged: no memory to redact API keys in it)";

static inline bool
is_base62(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		(c >= 'a' && c <= 'z');
}

static inline bool
is_prefix_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/*
 * The end of the run of base62 characters of buf[0..len) starting at
 * from, counting them in *nchars.  In a wrapped node dump the run goes on
 * across a line break and the indentation after it (the pretty printer
 * wraps every line at 78 columns, in the middle of a word).
 */
static size_t
log_run_end(const char *buf, size_t from, size_t len, bool wrapped, size_t *nchars)
{
	size_t		n = 0;

	while (from < len)
	{
		if (is_base62((unsigned char) buf[from]))
		{
			from++;
			n++;
			continue;
		}
		if (wrapped && buf[from] == '\n')
		{
			size_t		next = from + 1;

			while (next < len && (buf[next] == ' ' || buf[next] == '\t'))
				next++;
			if (next < len && is_base62((unsigned char) buf[next]))
			{
				from = next;
				continue;
			}
		}
		break;
	}
	*nchars = n;
	return from;
}

/*
 * Overwrite, in place, every key with a valid checksum in buf[0..len).
 * Returns true when something was overwritten.  Candidates are found at
 * each '_' followed by exactly 49 or 51 base62 characters (body, node and
 * checksum cannot contain '_', and a longer run is not a key); each
 * possible prefix start before the '_' is tried.
 */
bool
redact_keys_in_text(char *buf, size_t len)
{
	bool		changed = false;
	size_t		pos;

	/* the request path calls this for every endpoint: most hold no key */
	if (len < 2 + KEY_TAIL_CHARS || memchr(buf, '_', len) == NULL)
		return false;
	for (pos = 0; pos < len; pos++)
	{
		size_t		run_end;
		size_t		start;
		size_t		nchars;

		if (buf[pos] != '_')
			continue;
		run_end = log_run_end(buf, pos + 1, len, false, &nchars);
		if (pos > 0 && (nchars == KEY_TAIL_CHARS || nchars == KEY_TAIL_CHARS_NODE))
		{
			/* try each prefix start, longest first */
			for (start = (pos > KEYFMT_PREFIX_MAX ? pos - KEYFMT_PREFIX_MAX : 0);
				 start < pos; start++)
			{
				size_t		i;
				bool		plausible = true;

				for (i = start; i < pos; i++)
				{
					if (!is_prefix_char((unsigned char) buf[i]))
					{
						plausible = false;
						break;
					}
				}
				if (plausible && keyfmt_parse(buf + start, run_end - start, NULL))
				{
					memset(buf + pos + 1, '*', run_end - pos - 1);
					changed = true;
					break;
				}
			}
		}
		pos = run_end - 1;
	}
	return changed;
}


/*
 * The end of a separator at buf[at]: one character other than '_' (and
 * not base62), or up to LOG_SEPARATOR_BYTES bytes of white space,
 * backslashes (a node dump prints a space as "\ ") and non-ASCII bytes (a
 * no-break or zero-width space pasted into a key); at itself when there
 * is none.
 */
static size_t
separator_end(const char *buf, size_t at, size_t len)
{
	size_t		end = at;

	while (end < len && end - at < LOG_SEPARATOR_BYTES)
	{
		unsigned char c = (unsigned char) buf[end];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\\' || c >= 0x80)
			end++;
		else
			break;
	}
	if (end == at && at < len && buf[at] != '_' && buf[at] != '\0' &&
		!is_base62((unsigned char) buf[at]))
		end = at + 1;
	return end;
}

/* Overwrite the base62 characters of buf[start..end) with '*'. */
static void
mask_run(char *buf, size_t start, size_t end)
{
	for (; start < end; start++)
		if (is_base62((unsigned char) buf[start]))
			buf[start] = '*';
}

/*
 * Overwrite, in place, every run of buf[0..len) that could hold most of a
 * key (see the header comment): LOG_SUSPECT_CHARS base62 characters or
 * more after a '_', a "%5F" (a URL-encoded '_') or a "...", or such a run
 * and the runs that follow it one separator character apart (a key with a
 * space or line break pasted into it), when each of those has at least
 * LOG_LINKED_CHARS and all together LOG_SUSPECT_CHARS.  wrapped: buf is a
 * pretty-printed node dump.  Returns true when something was overwritten.
 */
static bool
redact_log_buffer(char *buf, size_t len, bool wrapped)
{
	bool		changed = false;
	size_t		pos;

	for (pos = 0; pos < len; pos++)
	{
		size_t		run_start;
		size_t		run_end;
		size_t		chain_start;
		size_t		chain_chars;
		size_t		nchars;

		if (buf[pos] == '_')
			run_start = pos + 1;
		else if (buf[pos] == '%' && pos + 2 < len && buf[pos + 1] == '5' &&
				 (buf[pos + 2] == 'F' || buf[pos + 2] == 'f'))
			run_start = pos + 3;
		else if (buf[pos] == '.' && pos + 2 < len &&
				 buf[pos + 1] == '.' && buf[pos + 2] == '.')
			run_start = pos + 3;
		else
			continue;
		run_end = log_run_end(buf, run_start, len, wrapped, &nchars);
		chain_start = run_start;
		chain_chars = nchars;
		/*
		 * runs a separator apart, each long enough to be part of a key (not
		 * from an empty run after "...", which ends many a cut line)
		 */
		while (nchars > 0 || buf[pos] != '.')
		{
			size_t		next_start = separator_end(buf, run_end, len);
			size_t		next_chars;
			size_t		next_end;

			if (next_start == run_end)
				break;
			next_end = log_run_end(buf, next_start, len, wrapped, &next_chars);
			if (next_chars < LOG_LINKED_CHARS)
				break;
			run_end = next_end;
			chain_chars += next_chars;
		}
		if (chain_chars >= LOG_SUSPECT_CHARS)
		{
			mask_run(buf, chain_start, run_end);
			changed = true;
		}
		/* the character that ended the run may start the next one */
		pos = Max(pos, run_end - 1);
	}
	return changed;
}

/* Past spaces, tabs and line breaks. */
static inline char *
skip_space(char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	return p;
}

/*
 * Zero, in place, the bytes of every constant of LOG_SUSPECT_BYTES bytes
 * or more in a node dump (":constvalue 56 [ -32 0 0 0 97 107 ... ]",
 * possibly wrapped over several lines by the pretty printer, even in the
 * middle of a number).  A constant whose size cannot be read is zeroed.
 */
static void
redact_node_dump(char *buf)
{
	char	   *at = buf;

	while ((at = strstr(at, ":constvalue")) != NULL)
	{
		char	   *p = skip_space(at + strlen(":constvalue"));
		long		nbytes = 0;
		int			ndigits = 0;

		for (;;)
		{
			if (*p >= '0' && *p <= '9')
			{
				if (nbytes < LOG_SUSPECT_BYTES)
					nbytes = nbytes * 10 + (*p - '0');
				ndigits++;
				p++;
				continue;
			}
			if (*p == '\n')
			{
				char	   *q = p + 1;

				while (*q == ' ' || *q == '\t')
					q++;
				if (*q >= '0' && *q <= '9')
				{
					p = q;
					continue;
				}
			}
			break;
		}
		p = skip_space(p);
		at = p;
		if (*p != '[')
			continue;			/* "<>": a null constant */
		if (ndigits == 0)
			nbytes = LOG_SUSPECT_BYTES;
		for (p++; *p != '\0' && *p != ']'; p++)
		{
			if (nbytes >= LOG_SUSPECT_BYTES && (*p == '-' || (*p >= '0' && *p <= '9')))
				*p = '0';
		}
		at = p;
	}
}

/*
 * Redact one message field (allocated by elog.c in ErrorContext, so it
 * may be changed in place).  wrapped: a pretty-printed node dump.
 */
static void
redact_field(char *field, bool wrapped)
{
	if (field == NULL)
		return;
	(void) redact_log_buffer(field, strlen(field), wrapped);
	if (strstr(field, ":constvalue") != NULL)
		redact_node_dump(field);
}

/*
 * Whether a message is one of the node dumps of debug_print_parse,
 * debug_print_rewritten and debug_print_plan (elog_node_display: the title
 * as message, the dump as detail).
 */
static bool
is_node_dump(const ErrorData *edata)
{
	return edata->message != NULL &&
		(strcmp(edata->message, "parse tree:") == 0 ||
		 strcmp(edata->message, "rewritten parse tree:") == 0 ||
		 strcmp(edata->message, "plan:") == 0);
}

/*
 * Point debug_query_string at a redacted copy when the statement holds a
 * key.  The copy lives until the next statement needs one; a statement
 * that was already redacted is left as it is.
 */
static void
redact_statement(void)
{
	size_t		len;
	char	   *copy;

	if (debug_query_string == NULL || debug_query_string == redacted_statement ||
		debug_query_string == withheld_statement)
		return;
	len = strlen(debug_query_string);
	if (len < LOG_SUSPECT_CHARS ||
		(strchr(debug_query_string, '_') == NULL &&
		 strstr(debug_query_string, "...") == NULL &&
		 strstr(debug_query_string, "%5") == NULL))
		return;
	copy = MemoryContextAllocExtended(TopMemoryContext, len + 1,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);
	if (copy == NULL)
	{
		/* fail closed: better no statement text than a key in the log */
		debug_query_string = withheld_statement;
		return;
	}
	memcpy(copy, debug_query_string, len + 1);
	if (!redact_log_buffer(copy, len, false))
	{
		pfree(copy);
		return;
	}
	if (redacted_statement != NULL)
		pfree(redacted_statement);
	redacted_statement = copy;
	debug_query_string = copy;
}

/*
 * The emit_log_hook: runs inside error reporting, so it must not raise
 * errors itself; it only rewrites buffers and allocates without failing.
 * Should anything in it raise all the same, PG_FINALLY clears the guard so
 * that the next message of the session is redacted again.
 */
static void
redact_emit_log(ErrorData *edata)
{
	if (!in_redact_hook)
	{
		in_redact_hook = true;
		PG_TRY();
		{
			bool		dump = is_node_dump(edata);

			redact_field(edata->message, false);
			redact_field(edata->detail, dump);
			redact_field(edata->detail_log, false);
			redact_field(edata->hint, false);
			redact_field(edata->context, false);
			redact_field(edata->internalquery, false);
			redact_statement();
		}
		PG_FINALLY();
		{
			in_redact_hook = false;
		}
		PG_END_TRY();
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Install the hook (postmaster, _PG_init).
 */
void
redact_install_hook(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = redact_emit_log;
}
