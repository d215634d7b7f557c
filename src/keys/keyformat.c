/*-------------------------------------------------------------------------
 *
 * keyformat.c
 *		The API-key text format: <prefix>_<body>[<node>]<checksum>, and
 *		the node number in key ids.
 *
 * Pure C99 (no PostgreSQL headers) so that it can be unit-tested and
 * fuzzed on its own.  See keyformat.h for the format.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <string.h>

#include "keyformat.h"

/*
 * Position of the separator is prefix_len; the rest has one of two fixed
 * lengths: without a node (node 0) or with one.
 */
#define KEYFMT_TAIL_CHARS	(1 + KEYFMT_BODY_CHARS + KEYFMT_CHECKSUM_CHARS)
#define KEYFMT_NODE_TAIL_CHARS	(KEYFMT_TAIL_CHARS + KEYFMT_NODE_CHARS)

const char	keyfmt_base62_alphabet[62] = {
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
	'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M',
	'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z',
	'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm',
	'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z'
};

/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) lookup table */
static const uint32_t crc32_table[256] = {
	0x00000000, 0x77073096, 0xee0e612c, 0x990951ba,
	0x076dc419, 0x706af48f, 0xe963a535, 0x9e6495a3,
	0x0edb8832, 0x79dcb8a4, 0xe0d5e91e, 0x97d2d988,
	0x09b64c2b, 0x7eb17cbd, 0xe7b82d07, 0x90bf1d91,
	0x1db71064, 0x6ab020f2, 0xf3b97148, 0x84be41de,
	0x1adad47d, 0x6ddde4eb, 0xf4d4b551, 0x83d385c7,
	0x136c9856, 0x646ba8c0, 0xfd62f97a, 0x8a65c9ec,
	0x14015c4f, 0x63066cd9, 0xfa0f3d63, 0x8d080df5,
	0x3b6e20c8, 0x4c69105e, 0xd56041e4, 0xa2677172,
	0x3c03e4d1, 0x4b04d447, 0xd20d85fd, 0xa50ab56b,
	0x35b5a8fa, 0x42b2986c, 0xdbbbc9d6, 0xacbcf940,
	0x32d86ce3, 0x45df5c75, 0xdcd60dcf, 0xabd13d59,
	0x26d930ac, 0x51de003a, 0xc8d75180, 0xbfd06116,
	0x21b4f4b5, 0x56b3c423, 0xcfba9599, 0xb8bda50f,
	0x2802b89e, 0x5f058808, 0xc60cd9b2, 0xb10be924,
	0x2f6f7c87, 0x58684c11, 0xc1611dab, 0xb6662d3d,
	0x76dc4190, 0x01db7106, 0x98d220bc, 0xefd5102a,
	0x71b18589, 0x06b6b51f, 0x9fbfe4a5, 0xe8b8d433,
	0x7807c9a2, 0x0f00f934, 0x9609a88e, 0xe10e9818,
	0x7f6a0dbb, 0x086d3d2d, 0x91646c97, 0xe6635c01,
	0x6b6b51f4, 0x1c6c6162, 0x856530d8, 0xf262004e,
	0x6c0695ed, 0x1b01a57b, 0x8208f4c1, 0xf50fc457,
	0x65b0d9c6, 0x12b7e950, 0x8bbeb8ea, 0xfcb9887c,
	0x62dd1ddf, 0x15da2d49, 0x8cd37cf3, 0xfbd44c65,
	0x4db26158, 0x3ab551ce, 0xa3bc0074, 0xd4bb30e2,
	0x4adfa541, 0x3dd895d7, 0xa4d1c46d, 0xd3d6f4fb,
	0x4369e96a, 0x346ed9fc, 0xad678846, 0xda60b8d0,
	0x44042d73, 0x33031de5, 0xaa0a4c5f, 0xdd0d7cc9,
	0x5005713c, 0x270241aa, 0xbe0b1010, 0xc90c2086,
	0x5768b525, 0x206f85b3, 0xb966d409, 0xce61e49f,
	0x5edef90e, 0x29d9c998, 0xb0d09822, 0xc7d7a8b4,
	0x59b33d17, 0x2eb40d81, 0xb7bd5c3b, 0xc0ba6cad,
	0xedb88320, 0x9abfb3b6, 0x03b6e20c, 0x74b1d29a,
	0xead54739, 0x9dd277af, 0x04db2615, 0x73dc1683,
	0xe3630b12, 0x94643b84, 0x0d6d6a3e, 0x7a6a5aa8,
	0xe40ecf0b, 0x9309ff9d, 0x0a00ae27, 0x7d079eb1,
	0xf00f9344, 0x8708a3d2, 0x1e01f268, 0x6906c2fe,
	0xf762575d, 0x806567cb, 0x196c3671, 0x6e6b06e7,
	0xfed41b76, 0x89d32be0, 0x10da7a5a, 0x67dd4acc,
	0xf9b9df6f, 0x8ebeeff9, 0x17b7be43, 0x60b08ed5,
	0xd6d6a3e8, 0xa1d1937e, 0x38d8c2c4, 0x4fdff252,
	0xd1bb67f1, 0xa6bc5767, 0x3fb506dd, 0x48b2364b,
	0xd80d2bda, 0xaf0a1b4c, 0x36034af6, 0x41047a60,
	0xdf60efc3, 0xa867df55, 0x316e8eef, 0x4669be79,
	0xcb61b38c, 0xbc66831a, 0x256fd2a0, 0x5268e236,
	0xcc0c7795, 0xbb0b4703, 0x220216b9, 0x5505262f,
	0xc5ba3bbe, 0xb2bd0b28, 0x2bb45a92, 0x5cb36a04,
	0xc2d7ffa7, 0xb5d0cf31, 0x2cd99e8b, 0x5bdeae1d,
	0x9b64c2b0, 0xec63f226, 0x756aa39c, 0x026d930a,
	0x9c0906a9, 0xeb0e363f, 0x72076785, 0x05005713,
	0x95bf4a82, 0xe2b87a14, 0x7bb12bae, 0x0cb61b38,
	0x92d28e9b, 0xe5d5be0d, 0x7cdcefb7, 0x0bdbdf21,
	0x86d3d2d4, 0xf1d4e242, 0x68ddb3f8, 0x1fda836e,
	0x81be16cd, 0xf6b9265b, 0x6fb077e1, 0x18b74777,
	0x88085ae6, 0xff0f6a70, 0x66063bca, 0x11010b5c,
	0x8f659eff, 0xf862ae69, 0x616bffd3, 0x166ccf45,
	0xa00ae278, 0xd70dd2ee, 0x4e048354, 0x3903b3c2,
	0xa7672661, 0xd06016f7, 0x4969474d, 0x3e6e77db,
	0xaed16a4a, 0xd9d65adc, 0x40df0b66, 0x37d83bf0,
	0xa9bcae53, 0xdebb9ec5, 0x47b2cf7f, 0x30b5ffe9,
	0xbdbdf21c, 0xcabac28a, 0x53b39330, 0x24b4a3a6,
	0xbad03605, 0xcdd70693, 0x54de5729, 0x23d967bf,
	0xb3667a2e, 0xc4614ab8, 0x5d681b02, 0x2a6f2b94,
	0xb40bbe37, 0xc30c8ea1, 0x5a05df1b, 0x2d02ef8d
};

