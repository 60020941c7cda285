/* jsonschema: every supported keyword accepting and refusing, the failing location as a JSON
 * pointer (with RFC 6901 escapes) and the keyword, compile errors for unsupported keywords,
 * ECMA-only pattern escapes and unknown formats, and concurrent validation with one schema. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "json.h"
#include "jsonschema.h"
#include "testutil.h"

static gh_jsonschema_t *compile_ok(void *ctx, const char *text)
{
	gh_jsonschema_t *s = NULL;
	char why[256];
	int rc = gh_jsonschema_compile(ctx, text, strlen(text), &s, why, sizeof why);
	if (rc != 0)
		fail_msg("compile failed: %s", why);
	return s;
}

/* Validate the JSON text doc; returns rc and fills err. */
static int check(const gh_jsonschema_t *s, const char *doc, gh_jsonschema_error_t *err)
{
	json_error_t je;
	json_t *j = json_loads(doc, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	if (!j)
		fail_msg("bad test document %s: %s", doc, je.text);
	int rc = gh_jsonschema_validate(s, j, err);
	json_decref(j);
	return rc;
}

#define ACCEPT(s, doc)                                                                             \
	do {                                                                                       \
		gh_jsonschema_error_t e_;                                                          \
		if (check(s, doc, &e_) != 0)                                                       \
			fail_msg("%s refused: %s %s %s", doc, e_.pointer, e_.keyword, e_.message); \
	} while (0)

#define REFUSE(s, doc, ptr, kw)                                \
	do {                                                   \
		gh_jsonschema_error_t e_;                      \
		assert_int_equal(check(s, doc, &e_), -EINVAL); \
		assert_string_equal(e_.pointer, ptr);          \
		assert_string_equal(e_.keyword, kw);           \
	} while (0)

static void test_type_and_integer_semantics(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(ctx, "{\"type\":\"integer\"}");
	ACCEPT(s, "1");
	ACCEPT(s, "1.0"); /* an integral real is an integer in JSON Schema */
	REFUSE(s, "1.5", "", "type");
	REFUSE(s, "\"1\"", "", "type");
	s = compile_ok(ctx, "{\"type\":[\"string\",\"null\"]}");
	ACCEPT(s, "null");
	ACCEPT(s, "\"x\"");
	REFUSE(s, "true", "", "type");
	REFUSE(s, "{}", "", "type");
	s = compile_ok(ctx, "{\"type\":\"number\"}");
	ACCEPT(s, "3");
	ACCEPT(s, "3.25");
	REFUSE(s, "[]", "", "type");
	s = compile_ok(ctx, "true");
	ACCEPT(s, "{\"any\":[1,2]}");
	s = compile_ok(ctx, "false");
	REFUSE(s, "1", "", "false");
	talloc_free(ctx);
}

static void test_object_keywords_and_pointers(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(
	    ctx, "{\"type\":\"object\",\"required\":[\"a\"],"
	         "\"properties\":{\"a\":{\"type\":\"string\"},"
	         "\"b/c~d\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},"
	         "\"additionalProperties\":false}},"
	         "\"additionalProperties\":{\"type\":\"boolean\"}}");
	ACCEPT(s, "{\"a\":\"x\"}");
	ACCEPT(s, "{\"a\":\"x\",\"extra\":true}");
	REFUSE(s, "{}", "", "required");
	REFUSE(s, "{\"a\":1}", "/a", "type");
	REFUSE(s, "{\"a\":\"x\",\"extra\":1}", "/extra", "type");
	/* RFC 6901: '/' -> ~1, '~' -> ~0 */
	REFUSE(s, "{\"a\":\"x\",\"b/c~d\":{\"x\":\"no\"}}", "/b~1c~0d/x", "type");
	REFUSE(s, "{\"a\":\"x\",\"b/c~d\":{\"y\":1}}", "/b~1c~0d/y", "additionalProperties");
	talloc_free(ctx);
}

static void test_enum_and_const_use_json_equality(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(ctx, "{\"enum\":[\"A\",2,{\"k\":[1]}]}");
	ACCEPT(s, "\"A\"");
	ACCEPT(s, "2.0");
	ACCEPT(s, "{\"k\":[1.0]}");
	REFUSE(s, "\"a\"", "", "enum");
	REFUSE(s, "{\"k\":[1],\"j\":0}", "", "enum");
	s = compile_ok(ctx, "{\"properties\":{\"type\":{\"const\":\"tenant.deleted.v1\"}}}");
	ACCEPT(s, "{\"type\":\"tenant.deleted.v1\"}");
	REFUSE(s, "{\"type\":\"tenant.deleted.v2\"}", "/type", "const");
	talloc_free(ctx);
}

static void test_strings_lengths_patterns_formats(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s =
	    compile_ok(ctx, "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}");
	ACCEPT(s, "\"ab\"");
	ACCEPT(s, "\"\xd8\xa7\xd8\xa8\xd8\xaa\""); /* 3 code points, 6 bytes */
	REFUSE(s, "\"a\"", "", "minLength");
	REFUSE(s, "\"abcd\"", "", "maxLength");
	s = compile_ok(ctx, "{\"pattern\":\"^[A-Za-z0-9 ]*[A-Za-z][A-Za-z0-9 ]*$\"}");
	ACCEPT(s, "\"My Bank 1\"");
	ACCEPT(s, "42"); /* pattern applies to strings only */
	REFUSE(s, "\"12345\"", "", "pattern");
	REFUSE(s, "\"My-Bank\"", "", "pattern");
	s = compile_ok(ctx, "{\"pattern\":\"7[0-9]{2}\"}"); /* unanchored, as in ECMA-262 */
	ACCEPT(s, "\"+93701\"");
	REFUSE(s, "\"+9360\"", "", "pattern");
	REFUSE(s, "\"a\\u0000+93701\"", "", "pattern"); /* embedded NUL never matches */
	s = compile_ok(ctx, "{\"format\":\"date-time\"}");
	ACCEPT(s, "\"2026-11-22T06:00:00.000Z\"");
	ACCEPT(s, "\"2026-11-22T06:00:00+04:30\"");
	REFUSE(s, "\"2026-11-22 06:00\"", "", "format");
	REFUSE(s, "\"2026-13-22T06:00:00Z\"", "", "format");
	s = compile_ok(ctx, "{\"format\":\"uuid\"}");
	ACCEPT(s, "\"0192f1a8-3c4d-7e5f-8a9b-0c1d2e3f4a5b\"");
	ACCEPT(s, "\"0192F1A8-3C4D-7E5F-8A9B-0C1D2E3F4A5B\"");
	REFUSE(s, "\"0192f1a8-3c4d-7e5f-8a9b-0c1d2e3f4a5\"", "", "format");
	REFUSE(s, "\"0192f1a83c4d-7e5f-8a9b-0c1d2e3f4a5b0\"", "", "format");
	REFUSE(s, "\"g192f1a8-3c4d-7e5f-8a9b-0c1d2e3f4a5b\"", "", "format");
	talloc_free(ctx);
}

static void test_numbers_bounds_exact_for_int64(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(ctx, "{\"minimum\":1,\"maximum\":9007199254740993}");
	ACCEPT(s, "1");
	ACCEPT(s, "9007199254740993");
	REFUSE(s, "0", "", "minimum");
	REFUSE(s, "0.5", "", "minimum");
	/* beyond 2^53 a double would call these equal */
	REFUSE(s, "9007199254740994", "", "maximum");
	s = compile_ok(ctx, "{\"exclusiveMinimum\":0,\"exclusiveMaximum\":1.5}");
	ACCEPT(s, "1");
	REFUSE(s, "0", "", "exclusiveMinimum");
	REFUSE(s, "1.5", "", "exclusiveMaximum");
	talloc_free(ctx);
}

static void test_arrays(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(
	    ctx, "{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":\"object\","
	         "\"required\":[\"id\"]}}");
	ACCEPT(s, "[{\"id\":1}]");
	REFUSE(s, "[]", "", "minItems");
	REFUSE(s, "[{\"id\":1},{\"id\":1},{\"id\":1},{\"id\":1}]", "", "maxItems");
	REFUSE(s, "[{\"id\":1},{\"x\":1}]", "/1", "required");
	REFUSE(s, "[{\"id\":1},{\"id\":1},7]", "/2", "type");
	talloc_free(ctx);
}

static void test_compile_errors(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	static const char *const bad[] = {
	    "{\"typ\":\"string\"}",                          /* typo */
	    "{\"$ref\":\"#/x\"}",                            /* unsupported */
	    "{\"oneOf\":[true]}",                            /* unsupported */
	    "{\"type\":\"text\"}",                           /* unknown type */
	    "{\"type\":[]}",                                 /* empty */
	    "{\"format\":\"email\"}",                        /* unknown format */
	    "{\"pattern\":\"\\\\d+\"}",                      /* ECMA escape */
	    "{\"pattern\":\"[a-\"}",                         /* regcomp fails */
	    "{\"minLength\":-1}",                            /* negative */
	    "{\"minimum\":\"1\"}",                           /* not a number */
	    "{\"enum\":[]}",                                 /* empty enum */
	    "{\"properties\":{\"a\":{\"required\":\"a\"}}}", /* nested error */
	    "[1]",                                           /* not a schema */
	    "{\"type\":",                                    /* not JSON */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		gh_jsonschema_t *s = NULL;
		char why[256] = "";
		int rc = gh_jsonschema_compile(ctx, bad[i], strlen(bad[i]), &s, why, sizeof why);
		if (rc != -EINVAL)
			fail_msg("schema %s compiled", bad[i]);
		assert_true(why[0] != '\0');
	}
	char why[256];
	gh_jsonschema_t *s;
	const char *nested = "{\"properties\":{\"a\":{\"required\":\"a\"}}}";
	assert_int_equal(gh_jsonschema_compile(ctx, nested, strlen(nested), &s, why, sizeof why),
	                 -EINVAL);
	assert_non_null(strstr(why, "/properties/a"));
	/* annotations are fine */
	compile_ok(ctx, "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":"
	                "\"x\",\"title\":\"t\",\"description\":\"d\",\"$comment\":\"c\"}");
	talloc_free(ctx);
}

static void test_error_string(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(ctx, "{\"properties\":{\"data\":{\"required\":[\"t\"]}}}");
	gh_jsonschema_error_t e;
	assert_int_equal(check(s, "{\"data\":{}}", &e), -EINVAL);
	char buf[256];
	assert_string_equal(gh_jsonschema_error_str(&e, buf, sizeof buf),
	                    "/data: required: missing required property \"t\"");
	assert_int_equal(check(s, "{\"data\":{\"t\":1}}", NULL), 0);
	assert_int_equal(check(s, "{\"data\":7}", NULL), 0); /* required only binds objects */
	talloc_free(ctx);
}

typedef struct {
	const gh_jsonschema_t *s;
	json_t *good, *bad;
	int failures;
} thr_t;

static void *thr_main(void *arg)
{
	thr_t *t = arg;
	for (int i = 0; i < 20000; i++) {
		gh_jsonschema_error_t e;
		if (gh_jsonschema_validate(t->s, t->good, &e) != 0)
			t->failures++;
		if (gh_jsonschema_validate(t->s, t->bad, &e) != -EINVAL ||
		    strcmp(e.pointer, "/alpha") != 0)
			t->failures++;
	}
	return NULL;
}

static void test_concurrent_validation_shares_one_schema(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_jsonschema_t *s = compile_ok(
	    ctx, "{\"type\":\"object\",\"properties\":{\"alpha\":{\"type\":\"string\",\"pattern\":"
	         "\"^[A-Z]+$\"}}}");
	json_t *good = json_pack("{ss}", "alpha", "MYBANK");
	json_t *bad = json_pack("{ss}", "alpha", "mybank");
	thr_t t[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (thr_t){s, good, bad, 0};
		pthread_create(&th[i], NULL, thr_main, &t[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].failures, 0);
	}
	json_decref(good);
	json_decref(bad);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_type_and_integer_semantics),
	    cmocka_unit_test(test_object_keywords_and_pointers),
	    cmocka_unit_test(test_enum_and_const_use_json_equality),
	    cmocka_unit_test(test_strings_lengths_patterns_formats),
	    cmocka_unit_test(test_numbers_bounds_exact_for_int64),
	    cmocka_unit_test(test_arrays),
	    cmocka_unit_test(test_compile_errors),
	    cmocka_unit_test(test_error_string),
	    cmocka_unit_test(test_concurrent_validation_shares_one_schema),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
