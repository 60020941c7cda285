/* json: field tables, strict parsing, JSON pointers and the canonical form. */
#include <jansson.h>
#include <string.h>
#include <talloc.h>

#include "json.h"
#include "testutil.h"

static const gh_json_field_t money_fields[] = {
    {"amount_minor", GH_JSON_INTEGER, .required = 1},
    {"currency", GH_JSON_STRING, .required = 1},
    {NULL},
};

static const gh_json_field_t line_fields[] = {
    {"sku", GH_JSON_STRING, .required = 1},
    {"qty", GH_JSON_INTEGER},
    {NULL},
};

static const gh_json_field_t order_fields[] = {
    {"number", GH_JSON_STRING, .required = 1},
    {"price", GH_JSON_OBJECT, .fields = money_fields},
    {"labels", GH_JSON_OBJECT},
    {"tags", GH_JSON_ARRAY, .items = GH_JSON_STRING},
    {"lines", GH_JSON_ARRAY, .items = GH_JSON_OBJECT, .fields = line_fields},
    {"note", GH_JSON_STRING, .nullable = 1},
    {"ratio", GH_JSON_NUMBER},
    {"active", GH_JSON_BOOL},
    {"a/b~c", GH_JSON_INTEGER},
    {NULL},
};

/* Parse text, check it, and return the errno; err gets the details. */
static int check_text(const char *text, gh_err_t *err)
{
	json_t *j = NULL;
	int rc = gh_json_parse_body(text, strlen(text), &j, err);
	if (rc == 0)
		rc = gh_json_check(j, order_fields, "", err);
	json_decref(j);
	return rc;
}

static void test_valid_document_passes(void **state)
{
	gh_err_t err = {0};
	assert_int_equal(check_text("{\"number\":\"+93701234567\",\"price\":{\"amount_minor\":1250,"
	                            "\"currency\":\"AFN\"},\"labels\":{\"any\":1},\"tags\":[\"a\"],"
	                            "\"lines\":[{\"sku\":\"x\",\"qty\":2}],\"note\":null,"
	                            "\"ratio\":1,\"active\":true,\"a/b~c\":3}",
	                            &err),
	                 0);
	assert_int_equal(err.code, GH_OK);
}

static void expect(const char *text, gh_code_t code, const char *field, const char *msg_part)
{
	gh_err_t err = {0};
	assert_int_equal(check_text(text, &err), -EINVAL);
	assert_int_equal(err.code, code);
	assert_string_equal(err.field, field);
	if (msg_part && !strstr(err.message, msg_part))
		fail_msg("message '%s' lacks '%s'", err.message, msg_part);
	gh_err_clear(&err);
}

static void test_missing_required_field_is_named(void **state)
{
	expect("{}", GH_E_INVALID_ARGUMENT, "/number", "required");
	expect("{\"number\":\"1\",\"price\":{\"currency\":\"AFN\"}}", GH_E_INVALID_ARGUMENT,
	       "/price/amount_minor", "required");
}

static void test_wrong_type_is_named(void **state)
{
	expect("{\"number\":17}", GH_E_INVALID_ARGUMENT, "/number", "must be a string");
	/* 1.0 is not an integer: amounts must stay exact. */
	expect("{\"number\":\"1\",\"price\":{\"amount_minor\":1.0,\"currency\":\"AFN\"}}",
	       GH_E_INVALID_ARGUMENT, "/price/amount_minor", "integer");
	expect("{\"number\":\"1\",\"tags\":[\"a\",2]}", GH_E_INVALID_ARGUMENT, "/tags/1", NULL);
	expect("{\"number\":\"1\",\"lines\":[{\"sku\":\"a\"},{\"sku\":\"b\",\"qty\":\"2\"}]}",
	       GH_E_INVALID_ARGUMENT, "/lines/1/qty", NULL);
	expect("{\"number\":\"1\",\"active\":1}", GH_E_INVALID_ARGUMENT, "/active", "boolean");
	expect("{\"number\":\"1\",\"price\":[]}", GH_E_INVALID_ARGUMENT, "/price", "object");
	/* null only where nullable */
	expect("{\"number\":null}", GH_E_INVALID_ARGUMENT, "/number", NULL);
}

static void test_unknown_field_is_rejected(void **state)
{
	expect("{\"number\":\"1\",\"numbr\":\"1\"}", GH_E_INVALID_ARGUMENT, "/numbr", "unknown");
	expect("{\"number\":\"1\",\"price\":{\"amount_minor\":1,\"currency\":\"AFN\",\"x\":1}}",
	       GH_E_INVALID_ARGUMENT, "/price/x", "unknown");
	expect("{\"number\":\"1\",\"lines\":[{\"sku\":\"a\",\"q~ty\":1}]}", GH_E_INVALID_ARGUMENT,
	       "/lines/0/q~0ty", "unknown");
	expect("{\"number\":\"1\",\"a/b~c\":\"x\"}", GH_E_INVALID_ARGUMENT, "/a~1b~0c", NULL);
}

