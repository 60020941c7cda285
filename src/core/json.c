/* json: field-table checks, strict parsing and canonical dumps. See json.h for the contracts. */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

const char *const gh_json_type_names[] = {
    [GH_JSON_ANY] = "any",         [GH_JSON_STRING] = "a string", [GH_JSON_INTEGER] = "an integer",
    [GH_JSON_NUMBER] = "a number", [GH_JSON_BOOL] = "a boolean",  [GH_JSON_OBJECT] = "an object",
    [GH_JSON_ARRAY] = "an array",
};

/* Pointers longer than err->field are truncated there; the message still names the field. */
enum { PTR_MAX = sizeof(((gh_err_t *)0)->field) };

static int put(char *buf, size_t n, size_t *o, const char *s, size_t l)
{
	if (*o + l >= n)
		return -ENAMETOOLONG;
	memcpy(buf + *o, s, l);
	*o += l;
	return 0;
}

int gh_json_ptr_append(char *buf, size_t n, const char *base, const char *token)
{
	size_t o = 0;
	if (n == 0)
		return -ENAMETOOLONG;
	base = base ? base : "";
	int rc = put(buf, n, &o, base, strlen(base));
	if (rc == 0)
		rc = put(buf, n, &o, "/", 1);
	for (const char *p = token; rc == 0 && *p; p++) {
		if (*p == '~')
			rc = put(buf, n, &o, "~0", 2);
		else if (*p == '/')
			rc = put(buf, n, &o, "~1", 2);
		else
			rc = put(buf, n, &o, p, 1);
	}
	buf[o] = '\0';
	return rc;
}

int gh_json_ptr_index(char *buf, size_t n, const char *base, size_t index)
{
	char tok[24];
	snprintf(tok, sizeof(tok), "%zu", index);
	return gh_json_ptr_append(buf, n, base, tok);
}

static int type_ok(const json_t *v, gh_json_type_t t)
{
	switch (t) {
	case GH_JSON_ANY: return 1;
	case GH_JSON_STRING: return json_is_string(v);
	case GH_JSON_INTEGER: return json_is_integer(v);
	case GH_JSON_NUMBER: return json_is_number(v);
	case GH_JSON_BOOL: return json_is_boolean(v);
	case GH_JSON_OBJECT: return json_is_object(v);
	case GH_JSON_ARRAY: return json_is_array(v);
	}
	return 0;
}

static int check_value(const json_t *v, gh_json_type_t type, const gh_json_field_t *f,
                       const char *ptr, gh_err_t *err);

static int check_object(const json_t *obj, const gh_json_field_t *fields, const char *base,
                        gh_err_t *err)
{
	char ptr[PTR_MAX];
	if (!json_is_object(obj))
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, base, "%s must be an object",
		                  base[0] ? base : "the body");
	for (const gh_json_field_t *f = fields; f->name; f++) {
		gh_json_ptr_append(ptr, sizeof(ptr), base, f->name);
		const json_t *v = json_object_get(obj, f->name);
		if (!v) {
			if (f->required)
				return gh_err_set(err, GH_E_INVALID_ARGUMENT, ptr, "%s is required",
				                  ptr);
			continue;
		}
		if (json_is_null(v) && f->nullable)
			continue;
		int rc = check_value(v, f->type, f, ptr, err);
		if (rc < 0)
			return rc;
	}
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		const gh_json_field_t *f = fields;
		while (f->name && strcmp(f->name, key) != 0)
			f++;
		if (!f->name) {
			gh_json_ptr_append(ptr, sizeof(ptr), base, key);
			return gh_err_set(err, GH_E_INVALID_ARGUMENT, ptr, "unknown field %s", ptr);
		}
	}
	return 0;
}

static int check_value(const json_t *v, gh_json_type_t type, const gh_json_field_t *f,
                       const char *ptr, gh_err_t *err)
{
	if (!type_ok(v, type))
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, ptr, "%s must be %s", ptr,
		                  gh_json_type_names[type]);
	if (type == GH_JSON_OBJECT && f->fields)
		return check_object(v, f->fields, ptr, err);
	if (type == GH_JSON_ARRAY) {
		char iptr[PTR_MAX];
		size_t i;
		const json_t *item;
		json_array_foreach((json_t *)v, i, item)
		{
			gh_json_ptr_index(iptr, sizeof(iptr), ptr, i);
			/* Elements follow the items type; an OBJECT element uses f->fields. */
			int rc = check_value(item, f->items, f, iptr, err);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int gh_json_check(const json_t *obj, const gh_json_field_t *fields, const char *base_ptr,
                  gh_err_t *err)
{
	return check_object(obj, fields, base_ptr ? base_ptr : "", err);
}

int gh_json_parse(const char *buf, size_t len, int flags, json_t **out, gh_err_t *err)
{
	*out = NULL;
	if (!buf || len == 0)
		return gh_err_set(err, GH_E_MALFORMED_JSON, NULL, "empty body");
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!j)
		return gh_err_set(err, GH_E_MALFORMED_JSON, NULL,
		                  "invalid JSON at line %d, column %d (byte %d): %s", je.line,
		                  je.column, je.position, je.text);
	if ((flags & GH_JSON_OBJECT_ROOT) && !json_is_object(j)) {
		json_decref(j);
		return gh_err_set(err, GH_E_INVALID_ARGUMENT, "", "the body must be a JSON object");
	}
	*out = j;
	return 0;
}

int gh_json_parse_body(const char *buf, size_t len, json_t **out, gh_err_t *err)
{
	return gh_json_parse(buf, len, GH_JSON_OBJECT_ROOT, out, err);
}

typedef struct {
	char *buf;
	size_t len;
	size_t cap;
	void *ctx;
} dumpbuf_t;

static int dump_cb(const char *s, size_t n, void *ud)
{
	dumpbuf_t *d = ud;
	if (d->len + n + 1 > d->cap) {
		size_t cap = d->cap ? d->cap : 256;
		while (cap < d->len + n + 1)
			cap *= 2;
		char *nb = talloc_realloc_size(d->ctx, d->buf, cap);
		if (!nb)
			return -1;
		d->buf = nb;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, s, n);
	d->len += n;
	return 0;
}

static char *dump(const json_t *j, void *ctx, size_t flags, size_t *len)
{
	dumpbuf_t d = {.ctx = ctx};
	if (!j || json_dump_callback(j, dump_cb, &d, flags | JSON_COMPACT | JSON_ENCODE_ANY) != 0 ||
	    dump_cb("", 0, &d) != 0) {
		talloc_free(d.buf);
		return NULL;
	}
	d.buf[d.len] = '\0';
	talloc_set_name_const(d.buf, "json");
	if (len)
		*len = d.len;
	return d.buf;
}

char *gh_json_dump(const json_t *j, void *ctx, size_t *len) { return dump(j, ctx, 0, len); }

char *gh_json_canonical(const json_t *j, void *ctx) { return dump(j, ctx, JSON_SORT_KEYS, NULL); }

const char *gh_json_get_str(const json_t *obj, const char *key, const char *def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : def;
}

int64_t gh_json_get_int(const json_t *obj, const char *key, int64_t def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

double gh_json_get_num(const json_t *obj, const char *key, double def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_number(v) ? json_number_value(v) : def;
}

int gh_json_get_bool(const json_t *obj, const char *key, int def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_boolean(v) ? json_is_true(v) : def;
}
