/* json fuzz target (libFuzzer): request bodies as gh_http_json_body takes them, i.e.
 * gh_json_parse_body then gh_json_check against a field table with nested objects, arrays of
 * objects, nullable and free-form members. Build and run: scripts/fuzz.sh (tests/fuzz/README.md).
 *
 * Besides memory safety it checks the contracts of json.h:
 * - a refusal is -EINVAL with MALFORMED_JSON (or INVALID_ARGUMENT for a non-object root) and a
 *   message; parse_body accepts exactly what gh_json_parse accepts with an object at the root;
 * - an accepted body survives the round trip: its canonical form parses back to an equal value
 *   whose canonical form is byte-identical, and so does the plain dump;
 * - gh_json_check agrees with an independent validator written here from the table semantics,
 *   and on a refusal names a JSON pointer that resolves in the document: to the offending value,
 *   or, for a missing required field, to its parent object without the member. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "json.h"

static const gh_json_field_t address_fields[] = {
    {"country", GH_JSON_STRING, 1},
    {"lines", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"geo", GH_JSON_OBJECT, 0, 1, GH_JSON_ANY, NULL}, /* free-form */
    {NULL},
};

static const gh_json_field_t item_fields[] = {
    {"sku", GH_JSON_STRING, 1},
    {"qty", GH_JSON_INTEGER, 1},
    {"price", GH_JSON_NUMBER, 0, 1},
    {"ship_to", GH_JSON_OBJECT, 0, 0, GH_JSON_ANY, address_fields},
    {NULL},
};

static const gh_json_field_t body_fields[] = {
    {"id", GH_JSON_STRING, 1},
    {"count", GH_JSON_INTEGER, 0},
    {"active", GH_JSON_BOOL, 0, 1},
    {"tags", GH_JSON_ARRAY, 0, 0, GH_JSON_STRING},
    {"matrix", GH_JSON_ARRAY, 0, 0, GH_JSON_ARRAY},
    {"address", GH_JSON_OBJECT, 0, 1, GH_JSON_ANY, address_fields},
    {"items", GH_JSON_ARRAY, 0, 0, GH_JSON_OBJECT, item_fields},
    {"labels", GH_JSON_OBJECT, 0, 0, GH_JSON_ANY, NULL},
    {"extra", GH_JSON_ANY, 0},
    {NULL},
};

static int type_ok(const json_t *v, gh_json_type_t t)
{
	switch (t) {
	case GH_JSON_ANY: return 1;
	case GH_JSON_STRING: return json_is_string(v);
	case GH_JSON_INTEGER: return json_is_integer(v);
	case GH_JSON_NUMBER: return json_is_integer(v) || json_is_real(v);
	case GH_JSON_BOOL: return json_is_true(v) || json_is_false(v);
	case GH_JSON_OBJECT: return json_is_object(v);
	case GH_JSON_ARRAY: return json_is_array(v);
	}
	abort();
}

static int valid_object(const json_t *obj, const gh_json_field_t *fields);

/* The table semantics of json.h, written independently of json.c. */
static int valid_value(const json_t *v, gh_json_type_t type, const gh_json_field_t *f)
{
	if (!type_ok(v, type))
		return 0;
	if (type == GH_JSON_OBJECT && f->fields)
		return valid_object(v, f->fields);
	if (type == GH_JSON_ARRAY)
		for (size_t i = 0; i < json_array_size(v); i++)
			if (!valid_value(json_array_get(v, i), f->items, f))
				return 0;
	return 1;
}

static int valid_object(const json_t *obj, const gh_json_field_t *fields)
{
	size_t known = 0;
	for (const gh_json_field_t *f = fields; f->name; f++) {
		const json_t *v = json_object_get(obj, f->name);
		if (!v) {
			if (f->required)
				return 0;
			continue;
		}
		known++;
		if (!(json_is_null(v) && f->nullable) && !valid_value(v, f->type, f))
			return 0;
	}
	return known == json_object_size(obj); /* no member outside the table */
}