static void test_malformed_json_reports_position(void **state)
{
	expect("{\"number\": \"1\",\n \"x\": }", GH_E_MALFORMED_JSON, "", "line 2");
	expect("{\"number\":\"1\"} trailing", GH_E_MALFORMED_JSON, "", "byte");
	expect("", GH_E_MALFORMED_JSON, "", "empty");
	expect("{\"number\":\"1\",\"number\":\"2\"}", GH_E_MALFORMED_JSON, "", "duplicate");
	expect("{\"number\":\"\\u0000\"}", GH_E_MALFORMED_JSON, "", NULL);
	expect("{\"number\":\"1\",\"ratio\":99999999999999999999}", GH_E_MALFORMED_JSON, "", NULL);
	expect("{\"number\":\"\xff\"}", GH_E_MALFORMED_JSON, "", NULL);
}

static void test_non_object_root_only_when_asked(void **state)
{
	gh_err_t err = {0};
	json_t *j = NULL;
	assert_int_equal(gh_json_parse_body("[1]", 3, &j, &err), -EINVAL);
	assert_null(j);
	assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);
	assert_int_equal(gh_json_parse("[1]", 3, 0, &j, &err), 0);
	assert_true(json_is_array(j));
	json_decref(j);
	/* Parsing needs no NUL: only len bytes are read. */
	assert_int_equal(gh_json_parse("42xyz", 2, 0, &j, &err), 0);
	assert_int_equal(json_integer_value(j), 42);
	json_decref(j);
	gh_err_clear(&err);
}

static void test_pointer_escaping(void **state)
{
	char buf[16];
	assert_int_equal(gh_json_ptr_append(buf, sizeof(buf), "", "a~b/c"), 0);
	assert_string_equal(buf, "/a~0b~1c");
	assert_int_equal(gh_json_ptr_append(buf, sizeof(buf), "/x", ""), 0);
	assert_string_equal(buf, "/x/");
	assert_int_equal(gh_json_ptr_index(buf, sizeof(buf), "/lines", 12), 0);
	assert_string_equal(buf, "/lines/12");
	assert_int_equal(gh_json_ptr_append(buf, 8, "/abcdef", "gh"), -ENAMETOOLONG);
	assert_true(strlen(buf) < 8);
}

static void test_canonical_sorts_keys_and_keeps_int64(void **state)
{
	void *ctx = talloc_new(NULL);
	json_t *j = json_pack("{s:I, s:{s:s, s:b}, s:[i, s], s:s}", "z", (json_int_t)INT64_MAX, "a",
	                      "y", "ü/\"", "b", 1, "m", 1, "x", "k", "+9370");
	char *s = gh_json_canonical(j, ctx);
	assert_string_equal(s,
	                    "{\"a\":{\"b\":true,\"y\":\"ü/"
	                    "\\\"\"},\"k\":\"+9370\",\"m\":[1,\"x\"],\"z\":9223372036854775807}");
	assert_ptr_equal(talloc_parent(s), ctx);
	/* Insertion order does not matter. */
	json_t *k = json_pack("{s:s, s:[i, s], s:{s:b, s:s}, s:I}", "k", "+9370", "m", 1, "x", "a",
	                      "b", 1, "y", "ü/\"", "z", (json_int_t)INT64_MAX);
	assert_string_equal(gh_json_canonical(k, ctx), s);
	size_t len = 0;
	char *d = gh_json_dump(json_object_get(j, "m"), ctx, &len);
	assert_string_equal(d, "[1,\"x\"]");
	assert_int_equal(len, 7);
	json_decref(j);
	json_decref(k);
	talloc_free(ctx);
}

static void test_typed_getters(void **state)
{
	json_t *j =
	    json_pack("{s:s, s:I, s:f, s:b}", "s", "v", "i", (json_int_t)-5, "f", 2.5, "b", 1);
	assert_string_equal(gh_json_get_str(j, "s", "d"), "v");
	assert_string_equal(gh_json_get_str(j, "i", "d"), "d");
	assert_int_equal(gh_json_get_int(j, "i", 0), -5);
	assert_int_equal(gh_json_get_int(j, "f", 7), 7);
	assert_true(gh_json_get_num(j, "f", 0) == 2.5);
	assert_true(gh_json_get_num(j, "i", 0) == -5.0);
	assert_int_equal(gh_json_get_bool(j, "b", 0), 1);
	assert_int_equal(gh_json_get_bool(j, "missing", 0), 0);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_document_passes),
	    cmocka_unit_test(test_missing_required_field_is_named),
	    cmocka_unit_test(test_wrong_type_is_named),
	    cmocka_unit_test(test_unknown_field_is_rejected),
	    cmocka_unit_test(test_malformed_json_reports_position),
	    cmocka_unit_test(test_non_object_root_only_when_asked),
	    cmocka_unit_test(test_pointer_escaping),
	    cmocka_unit_test(test_canonical_sorts_keys_and_keeps_int64),
	    cmocka_unit_test(test_typed_getters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
