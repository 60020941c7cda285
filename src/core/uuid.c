/* uuid: v4 and v7 from the kernel's CSPRNG (getrandom never blocks after boot). */
#include "uuid.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static void fill_random(uint8_t *b, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(b + got, n - got, 0);
		if (r > 0)
			got += (size_t)r;
	}
}

void gh_uuid_format(const uint8_t b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

void gh_uuid_v4(char out[37])
{
	uint8_t b[16];
	fill_random(b, sizeof(b));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	gh_uuid_format(b, out);
}

/* Stamp the 48-bit timestamp, version 7 and the variant over 16 random bytes; format. */
static void format_v7(uint8_t b[16], int64_t unix_ms, char out[37])
{
	uint64_t ms = (uint64_t)unix_ms;
	for (int i = 0; i < 6; i++)
		b[i] = (uint8_t)(ms >> (8 * (5 - i)));
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x70);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	gh_uuid_format(b, out);
}

void gh_uuid_v7(int64_t unix_ms, char out[37])
{
	uint8_t b[16];
	fill_random(b, sizeof(b));
	format_v7(b, unix_ms, out);
}

void gh_uuid_v7_fast(int64_t unix_ms, char out[37])
{
	static _Thread_local uint64_t state;
	while (!state)
		fill_random((uint8_t *)&state, sizeof(state));
	uint8_t b[16];
	/* Bytes 6..15 (past the timestamp) from two splitmix64 outputs, five bytes each. */
	for (int w = 0; w < 2; w++) {
		uint64_t z = (state += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		for (int i = 0; i < 5; i++)
			b[6 + w * 5 + i] = (uint8_t)(z >> (8 * i));
	}
	format_v7(b, unix_ms, out);
}

int gh_uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!isxdigit((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)(ch | 0x20);
	return ch - 'a' + 10;
}

int gh_uuid_parse(const char *s, uint8_t out[16])
{
	memset(out, 0, 16);
	if (!gh_uuid_valid(s))
		return -EINVAL;
	for (int i = 0, o = 0; i < 36; i++) {
		if (s[i] == '-')
			continue;
		out[o / 2] |= (uint8_t)(o % 2 ? hexval(s[i]) : hexval(s[i]) << 4);
		o++;
	}
	return 0;
}

bool gh_uuid_is_nil(const uint8_t b[16])
{
	for (int i = 0; i < 16; i++)
		if (b[i])
			return false;
	return true;
}
