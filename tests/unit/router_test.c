/* router: literals, parameters, :verb custom methods, 404 vs 405, precedence. */
#include <string.h>
#include <talloc.h>

#include "router.h"
#include "testutil.h"

static int T_LIST, T_GET, T_PATCH, T_RESERVE, T_RELEASE, T_BATCH, T_SUB, T_LIT, T_ROOT, T_ANY;

static gh_router_t *build(void *ctx)
{
	gh_router_t *r = gh_router_new(ctx);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/v1/numbering/numbers", &T_LIST), 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/v1/numbering/numbers/{id}", &T_GET), 0);
	assert_int_equal(
	    gh_router_add(r, GH_HTTP_PATCH, "/v1/numbering/numbers/{number}", &T_PATCH), 0);
	assert_int_equal(
	    gh_router_add(r, GH_HTTP_POST, "/v1/numbering/numbers/{id}:reserve", &T_RESERVE), 0);
	assert_int_equal(
	    gh_router_add(r, GH_HTTP_POST, "/v1/numbering/numbers/{id}:release", &T_RELEASE), 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_POST, "/v1/numbering/numbers:batchGet", &T_BATCH),
	                 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/v1/cdr/days/{day}/files/{file}", &T_SUB),
	                 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/v1/cdr/days/today/summary", &T_LIT), 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/", &T_ROOT), 0);
	assert_int_equal(gh_router_add(r, GH_HTTP_DELETE, "/v1/x/{a}/{b}/{c}", &T_ANY), 0);
	return r;
}

static int match(gh_router_t *r, gh_method_t m, const char *path, gh_route_match_t *out)
{
	return gh_router_match(r, m, path, strlen(path), out);
}

static void assert_param(const gh_route_match_t *m, unsigned i, const char *name, const char *value)
{
	assert_true(i < m->nparams);
	assert_string_equal(m->params[i].name, name);
	assert_int_equal(m->params[i].len, strlen(value));
	assert_memory_equal(m->params[i].value, value, strlen(value));
}

static void test_literal_and_parameter_routes(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_router_t *r = build(ctx);
	gh_route_match_t m;
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers", &m), 0);
	assert_ptr_equal(m.target, &T_LIST);
	assert_int_equal(m.nparams, 0);
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers/%2B93701234567", &m), 0);
	assert_ptr_equal(m.target, &T_GET);
	assert_string_equal(m.pattern, "/v1/numbering/numbers/{id}");
	assert_param(&m, 0, "id", "%2B93701234567");
	/* Same shape, another method: its own parameter name. */
	assert_int_equal(match(r, GH_HTTP_PATCH, "/v1/numbering/numbers/42", &m), 0);
	assert_ptr_equal(m.target, &T_PATCH);
	assert_param(&m, 0, "number", "42");
	assert_int_equal(match(r, GH_HTTP_GET, "/", &m), 0);
	assert_ptr_equal(m.target, &T_ROOT);
	assert_int_equal(match(r, GH_HTTP_DELETE, "/v1/x/1/22/333", &m), 0);
	assert_int_equal(m.nparams, 3);
	assert_param(&m, 0, "a", "1");
	assert_param(&m, 1, "b", "22");
	assert_param(&m, 2, "c", "333");
	talloc_free(ctx);
}

static void test_custom_verbs(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_router_t *r = build(ctx);
	gh_route_match_t m;
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/numbering/numbers/937001:reserve", &m), 0);
	assert_ptr_equal(m.target, &T_RESERVE);
	assert_param(&m, 0, "id", "937001");
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/numbering/numbers/937001:release", &m), 0);
	assert_ptr_equal(m.target, &T_RELEASE);
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/numbering/numbers:batchGet", &m), 0);
	assert_ptr_equal(m.target, &T_BATCH);
	/* An unknown verb is no resource, not the {id} route with id "937001:explode". */
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/numbering/numbers/937001:explode", &m),
	                 -ENOENT);
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers/937001:explode", &m),
	                 -ENOENT);
	/* An empty id before the verb does not match. */
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/numbering/numbers/:reserve", &m), -ENOENT);
	/* A verb route does not take GET: 405 with Allow POST. */
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers/1:reserve", &m), -EOPNOTSUPP);
	assert_int_equal(m.allow, 1u << GH_HTTP_POST);
	talloc_free(ctx);
}

