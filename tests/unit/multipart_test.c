/* multipart: the boundary of a Content-Type, a form with fields and a file, preamble and
 * epilogue, a first delimiter without CRLF, empty parts, content that almost contains the
 * delimiter, every chunk split point and random chunkings giving the same transcript, zero-copy
 * DATA for a one-buffer body, each strict error with its code, the limits, and the whole-form
 * helper. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "multipart.h"
#include "testutil.h"

#define B "XyZ-b0undary"

/* ---- transcript ---------------------------------------------------------------------- */

typedef struct {
	char *text;
	int rc; /* 0 complete, -EINVAL error */
	gh_mp_code_t code;
	size_t data_events;
} tr_t;

static void tr_bytes(tr_t *t, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			t->text = talloc_asprintf_append(t->text, "%c", c);
		else
			t->text = talloc_asprintf_append(t->text, "\\x%02x", c);
	}
}

/* Parse in chunks of the sizes cuts[] (repeated; 0 = rest) and record a transcript where
 * consecutive DATA events are merged (their split depends on the chunking). */
static tr_t run(void *ctx, const char *in, size_t len, const size_t *cuts, size_t ncuts,
                const gh_mp_opts_t *o)
{
	tr_t t = {.text = talloc_strdup(ctx, "")};
	gh_mp_t *p = gh_mp_new(ctx, B, o);
	assert_non_null(p);
	size_t off = 0, ci = 0;
	bool in_data = false;
	gh_mp_event_t ev;
	for (;;) {
		size_t n = len - off;
		if (ncuts && cuts[ci % ncuts] && cuts[ci % ncuts] < n)
			n = cuts[ci % ncuts];
		ci++;
		const char *pos = in + off, *end = in + off + n;
		int rc;
		while ((rc = gh_mp_parse(p, &pos, end, &ev)) == 0) {
			if (ev.type != GH_MP_EV_DATA && in_data) {
				t.text = talloc_asprintf_append(t.text, "]\n");
				in_data = false;
			}
			switch (ev.type) {
			case GH_MP_EV_PART:
				t.text = talloc_asprintf_append(
				    t.text, "PART %zu name=%s file=%s type=%s\n", ev.part->index,
				    ev.part->name, ev.part->filename ? ev.part->filename : "-",
				    ev.part->content_type ? ev.part->content_type : "-");
				break;
			case GH_MP_EV_DATA:
				assert_true(ev.len > 0);
				if (!in_data)
					t.text = talloc_asprintf_append(t.text, "DATA [");
				in_data = true;
				tr_bytes(&t, ev.data, ev.len);
				t.data_events++;
				break;
			case GH_MP_EV_PART_END:
				t.text =
				    talloc_asprintf_append(t.text, "END %zu\n", ev.part->index);
				break;
			case GH_MP_EV_END:
				t.text = talloc_asprintf_append(t.text, "FORM END\n");
				break;
			}
		}
		if (rc == -EINVAL) {
			t.rc = rc;
			t.code = gh_mp_last_error(p)->code;
			assert_int_equal(gh_mp_parse(p, &pos, end, &ev), -EINVAL);
			return t;
		}
		assert_int_equal(rc, -EAGAIN);
		assert_ptr_equal(pos, end);
		off += n;
		if (off == len)
			break;
	}
	t.rc = gh_mp_finish(p);
	if (t.rc < 0)
		t.code = gh_mp_last_error(p)->code;
	else
		assert_int_equal(gh_mp_offset(p), len);
	return t;
}

static const char form[] =
    "preamble to ignore\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"operator_id\"\r\n"
    "\r\n"
    "roshan\r\n"
    "--" B "  \t\r\n"
    "content-disposition: FORM-DATA; name=file; filename=\"a \\\"b\\\".csv\"\r\n"
    "Content-Type: text/csv\r\n"
    "X-Ignored: yes\r\n"
    "\r\n"
    "msisdn\r\n+93701234567\r\n\r\n--XyZ-b0undarY\r\n\n--" B "\r-" B "\r\n"
    "--" B "\r\n"
    "Content-Disposition: form-data; name=\"empty\"\r\n"
    "\r\n"
    "\r\n"
    "--" B "--\r\n"
    "epilogue --" B "\r\n garbage";