/* Resolve an RFC 6901 pointer. *parent gets the container the last token looked into (for
 * "is required": the object lacking the member). Returns the value, or NULL. */
static const json_t *resolve(const json_t *root, const char *ptr, const json_t **parent)
{
	const json_t *cur = root;
	*parent = NULL;
	while (*ptr) {
		if (*ptr != '/')
			abort(); /* a pointer is "" or starts with '/' */
		ptr++;
		char tok[128];
		size_t n = 0;
		while (*ptr && *ptr != '/') {
			char c = *ptr++;
			if (c == '~') {
				if (*ptr == '0')
					c = '~';
				else if (*ptr == '1')
					c = '/';
				else
					abort(); /* "~" must be escaped */
				ptr++;
			}
			if (n + 1 >= sizeof(tok))
				abort();
			tok[n++] = c;
		}
		tok[n] = '\0';
		*parent = cur;
		if (json_is_object(cur)) {
			cur = json_object_get(cur, tok);
		} else if (json_is_array(cur)) {
			char *end;
			unsigned long i = strtoul(tok, &end, 10);
			cur = *end || !n ? NULL : json_array_get(cur, i);
		} else {
			return NULL;
		}
		if (!cur)
			return NULL;
	}
	return cur;
}

static void check_roundtrip(const json_t *doc)
{
	void *ctx = talloc_new(NULL);
	char *canon = gh_json_canonical(doc, ctx);
	if (!canon)
		abort();
	json_t *again = NULL;
	if (gh_json_parse_body(canon, strlen(canon), &again, NULL) != 0 || !json_equal(doc, again))
		abort();
	char *canon2 = gh_json_canonical(again, ctx);
	if (!canon2 || strcmp(canon, canon2) != 0)
		abort();
	json_decref(again);
	size_t len;
	char *plain = gh_json_dump(doc, ctx, &len);
	if (!plain || strlen(plain) != len)
		abort();
	if (gh_json_parse_body(plain, len, &again, NULL) != 0 || !json_equal(doc, again))
		abort();
	json_decref(again);
	talloc_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	gh_err_t err = {0};
	json_t *doc = NULL, *any = NULL;
	int rc = gh_json_parse_body(buf, size, &doc, &err);
	int rc_any = gh_json_parse(buf, size, 0, &any, NULL);
	if (rc != 0) {
		if (rc != -EINVAL || doc || !err.message[0])
			abort();
		if (err.code == GH_E_MALFORMED_JSON) {
			if (rc_any == 0)
				abort();
		} else if (err.code != GH_E_INVALID_ARGUMENT || rc_any != 0 ||
		           json_is_object(any)) {
			abort();
		}
		json_decref(any);
		gh_err_clear(&err);
		return 0;
	}
	if (!json_is_object(doc) || rc_any != 0 || !json_equal(doc, any))
		abort();
	json_decref(any);
	check_roundtrip(doc);

	rc = gh_json_check(doc, body_fields, "", &err);
	int valid = valid_object(doc, body_fields);
	if ((rc == 0) != valid)
		abort();
	if (rc != 0) {
		if (rc != -EINVAL || err.code != GH_E_INVALID_ARGUMENT || err.field[0] != '/' ||
		    !err.message[0])
			abort();
		/* A pointer that (nearly) filled the field buffer may be truncated (an escape
		 * takes two bytes) and then resolves nowhere. */
		if (strlen(err.field) < sizeof(err.field) - 2) {
			const json_t *parent;
			const json_t *at = resolve(doc, err.field, &parent);
			char required[sizeof(err.field) + 16];
			snprintf(required, sizeof(required), "%s is required", err.field);
			if (strcmp(err.message, required) == 0) {
				if (at || !json_is_object(parent))
					abort();
			} else if (!at) {
				abort();
			}
		}
		/* The same input gives the same answer. */
		gh_err_t again = {0};
		if (gh_json_check(doc, body_fields, "", &again) != rc ||
		    strcmp(again.field, err.field) != 0)
			abort();
		gh_err_clear(&again);
	}
	json_decref(doc);
	gh_err_clear(&err);
	return 0;
}