static void test_not_found_vs_method_not_allowed(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_router_t *r = build(ctx);
	gh_route_match_t m;
	char allow[64];
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/nothing", &m), -ENOENT);
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers/", &m), -ENOENT);
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering//numbers", &m), -ENOENT);
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/numbering/numbers/1/2", &m), -ENOENT);
	assert_int_equal(match(r, GH_HTTP_GET, "", &m), -ENOENT);
	assert_int_equal(match(r, GH_HTTP_DELETE, "/v1/numbering/numbers/7", &m), -EOPNOTSUPP);
	assert_string_equal(gh_router_allow_str(m.allow, allow, sizeof(allow)), "GET, HEAD, PATCH");
	assert_int_equal(match(r, GH_HTTP_UNKNOWN, "/v1/numbering/numbers", &m), -EOPNOTSUPP);
	assert_string_equal(gh_router_allow_str(m.allow, allow, sizeof(allow)), "GET, HEAD");
	/* HEAD falls back to GET. */
	assert_int_equal(match(r, GH_HTTP_HEAD, "/v1/numbering/numbers", &m), 0);
	assert_ptr_equal(m.target, &T_LIST);
	talloc_free(ctx);
}

static void test_literal_beats_parameter_with_backtracking(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_router_t *r = build(ctx);
	gh_route_match_t m;
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/cdr/days/today/summary", &m), 0);
	assert_ptr_equal(m.target, &T_LIT);
	assert_int_equal(m.nparams, 0);
	/* "today" takes the literal branch first, which has no "files": back off to {day}. */
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/cdr/days/today/files/f1", &m), 0);
	assert_ptr_equal(m.target, &T_SUB);
	assert_param(&m, 0, "day", "today");
	assert_param(&m, 1, "file", "f1");
	/* Allow collects every matching shape. */
	assert_int_equal(match(r, GH_HTTP_POST, "/v1/cdr/days/today/summary", &m), -EOPNOTSUPP);
	talloc_free(ctx);
}

static void test_bad_patterns_and_duplicates(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_router_t *r = build(ctx);
	static const char *bad[] = {
	    "",          "v1/x",     "/v1//x",    "/v1/x/",      "/v1/{}",
	    "/v1/{a",    "/v1/{a}b", "/v1/{a}:",  "/v1/{a}:r/x", "/v1/a{b}",
	    "/v1/\"q\"", "/v1/x?y",  "/v1/{a b}", "/v1/{a}:r r", "/v1/x y",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gh_router_add(r, GH_HTTP_GET, bad[i], &T_ANY) != -EINVAL)
			fail_msg("pattern '%s' accepted", bad[i]);
	assert_int_equal(gh_router_add(r, GH_HTTP_GET, "/v1/numbering/numbers/{other}", &T_ANY),
	                 -EEXIST);
	assert_int_equal(gh_router_add(r, GH_HTTP__METHODS, "/v1/y", &T_ANY), -EINVAL);
	assert_int_equal(
	    gh_router_add(r, GH_HTTP_GET, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", &T_ANY), -EINVAL);
	/* A rejected pattern left nothing behind. */
	gh_route_match_t m;
	assert_int_equal(match(r, GH_HTTP_GET, "/v1/x", &m), -ENOENT);
	talloc_free(ctx);
}

static void test_method_names(void **state)
{
	assert_int_equal(gh_method_parse("PATCH"), GH_HTTP_PATCH);
	assert_int_equal(gh_method_parse("patch"), GH_HTTP_UNKNOWN);
	assert_int_equal(gh_method_parse("BREW"), GH_HTTP_UNKNOWN);
	assert_int_equal(gh_method_parse(NULL), GH_HTTP_UNKNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_literal_and_parameter_routes),
	    cmocka_unit_test(test_custom_verbs),
	    cmocka_unit_test(test_not_found_vs_method_not_allowed),
	    cmocka_unit_test(test_literal_beats_parameter_with_backtracking),
	    cmocka_unit_test(test_bad_patterns_and_duplicates),
	    cmocka_unit_test(test_method_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