static const char form_tr[] =
    "PART 1 name=operator_id file=- type=-\n"
    "DATA [roshan]\n"
    "END 1\n"
    "PART 2 name=file file=a \"b\".csv type=text/csv\n"
    "DATA [msisdn\\x0d\\x0a+93701234567\\x0d\\x0a\\x0d\\x0a--XyZ-b0undarY\\x0d\\x0a\\x0a--" B
    "\\x0d-" B "]\n"
    "END 2\n"
    "PART 3 name=empty file=- type=-\n"
    "END 3\n"
    "FORM END\n";

static void test_boundary_from_content_type(void **state)
{
	(void)state;
	char b[GH_MP_BOUNDARY_MAX + 1];
	assert_int_equal(gh_mp_boundary("multipart/form-data; boundary=abc", b), 0);
	assert_string_equal(b, "abc");
	assert_int_equal(gh_mp_boundary("Multipart/Form-Data;charset=utf-8;BOUNDARY=\"a b:c\"", b),
	                 0);
	assert_string_equal(b, "a b:c");
	const char *bad[] = {
	    NULL,
	    "",
	    "multipart/mixed; boundary=abc",
	    "multipart/form-data",
	    "multipart/form-data; boundary=",
	    "multipart/form-data; boundary=\"\"",
	    "multipart/form-data; boundary=\"ends in space \"",
	    "multipart/form-data; boundary=\"bad<char\"",
	    "multipart/form-data; boundary=a; boundary=b",
	    "multipart/form-data; boundary=abc junk",
	    "multipart/form-data; boundary=12345678901234567890123456789012345678901234567890"
	    "123456789012345678901",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(gh_mp_boundary(bad[i], b), -EINVAL);
	char seventy[80];
	memset(seventy, 'a', 70);
	seventy[70] = '\0';
	char ct[128];
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", seventy);
	assert_int_equal(gh_mp_boundary(ct, b), 0);
	assert_string_equal(b, seventy);
	assert_null(gh_mp_new(NULL, "", NULL));
}

static void test_form_one_buffer_is_zero_copy(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	tr_t t = run(ctx, form, sizeof form - 1, NULL, 0, NULL);
	assert_int_equal(t.rc, 0);
	assert_string_equal(t.text, form_tr);
	assert_int_equal(t.data_events, 2); /* one per non-empty part */

	/* DATA of a one-buffer body points into it */
	gh_mp_t *p = gh_mp_new(ctx, B, NULL);
	const char *pos = form, *end = form + sizeof form - 1;
	gh_mp_event_t ev;
	int rc, seen = 0;
	while ((rc = gh_mp_parse(p, &pos, end, &ev)) == 0)
		if (ev.type == GH_MP_EV_DATA) {
			assert_true(ev.data >= form && ev.data + ev.len <= end);
			seen++;
		}
	assert_int_equal(rc, -EAGAIN);
	assert_int_equal(seen, 2);
	assert_int_equal(gh_mp_finish(p), 0);
	talloc_free(ctx);
}

static void test_every_split_and_random_chunks_agree(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	size_t len = sizeof form - 1;
	for (size_t cut = 1; cut < len; cut++) {
		size_t cuts[2] = {cut, 0};
		tr_t t = run(ctx, form, len, cuts, 2, NULL);
		assert_int_equal(t.rc, 0);
		assert_string_equal(t.text, form_tr);
	}
	size_t one = 1;
	tr_t t1 = run(ctx, form, len, &one, 1, NULL);
	assert_string_equal(t1.text, form_tr);
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	for (int r = 0; r < 300; r++) {
		size_t cuts[16];
		for (int i = 0; i < 16; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			cuts[i] = 1 + x % 90;
		}
		tr_t t = run(ctx, form, len, cuts, 16, NULL);
		assert_string_equal(t.text, form_tr);
	}
	talloc_free(ctx);
}

static void test_first_delimiter_at_offset_zero_and_binary_content(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	/* body starts with the delimiter (no preamble); content with NUL, CRs and "\r\n--" */
	static const char in[] = "--" B "\r\n"
	                         "Content-Disposition: form-data; name=sig\r\n"
	                         "Content-Transfer-Encoding: binary\r\n\r\n"
	                         "\x00\r\r\n-\r\n--\r\n-" B "\r\r\n\x01"
	                         "\r\n--" B "--";
	tr_t t = run(ctx, in, sizeof in - 1, NULL, 0, NULL);
	assert_int_equal(t.rc, 0);
	assert_string_equal(t.text, "PART 1 name=sig file=- type=-\n"
	                            "DATA [\\x00\\x0d\\x0d\\x0a-\\x0d\\x0a--\\x0d\\x0a-" B
	                            "\\x0d\\x0d\\x0a\\x01]\n"
	                            "END 1\n"
	                            "FORM END\n");
	talloc_free(ctx);
}

static void test_an_empty_form_and_a_form_without_parts_end(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	static const char empty[] = "--" B "--";
	tr_t t = run(ctx, empty, sizeof empty - 1, NULL, 0, NULL);
	assert_int_equal(t.rc, 0);
	assert_string_equal(t.text, "FORM END\n");
	talloc_free(ctx);
}

typedef struct {
	const char *in;
	gh_mp_code_t code;
} bad_t;

static void test_strict_errors(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	const bad_t bad[] = {
	    {"", GH_MP_E_TRUNCATED},
	    {"no delimiter at all", GH_MP_E_TRUNCATED},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\nabc", GH_MP_E_TRUNCATED},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\nabc\r\n--" B,
	     GH_MP_E_TRUNCATED},
	    {"--" B "x\r\n", GH_MP_E_DELIMITER},
	    {"--" B "-x", GH_MP_E_DELIMITER},
	    {"--" B "\rx", GH_MP_E_DELIMITER},
	    {"--" B " x\r\n", GH_MP_E_DELIMITER},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--" B "zz\r\n",
	     GH_MP_E_DELIMITER},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\n\n", GH_MP_E_HEADER_SYNTAX},
	    {"--" B "\r\nno colon here\r\n\r\n", GH_MP_E_HEADER_SYNTAX},
	    {"--" B "\r\n: empty name\r\n\r\n", GH_MP_E_HEADER_SYNTAX},
	    {"--" B "\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nBad Name: x\r\n\r\n", GH_MP_E_HEADER_SYNTAX},
	    {"--" B "\r\nX: a\rb\r\n\r\n", GH_MP_E_HEADER_SYNTAX},
	    {"--" B "\r\n\r\ndata\r\n--" B "--", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: attachment; name=a\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=\"\"\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n",
	     GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=a; filename*=UTF-8''x\r\n\r\n",
	     GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=\"a\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=a junk\r\n\r\n", GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\n"
	     "Content-Disposition: form-data; name=b\r\n\r\n",
	     GH_MP_E_DISPOSITION},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\nContent-Type: a\r\n"
	     "Content-Type: b\r\n\r\n",
	     GH_MP_E_CONTENT_TYPE},
	    {"--" B "\r\nContent-Disposition: form-data; name=a\r\n"
	     "Content-Transfer-Encoding: base64\r\n\r\n",
	     GH_MP_E_ENCODING},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		tr_t t = run(ctx, bad[i].in, strlen(bad[i].in), NULL, 0, NULL);
		if (t.rc != -EINVAL || t.code != bad[i].code)
			fail_msg("case %zu: rc %d code %s, want %s", i, t.rc,
			         gh_mp_code_name(t.code), gh_mp_code_name(bad[i].code));
		size_t one = 1; /* the same verdict byte by byte */
		t = run(ctx, bad[i].in, strlen(bad[i].in), &one, 1, NULL);
		assert_int_equal(t.code, bad[i].code);
	}
	talloc_free(ctx);
}

