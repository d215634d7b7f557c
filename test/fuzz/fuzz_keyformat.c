/*-------------------------------------------------------------------------
 *
 * fuzz_keyformat.c
 *		libFuzzer harness for src/keys/keyformat.c.
 *
 * 1. keyfmt_parse on arbitrary bytes must not misbehave.  When it accepts,
 *	  the prefix must be valid, keyfmt_node must name a node in range (and
 *	  -1 exactly when parse rejects), keyfmt_decode_body must give the same
 *	  answer every time, and when it succeeds re-encoding the decoded secret
 *	  with the parsed prefix and node must reproduce the input byte for byte.
 * 2. The first 32 input bytes (if present) as a secret with a fixed prefix
 *	  and the node named by the next two bytes must encode to a key that
 *	  parses, names that node and decodes back to the same bytes.
 * 3. The first 16 input bytes as a key id: keyfmt_key_id_node never
 *	  answers outside -1..KEYFMT_NODE_MAX, and stamping them with a node
 *	  gives an id that names that node.
 *
 * Any violated property calls abort(), which libFuzzer reports as a crash.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyformat.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PREFIX		"fuzz"

/*
 * check_parse
 *		Property 1: parse arbitrary bytes and cross-check accepted keys.
 */
static void
check_parse(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	size_t		prefix_len = (size_t) -1;
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	uint8_t		secret2[KEYFMT_SECRET_BYTES];
	char		out[KEYFMT_MAX_KEY_LEN + 1];
	bool		ok;
	size_t		len;

	int			node = keyfmt_node(s, size);

	if (!keyfmt_parse(s, size, &prefix_len))
	{
		if (node != -1)
			abort();
		return;
	}

	if (node < 0 || node > KEYFMT_NODE_MAX ||
		prefix_len > KEYFMT_PREFIX_MAX ||
		size != prefix_len + 1 + KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS +
		(node > 0 ? KEYFMT_NODE_CHARS : 0) ||
		!keyfmt_prefix_valid(s, prefix_len) || s[prefix_len] != '_')
		abort();

	ok = keyfmt_decode_body(s, size, prefix_len, secret);
	if (keyfmt_decode_body(s, size, prefix_len, secret2) != ok)
		abort();
	if (!ok)
		return;					/* body is well-formed but >= 2^256 */
	if (memcmp(secret, secret2, sizeof(secret)) != 0)
		abort();

	len = keyfmt_encode_node(s, prefix_len, secret, node, out);
	if (len != size || memcmp(out, s, size) != 0 || out[len] != '\0')
		abort();
}

/*
 * check_encode
 *		Property 2: encode the first 32 bytes and round-trip them.
 */
static void
check_encode(const uint8_t *data, size_t size)
{
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	char		out[KEYFMT_MAX_KEY_LEN + 1];
	size_t		len;
	size_t		prefix_len = (size_t) -1;
	int			node = 0;

	if (size < KEYFMT_SECRET_BYTES)
		return;
	if (size >= KEYFMT_SECRET_BYTES + 2)
		node = ((data[KEYFMT_SECRET_BYTES] << 8) | data[KEYFMT_SECRET_BYTES + 1]) %
			(KEYFMT_NODE_MAX + 1);

	len = keyfmt_encode_node(FUZZ_PREFIX, strlen(FUZZ_PREFIX), data, node, out);
	if (len != strlen(FUZZ_PREFIX) + 1 + KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS +
		(node > 0 ? KEYFMT_NODE_CHARS : 0) ||
		strlen(out) != len)
		abort();
	if (!keyfmt_parse(out, len, &prefix_len) || prefix_len != strlen(FUZZ_PREFIX) ||
		keyfmt_node(out, len) != node)
		abort();
	if (!keyfmt_decode_body(out, len, prefix_len, secret) ||
		memcmp(secret, data, KEYFMT_SECRET_BYTES) != 0)
		abort();
}

/*
 * check_key_id
 *		Property 3: key ids name their node.
 */
static void
check_key_id(const uint8_t *data, size_t size)
{
	uint8_t		id[KEYFMT_UUID_BYTES];
	int			node;

	if (size < KEYFMT_UUID_BYTES + 2)
		return;
	memcpy(id, data, KEYFMT_UUID_BYTES);
	node = keyfmt_key_id_node(id);
	if (node < -1 || node > KEYFMT_NODE_MAX)
		abort();
	node = ((data[KEYFMT_UUID_BYTES] << 8) | data[KEYFMT_UUID_BYTES + 1]) %
		(KEYFMT_NODE_MAX + 1);
	if (!keyfmt_key_id_make(id, node) || keyfmt_key_id_node(id) != node)
		abort();
}

/*
 * LLVMFuzzerTestOneInput
 *		libFuzzer entry point.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parse(data, size);
	check_encode(data, size);
	check_key_id(data, size);
	return 0;
}
