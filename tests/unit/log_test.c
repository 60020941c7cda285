/* log: JSON lines, levels, request id, masking. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

static json_t *capture(void (*emit)(void))
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	gh_log_set_fd(fds[1]);
	emit();
	gh_log_set_fd(2);
	close(fds[1]);
	char buf[8192];
	ssize_t n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	assert_true(buf[n - 1] == '\n');
	assert_null(strchr(buf, '\n') == buf + n - 1 ? NULL : "more than one line");
	json_error_t e;
	json_t *j = json_loads(buf, 0, &e);
	assert_non_null(j);
	return j;
}

static void emit_fields(void)
{
	gh_log_set_request_id("req-1");
	gh_log(GH_LOG_WARN, "quota \"low\"\n", "tenant_id", "t1", "missing", NULL, NULL);
	gh_log_set_request_id(NULL);
}

static void test_line_is_json_with_fields(void **state)
{
	gh_log_init("numbering", GH_LOG_INFO);
	json_t *j = capture(emit_fields);
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "service")), "numbering");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "quota \"low\"\n");
	assert_string_equal(json_string_value(json_object_get(j, "tenant_id")), "t1");
	assert_true(json_is_null(json_object_get(j, "missing")));
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
	const char *ts = json_string_value(json_object_get(j, "ts"));
	assert_int_equal(strlen(ts), 24);
	assert_int_equal(ts[23], 'Z');
	json_decref(j);
}

static void emit_debug(void) { gh_log(GH_LOG_DEBUG, "hidden", NULL); }

static void test_below_level_is_dropped(void **state)
{
	gh_log_init("t", GH_LOG_INFO);
	assert_null(capture(emit_debug));
}

static void emit_long(void)
{
	static char big[10000];
	memset(big, 'x', sizeof(big) - 1);
	gh_log(GH_LOG_ERROR, "big", "v", big, NULL);
}

static void test_long_line_truncated_still_json(void **state)
{
	json_t *j = capture(emit_long);
	assert_true(json_is_true(json_object_get(j, "truncated")));
	json_decref(j);
}

static void test_mask(void **state)
{
	char out[32];
	assert_string_equal(gh_log_mask("+93701234567", out, sizeof(out)), "+9370****567");
	assert_string_equal(gh_log_mask("12345", out, sizeof(out)), "***45");
	assert_string_equal(gh_log_mask("", out, sizeof(out)), "");
	assert_string_equal(gh_log_mask("+93701234567", out, 5), "+937");
}

static void test_level_parse(void **state)
{
	gh_log_level_t l;
	assert_int_equal(gh_log_level_parse("WARN", &l), 0);
	assert_int_equal(l, GH_LOG_WARN);
	assert_int_not_equal(gh_log_level_parse("loud", &l), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_line_is_json_with_fields),
	    cmocka_unit_test(test_below_level_is_dropped),
	    cmocka_unit_test(test_long_line_truncated_still_json),
	    cmocka_unit_test(test_mask),
	    cmocka_unit_test(test_level_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