static void test_limits(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_mp_opts_t o = {.max_parts = 2, .max_header_bytes = 64};
	char *in =
	    talloc_asprintf(ctx, "--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\n"
	                         "\r\n--" B "\r\nContent-Disposition: form-data; name=b\r\n\r\n"
	                         "\r\n--" B "--");
	tr_t t = run(ctx, in, strlen(in), NULL, 0, &o);
	assert_int_equal(t.rc, 0);
	in = talloc_asprintf(ctx, "--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\n"
	                          "\r\n--" B "\r\nContent-Disposition: form-data; name=b\r\n\r\n"
	                          "\r\n--" B "\r\nContent-Disposition: form-data; name=c\r\n\r\n"
	                          "\r\n--" B "--");
	t = run(ctx, in, strlen(in), NULL, 0, &o);
	assert_int_equal(t.code, GH_MP_E_TOO_MANY_PARTS);
	in = talloc_asprintf(ctx,
	                     "--" B "\r\nContent-Disposition: form-data; name=a\r\n"
	                     "X-Long: %060d\r\n\r\n\r\n--" B "--",
	                     0);
	t = run(ctx, in, strlen(in), NULL, 0, &o);
	assert_int_equal(t.code, GH_MP_E_HEADER_TOO_LONG);
	size_t one = 1;
	t = run(ctx, in, strlen(in), &one, 1, &o);
	assert_int_equal(t.code, GH_MP_E_HEADER_TOO_LONG);
	talloc_free(ctx);
}

