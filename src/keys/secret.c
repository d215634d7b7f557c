/*-------------------------------------------------------------------------
 *
 * secret.c
 *		The server secret, and encryption of stored API keys under it.
 *
 * The secret is 32 random bytes in a file of the data directory
 * (apikey_usage.secret_file), created with mode 0600 on first start and
 * read by the postmaster into sodium_malloc memory (guarded pages, wiped
 * on free) that every backend inherits read-only.  Like ssl_key_file, an
 * existing file that the group or others may access, or of the wrong size,
 * stops the start with FATAL.  It is never reachable
 * from SQL.  Keys are sealed with XChaCha20-Poly1305 with the key_id as
 * associated data, so a ciphertext cannot be moved to another key's row.
 *
 * Shared state: the secret buffer, written once in the postmaster before
 * any child exists and read-only afterwards; no locking needed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>

#include "apikey_usage.h"

#define SECRET_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

static unsigned char *server_secret = NULL;

/*
 * Read the secret file, or create it when it does not exist.  Runs in the
 * postmaster from _PG_init, with the data directory as working directory.
 * A file of the wrong size or mode is an error to fix by hand, never
 * overwritten or used.
 */
void
secret_load_or_create(void)
{
	const char *path = apikey_secret_file;
	int			fd;
	ssize_t		got;

	server_secret = sodium_malloc(SECRET_BYTES);
	if (server_secret == NULL)
		elog(FATAL, "apikey_usage: could not allocate memory for the server secret");

	fd = open(path, O_RDONLY | PG_BINARY);
	if (fd < 0 && errno == ENOENT)
	{
		randombytes_buf(server_secret, SECRET_BYTES);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
		if (fd < 0)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("apikey_usage: could not create server secret file \"%s\": %m", path)));
		if (write(fd, server_secret, SECRET_BYTES) != SECRET_BYTES || fsync(fd) != 0)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("apikey_usage: could not write server secret file \"%s\": %m", path)));
		close(fd);
		ereport(LOG,
				(errmsg("apikey_usage: created server secret file \"%s\"", path)));
	}
	else if (fd < 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("apikey_usage: could not open server secret file \"%s\": %m", path)));
	else
	{
		struct stat st;

		if (fstat(fd, &st) != 0)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("apikey_usage: could not stat server secret file \"%s\": %m", path)));
		if (!S_ISREG(st.st_mode))
			ereport(FATAL,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("apikey_usage: server secret file \"%s\" is not a regular file", path)));
		/* the same rule PostgreSQL applies to ssl_key_file */
		if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
			ereport(FATAL,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("apikey_usage: server secret file \"%s\" has group or world access", path),
					 errdetail("The file's mode is %04o; it must not give the group or others any access.",
							   (unsigned int) (st.st_mode & 07777)),
					 errhint("Run: chmod 0600 \"%s\" (as the server's OS user), then start the server again.",
							 path)));
		if (st.st_size != SECRET_BYTES)
			ereport(FATAL,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("apikey_usage: server secret file \"%s\" must hold exactly %d bytes, not %lld",
							path, (int) SECRET_BYTES, (long long) st.st_size),
					 errhint("Restore the file from the backup taken with the data directory. Removing it makes the server create a new secret; keys generated before then verify, but copy_key cannot show them again.")));
		got = read(fd, server_secret, SECRET_BYTES);
		close(fd);
		if (got != SECRET_BYTES)
			ereport(FATAL,
					(errcode_for_file_access(),
					 errmsg("apikey_usage: could not read server secret file \"%s\": %m", path)));
	}
	sodium_mprotect_readonly(server_secret);
}

/*
 * Seal an API key: returns nonce || ciphertext || tag.
 */
bytea *
secret_encrypt_key(const char *api_key, size_t len, const pg_uuid_t *key_id)
{
	size_t		total = NONCE_BYTES + len + TAG_BYTES;
	bytea	   *result = palloc(VARHDRSZ + total);
	unsigned char *nonce = (unsigned char *) VARDATA(result);
	unsigned long long sealed_len;

	if (server_secret == NULL)
		apikey_require_preload();
	SET_VARSIZE(result, VARHDRSZ + total);
	randombytes_buf(nonce, NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + NONCE_BYTES, &sealed_len,
											   (const unsigned char *) api_key, len,
											   key_id->data, UUID_LEN,
											   NULL, nonce, server_secret);
	Assert(sealed_len == len + TAG_BYTES);
	return result;
}

/*
 * Open a sealed key.  Fails with a clear error (never showing any part of
 * the key) when the secret is not the one the key was sealed with.
 */
char *
secret_decrypt_key(const bytea *ciphertext, const pg_uuid_t *key_id)
{
	size_t		total = VARSIZE_ANY_EXHDR(ciphertext);
	const unsigned char *nonce = (const unsigned char *) VARDATA_ANY(ciphertext);
	char	   *plain;
	unsigned long long plain_len;

	if (server_secret == NULL)
		apikey_require_preload();
	if (total < NONCE_BYTES + TAG_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("stored API key ciphertext is damaged")));
	plain = palloc(total - NONCE_BYTES - TAG_BYTES + 1);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *) plain, &plain_len,
												   NULL,
												   nonce + NONCE_BYTES,
												   total - NONCE_BYTES,
												   key_id->data, UUID_LEN,
												   nonce, server_secret) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the API key cannot be shown again: the server secret has changed since it was generated"),
				 errdetail("The key was sealed under a server secret that is not the one in \"%s\" now.",
						   apikey_secret_file),
				 errhint("Verification is not affected. Restore the original secret file, or give the integration a new key with generate_key.")));
	plain[plain_len] = '\0';
	return plain;
}
