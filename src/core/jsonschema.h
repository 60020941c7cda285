/* jsonschema: a JSON Schema (draft 2020-12) subset validator for inbound events
 * (conventions.md "Events": consumers validate every inbound event against its schema at the
 * boundary). Not packaged for Debian, so written here (DESIGN.md).
 *
 * Supported keywords:
 *   type (a name or an array of names: null boolean object array number string integer;
 *     "integer" accepts a real with an integral value, as the spec says),
 *   properties, required, additionalProperties (true, false or a schema),
 *   enum, const (deep equality; 1 and 1.0 are equal),
 *   minLength, maxLength (in Unicode code points),
 *   pattern: a POSIX extended regular expression (regcomp REG_EXTENDED), unanchored like
 *     ECMA-262 patterns; write ^...$ to anchor. ECMA-only escapes (\d \D \w \W \s \S \b \B)
 *     are refused at compile time rather than silently meaning something else: use [0-9],
 *     [A-Za-z0-9_], [[:space:]],
 *   minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, 2020-12 form),
 *   items (one schema for every element), minItems, maxItems,
 *   format "date-time" (RFC 3339 through gh_time_parse) and "uuid" (8-4-4-4-12 hex),
 *   the boolean schemas true and false.
 * Annotations ($schema, $id, $comment, title, description, default, examples) are accepted and
 * ignored. Anything else ($ref, oneOf, an unknown format, a typo) is a compile error: a schema
 * never silently checks less than it says.
 *
 * A schema is compiled once (at service start) into a tree owned by a talloc context; compiled
 * schemas are immutable, so any number of threads may validate with one concurrently.
 * Validation allocates nothing (regexec aside) and stops at the first violation. */
#ifndef GH_JSONSCHEMA_H
#define GH_JSONSCHEMA_H

#include <jansson.h>
#include <stddef.h>

typedef struct gh_jsonschema_s gh_jsonschema_t;

/* Where and why an instance failed. */
typedef struct gh_jsonschema_error_s {
	char pointer[128]; /* RFC 6901 pointer of the failing instance location; "" = root */
	char keyword[24];  /* the schema keyword that failed: "required", "type", ... */
	char message[160]; /* human-readable detail */
} gh_jsonschema_error_t;

/* Compile the schema text[0..len) (a JSON document) as a talloc child of ctx. Returns 0, or
 * -EINVAL with why (may be NULL) naming the schema location and the problem, or -ENOMEM. */
int gh_jsonschema_compile(void *ctx, const char *text, size_t len, gh_jsonschema_t **out, char *why,
                          size_t why_len);
/* The same from a parsed document (borrowed; nothing of it is kept by reference). */
int gh_jsonschema_compile_json(void *ctx, const json_t *schema, gh_jsonschema_t **out, char *why,
                               size_t why_len);

/* Validate instance. Returns 0, or -EINVAL with err (may be NULL) filled. */
int gh_jsonschema_validate(const gh_jsonschema_t *s, const json_t *instance,
                           gh_jsonschema_error_t *err);

/* "<pointer>: <keyword>: <message>" of err into buf (always NUL-terminated), for dead-letter
 * reasons and logs. Returns buf. */
const char *gh_jsonschema_error_str(const gh_jsonschema_error_t *err, char *buf, size_t n);

#endif
