/* json: strict request parsing and canonical serialisation on jansson.
 *
 * Request bodies are parsed with duplicate keys rejected and checked against a field table:
 * a wrong type, a missing required field or an unknown field is INVALID_ARGUMENT naming the
 * field as an RFC 6901 JSON pointer (specs/conventions.md: a typo never silently does the
 * default). The canonical form (sorted keys, compact, exact int64) is what audit rows hash. */
#ifndef GH_JSON_H
#define GH_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum {
	GH_JSON_ANY, /* any value */
	GH_JSON_STRING,
	GH_JSON_INTEGER, /* integer literal only (no 1.0), exact int64 */
	GH_JSON_NUMBER,  /* integer or real */
	GH_JSON_BOOL,
	GH_JSON_OBJECT,
	GH_JSON_ARRAY,
} gh_json_type_t;

extern const char *const gh_json_type_names[];

/* One entry of a field table; a table ends with an entry whose name is NULL.
 * OBJECT: `fields` is the sub-table checked the same way; NULL means a free-form object (a map
 *   of labels, say) whose keys are not checked.
 * ARRAY: every element must be of type `items`; when that is OBJECT, `fields` checks each one.
 * nullable: an explicit null is accepted (and counts as present). */
typedef struct gh_json_field_s {
	const char *name;
	gh_json_type_t type;
	int required;
	int nullable;
	gh_json_type_t items;
	const struct gh_json_field_s *fields;
} gh_json_field_t;

/* Check obj against fields. base_ptr is the JSON pointer of obj in the document ("" for the
 * root) and prefixes the pointer written to err->field. The first problem found wins: wrong
 * types and missing fields in table order, then unknown fields in document order.
 * Returns 0 or -EINVAL with err = INVALID_ARGUMENT. */
int gh_json_check(const json_t *obj, const gh_json_field_t *fields, const char *base_ptr,
                  gh_err_t *err);

enum {
	GH_JSON_OBJECT_ROOT = 1 << 0, /* the document must be an object */
};

/* Parse len bytes (no NUL needed) as exactly one JSON document: duplicate keys, \u0000, invalid
 * UTF-8, integers beyond int64 and trailing bytes are errors. Returns 0 with *out a new
 * reference, or -EINVAL with err = MALFORMED_JSON whose message gives line, column and byte
 * position (or INVALID_ARGUMENT when GH_JSON_OBJECT_ROOT is set and the root is not an object). */
int gh_json_parse(const char *buf, size_t len, int flags, json_t **out, gh_err_t *err);
/* The request-body flavour: gh_json_parse with GH_JSON_OBJECT_ROOT. */
int gh_json_parse_body(const char *buf, size_t len, json_t **out, gh_err_t *err);

/* Serialise j (compact, UTF-8 as is) into a new NUL-terminated talloc string, child of ctx;
 * *len (when non-NULL) gets its length. NULL on out of memory or a value jansson cannot encode. */
char *gh_json_dump(const json_t *j, void *ctx, size_t *len);
/* The canonical form: as gh_json_dump with keys sorted by byte value at every level. Integers
 * are exact; reals are written with 17 significant digits (round-trip exact; keep reals out of
 * hashed data all the same). */
char *gh_json_canonical(const json_t *j, void *ctx);

/* Append "/" and the RFC 6901-escaped token ('~' -> "~0", '/' -> "~1") to base into buf.
 * Returns 0, or -ENAMETOOLONG when it did not fit (buf then holds a truncated pointer). */
int gh_json_ptr_append(char *buf, size_t n, const char *base, const char *token);
int gh_json_ptr_index(char *buf, size_t n, const char *base, size_t index);

/* Typed getters for members of a checked object: the member's value when present with the
 * right type, otherwise def. */
const char *gh_json_get_str(const json_t *obj, const char *key, const char *def);
int64_t gh_json_get_int(const json_t *obj, const char *key, int64_t def);
double gh_json_get_num(const json_t *obj, const char *key, double def);
int gh_json_get_bool(const json_t *obj, const char *key, int def);

#endif
