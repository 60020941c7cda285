/* jsonschema: compile a JSON Schema subset into a tree and validate instances against it.
 * See jsonschema.h for the supported keywords. */
#include "jsonschema.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "clock.h"
#include "json.h"

enum {
	T_NULL = 1 << 0,
	T_BOOLEAN = 1 << 1,
	T_OBJECT = 1 << 2,
	T_ARRAY = 1 << 3,
	T_NUMBER = 1 << 4,
	T_STRING = 1 << 5,
	T_INTEGER = 1 << 6,
};

static const struct {
	const char *name;
	unsigned bit;
} type_names[] = {
    {"null", T_NULL},     {"boolean", T_BOOLEAN}, {"object", T_OBJECT},   {"array", T_ARRAY},
    {"number", T_NUMBER}, {"string", T_STRING},   {"integer", T_INTEGER},
};

typedef enum { FMT_NONE = 0, FMT_DATE_TIME, FMT_UUID } fmt_t;

typedef struct node_s node_t;

typedef struct prop_s {
	const char *name;
	node_t *schema;
} prop_t;

/* One compiled (sub)schema. Limits are -1 when absent; json_t values are owned references
 * released by the destructor. */
struct node_s {
	bool never;     /* the schema `false` */
	unsigned types; /* T_* mask; 0 = any */
	prop_t *props;
	size_t n_props;
	const char **required;
	size_t n_required;
	bool no_additional;  /* additionalProperties: false */
	node_t *additional;  /* additionalProperties: a schema */
	json_t *enum_values; /* array */
	json_t *const_value;
	int64_t min_len, max_len;
	regex_t *re;
	const char *pattern;
	json_t *minimum, *maximum, *xminimum, *xmaximum;
	node_t *items;
	int64_t min_items, max_items;
	fmt_t format;
};

struct gh_jsonschema_s {
	node_t *root;
};

/* ---- compiling --------------------------------------------------------------------------- */

typedef struct {
	char *why;
	size_t n;
} cerr_t;

