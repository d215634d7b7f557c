/*-------------------------------------------------------------------------
 *
 * keyformat.h
 *		The API-key text format: <prefix>_<body><checksum>.
 *
 * Pure C (no PostgreSQL headers), so it can be unit-tested and fuzzed on
 * its own.  prefix is [a-z][a-z0-9]{0,15}; body is 32 random bytes in
 * base62 (43 characters, most significant digit first, zero-padded);
 * checksum is the CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320, as zlib)
 * of "prefix_body" written as 6 base62 characters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef APIKEY_KEYFORMAT_H
#define APIKEY_KEYFORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define KEYFMT_PREFIX_MAX		16	/* characters in a prefix */
#define KEYFMT_SECRET_BYTES		32	/* random bytes in the body */
#define KEYFMT_BODY_CHARS		43	/* base62 digits of 32 bytes */
#define KEYFMT_CHECKSUM_CHARS	6	/* base62 digits of a CRC-32 */
#define KEYFMT_DISPLAY_BODY_CHARS 6 /* body characters shown in key_prefix */
#define KEYFMT_NODE_CHARS		2	/* base62 digits of a node number >= 1 */
#define KEYFMT_NODE_MAX			1023	/* highest node number */
#define KEYFMT_UUID_BYTES		16
/* longest key: prefix + '_' + body + node + checksum (add 1 for a NUL) */
#define KEYFMT_MAX_KEY_LEN \
	(KEYFMT_PREFIX_MAX + 1 + KEYFMT_BODY_CHARS + KEYFMT_NODE_CHARS + \
	 KEYFMT_CHECKSUM_CHARS)

/* base62 alphabet: 0-9, A-Z, a-z */
extern const char keyfmt_base62_alphabet[62];

extern uint32_t keyfmt_crc32(const void *data, size_t len);

/* true when s[0..len) is [a-z][a-z0-9]{0,15} */
extern bool keyfmt_prefix_valid(const char *s, size_t len);

/*
 * Write the key for prefix (already validated) and secret into out, which
 * must hold KEYFMT_MAX_KEY_LEN + 1 bytes; NUL-terminates; returns the length.
 */
extern size_t keyfmt_encode(const char *prefix, size_t prefix_len,
							const uint8_t secret[KEYFMT_SECRET_BYTES],
							char *out);

/*
 * The same for a key of node (0..KEYFMT_NODE_MAX; node 0 gives exactly what
 * keyfmt_encode gives).  Returns 0 and writes nothing for a node out of
 * range.
 */
extern size_t keyfmt_encode_node(const char *prefix, size_t prefix_len,
								 const uint8_t secret[KEYFMT_SECRET_BYTES],
								 int node, char *out);

/*
 * Check that s[0..len) is a well-formed key with a correct checksum.  Never
 * reads past len; s need not be NUL-terminated; any bytes may appear.
 * On success returns true and sets *prefix_len to the prefix length.
 */
extern bool keyfmt_parse(const char *s, size_t len, size_t *prefix_len);

/*
 * The node of key s[0..len): 0..KEYFMT_NODE_MAX, or -1 when keyfmt_parse
 * rejects it.  Reads nothing but the key; no lookup.
 */
extern int	keyfmt_node(const char *s, size_t len);

/*
 * The node a key id names: 0 for any id that is not a version-8 UUID (the
 * random ids of node 0 and of every key made before fleets), the node in
 * its first two bytes for a version-8 one, -1 when that is above
 * KEYFMT_NODE_MAX (no node makes such an id).
 */
extern int	keyfmt_key_id_node(const uint8_t id[KEYFMT_UUID_BYTES]);

/*
 * Turn 16 random bytes into a key id of node (0..KEYFMT_NODE_MAX): a
 * version-4 UUID for node 0, a version-8 one carrying node otherwise.
 * Returns false (id untouched) for a node out of range.
 */
extern bool keyfmt_key_id_make(uint8_t id[KEYFMT_UUID_BYTES], int node);

/*
 * Decode the body of a key that keyfmt_parse accepted back to its 32
 * secret bytes (the inverse of keyfmt_encode_node, whatever the node).  Returns false if the body
 * does not fit in 32 bytes.
 */
extern bool keyfmt_decode_body(const char *s, size_t len, size_t prefix_len,
							   uint8_t secret[KEYFMT_SECRET_BYTES]);

#endif							/* APIKEY_KEYFORMAT_H */
