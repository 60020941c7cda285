/* uuid: random identifiers for events, request ids and idempotency records. */
#ifndef GH_UUID_H
#define GH_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define GH_UUID_LEN 36

/* RFC 9562 UUIDv4 (122 random bits) as lowercase text; out needs 37 bytes. */
void gh_uuid_v4(char out[37]);
/* RFC 9562 UUIDv7: 48-bit Unix ms timestamp then random bits; sorts by creation time. */
void gh_uuid_v7(int64_t unix_ms, char out[37]);
/* The same layout with the random bits from a per-thread splitmix64 seeded once from the
 * kernel: unique, not secret, and no getrandom(2) call per id. For ids that must only be
 * unique (request ids), never for tokens or anything a client must not guess. */
void gh_uuid_v7_fast(int64_t unix_ms, char out[37]);
/* 16 bytes as lowercase 8-4-4-4-12 text; out needs 37 bytes. */
void gh_uuid_format(const uint8_t b[16], char out[37]);
/* true when all 16 bytes are zero (the nil UUID: "no id"). */
bool gh_uuid_is_nil(const uint8_t b[16]);
/* 1 when s is a canonical lowercase or uppercase 8-4-4-4-12 hex UUID. */
int gh_uuid_valid(const char *s);
/* The 16 bytes of canonical text s (gh_uuid_valid): 0, or -EINVAL with out zeroed. */
int gh_uuid_parse(const char *s, uint8_t out[16]);

#endif
