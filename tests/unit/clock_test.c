/* clock: test clock, RFC 3339 round trips; err: code table and envelope; uuid. */
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <talloc.h>

#include "clock.h"
#include "err.h"
#include "testutil.h"
#include "uuid.h"

static void test_test_clock_moves_only_when_told(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_clock_t *c = gh_clock_test_new(ctx, 1000);
	assert_int_equal(gh_clock_now_ms(c), 1000);
	gh_clock_test_advance(c, 250);
	assert_int_equal(gh_clock_now_ms(c), 1250);
	assert_int_equal(gh_clock_mono_ns(c), 1250 * 1000000LL);
	gh_clock_test_set(c, 5);
	assert_int_equal(gh_clock_now_ms(c), 5);
	talloc_free(ctx);
	assert_true(gh_clock_now_ms(gh_clock_real()) > 1700000000000LL);
}

static void test_rfc3339_roundtrip(void **state)
{
	char buf[25];
	int64_t ms;
	assert_int_equal(gh_time_parse("2026-11-22T06:00:00.123Z", &ms), 0);
	gh_time_format(ms, buf);
	assert_string_equal(buf, "2026-11-22T06:00:00.123Z");
	assert_int_equal(gh_time_parse("2026-11-22T10:30:00+04:30", &ms), 0);
	gh_time_format(ms, buf);
	assert_string_equal(buf, "2026-11-22T06:00:00.000Z");
	assert_int_equal(gh_time_parse("2024-02-29T00:00:00.123456789Z", &ms), 0);
	gh_time_format(ms, buf);
	assert_string_equal(buf, "2024-02-29T00:00:00.123Z");
	gh_time_format(-1, buf);
	assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

static void test_rfc3339_rejects(void **state)
{
	int64_t ms;
	const char *bad[] = {"",
	                     "2026-11-22",
	                     "2026-11-22T06:00:00",
	                     "2026-13-01T00:00:00Z",
	                     "2023-02-29T00:00:00Z",
	                     "2026-11-22T06:00:00.Z",
	                     "2026-11-22T06:00:00Zx",
	                     "2026-11-22 06:00:00Z",
	                     NULL};
	for (int i = 0; bad[i]; i++)
		assert_int_equal(gh_time_parse(bad[i], &ms), -EINVAL);
}

static void test_err_envelope(void **state)
{
	gh_err_t e = {0};
	int rc = gh_err_set(&e, GH_E_CONFLICT, NULL, "version %d is stale", 3);
	assert_int_equal(rc, -ESTALE);
	gh_err_detail(&e, "current_version", json_integer(4));
	assert_int_equal(gh_code_http_status(e.code), 409);
	json_t *env = gh_err_envelope(&e, "rid");
	json_t *err = json_object_get(env, "error");
	assert_string_equal(json_string_value(json_object_get(err, "code")), "CONFLICT");
	assert_string_equal(json_string_value(json_object_get(err, "message")),
	                    "version 3 is stale");
	assert_string_equal(json_string_value(json_object_get(err, "request_id")), "rid");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(err, "details"), "current_version")),
	    4);
	json_decref(env);
	gh_err_set(&e, GH_E_INVALID_ARGUMENT, "/number", "bad");
	env = gh_err_envelope(&e, NULL);
	err = json_object_get(env, "error");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(err, "details"), "field")),
	    "/number");
	assert_null(json_object_get(json_object_get(err, "details"), "current_version"));
	json_decref(env);
	gh_err_clear(&e);
	for (int c = 0; c < GH_E__COUNT; c++)
		assert_true(strlen(gh_code_name((gh_code_t)c)) > 1);
}

static void test_uuid(void **state)
{
	char a[37], b[37];
	gh_uuid_v4(a);
	gh_uuid_v4(b);
	assert_true(gh_uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '4');
	gh_uuid_v7(1700000000000LL, a);
	gh_uuid_v7(1700000000001LL, b);
	assert_int_equal(a[14], '7');
	assert_true(strcmp(a, b) < 0);
	assert_false(gh_uuid_valid("not-a-uuid"));
	/* parse is format's inverse, upper case accepted; bad text gives zeros */
	uint8_t bytes[16];
	char c[37];
	assert_int_equal(gh_uuid_parse(a, bytes), 0);
	gh_uuid_format(bytes, c);
	assert_string_equal(a, c);
	assert_int_equal(gh_uuid_parse("0189ABCD-ef01-7234-8567-89abcdef0123", bytes), 0);
	assert_int_equal(bytes[0], 0x01);
	assert_int_equal(bytes[2], 0xab);
	assert_int_equal(bytes[15], 0x23);
	assert_int_equal(gh_uuid_parse("0189abcd-ef01-7234-8567-89abcdef012g", bytes), -EINVAL);
	assert_true(gh_uuid_is_nil(bytes));
	assert_int_equal(gh_uuid_parse(NULL, bytes), -EINVAL);
}

/* The per-thread generator: same layout as gh_uuid_v7 (timestamp prefix, version, variant),
 * and a run of ids within one millisecond has no repeat. */
static void test_uuid_v7_fast(void **state)
{
	char ref[37], ids[256][37];
	gh_uuid_v7(1700000000000LL, ref);
	for (int i = 0; i < 256; i++) {
		gh_uuid_v7_fast(1700000000000LL, ids[i]);
		assert_true(gh_uuid_valid(ids[i]));
		assert_memory_equal(ids[i], ref, 13); /* 48-bit timestamp: "xxxxxxxx-xxxx" */
		assert_int_equal(ids[i][14], '7');
		assert_non_null(strchr("89ab", ids[i][19]));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(ids[i], ids[j]);
	}
	gh_uuid_v7_fast(1700000000001LL, ref);
	assert_true(strcmp(ids[0], ref) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_test_clock_moves_only_when_told),
	    cmocka_unit_test(test_rfc3339_roundtrip),
	    cmocka_unit_test(test_rfc3339_rejects),
	    cmocka_unit_test(test_err_envelope),
	    cmocka_unit_test(test_uuid),
	    cmocka_unit_test(test_uuid_v7_fast),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