static int cfail(cerr_t *e, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cfail(cerr_t *e, const char *at, const char *fmt, ...)
{
	if (e->why && e->n) {
		int k = snprintf(e->why, e->n, "schema %s: ", *at ? at : "(root)");
		if (k >= 0 && (size_t)k < e->n) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(e->why + k, e->n - (size_t)k, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static int node_destructor(node_t *n)
{
	json_decref(n->enum_values);
	json_decref(n->const_value);
	json_decref(n->minimum);
	json_decref(n->maximum);
	json_decref(n->xminimum);
	json_decref(n->xmaximum);
	if (n->re)
		regfree(n->re);
	return 0;
}

static int compile_node(void *ctx, const json_t *s, const char *at, cerr_t *e, node_t **out);

static int type_bit(const json_t *v, unsigned *bit)
{
	if (!json_is_string(v))
		return -EINVAL;
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
		if (strcmp(json_string_value(v), type_names[i].name) == 0) {
			*bit = type_names[i].bit;
			return 0;
		}
	return -EINVAL;
}

static int get_count(const json_t *v, const char *at, const char *kw, cerr_t *e, int64_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return cfail(e, at, "%s must be a non-negative integer", kw);
	*out = json_integer_value(v);
	return 0;
}

/* ECMA-262 escapes that POSIX ERE would read differently (or not at all). */
static int pattern_check(const char *p, const char *at, cerr_t *e)
{
	for (const char *c = p; *c; c++) {
		if (*c != '\\')
			continue;
		if (!c[1])
			return cfail(e, at, "pattern ends with a backslash");
		if (strchr("dDwWsSbB", c[1]))
			return cfail(e, at,
			             "pattern uses \\%c, which POSIX ERE does not have; use a "
			             "bracket expression",
			             c[1]);
		c++;
	}
	return 0;
}

static int compile_keyword(void *ctx, node_t *n, const char *key, const json_t *v, const char *at,
                           cerr_t *e)
{
	char sub[256];
	int rc;
	if (strcmp(key, "type") == 0) {
		unsigned bit;
		if (json_is_array(v) && json_array_size(v) > 0) {
			size_t i;
			json_t *t;
			json_array_foreach(v, i, t)
			{
				if (type_bit(t, &bit) < 0)
					return cfail(e, at, "unknown type in type[%zu]", i);
				n->types |= bit;
			}
		} else if (type_bit(v, &bit) == 0) {
			n->types = bit;
		} else {
			return cfail(e, at,
			             "type must be a type name or a non-empty array of them");
		}
	} else if (strcmp(key, "properties") == 0) {
		if (!json_is_object(v))
			return cfail(e, at, "properties must be an object");
		n->n_props = json_object_size(v);
		n->props = talloc_zero_array(n, prop_t, n->n_props ? n->n_props : 1);
		if (!n->props)
			return -ENOMEM;
		size_t i = 0;
		const char *name;
		json_t *ps;
		json_object_foreach((json_t *)v, name, ps)
		{
			char base[256];
			gh_json_ptr_append(base, sizeof base, at, "properties");
			gh_json_ptr_append(sub, sizeof sub, base, name);
			n->props[i].name = talloc_strdup(n, name);
			if (!n->props[i].name)
				return -ENOMEM;
			if ((rc = compile_node(n, ps, sub, e, &n->props[i].schema)) < 0)
				return rc;
			i++;
		}
	} else if (strcmp(key, "required") == 0) {
		if (!json_is_array(v))
			return cfail(e, at, "required must be an array of strings");
		n->n_required = json_array_size(v);
		n->required = talloc_zero_array(n, const char *, n->n_required ? n->n_required : 1);
		if (!n->required)
			return -ENOMEM;
		size_t i;
		json_t *r;
		json_array_foreach(v, i, r)
		{
			if (!json_is_string(r))
				return cfail(e, at, "required[%zu] must be a string", i);
			if (!(n->required[i] = talloc_strdup(n, json_string_value(r))))
				return -ENOMEM;
		}
	} else if (strcmp(key, "additionalProperties") == 0) {
		if (json_is_false(v)) {
			n->no_additional = true;
		} else if (!json_is_true(v)) {
			gh_json_ptr_append(sub, sizeof sub, at, key);
			if ((rc = compile_node(n, v, sub, e, &n->additional)) < 0)
				return rc;
		}
	} else if (strcmp(key, "enum") == 0) {
		if (!json_is_array(v) || json_array_size(v) == 0)
			return cfail(e, at, "enum must be a non-empty array");
		n->enum_values = json_deep_copy(v);
		if (!n->enum_values)
			return -ENOMEM;
	} else if (strcmp(key, "const") == 0) {
		if (!(n->const_value = json_deep_copy(v)))
			return -ENOMEM;
	} else if (strcmp(key, "minLength") == 0) {
		return get_count(v, at, key, e, &n->min_len);
	} else if (strcmp(key, "maxLength") == 0) {
		return get_count(v, at, key, e, &n->max_len);
	} else if (strcmp(key, "minItems") == 0) {
		return get_count(v, at, key, e, &n->min_items);
	} else if (strcmp(key, "maxItems") == 0) {
		return get_count(v, at, key, e, &n->max_items);
	} else if (strcmp(key, "pattern") == 0) {
		if (!json_is_string(v))
			return cfail(e, at, "pattern must be a string");
		const char *p = json_string_value(v);
		if ((rc = pattern_check(p, at, e)) < 0)
			return rc;
		n->re = talloc_zero(n, regex_t);
		n->pattern = talloc_strdup(n, p);
		if (!n->re || !n->pattern)
			return -ENOMEM;
		int rrc = regcomp(n->re, p, REG_EXTENDED | REG_NOSUB);
		if (rrc != 0) {
			char msg[128];
			regerror(rrc, n->re, msg, sizeof msg);
			talloc_free(n->re);
			n->re = NULL;
			return cfail(e, at, "pattern does not compile: %s", msg);
		}
	} else if (strcmp(key, "minimum") == 0 || strcmp(key, "maximum") == 0 ||
	           strcmp(key, "exclusiveMinimum") == 0 || strcmp(key, "exclusiveMaximum") == 0) {
		if (!json_is_number(v))
			return cfail(e, at, "%s must be a number", key);
		json_t **slot = strcmp(key, "minimum") == 0            ? &n->minimum
		                : strcmp(key, "maximum") == 0          ? &n->maximum
		                : strcmp(key, "exclusiveMinimum") == 0 ? &n->xminimum
		                                                       : &n->xmaximum;
		*slot = json_deep_copy(v);
		if (!*slot)
			return -ENOMEM;
	} else if (strcmp(key, "items") == 0) {
		gh_json_ptr_append(sub, sizeof sub, at, key);
		return compile_node(n, v, sub, e, &n->items);
	} else if (strcmp(key, "format") == 0) {
		const char *f = json_is_string(v) ? json_string_value(v) : "";
		if (strcmp(f, "date-time") == 0)
			n->format = FMT_DATE_TIME;
		else if (strcmp(f, "uuid") == 0)
			n->format = FMT_UUID;
		else
			return cfail(e, at, "format must be \"date-time\" or \"uuid\"");
	} else if (strcmp(key, "$schema") == 0 || strcmp(key, "$id") == 0 ||
	           strcmp(key, "$comment") == 0 || strcmp(key, "title") == 0 ||
	           strcmp(key, "description") == 0 || strcmp(key, "default") == 0 ||
	           strcmp(key, "examples") == 0) {
		return 0;
	} else {
		return cfail(e, at, "unsupported keyword \"%s\"", key);
	}
	(void)ctx;
	return 0;
}

static int compile_node(void *ctx, const json_t *s, const char *at, cerr_t *e, node_t **out)
{
	node_t *n = talloc_zero(ctx, node_t);
	if (!n)
		return -ENOMEM;
	n->min_len = n->max_len = n->min_items = n->max_items = -1;
	talloc_set_destructor(n, node_destructor);
	*out = n;
	if (json_is_true(s))
		return 0;
	if (json_is_false(s)) {
		n->never = true;
		return 0;
	}
	if (!json_is_object(s))
		return cfail(e, at, "a schema must be an object or a boolean");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)s, key, v)
	{
		int rc = compile_keyword(ctx, n, key, v, at, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int gh_jsonschema_compile_json(void *ctx, const json_t *schema, gh_jsonschema_t **out, char *why,
                               size_t why_len)
{
	cerr_t e = {why, why_len};
	if (why && why_len)
		why[0] = '\0';
	gh_jsonschema_t *s = talloc_zero(ctx, gh_jsonschema_t);
	if (!s)
		return -ENOMEM;
	int rc = compile_node(s, schema, "", &e, &s->root);
	if (rc < 0) {
		talloc_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int gh_jsonschema_compile(void *ctx, const char *text, size_t len, gh_jsonschema_t **out, char *why,
                          size_t why_len)
{
	json_t *doc = NULL;
	gh_err_t err = {0};
	int rc = gh_json_parse(text, len, 0, &doc, &err);
	if (rc < 0) {
		if (why && why_len)
			snprintf(why, why_len, "schema is not JSON: %s", err.message);
		gh_err_clear(&err);
		return -EINVAL;
	}
	rc = gh_jsonschema_compile_json(ctx, doc, out, why, why_len);
	json_decref(doc);
	return rc;
}

/* ---- validating -------------------------------------------------------------------------- */

typedef struct {
	char ptr[128];
	size_t len; /* current length of ptr; truncated pointers are still NUL-terminated */
	gh_jsonschema_error_t *err;
} vctx_t;

static int vfail(vctx_t *v, const char *kw, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int vfail(vctx_t *v, const char *kw, const char *fmt, ...)
{
	if (v->err) {
		snprintf(v->err->pointer, sizeof v->err->pointer, "%s", v->ptr);
		snprintf(v->err->keyword, sizeof v->err->keyword, "%s", kw);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->err->message, sizeof v->err->message, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Push one RFC 6901 token (escaped) onto the pointer; returns the length to pop back to. */
static size_t ptr_push(vctx_t *v, const char *token, size_t idx, bool is_index)
{
	size_t saved = v->len;
	char num[24];
	if (is_index) {
		snprintf(num, sizeof num, "%zu", idx);
		token = num;
	}
	size_t cap = sizeof v->ptr - 1;
	if (v->len < cap)
		v->ptr[v->len++] = '/';
	for (const char *c = token; *c && v->len < cap; c++) {
		if (*c == '~' || *c == '/') {
			if (v->len + 2 > cap)
				break;
			v->ptr[v->len++] = '~';
			v->ptr[v->len++] = *c == '~' ? '0' : '1';
		} else {
			v->ptr[v->len++] = *c;
		}
	}
	v->ptr[v->len] = '\0';
	return saved;
}

static void ptr_pop(vctx_t *v, size_t saved)
{
	v->len = saved;
	v->ptr[saved] = '\0';
}

static unsigned type_of(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: return T_NULL;
	case JSON_TRUE:
	case JSON_FALSE: return T_BOOLEAN;
	case JSON_OBJECT: return T_OBJECT;
	case JSON_ARRAY: return T_ARRAY;
	case JSON_STRING: return T_STRING;
	case JSON_INTEGER: return T_NUMBER | T_INTEGER;
	case JSON_REAL: {
		double d = json_real_value(j);
		return T_NUMBER | (isfinite(d) && d == floor(d) ? T_INTEGER : 0);
	}
	}
	return 0;
}

static const char *type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_NULL: return "null";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	}
	return "?";
}

/* a <=> b for two JSON numbers, exact when both are integers. */
static int num_cmp(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t x = json_integer_value(a), y = json_integer_value(b);
		return x < y ? -1 : x > y;
	}
	double x = json_number_value(a), y = json_number_value(b);
	return x < y ? -1 : x > y;
}

/* JSON equality as the spec defines it: numbers by value (1 == 1.0), objects unordered. */
static bool jeq(const json_t *a, const json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return num_cmp(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return false;
	if (json_is_array(a)) {
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!jeq(json_array_get(a, i), json_array_get(b, i)))
				return false;
		return true;
	}
	if (json_is_object(a)) {
		if (json_object_size(a) != json_object_size(b))
			return false;
		const char *k;
		json_t *va;
		json_object_foreach((json_t *)a, k, va)
		{
			json_t *vb = json_object_get(b, k);
			if (!vb || !jeq(va, vb))
				return false;
		}
		return true;
	}
	return json_equal((json_t *)a, (json_t *)b);
}

static size_t utf8_len(const char *s, size_t bytes)
{
	size_t n = 0;
	for (size_t i = 0; i < bytes; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

static bool uuid_ok(const char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false;
		}
	}
	return true;
}

static int validate_node(const node_t *n, const json_t *j, vctx_t *v);

static int validate_object(const node_t *n, const json_t *j, vctx_t *v)
{
	for (size_t i = 0; i < n->n_required; i++)
		if (!json_object_get(j, n->required[i]))
			return vfail(v, "required", "missing required property \"%s\"",
			             n->required[i]);
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)j, key, val)
	{
		const node_t *ps = NULL;
		for (size_t i = 0; i < n->n_props; i++)
			if (strcmp(n->props[i].name, key) == 0) {
				ps = n->props[i].schema;
				break;
			}
		size_t saved = ptr_push(v, key, 0, false);
		int rc = 0;
		if (ps)
			rc = validate_node(ps, val, v);
		else if (n->no_additional)
			rc =
			    vfail(v, "additionalProperties", "property \"%s\" is not allowed", key);
		else if (n->additional)
			rc = validate_node(n->additional, val, v);
		if (rc < 0)
			return rc;
		ptr_pop(v, saved);
	}
	return 0;
}

static int validate_node(const node_t *n, const json_t *j, vctx_t *v)
{
	if (n->never)
		return vfail(v, "false", "no value is allowed here");
	unsigned t = type_of(j);
	if (n->types && !(n->types & t))
		return vfail(v, "type", "%s is not an allowed type", type_name(j));
	if (n->const_value && !jeq(n->const_value, j))
		return vfail(v, "const", "value differs from the constant");
	if (n->enum_values) {
		bool found = false;
		for (size_t i = 0; i < json_array_size(n->enum_values) && !found; i++)
			found = jeq(json_array_get(n->enum_values, i), j);
		if (!found)
			return vfail(v, "enum", "value is not one of the enumerated values");
	}
	if (t & T_STRING) {
		const char *s = json_string_value(j);
		size_t bytes = json_string_length(j);
		if (n->min_len >= 0 || n->max_len >= 0) {
			size_t len = utf8_len(s, bytes);
			if (n->min_len >= 0 && len < (size_t)n->min_len)
				return vfail(v, "minLength", "shorter than %lld characters",
				             (long long)n->min_len);
			if (n->max_len >= 0 && len > (size_t)n->max_len)
				return vfail(v, "maxLength", "longer than %lld characters",
				             (long long)n->max_len);
		}
		/* regexec stops at NUL: a string with an embedded NUL cannot be matched whole */
		if (n->re && (strlen(s) != bytes || regexec(n->re, s, 0, NULL, 0) != 0))
			return vfail(v, "pattern", "does not match %s", n->pattern);
		int64_t ms;
		if (n->format == FMT_DATE_TIME && gh_time_parse(s, &ms) < 0)
			return vfail(v, "format", "not an RFC 3339 date-time");
		if (n->format == FMT_UUID && !uuid_ok(s, bytes))
			return vfail(v, "format", "not a UUID");
	}
	if (t & T_NUMBER) {
		if (n->minimum && num_cmp(j, n->minimum) < 0)
			return vfail(v, "minimum", "below the minimum");
		if (n->maximum && num_cmp(j, n->maximum) > 0)
			return vfail(v, "maximum", "above the maximum");
		if (n->xminimum && num_cmp(j, n->xminimum) <= 0)
			return vfail(v, "exclusiveMinimum", "not above the exclusive minimum");
		if (n->xmaximum && num_cmp(j, n->xmaximum) >= 0)
			return vfail(v, "exclusiveMaximum", "not below the exclusive maximum");
	}
	if (t & T_ARRAY) {
		size_t len = json_array_size(j);
		if (n->min_items >= 0 && len < (size_t)n->min_items)
			return vfail(v, "minItems", "fewer than %lld items",
			             (long long)n->min_items);
		if (n->max_items >= 0 && len > (size_t)n->max_items)
			return vfail(v, "maxItems", "more than %lld items",
			             (long long)n->max_items);
		if (n->items)
			for (size_t i = 0; i < len; i++) {
				size_t saved = ptr_push(v, NULL, i, true);
				int rc = validate_node(n->items, json_array_get(j, i), v);
				if (rc < 0)
					return rc;
				ptr_pop(v, saved);
			}
	}
	if (t & T_OBJECT)
		return validate_object(n, j, v);
	return 0;
}

int gh_jsonschema_validate(const gh_jsonschema_t *s, const json_t *instance,
                           gh_jsonschema_error_t *err)
{
	vctx_t v = {.err = err};
	if (err)
		memset(err, 0, sizeof *err);
	if (!s || !instance)
		return vfail(&v, "type", "no instance");
	return validate_node(s->root, instance, &v);
}

const char *gh_jsonschema_error_str(const gh_jsonschema_error_t *err, char *buf, size_t n)
{
	if (!n)
		return buf;
	snprintf(buf, n, "%s: %s: %s", err->pointer[0] ? err->pointer : "(root)", err->keyword,
	         err->message);
	return buf;
}
