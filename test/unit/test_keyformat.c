/*-------------------------------------------------------------------------
 *
 * test_keyformat.c
 *		Standalone unit tests for src/keys/keyformat.c (no PostgreSQL, no
 *		framework).  Prints one line per failed check and a summary line
 *		"keyformat: N passed, M failed"; exits non-zero if any check failed.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyformat.h"

static int	n_passed = 0;
static int	n_failed = 0;

#define CHECK(cond, ...) \
	do { \
		if (cond) \
			n_passed++; \
		else \
		{ \
			n_failed++; \
			printf("FAIL %s:%d: ", __FILE__, __LINE__); \
			printf(__VA_ARGS__); \
			printf("\n"); \
		} \
	} while (0)

static uint64_t prng_state = UINT64_C(0x9E3779B97F4A7C15);

/*
 * xorshift64
 *		Fixed-seed pseudo-random generator, so failures are reproducible.
 */
static uint64_t
xorshift64(void)
{
	uint64_t	x = prng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	prng_state = x;
	return x;
}

/*
 * random_bytes
 *		Fill buf[0..len) with pseudo-random bytes.
 */
static void
random_bytes(uint8_t *buf, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t) (xorshift64() >> 56);
}

/*
 * parse_copy
 *		Run keyfmt_parse on an exact-size heap copy of s[0..len), so that
 *		AddressSanitizer/valgrind catch any read past len.
 */