/*
 * Tables derived from crc32_table at first use: crc32_slices[k] advances
 * a byte k more positions (slicing-by-8: eight bytes per step instead of
 * one, the key check being on the request path), and base62_values maps
 * every byte to its digit value or -1.
 */
static uint32_t crc32_slices[8][256];
static int8_t base62_values[256];
static int	tables_ready = 0;

static void
tables_init(void)
{
	int			i;
	int			k;

	for (i = 0; i < 256; i++)
	{
		crc32_slices[0][i] = crc32_table[i];
		base62_values[i] = -1;
	}
	for (k = 1; k < 8; k++)
		for (i = 0; i < 256; i++)
			crc32_slices[k][i] = (crc32_slices[k - 1][i] >> 8) ^
				crc32_table[crc32_slices[k - 1][i] & 0xFF];
	for (i = 0; i < 62; i++)
		base62_values[(unsigned char) keyfmt_base62_alphabet[i]] = (int8_t) i;
	tables_ready = 1;
}

/* four bytes as a little-endian word (any alignment, any host order) */
static inline uint32_t
load32_le(const unsigned char *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 |
		(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/*
 * keyfmt_crc32
 *		Compute the zlib-compatible CRC-32 of data[0..len).
 */
uint32_t
keyfmt_crc32(const void *data, size_t len)
{
	const unsigned char *p = (const unsigned char *) data;
	uint32_t	crc = 0xFFFFFFFFu;

	if (!tables_ready)
		tables_init();
	for (; len >= 8; p += 8, len -= 8)
	{
		uint32_t	one = load32_le(p) ^ crc;
		uint32_t	two = load32_le(p + 4);

		crc = crc32_slices[7][one & 0xFF] ^ crc32_slices[6][(one >> 8) & 0xFF] ^
			crc32_slices[5][(one >> 16) & 0xFF] ^ crc32_slices[4][one >> 24] ^
			crc32_slices[3][two & 0xFF] ^ crc32_slices[2][(two >> 8) & 0xFF] ^
			crc32_slices[1][(two >> 16) & 0xFF] ^ crc32_slices[0][two >> 24];
	}
	for (; len > 0; p++, len--)
		crc = crc32_table[(crc ^ *p) & 0xFF] ^ (crc >> 8);
	return crc ^ 0xFFFFFFFFu;
}

/*
 * base62_value
 *		Return the value of base62 digit c, or -1 if c is not a digit
 *		(by table, built from the alphabet: independent of the locale).
 */
static inline int
base62_value(unsigned char c)
{
	if (!tables_ready)
		tables_init();
	return base62_values[c];
}

/*
 * keyfmt_prefix_valid
 *		True when s[0..len) matches [a-z][a-z0-9]{0,15}.
 */
bool
keyfmt_prefix_valid(const char *s, size_t len)
{
	size_t		i;

	if (s == NULL || len < 1 || len > KEYFMT_PREFIX_MAX)
		return false;
	if (!(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (i = 1; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

/*
 * encode_checksum
 *		Write crc as exactly KEYFMT_CHECKSUM_CHARS base62 digits, most
 *		significant first, zero-padded.  62^6 > 2^32, so it always fits.
 */
static void
encode_checksum(uint32_t crc, char *out)
{
	uint64_t	v = crc;
	int			i;

	for (i = KEYFMT_CHECKSUM_CHARS - 1; i >= 0; i--)
	{
		out[i] = keyfmt_base62_alphabet[v % 62];
		v /= 62;
	}
}

/*
 * keyfmt_encode
 *		Write "prefix_<body><checksum>" (a node-0 key) into out, which must
 *		hold KEYFMT_MAX_KEY_LEN + 1 bytes, NUL-terminate it and return its
 *		length.  The prefix must already have been validated.
 */
size_t
keyfmt_encode(const char *prefix, size_t prefix_len,
			  const uint8_t secret[KEYFMT_SECRET_BYTES], char *out)
{
	return keyfmt_encode_node(prefix, prefix_len, secret, 0, out);
}

/*
 * keyfmt_encode_node
 *		Write "prefix_<body>[<node>]<checksum>" into out (which must hold
 *		KEYFMT_MAX_KEY_LEN + 1 bytes), NUL-terminate it and return its
 *		length.  Node 0 has no node digits, so its keys are exactly the
 *		keys made before fleets existed.  Returns 0 for a node out of range.
 */
size_t
keyfmt_encode_node(const char *prefix, size_t prefix_len,
				   const uint8_t secret[KEYFMT_SECRET_BYTES], int node,
				   char *out)
{
	uint8_t		num[KEYFMT_SECRET_BYTES];
	char	   *body;
	size_t		len;
	int			d;

	if (node < 0 || node > KEYFMT_NODE_MAX)
		return 0;
	if (prefix_len > KEYFMT_PREFIX_MAX)
		prefix_len = KEYFMT_PREFIX_MAX; /* never overrun out */

	memcpy(out, prefix, prefix_len);
	out[prefix_len] = '_';
	body = out + prefix_len + 1;

	/*
	 * Convert the big-endian 256-bit number to base62 by repeated division
	 * by 62, producing the least significant digit first.
	 */
	memcpy(num, secret, KEYFMT_SECRET_BYTES);
	for (d = KEYFMT_BODY_CHARS - 1; d >= 0; d--)
	{
		unsigned int rem = 0;
		int			i;

		for (i = 0; i < KEYFMT_SECRET_BYTES; i++)
		{
			unsigned int cur = (rem << 8) | num[i];

			num[i] = (uint8_t) (cur / 62);
			rem = cur % 62;
		}
		body[d] = keyfmt_base62_alphabet[rem];
	}

	len = prefix_len + 1 + KEYFMT_BODY_CHARS;
	if (node > 0)
	{
		out[len] = keyfmt_base62_alphabet[node / 62];
		out[len + 1] = keyfmt_base62_alphabet[node % 62];
		len += KEYFMT_NODE_CHARS;
	}
	/* the checksum covers the whole key before it, node digits included */
	encode_checksum(keyfmt_crc32(out, len), out + len);
	len += KEYFMT_CHECKSUM_CHARS;
	out[len] = '\0';
	return len;
}

/*
 * keyfmt_parse
 *		Check that s[0..len) is exactly [a-z][a-z0-9]{0,15} '_' followed by
 *		KEYFMT_BODY_CHARS [+ KEYFMT_NODE_CHARS] + KEYFMT_CHECKSUM_CHARS
 *		base62 digits, that node digits, when present, spell a node in
 *		1..KEYFMT_NODE_MAX, and that the checksum digits encode the CRC-32 of
 *		everything before them.  Never reads s[len] or beyond.  On success
 *		sets *prefix_len.
 */
bool
keyfmt_parse(const char *s, size_t len, size_t *prefix_len)
{
	size_t		plen;
	size_t		i;
	size_t		crc_start;
	uint64_t	v = 0;

	if (s == NULL || len < 1 + KEYFMT_TAIL_CHARS || len > KEYFMT_MAX_KEY_LEN)
		return false;

	/* find the separator; body and checksum digits never contain '_' */
	for (plen = 0; plen < len && plen <= KEYFMT_PREFIX_MAX; plen++)
	{
		if (s[plen] == '_')
			break;
	}
	if (plen >= len || s[plen] != '_')
		return false;
	if (!keyfmt_prefix_valid(s, plen))
		return false;
	if (len - plen != KEYFMT_TAIL_CHARS && len - plen != KEYFMT_NODE_TAIL_CHARS)
		return false;

	for (i = plen + 1; i < len; i++)
	{
		if (base62_value((unsigned char) s[i]) < 0)
			return false;
	}
	if (len - plen == KEYFMT_NODE_TAIL_CHARS)
	{
		size_t		node_start = plen + 1 + KEYFMT_BODY_CHARS;
		int			node = base62_value((unsigned char) s[node_start]) * 62 +
			base62_value((unsigned char) s[node_start + 1]);

		/* node 0 has no digits: "00" would be a second spelling */
		if (node < 1 || node > KEYFMT_NODE_MAX)
			return false;
	}

	/* 62^6 < 2^64, so the checksum value cannot overflow a uint64 */
	crc_start = len - KEYFMT_CHECKSUM_CHARS;
	for (i = crc_start; i < len; i++)
		v = v * 62 + (uint64_t) base62_value((unsigned char) s[i]);
	if (v != (uint64_t) keyfmt_crc32(s, crc_start))
		return false;

	if (prefix_len != NULL)
		*prefix_len = plen;
	return true;
}

/*
 * keyfmt_decode_body
 *		Decode the base62 body of a key (as accepted by keyfmt_parse) back to
 *		its 32 big-endian bytes.  Returns false if the key has the wrong
 *		shape or the body's value does not fit in 256 bits (62^43 > 2^256).
 */
bool
keyfmt_decode_body(const char *s, size_t len, size_t prefix_len,
				   uint8_t secret[KEYFMT_SECRET_BYTES])
{
	uint8_t		num[KEYFMT_SECRET_BYTES];
	const char *body;
	int			d;

	if (s == NULL || prefix_len > KEYFMT_PREFIX_MAX ||
		(len != prefix_len + KEYFMT_TAIL_CHARS &&
		 len != prefix_len + KEYFMT_NODE_TAIL_CHARS))
		return false;
	body = s + prefix_len + 1;

	memset(num, 0, sizeof(num));
	for (d = 0; d < KEYFMT_BODY_CHARS; d++)
	{
		int			val = base62_value((unsigned char) body[d]);
		unsigned int carry;
		int			i;

		if (val < 0)
			return false;

		/* num = num * 62 + val, least significant byte last */
		carry = (unsigned int) val;
		for (i = KEYFMT_SECRET_BYTES - 1; i >= 0; i--)
		{
			unsigned int cur = num[i] * 62u + carry;

			num[i] = (uint8_t) (cur & 0xFF);
			carry = cur >> 8;
		}
		if (carry != 0)
			return false;
	}

	memcpy(secret, num, KEYFMT_SECRET_BYTES);
	return true;
}

/*
 * keyfmt_node
 *		The node of key s[0..len) (0 when it has no node digits), or -1 when
 *		it is not a well-formed key with a correct checksum.
 */
int
keyfmt_node(const char *s, size_t len)
{
	size_t		prefix_len;
	size_t		node_start;

	if (!keyfmt_parse(s, len, &prefix_len))
		return -1;
	if (len - prefix_len == KEYFMT_TAIL_CHARS)
		return 0;
	node_start = prefix_len + 1 + KEYFMT_BODY_CHARS;
	return base62_value((unsigned char) s[node_start]) * 62 +
		base62_value((unsigned char) s[node_start + 1]);
}

/*
 * keyfmt_key_id_node
 *		The node a key id names: the first two bytes of a version-8 UUID of
 *		the RFC 9562 variant, 0 for any other UUID, -1 when a version-8 id
 *		names a node above KEYFMT_NODE_MAX.
 */
int
keyfmt_key_id_node(const uint8_t id[KEYFMT_UUID_BYTES])
{
	int			node;

	if ((id[6] >> 4) != 8 || (id[8] & 0xC0) != 0x80)
		return 0;
	node = (id[0] << 8) | id[1];
	return node <= KEYFMT_NODE_MAX ? node : -1;
}

/*
 * keyfmt_key_id_make
 *		Stamp 16 random bytes as the key id of node: version 4 for node 0 (as
 *		every key id before fleets), version 8 with the node in the first two
 *		bytes otherwise.  Both keep 122 (version 4) or 106 (version 8) random
 *		bits.
 */
bool
keyfmt_key_id_make(uint8_t id[KEYFMT_UUID_BYTES], int node)
{
	if (node < 0 || node > KEYFMT_NODE_MAX)
		return false;
	if (node == 0)
		id[6] = (uint8_t) ((id[6] & 0x0F) | 0x40);
	else
	{
		id[0] = (uint8_t) (node >> 8);
		id[1] = (uint8_t) (node & 0xFF);
		id[6] = (uint8_t) ((id[6] & 0x0F) | 0x80);
	}
	id[8] = (uint8_t) ((id[8] & 0x3F) | 0x80);
	return true;
}