static void test_form_parse_helper(void **state)
{
	(void)state;
	void *ctx = talloc_new(NULL);
	gh_mp_field_t *f;
	size_t n;
	gh_mp_error_t e;
	const char *ct = "multipart/form-data; boundary=" B;
	assert_int_equal(gh_mp_form_parse(ctx, ct, form, sizeof form - 1, NULL, 0, &f, &n, &e), 0);
	assert_int_equal(n, 3);
	const gh_mp_field_t *file = gh_mp_form_get(f, n, "file");
	assert_non_null(file);
	assert_string_equal(file->filename, "a \"b\".csv");
	assert_string_equal(file->content_type, "text/csv");
	assert_true(file->data > form && file->data < form + sizeof form); /* not copied */
	assert_int_equal(file->len,
	                 strlen("msisdn\r\n+93701234567\r\n\r\n--XyZ-b0undarY\r\n\n--" B "\r-" B));
	const gh_mp_field_t *op = gh_mp_form_get(f, n, "operator_id");
	assert_int_equal(op->len, 6);
	assert_memory_equal(op->data, "roshan", 6);
	assert_int_equal(gh_mp_form_get(f, n, "empty")->len, 0);
	assert_null(gh_mp_form_get(f, n, "nope"));

	/* limits and errors of the helper */
	assert_int_equal(gh_mp_form_parse(ctx, ct, form, sizeof form - 1, NULL, 10, &f, &n, &e),
	                 -EINVAL);
	assert_int_equal(e.code, GH_MP_E_PART_TOO_LONG);
	assert_int_equal(e.part, 2);
	static const char dup[] = "--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\n1"
	                          "\r\n--" B "\r\nContent-Disposition: form-data; name=a\r\n\r\n2"
	                          "\r\n--" B "--";
	assert_int_equal(gh_mp_form_parse(ctx, ct, dup, sizeof dup - 1, NULL, 0, &f, &n, &e),
	                 -EINVAL);
	assert_int_equal(e.code, GH_MP_E_DUPLICATE_NAME);
	assert_int_equal(
	    gh_mp_form_parse(ctx, "application/json", dup, sizeof dup - 1, NULL, 0, &f, &n, &e),
	    -EINVAL);
	assert_int_equal(e.code, GH_MP_E_BOUNDARY);
	assert_int_equal(gh_mp_form_parse(ctx, ct, dup, 20, NULL, 0, &f, &n, &e), -EINVAL);
	assert_int_equal(e.code, GH_MP_E_TRUNCATED);

	gh_err_t err = {0};
	assert_int_equal(gh_mp_error_to_err(&e, &err), -EINVAL);
	assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);
	assert_string_equal(json_string_value(json_object_get(err.details, "multipart_code")),
	                    "TRUNCATED");
	gh_err_clear(&err);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_boundary_from_content_type),
	    cmocka_unit_test(test_form_one_buffer_is_zero_copy),
	    cmocka_unit_test(test_every_split_and_random_chunks_agree),
	    cmocka_unit_test(test_first_delimiter_at_offset_zero_and_binary_content),
	    cmocka_unit_test(test_an_empty_form_and_a_form_without_parts_end),
	    cmocka_unit_test(test_strict_errors),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_form_parse_helper),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