static int
parse_copy(const char *s, size_t len, size_t *prefix_len)
{
	char	   *copy = malloc(len > 0 ? len : 1);
	int			ok;

	if (copy == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	if (len > 0)
		memcpy(copy, s, len);
	/* for len == 0 pass a pointer to a 1-byte allocation that must not be read */
	ok = keyfmt_parse(copy, len, prefix_len);
	free(copy);
	return ok;
}

/*
 * test_crc32
 *		Standard CRC-32 check values.
 */
static void
test_crc32(void)
{
	CHECK(keyfmt_crc32("123456789", 9) == 0xCBF43926u,
		  "crc32(\"123456789\") = 0x%08X, want 0xCBF43926",
		  (unsigned) keyfmt_crc32("123456789", 9));
	CHECK(keyfmt_crc32("", 0) == 0, "crc32(\"\") != 0");
	CHECK(keyfmt_crc32("The quick brown fox jumps over the lazy dog", 43) ==
		  0x414FA339u, "crc32(quick brown fox) wrong");

	/*
	 * Every length around the 8-byte steps of the sliced loop, from an odd
	 * offset (unaligned): byte i of the pattern is (i * 37 + 11) mod 256,
	 * values from Python's zlib.crc32.
	 */
	{
		static const struct
		{
			size_t		len;
			uint32_t	crc;
		}			cases[] = {
		{1, 0x45D03605u},
		{7, 0xEF6F3B31u},
		{8, 0x648BAD8Bu},
		{9, 0x17DC5F9Eu},
		{15, 0x53605EE3u},
		{16, 0x24E8A988u},
		{17, 0xCDFC844Au},
		{46, 0x8BF3934Du},
		{52, 0x73710690u},
		{63, 0xBAE609D9u},
		{64, 0xFFBAE609u},
		{65, 0x4A2F75D7u},
		{299, 0x3B58E548u},
		{300, 0x32EC5E76u}
		};
		unsigned char buf[301];
		size_t		i;

		for (i = 0; i < 300; i++)
			buf[i + 1] = (unsigned char) ((i * 37 + 11) & 255);
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			CHECK(keyfmt_crc32(buf + 1, cases[i].len) == cases[i].crc,
				  "crc32 of %zu pattern bytes = 0x%08X, want 0x%08X", cases[i].len,
				  (unsigned) keyfmt_crc32(buf + 1, cases[i].len), (unsigned) cases[i].crc);
	}
}

/*
 * test_alphabet
 *		The base62 alphabet is 0-9A-Za-z in that order.
 */
static void
test_alphabet(void)
{
	CHECK(memcmp(keyfmt_base62_alphabet,
				 "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
				 62) == 0, "base62 alphabet wrong");
}

/*
 * check_roundtrip
 *		Encode secret with prefix and check length, parse and decode.
 *		Returns the key length and leaves the key in out.
 */
static size_t
check_roundtrip(const char *prefix, const uint8_t *secret, char *out)
{
	size_t		plen = strlen(prefix);
	size_t		len;
	size_t		parsed_plen = 999;
	uint8_t		decoded[KEYFMT_SECRET_BYTES];

	memset(out, 'X', KEYFMT_MAX_KEY_LEN + 1);
	len = keyfmt_encode(prefix, plen, secret, out);
	CHECK(len == plen + 1 + KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS,
		  "encode length %zu for prefix \"%s\"", len, prefix);
	CHECK(len <= KEYFMT_MAX_KEY_LEN, "encode length %zu > max", len);
	CHECK(out[len] == '\0' && strlen(out) == len,
		  "encode output not NUL-terminated at %zu", len);
	CHECK(memcmp(out, prefix, plen) == 0 && out[plen] == '_',
		  "encode output does not start with \"%s_\": %s", prefix, out);
	CHECK(parse_copy(out, len, &parsed_plen), "parse rejected valid key %s", out);
	CHECK(parsed_plen == plen, "parse prefix_len %zu, want %zu for %s",
		  parsed_plen, plen, out);
	CHECK(keyfmt_decode_body(out, len, plen, decoded) &&
		  memcmp(decoded, secret, KEYFMT_SECRET_BYTES) == 0,
		  "decode_body(encode(x)) != x for %s", out);
	return len;
}

/*
 * test_known_vectors
 *		Keys computed independently (Python int + zlib.crc32).
 */
static void
test_known_vectors(void)
{
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	char		out[KEYFMT_MAX_KEY_LEN + 1];
	int			i;

	for (i = 0; i < KEYFMT_SECRET_BYTES; i++)
		secret[i] = (uint8_t) i;
	check_roundtrip("ak", secret, out);
	CHECK(strcmp(out, "ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf3CBj32") == 0,
		  "known vector 0..31: got %s", out);

	memset(secret, 0, sizeof(secret));
	check_roundtrip("a", secret, out);
	CHECK(strcmp(out, "a_00000000000000000000000000000000000000000001uFOfg") == 0,
		  "all-zero vector: got %s", out);

	memset(secret, 0xFF, sizeof(secret));
	check_roundtrip("zz9", secret, out);
	CHECK(strcmp(out, "zz9_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp10XVue1") == 0,
		  "all-0xFF vector: got %s", out);
}

/*
 * test_random_roundtrips
 *		Many random secrets with prefixes of length 1, 16 and in between.
 */
static void
test_random_roundtrips(void)
{
	static const char *const prefixes[] = {
		"a", "z", "ak", "live", "a1b2c3", "abcdefghijklmnop", "z999999999999999"
	};
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	char		out[KEYFMT_MAX_KEY_LEN + 1];
	size_t		p;
	int			i;

	for (p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
	{
		CHECK(keyfmt_prefix_valid(prefixes[p], strlen(prefixes[p])),
			  "prefix \"%s\" should be valid", prefixes[p]);
		for (i = 0; i < 2000; i++)
		{
			random_bytes(secret, sizeof(secret));
			check_roundtrip(prefixes[p], secret, out);
		}
	}

	/* sparse secrets: a single set byte/bit exercises carries */
	for (i = 0; i < KEYFMT_SECRET_BYTES * 8; i++)
	{
		memset(secret, 0, sizeof(secret));
		secret[i / 8] = (uint8_t) (1u << (i % 8));
		check_roundtrip("bit", secret, out);
	}
}

/*
 * test_mutations
 *		Every single-character change of a valid key must be rejected.
 */
static void
test_mutations(void)
{
	static const char repl[] = {
		'0', '1', 'a', 'z', 'A', 'Z', '_', '-', ' ', '\n', '\0', (char) 0xFF
	};
	static const char *const prefixes[] = {"a", "abcdefghijklmnop", "key9"};
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	char		key[KEYFMT_MAX_KEY_LEN + 1];
	char		mut[KEYFMT_MAX_KEY_LEN + 1];
	size_t		p;
	int			round;

	for (p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
	{
		for (round = 0; round < 4; round++)
		{
			size_t		len;
			size_t		pos;
			size_t		plen;

			random_bytes(secret, sizeof(secret));
			len = keyfmt_encode(prefixes[p], strlen(prefixes[p]), secret, key);

			for (pos = 0; pos < len; pos++)
			{
				size_t		r;
				char		extra[2];

				/* the next and previous alphabet characters as well */
				const char *a = memchr(keyfmt_base62_alphabet, key[pos], 62);

				extra[0] = a ? keyfmt_base62_alphabet[(a - keyfmt_base62_alphabet + 1) % 62] : 'b';
				extra[1] = a ? keyfmt_base62_alphabet[(a - keyfmt_base62_alphabet + 61) % 62] : 'c';

				for (r = 0; r < sizeof(repl) + 2; r++)
				{
					char		c = r < sizeof(repl) ? repl[r] : extra[r - sizeof(repl)];

					if (c == key[pos])
						continue;
					memcpy(mut, key, len);
					mut[pos] = c;
					CHECK(!parse_copy(mut, len, &plen),
						  "mutation of %s at %zu to 0x%02X accepted",
						  key, pos, (unsigned) (unsigned char) c);
				}
			}
		}
	}
}

/*
 * test_truncation_and_trailing
 *		Truncated keys, keys with trailing/leading junk, and an overlong
 *		prefix must be rejected.
 */
static void
test_truncation_and_trailing(void)
{
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	char		key[KEYFMT_MAX_KEY_LEN + 1];
	char		buf[KEYFMT_MAX_KEY_LEN + 8];
	size_t		len;
	size_t		i;
	size_t		plen;

	random_bytes(secret, sizeof(secret));
	len = keyfmt_encode("abcdefghijklmnop", 16, secret, key);
	for (i = 0; i < len; i++)
		CHECK(!parse_copy(key, i, &plen), "truncated key (len %zu) accepted", i);
	CHECK(!keyfmt_parse(NULL, 0, &plen), "parse(NULL, 0) accepted");

	len = keyfmt_encode("ak", 2, secret, key);
	for (i = 0; i < len; i++)
		CHECK(!parse_copy(key, i, &plen), "truncated key (len %zu) accepted", i);

	memcpy(buf, key, len);
	buf[len] = '\n';
	CHECK(!parse_copy(buf, len + 1, &plen), "key with trailing newline accepted");
	buf[len] = ' ';
	CHECK(!parse_copy(buf, len + 1, &plen), "key with trailing space accepted");
	buf[len] = '\0';
	CHECK(!parse_copy(buf, len + 1, &plen), "key with trailing NUL accepted");
	buf[len] = '\r';
	buf[len + 1] = '\n';
	CHECK(!parse_copy(buf, len + 2, &plen), "key with trailing CRLF accepted");

	buf[0] = ' ';
	memcpy(buf + 1, key, len);
	CHECK(!parse_copy(buf, len + 1, &plen), "key with leading space accepted");

	/* the exact key still parses (buffer is not required to be NUL-terminated) */
	CHECK(parse_copy(key, len, &plen) && plen == 2, "valid key rejected");

	/*
	 * An uppercase prefix with a checksum that is correct for it: only the
	 * prefix rule can reject it.
	 */
	memcpy(buf, key, len);
	buf[0] = 'A';
	buf[1] = 'K';
	{
		uint32_t	crc = keyfmt_crc32(buf, len - KEYFMT_CHECKSUM_CHARS);
		int			d;

		for (d = KEYFMT_CHECKSUM_CHARS - 1; d >= 0; d--)
		{
			buf[len - KEYFMT_CHECKSUM_CHARS + d] = keyfmt_base62_alphabet[crc % 62];
			crc /= 62;
		}
	}
	CHECK(!parse_copy(buf, len, &plen), "uppercase prefix with valid crc accepted");
}

/*
 * make_key_raw
 *		Build prefix '_' body followed by a correct checksum, without any
 *		validation, into out; returns the length.
 */
static size_t
make_key_raw(const char *prefix, const char *body, char *out)
{
	size_t		len = strlen(prefix) + 1 + strlen(body);
	uint64_t	crc;
	int			d;

	sprintf(out, "%s_%s", prefix, body);
	crc = keyfmt_crc32(out, len);
	for (d = KEYFMT_CHECKSUM_CHARS - 1; d >= 0; d--)
	{
		out[len + d] = keyfmt_base62_alphabet[crc % 62];
		crc /= 62;
	}
	len += KEYFMT_CHECKSUM_CHARS;
	out[len] = '\0';
	return len;
}

/*
 * test_shape_edge_cases
 *		Keys with correct checksums but a bad shape, body overflow and
 *		checksum digits encoding a value >= 2^32.
 */
static void
test_shape_edge_cases(void)
{
	char		body43[KEYFMT_BODY_CHARS + 1];
	char		buf[256];
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	size_t		len;
	size_t		plen;

	memset(body43, 'z', KEYFMT_BODY_CHARS);
	body43[KEYFMT_BODY_CHARS] = '\0';

	/* 17-character prefix with a correct checksum */
	len = make_key_raw("abcdefghijklmnopq", body43, buf);
	CHECK(!parse_copy(buf, len, &plen), "17-char prefix accepted");

	/* body of 42 and 44 characters with correct checksums */
	len = make_key_raw("ak", body43 + 1, buf);
	CHECK(!parse_copy(buf, len, &plen), "42-char body accepted");
	{
		char		body44[KEYFMT_BODY_CHARS + 2];

		memset(body44, 'A', KEYFMT_BODY_CHARS + 1);
		body44[KEYFMT_BODY_CHARS + 1] = '\0';
		len = make_key_raw("ak", body44, buf);
		CHECK(!parse_copy(buf, len, &plen), "44-char body accepted");
	}

	/* "zzz...z" is well-formed but 62^43-1 > 2^256-1: decode must fail */
	len = make_key_raw("ak", body43, buf);
	CHECK(parse_copy(buf, len, &plen) && plen == 2,
		  "well-formed overflowing body rejected by parse");
	CHECK(!keyfmt_decode_body(buf, len, 2, secret),
		  "decode_body accepted a body >= 2^256");

	/* decode_body refuses a wrong length or prefix_len */
	CHECK(!keyfmt_decode_body(buf, len - 1, 2, secret), "decode_body wrong len");
	CHECK(!keyfmt_decode_body(buf, len, 3, secret), "decode_body wrong prefix_len");

	/*
	 * Checksum digits "zzzzzz" (62^6-1 > 2^32) never match; and a checksum
	 * equal to crc + 2^32 must not match either (no truncation to 32 bits).
	 */
	memset(secret, 0x5A, sizeof(secret));
	len = keyfmt_encode("ak", 2, secret, buf);
	memset(buf + len - KEYFMT_CHECKSUM_CHARS, 'z', KEYFMT_CHECKSUM_CHARS);
	CHECK(!parse_copy(buf, len, &plen), "checksum zzzzzz accepted");
	{
		uint64_t	v = (uint64_t) keyfmt_crc32(buf, len - KEYFMT_CHECKSUM_CHARS) +
			(UINT64_C(1) << 32);
		int			d;

		for (d = KEYFMT_CHECKSUM_CHARS - 1; d >= 0; d--)
		{
			buf[len - KEYFMT_CHECKSUM_CHARS + d] = keyfmt_base62_alphabet[v % 62];
			v /= 62;
		}
		CHECK(!parse_copy(buf, len, &plen), "checksum crc + 2^32 accepted");
	}

	/* embedded NUL in prefix and body, with correct checksum over the bytes */
	{
		char		raw[KEYFMT_MAX_KEY_LEN + 1];

		len = make_key_raw("ab", body43, raw);
		raw[1] = '\0';
		CHECK(!parse_copy(raw, len, &plen), "embedded NUL in prefix accepted");
		len = make_key_raw("ab", body43, raw);
		raw[10] = '\0';
		CHECK(!parse_copy(raw, len, &plen), "embedded NUL in body accepted");
	}
}

/*
 * test_node_keys
 *		Keys carrying a node number: known vectors (Python int + zlib.crc32),
 *		round trips, node 0 identical to the node-less format, "00" and
 *		nodes above the maximum rejected even with a correct checksum,
 *		every single-character change of a node key rejected.
 */
static void
test_node_keys(void)
{
	static const int nodes[] = {1, 2, 61, 62, 63, 500, KEYFMT_NODE_MAX};
	uint8_t		secret[KEYFMT_SECRET_BYTES];
	uint8_t		decoded[KEYFMT_SECRET_BYTES];
	char		out[KEYFMT_MAX_KEY_LEN + 1];
	char		plain[KEYFMT_MAX_KEY_LEN + 1];
	char		buf[KEYFMT_MAX_KEY_LEN + 8];
	size_t		len;
	size_t		plen;
	size_t		n;
	int			i;

	for (i = 0; i < KEYFMT_SECRET_BYTES; i++)
		secret[i] = (uint8_t) i;
	len = keyfmt_encode_node("ak", 2, secret, 1, out);
	CHECK(strcmp(out, "ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf013GDDIh") == 0,
		  "node 1 vector: got %s", out);
	CHECK(keyfmt_node(out, len) == 1, "node of node-1 vector");
	len = keyfmt_encode_node("live", 4, secret, KEYFMT_NODE_MAX, out);
	CHECK(strcmp(out, "live_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlfGV3g1a1H") == 0,
		  "node 1023 vector: got %s", out);
	CHECK(keyfmt_node(out, len) == KEYFMT_NODE_MAX, "node of node-1023 vector");
	memset(secret, 0, sizeof(secret));
	len = keyfmt_encode_node("a", 1, secret, 62, out);
	CHECK(strcmp(out, "a_0000000000000000000000000000000000000000000101IE6fC") == 0,
		  "node 62 vector: got %s", out);

	/* node 0 is the old format, byte for byte; old keys are node 0 */
	for (i = 0; i < 200; i++)
	{
		random_bytes(secret, sizeof(secret));
		len = keyfmt_encode_node("ak", 2, secret, 0, out);
		CHECK(keyfmt_encode("ak", 2, secret, plain) == len &&
			  strcmp(out, plain) == 0, "node 0 differs from keyfmt_encode");
		CHECK(keyfmt_node(out, len) == 0, "node of a node-less key is not 0");
	}
	CHECK(keyfmt_node("ak_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf3CBj32", 52) == 0,
		  "a key made before fleets is not node 0");

	/* out-of-range nodes write nothing */
	out[0] = 'X';
	CHECK(keyfmt_encode_node("ak", 2, secret, -1, out) == 0 && out[0] == 'X',
		  "node -1 encoded");
	CHECK(keyfmt_encode_node("ak", 2, secret, KEYFMT_NODE_MAX + 1, out) == 0 &&
		  out[0] == 'X', "node above max encoded");

	for (n = 0; n < sizeof(nodes) / sizeof(nodes[0]); n++)
	{
		for (i = 0; i < 300; i++)
		{
			random_bytes(secret, sizeof(secret));
			len = keyfmt_encode_node("abcdefghijklmnop", 16, secret, nodes[n], out);
			CHECK(len == 16 + 1 + KEYFMT_BODY_CHARS + KEYFMT_NODE_CHARS +
				  KEYFMT_CHECKSUM_CHARS && len <= KEYFMT_MAX_KEY_LEN &&
				  strlen(out) == len, "node key length %zu", len);
			CHECK(parse_copy(out, len, &plen) && plen == 16,
				  "node key %s rejected", out);
			CHECK(keyfmt_node(out, len) == nodes[n], "node of %s", out);
			CHECK(keyfmt_decode_body(out, len, plen, decoded) &&
				  memcmp(decoded, secret, sizeof(secret)) == 0,
				  "decode_body of node key %s", out);
		}
	}

	/* "00" and 1024 ("GW") with correct checksums: not keys */
	for (i = 0; i < KEYFMT_BODY_CHARS; i++)
		buf[i] = 'A';
	buf[KEYFMT_BODY_CHARS] = '0';
	buf[KEYFMT_BODY_CHARS + 1] = '0';
	buf[KEYFMT_BODY_CHARS + 2] = '\0';
	len = make_key_raw("ak", buf, out);
	CHECK(!parse_copy(out, len, &plen) && keyfmt_node(out, len) == -1,
		  "node digits 00 accepted");
	buf[KEYFMT_BODY_CHARS] = 'G';
	buf[KEYFMT_BODY_CHARS + 1] = 'W';
	len = make_key_raw("ak", buf, out);
	CHECK(!parse_copy(out, len, &plen), "node 1024 accepted");
	buf[KEYFMT_BODY_CHARS + 1] = 'V';
	len = make_key_raw("ak", buf, out);
	CHECK(parse_copy(out, len, &plen) && keyfmt_node(out, len) == KEYFMT_NODE_MAX,
		  "node 1023 (GV) rejected");

	/* the checksum covers the node digits: any change is caught */
	random_bytes(secret, sizeof(secret));
	len = keyfmt_encode_node("k", 1, secret, 7, out);
	for (n = 0; n < len; n++)
	{
		int			r;

		for (r = 0; r < 62; r++)
		{
			if (keyfmt_base62_alphabet[r] == out[n])
				continue;
			memcpy(buf, out, len);
			buf[n] = keyfmt_base62_alphabet[r];
			CHECK(!parse_copy(buf, len, &plen) && keyfmt_node(buf, len) == -1,
				  "mutation of node key at %zu accepted", n);
		}
	}
	/* dropping the node digits (keeping the checksum) is caught too */
	{
		const size_t keep = 1 + 1 + KEYFMT_BODY_CHARS;

		memcpy(buf, out, keep);
		memcpy(buf + keep, out + keep + KEYFMT_NODE_CHARS, KEYFMT_CHECKSUM_CHARS);
		CHECK(!parse_copy(buf, keep + KEYFMT_CHECKSUM_CHARS, &plen),
			  "node key without its node digits accepted");
	}
	CHECK(keyfmt_node(NULL, 0) == -1 && keyfmt_node("ak_", 3) == -1,
		  "node of junk is not -1");
}

/*
 * test_key_ids
 *		Key ids: version 4 for node 0, version 8 carrying the node
 *		otherwise; any other UUID is node 0.
 */
static void
test_key_ids(void)
{
	static const int nodes[] = {0, 1, 2, 255, 256, KEYFMT_NODE_MAX};
	uint8_t		id[KEYFMT_UUID_BYTES];
	uint8_t		before[KEYFMT_UUID_BYTES];
	size_t		n;
	int			i;

	for (n = 0; n < sizeof(nodes) / sizeof(nodes[0]); n++)
	{
		for (i = 0; i < 500; i++)
		{
			random_bytes(id, sizeof(id));
			CHECK(keyfmt_key_id_make(id, nodes[n]), "key_id_make(%d)", nodes[n]);
			CHECK((id[6] >> 4) == (nodes[n] == 0 ? 4 : 8) && (id[8] & 0xC0) == 0x80,
				  "key id of node %d has version %d", nodes[n], id[6] >> 4);
			CHECK(keyfmt_key_id_node(id) == nodes[n], "key id node %d read as %d",
				  nodes[n], keyfmt_key_id_node(id));
		}
	}
	random_bytes(id, sizeof(id));
	memcpy(before, id, sizeof(id));
	CHECK(!keyfmt_key_id_make(id, -1) && !keyfmt_key_id_make(id, KEYFMT_NODE_MAX + 1) &&
		  memcmp(id, before, sizeof(id)) == 0, "out-of-range node stamped");

	/* other versions and variants are node 0; v8 above the maximum is -1 */
	for (i = 0; i < 16; i++)
	{
		random_bytes(id, sizeof(id));
		id[6] = (uint8_t) ((id[6] & 0x0F) | (i << 4));
		id[8] = (uint8_t) ((id[8] & 0x3F) | 0x80);
		if (i != 8)
			CHECK(keyfmt_key_id_node(id) == 0, "version %d not node 0", i);
	}
	memset(id, 0, sizeof(id));
	id[6] = 0x80;
	id[8] = 0xC0;				/* version 8, wrong variant */
	id[1] = 5;
	CHECK(keyfmt_key_id_node(id) == 0, "v8 of another variant not node 0");
	id[8] = 0x80;
	CHECK(keyfmt_key_id_node(id) == 5, "v8 node 5");
	id[0] = 0x04;				/* 1029 */
	CHECK(keyfmt_key_id_node(id) == -1, "v8 node above max not -1");
}

/*
 * test_invalid_prefixes
 *		Prefixes that keyfmt_prefix_valid must reject.
 */
static void
test_invalid_prefixes(void)
{
	CHECK(!keyfmt_prefix_valid("", 0), "prefix \"\" accepted");
	CHECK(!keyfmt_prefix_valid("A", 1), "prefix \"A\" accepted");
	CHECK(!keyfmt_prefix_valid("1a", 2), "prefix \"1a\" accepted");
	CHECK(!keyfmt_prefix_valid("abcdefghijklmnopq", 17), "17-char prefix accepted");
	CHECK(!keyfmt_prefix_valid("a-b", 3), "prefix \"a-b\" accepted");
	CHECK(!keyfmt_prefix_valid("a_b", 3), "prefix \"a_b\" accepted");
	CHECK(!keyfmt_prefix_valid("aB", 2), "prefix \"aB\" accepted");
	CHECK(!keyfmt_prefix_valid("a\0b", 3), "prefix with NUL accepted");
	CHECK(!keyfmt_prefix_valid("a ", 2), "prefix \"a \" accepted");
	CHECK(keyfmt_prefix_valid("a", 1), "prefix \"a\" rejected");
	CHECK(keyfmt_prefix_valid("abcdefghijklmnop", 16), "16-char prefix rejected");
	CHECK(keyfmt_prefix_valid("a0", 2), "prefix \"a0\" rejected");
}

/*
 * test_junk
 *		10 KB of pseudo-random junk, and junk-sized windows of it, are
 *		rejected without reading out of bounds.
 */
static void
test_junk(void)
{
	const size_t junk_len = 10 * 1024;
	uint8_t    *junk = malloc(junk_len);
	size_t		plen;
	size_t		off;

	if (junk == NULL)
	{
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	random_bytes(junk, junk_len);
	CHECK(!parse_copy((const char *) junk, junk_len, &plen), "10 KB junk accepted");

	/* windows of plausible key lengths at many offsets */
	for (off = 0; off + KEYFMT_MAX_KEY_LEN < junk_len; off += 97)
	{
		size_t		l;

		for (l = 1 + 1 + KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS;
			 l <= KEYFMT_MAX_KEY_LEN; l++)
			CHECK(!parse_copy((const char *) junk + off, l, &plen),
				  "junk window at %zu len %zu accepted", off, l);
	}

	/* 10 KB of base62 digits after a valid-looking prefix */
	memset(junk, 'a', junk_len);
	junk[2] = '_';
	CHECK(!parse_copy((const char *) junk, junk_len, &plen),
		  "10 KB of base62 accepted");
	free(junk);
}

/*
 * main
 *		Run every test group and print the summary line.
 */
int
main(void)
{
	test_crc32();
	test_alphabet();
	test_known_vectors();
	test_random_roundtrips();
	test_mutations();
	test_truncation_and_trailing();
	test_shape_edge_cases();
	test_invalid_prefixes();
	test_junk();
	test_node_keys();
	test_key_ids();

	printf("keyformat: %d passed, %d failed\n", n_passed, n_failed);
	return n_failed > 0 ? 1 : 0;
}
