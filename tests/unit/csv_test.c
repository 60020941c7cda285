/* csv: the RFC 4180 cases (quotes, "" escapes, CRLF/LF/CR, last record without a line end,
 * embedded line ends and the line numbers around them, BOM), strict errors with their codes and
 * positions and the recovery after them, chunk boundaries at every byte position and random
 * chunkings giving the same records, limits and bounded memory, header mapping of the numbering
 * import, the injection rule, and the writer (exact bytes, policies, round trip). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>

#include "csv.h"
#include "testutil.h"

/* ---- transcript: records and errors as text, so that parses can be compared ------------- */

typedef struct {
	char *text; /* talloc string */
	size_t records, errors;
} transcript_t;

static void tr_bytes(transcript_t *t, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '|')
			t->text = talloc_asprintf_append(t->text, "%c", c);
		else
			t->text = talloc_asprintf_append(t->text, "\\x%02x", c);
	}
}

static void tr_record(transcript_t *t, const gh_csv_record_t *r)
{
	t->text = talloc_asprintf_append(t->text, "%llu:", (unsigned long long)r->line);
	for (size_t i = 0; i < r->nfields; i++) {
		assert_int_equal(r->fields[i][r->lens[i]], '\0');
		t->text = talloc_asprintf_append(t->text, "|");
		tr_bytes(t, r->fields[i], r->lens[i]);
	}
	t->text = talloc_asprintf_append(t->text, "\n");
	t->records++;
}

static void tr_error(transcript_t *t, const gh_csv_error_t *e)
{
	t->text =
	    talloc_asprintf_append(t->text, "E %s %llu@%llu:%llu f%zu\n", gh_csv_code_name(e->code),
	                           (unsigned long long)e->line, (unsigned long long)e->at_line,
	                           (unsigned long long)e->column, e->field);
	t->errors++;
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Parse in[0..len) through the pull API in chunks: chunk 0 = all at once, -1 = random sizes
 * 1..17, n > 0 = n bytes at a time, or a split at *split when split is non-NULL. */
static transcript_t parse_chunked(void *ctx, const gh_csv_opts_t *o, const char *in, size_t len,
                                  long chunk, const size_t *split)
{
	transcript_t t = {.text = talloc_strdup(ctx, "")};
	gh_csv_t *p = gh_csv_new(ctx, o);
	assert_non_null(p);
	size_t off = 0;
	while (off < len) {
		size_t n = len - off;
		if (split)
			n = off < *split ? *split - off : len - off;
		else if (chunk > 0 && (size_t)chunk < n)
			n = (size_t)chunk;
		else if (chunk < 0 && n > 1)
			n = 1 + rnd() % (n < 17 ? n : 17);
		/* a private copy of each chunk, so that reading outside it is an ASan error */
		char *c = talloc_memdup(ctx, in + off, n);
		const char *pos = c, *end = c + n;
		gh_csv_record_t r;
		int rc;
		while ((rc = gh_csv_parse(p, &pos, end, &r)) != -EAGAIN) {
			if (rc == 0)
				tr_record(&t, &r);
			else if (rc == -EINVAL)
				tr_error(&t, gh_csv_last_error(p));
			else
				fail_msg("gh_csv_parse: %d", rc);
		}
		assert_ptr_equal(pos, end);
		talloc_free(c);
		off += n;
	}
	gh_csv_record_t r;
	int rc;
	while ((rc = gh_csv_finish(p, &r)) != -ENODATA) {
		if (rc == 0)
			tr_record(&t, &r);
		else if (rc == -EINVAL)
			tr_error(&t, gh_csv_last_error(p));
		else
			fail_msg("gh_csv_finish: %d", rc);
	}
	assert_int_equal(gh_csv_offset(p), len);
	talloc_free(p);
	return t;
}

static transcript_t parse(void *ctx, const gh_csv_opts_t *o, const char *in)
{
	return parse_chunked(ctx, o, in, strlen(in), 0, NULL);
}

static void assert_parses(const gh_csv_opts_t *o, const char *in, const char *want)
{
	void *ctx = talloc_new(NULL);
	transcript_t t = parse(ctx, o, in);
	assert_string_equal(t.text, want);
	/* the same byte by byte */
	transcript_t b = parse_chunked(ctx, o, in, strlen(in), 1, NULL);
	assert_string_equal(b.text, want);
	talloc_free(ctx);
}

/* ---- RFC 4180 cases -------------------------------------------------------------------- */

static void test_simple_records_lf_crlf_and_last_without_newline(void **state)
{
	assert_parses(NULL, "a,b,c\n1,2,3\n", "1:|a|b|c\n2:|1|2|3\n");
	assert_parses(NULL, "a,b,c\r\n1,2,3\r\n", "1:|a|b|c\n2:|1|2|3\n");
	assert_parses(NULL, "a,b\r\n1,2", "1:|a|b\n2:|1|2\n");
	assert_parses(NULL, "x", "1:|x\n");
	assert_parses(NULL, "", "");
	assert_parses(NULL, ",,\n,\n", "1:|||\n2:||\n");
	assert_parses(NULL, "a,\n", "1:|a|\n");
	assert_parses(NULL, "a,", "1:|a|\n");
	/* spaces are data, not trimmed */
	assert_parses(NULL, " a , b \n", "1:| a | b \n");
}

static void test_lone_cr_ends_a_record(void **state)
{
	assert_parses(NULL, "a\rb\r\nc\n", "1:|a\n2:|b\n3:|c\n");
	assert_parses(NULL, "a\r", "1:|a\n");
}

static void test_quoted_fields_and_escapes(void **state)
{
	assert_parses(NULL, "\"a,b\",\"say \"\"hi\"\"\",\"\"\n", "1:|a,b|say \"hi\"|\n");
	assert_parses(NULL, "\"\"\"\"", "1:|\"\n");
	assert_parses(NULL, "\"x\"", "1:|x\n");
	assert_parses(NULL, "\"x\",", "1:|x|\n");
	assert_parses(NULL, "a,\"\"\r\n", "1:|a|\n");
}

static void test_embedded_newlines_keep_line_numbers(void **state)
{
	/* a record reports the line where it starts; CRLF inside quotes is one line */
	assert_parses(NULL, "h1,h2\r\n\"two\r\nlines\",x\r\nnext,y\r\n\"a\nb\nc\",z\nlast,w",
	              "1:|h1|h2\n2:|two\\x0d\\x0alines|x\n4:|next|y\n5:|a\\x0ab\\x0ac|z\n"
	              "8:|last|w\n");
	assert_parses(NULL, "\"\r\r\",a\nb\n", "1:|\\x0d\\x0d|a\n4:|b\n");
}

static void test_empty_lines(void **state)
{
	assert_parses(NULL, "\n\r\na\n\n\nb\r\n\r\n", "3:|a\n6:|b\n");
	gh_csv_opts_t keep = {.flags = GH_CSV_KEEP_EMPTY};
	assert_parses(&keep, "a\n\nb\r\n\r\nc\r\r", "1:|a\n2:|\n3:|b\n4:|\n5:|c\n6:|\n");
}

static void test_bom_skipped_only_at_start(void **state)
{
	assert_parses(NULL, "\xEF\xBB\xBFmsisdn,notes\n1,2\n", "1:|msisdn|notes\n2:|1|2\n");
	assert_parses(NULL, "\xEF\xBB\xBF", "");
	/* a BOM later is data; an incomplete one at the start is data too */
	assert_parses(NULL, "a\n\xEF\xBB\xBF\n", "1:|a\n2:|\\xef\\xbb\\xbf\n");
	assert_parses(NULL, "\xEF\xBBx,y\n", "1:|\\xef\\xbbx|y\n");
	assert_parses(NULL, "\xEF\xBB", "1:|\\xef\\xbb\n");
	assert_parses(NULL, "\xEF\n", "1:|\\xef\n");
	/* after the BOM, column 1 is the first character */
	assert_parses(NULL,
	              "\xEF\xBB\xBF"
	              "a\"b\n",
	              "E BARE_QUOTE 1@1:2 f1\n");
}

static void test_bare_quote_is_an_error_and_parsing_goes_on(void **state)
{
	assert_parses(NULL, "a,b\nc,d\"e,f\ng,h\n", "1:|a|b\nE BARE_QUOTE 2@2:4 f2\n3:|g|h\n");
	/* the rest of the refused record still honours quotes to find its end */
	assert_parses(NULL, "x\"y,\"1\n2\"\nz\n", "E BARE_QUOTE 1@1:2 f1\n3:|z\n");
}

static void test_text_after_closing_quote_is_an_error(void **state)
{
	assert_parses(NULL, "\"ab\"c,d\ne\n", "E AFTER_QUOTE 1@1:5 f1\n2:|e\n");
	assert_parses(NULL, "1,\"a\nb\" x\n2\n", "E AFTER_QUOTE 1@2:3 f2\n3:|2\n");
}

static void test_unterminated_quote_at_eof(void **state)
{
	/* located at the opening quote */
	assert_parses(NULL, "a\nb,\"open\nstill open", "1:|a\nE UNTERMINATED_QUOTE 2@2:3 f2\n");
	assert_parses(NULL, "\"", "E UNTERMINATED_QUOTE 1@1:1 f1\n");
}

static void test_lax_mode_takes_stray_quotes_literally(void **state)
{
	gh_csv_opts_t lax = {.flags = GH_CSV_LAX};
	assert_parses(&lax, "a\"b,\"c\"d\"\"e\",f\n", "1:|a\"b|cd\"\"e\"|f\n");
	/* end of input inside quotes stays an error */
	assert_parses(&lax, "\"a", "E UNTERMINATED_QUOTE 1@1:1 f1\n");
}

static void test_custom_separator(void **state)
{
	gh_csv_opts_t semi = {.sep = ';'};
	assert_parses(&semi, "a;b,c;\"d;e\"\n", "1:|a|b,c|d;e\n");
	gh_csv_opts_t tab = {.sep = '\t'};
	assert_parses(&tab, "a\tb\t\"c\td\"\n", "1:|a|b|c\\x09d\n");
	gh_csv_opts_t bad = {.sep = '"'};
	assert_null(gh_csv_new(NULL, &bad));
	bad.sep = '\n';
	assert_null(gh_csv_new(NULL, &bad));
}

static void test_same_width(void **state)
{
	gh_csv_opts_t o = {.flags = GH_CSV_SAME_WIDTH};
	assert_parses(&o, "a,b\n1,2\n1\n1,2,3\n3,4",
	              "1:|a|b\n2:|1|2\nE FIELD_COUNT 3@3:2 f0\nE FIELD_COUNT 4@4:6 f0\n5:|3|4\n");
}

/* ---- chunk boundaries ------------------------------------------------------------------- */

static const char tricky[] =
    "\xEF\xBB\xBF"
    "msisdn,operator_id,block_id,contract_ref,vanity_tier,notes\r\n"
    "+93701234567,roshan,b1,\"C-1, \"\"gold\"\"\",GOLD,\"multi\r\nline\nnote\"\r\n"
    "\r\n"
    "+93701234568,awcc,,\"\",,\"\"\"\"\r"
    "+93701234569,awcc,b2,c\"x,STANDARD,bad\n"
    "\"q\"junk,2\n"
    "+93701234570,mtn,b3,c3,,\"\r\"\r\n"
    ",,,,,\n"
    "\"\",\"\"\"\",\",\",\"\n\",\"\r\n\",\"\"\r\n"
    "last,without,newline,\"q\",x,y";

static void test_every_split_position_gives_the_same_records(void **state)
{
	void *ctx = talloc_new(NULL);
	size_t len = sizeof(tricky) - 1;
	for (unsigned flags = 0; flags < 8; flags++) {
		gh_csv_opts_t o = {.flags = flags};
		transcript_t whole = parse_chunked(ctx, &o, tricky, len, 0, NULL);
		assert_true(whole.records >= 6);
		if (!(flags & GH_CSV_LAX))
			assert_int_equal(
			    whole.errors,
			    (flags & GH_CSV_KEEP_EMPTY) && (flags & GH_CSV_SAME_WIDTH) ? 3 : 2);
		for (size_t i = 0; i <= len; i++) {
			transcript_t t = parse_chunked(ctx, &o, tricky, len, 0, &i);
			assert_string_equal(t.text, whole.text);
			talloc_free(t.text);
		}
		transcript_t b = parse_chunked(ctx, &o, tricky, len, 1, NULL);
		assert_string_equal(b.text, whole.text);
		for (int k = 0; k < 200; k++) {
			transcript_t r = parse_chunked(ctx, &o, tricky, len, -1, NULL);
			assert_string_equal(r.text, whole.text);
			talloc_free(r.text);
		}
	}
	talloc_free(ctx);
}

static void test_tricky_input_records(void **state)
{
	void *ctx = talloc_new(NULL);
	transcript_t t = parse_chunked(ctx, NULL, tricky, sizeof(tricky) - 1, 0, NULL);
	assert_string_equal(
	    t.text, "1:|msisdn|operator_id|block_id|contract_ref|vanity_tier|notes\n"
	            "2:|+93701234567|roshan|b1|C-1, \"gold\"|GOLD|multi\\x0d\\x0aline\\x0anote\n"
	            "6:|+93701234568|awcc||||\"\n"
	            "E BARE_QUOTE 7@7:23 f4\n"
	            "E AFTER_QUOTE 8@8:4 f1\n"
	            "9:|+93701234570|mtn|b3|c3||\\x0d\n"
	            "11:||||||\n"
	            "12:||\"|,|\\x0a|\\x0d\\x0a|\n"
	            "15:|last|without|newline|q|x|y\n");
	talloc_free(ctx);
}

typedef struct {
	transcript_t t;
	int stop_after;
} push_t;

static int push_cb(void *arg, const gh_csv_record_t *rec, const gh_csv_error_t *err)
{
	push_t *p = arg;
	assert_true((rec == NULL) != (err == NULL));
	if (rec)
		tr_record(&p->t, rec);
	else
		tr_error(&p->t, err);
	return p->stop_after && p->t.records + p->t.errors == (size_t)p->stop_after ? 42 : 0;
}

static void test_push_api_matches_pull_and_can_stop(void **state)
{
	void *ctx = talloc_new(NULL);
	size_t len = sizeof(tricky) - 1;
	transcript_t whole = parse_chunked(ctx, NULL, tricky, len, 0, NULL);
	push_t ps = {.t.text = talloc_strdup(ctx, "")};
	gh_csv_t *p = gh_csv_new(ctx, NULL);
	for (size_t off = 0; off < len; off += 7)
		assert_int_equal(
		    gh_csv_feed(p, tricky + off, len - off < 7 ? len - off : 7, push_cb, &ps), 0);
	assert_int_equal(gh_csv_end(p, push_cb, &ps), 0);
	assert_string_equal(ps.t.text, whole.text);
	assert_int_equal(gh_csv_end(p, push_cb, &ps), 0);
	assert_int_equal(gh_csv_feed(p, "x", 1, push_cb, &ps), -EALREADY);

	gh_csv_reset(p);
	push_t stop = {.t.text = talloc_strdup(ctx, ""), .stop_after = 2};
	assert_int_equal(gh_csv_feed(p, tricky, len, push_cb, &stop), 42);
	assert_int_equal(stop.t.records, 2);
	talloc_free(ctx);
}

static void test_reset_starts_a_new_stream(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_csv_t *p = gh_csv_new(ctx, NULL);
	const char *in = "a\n\"open", *pos = in;
	gh_csv_record_t r;
	assert_int_equal(gh_csv_parse(p, &pos, in + strlen(in), &r), 0);
	assert_int_equal(gh_csv_parse(p, &pos, in + strlen(in), &r), -EAGAIN);
	assert_int_equal(gh_csv_finish(p, &r), -EINVAL);
	assert_int_equal(gh_csv_finish(p, &r), -ENODATA);
	pos = in;
	assert_int_equal(gh_csv_parse(p, &pos, in + 1, &r), -EALREADY);
	gh_csv_reset(p);
	const char *in2 = "\xEF\xBB\xBFz\n";
	pos = in2;
	assert_int_equal(gh_csv_parse(p, &pos, in2 + strlen(in2), &r), 0);
	assert_int_equal(r.line, 1);
	assert_int_equal(r.index, 0);
	assert_string_equal(r.fields[0], "z");
	talloc_free(ctx);
}

/* ---- limits ---------------------------------------------------------------------------- */

static void test_limits_refuse_the_record_with_its_position(void **state)
{
	gh_csv_opts_t o = {.max_field = 4, .max_record = 10, .max_fields = 3};
	assert_parses(&o, "abcd,x\nabcde,x\nok\n", "1:|abcd|x\nE FIELD_TOO_LONG 2@2:5 f1\n3:|ok\n");
	/* positions inside quoted fields: after a line end and after an escape */
	assert_parses(&o, "\"ab\ncd\",x\n\"ab\nc\",\"a\"\"bcd\"\n1\n\"a\"\"\"\"\"\"\"\"\"\n",
	              "E FIELD_TOO_LONG 1@2:2 f1\nE FIELD_TOO_LONG 3@4:10 f2\n5:|1\n"
	              "E FIELD_TOO_LONG 6@6:10 f1\n");
	assert_parses(&o, "abcd,efgh,ij\nabcd,efgh,ijk\n2\n",
	              "1:|abcd|efgh|ij\nE RECORD_TOO_LONG 2@2:13 f3\n3:|2\n");
	assert_parses(&o, "a,b,c\na,b,c,d\n,,,\n3\n",
	              "1:|a|b|c\nE TOO_MANY_FIELDS 2@2:6 f4\nE TOO_MANY_FIELDS 3@3:3 f4\n4:|3\n");
	/* limits at 1 still let the BOM undo and everything else work */
	gh_csv_opts_t one = {.max_field = 1, .max_record = 1, .max_fields = 1};
	assert_parses(&one, "\xEF\xBBz\n\"\"\"\"\nx\n", "E FIELD_TOO_LONG 1@1:2 f1\n2:|\"\n3:|x\n");
}

/* fuzz findings: the first byte over either limit decides the code whatever the chunking, and
 * a quoted line end over a limit is located on the line it ends */
static void test_first_byte_over_any_limit_is_reported(void **state)
{
	gh_csv_opts_t o = {.max_field = 10, .max_record = 8, .max_fields = 4};
	assert_parses(&o, "abcdefghijklmnop\nok\n", "E RECORD_TOO_LONG 1@1:9 f1\n2:|ok\n");
	gh_csv_opts_t f = {.max_field = 8, .max_record = 8};
	assert_parses(&f, "abcdefghijklmnop\nok\n", "E FIELD_TOO_LONG 1@1:9 f1\n2:|ok\n");
	gh_csv_opts_t one = {.max_field = 1};
	assert_parses(&one, "\"b\nx\"\nk\n", "E FIELD_TOO_LONG 1@1:3 f1\n3:|k\n");
	assert_parses(&one, "\"b\r\nx\"\nk\n", "E FIELD_TOO_LONG 1@1:3 f1\n3:|k\n");
}

static void test_memory_bounded_by_the_longest_record(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_csv_t *p = gh_csv_new(ctx, &(gh_csv_opts_t){.max_record = 4096});
	size_t base = talloc_total_size(p);
	char row[128];
	int n =
	    snprintf(row, sizeof(row), "+93701234567,roshan,blk-0001,CT-2026-0001,GOLD,\"%s\"\n",
	             "a note, quoted");
	uint64_t recs = 0;
	for (int i = 0; i < 200000; i++) {
		const char *pos = row, *end = row + n;
		gh_csv_record_t r;
		int rc;
		while ((rc = gh_csv_parse(p, &pos, end, &r)) != -EAGAIN) {
			assert_int_equal(rc, 0);
			recs++;
		}
	}
	assert_int_equal(recs, 200000);
	assert_true(talloc_total_size(p) - base <= 4096);
	/* a refused giant record costs at most twice the limit */
	char *big = talloc_size(ctx, 1 << 20);
	memset(big, 'x', 1 << 20);
	const char *pos = big, *end = big + (1 << 20);
	gh_csv_record_t r;
	assert_int_equal(gh_csv_parse(p, &pos, end, &r), -EINVAL);
	assert_int_equal(gh_csv_last_error(p)->code, GH_CSV_E_RECORD_TOO_LONG);
	assert_int_equal(gh_csv_last_error(p)->line, 200001);
	assert_int_equal(gh_csv_last_error(p)->column, 4097);
	assert_int_equal(gh_csv_parse(p, &pos, end, &r), -EAGAIN);
	assert_true(talloc_total_size(p) - base <= 2 * 4096 + 1024 * 8 + 2048);
	assert_int_equal(gh_csv_finish(p, &r), -ENODATA);
	talloc_free(ctx);
}

static void test_bad_options_refused(void **state)
{
	assert_null(gh_csv_new(NULL, &(gh_csv_opts_t){.flags = 1u << 9}));
	assert_null(gh_csv_new(NULL, &(gh_csv_opts_t){.max_record = SIZE_MAX}));
	assert_null(gh_csv_new(NULL, &(gh_csv_opts_t){.max_fields = SIZE_MAX}));
	assert_null(gh_csv_writer_new(NULL, &(gh_csv_wopts_t){.sep = '\r'}, NULL, NULL));
	assert_null(gh_csv_writer_new(NULL, &(gh_csv_wopts_t){.injection = 7}, NULL, NULL));
}

/* ---- header ---------------------------------------------------------------------------- */

static const char *const import_cols[] = {"msisdn",       "operator_id", "block_id",
                                          "contract_ref", "vanity_tier", "notes"};

static int header_of(void *ctx, const char *line, unsigned flags, size_t idx[6],
                     gh_csv_error_t *err)
{
	gh_csv_t *p = gh_csv_new(ctx, NULL);
	const char *pos = line;
	gh_csv_record_t r;
	int rc = gh_csv_parse(p, &pos, line + strlen(line), &r);
	if (rc == -EAGAIN)
		rc = gh_csv_finish(p, &r);
	assert_int_equal(rc, 0);
	return gh_csv_header_map(&r, import_cols, 6, flags, idx, err);
}

static void test_header_maps_the_import_columns_in_any_order(void **state)
{
	void *ctx = talloc_new(NULL);
	size_t idx[6];
	gh_csv_error_t e;
	assert_int_equal(header_of(ctx,
	                           "msisdn,operator_id,block_id,contract_ref,vanity_tier,notes",
	                           GH_CSV_HEADER_ORDERED, idx, &e),
	                 0);
	for (size_t i = 0; i < 6; i++)
		assert_int_equal(idx[i], i);
	assert_int_equal(header_of(ctx,
	                           "notes,vanity_tier,msisdn,block_id,operator_id,contract_ref\r\n",
	                           0, idx, &e),
	                 0);
	size_t want[6] = {2, 4, 3, 5, 1, 0};
	assert_memory_equal(idx, want, sizeof(want));
	talloc_free(ctx);
}

static void expect_header_error(const char *line, unsigned flags, gh_csv_code_t code, size_t field,
                                const char *name)
{
	void *ctx = talloc_new(NULL);
	size_t idx[6];
	gh_csv_error_t e;
	assert_int_equal(header_of(ctx, line, flags, idx, &e), -EINVAL);
	assert_string_equal(gh_csv_code_name(e.code), gh_csv_code_name(code));
	assert_int_equal(e.field, field);
	assert_string_equal(e.detail, name);
	assert_int_equal(e.line, 1);
	talloc_free(ctx);
}

static void test_header_errors(void **state)
{
	expect_header_error("msisdn,operator_id,block_id,contract_ref,vanity_tier,notes,extra", 0,
	                    GH_CSV_E_HEADER_UNKNOWN, 7, "extra");
	expect_header_error("msisdn,operator_id,block_id,contract_ref,Vanity_tier,notes", 0,
	                    GH_CSV_E_HEADER_UNKNOWN, 5, "Vanity_tier");
	expect_header_error("msisdn,operator_id,block_id,contract_ref,notes", 0,
	                    GH_CSV_E_HEADER_MISSING, 0, "vanity_tier");
	expect_header_error("msisdn,operator_id,block_id,msisdn,contract_ref,vanity_tier,notes", 0,
	                    GH_CSV_E_HEADER_DUPLICATE, 4, "msisdn");
	expect_header_error("msisdn,x,x,operator_id,block_id,contract_ref,vanity_tier,notes",
	                    GH_CSV_HEADER_ALLOW_UNKNOWN, GH_CSV_E_HEADER_DUPLICATE, 3, "x");
	expect_header_error("operator_id,msisdn,block_id,contract_ref,vanity_tier,notes",
	                    GH_CSV_HEADER_ORDERED, GH_CSV_E_HEADER_ORDER, 2, "msisdn");
	expect_header_error("msisdn ,operator_id,block_id,contract_ref,vanity_tier,notes", 0,
	                    GH_CSV_E_HEADER_UNKNOWN, 1, "msisdn ");

	void *ctx = talloc_new(NULL);
	size_t idx[6];
	gh_csv_error_t e;
	assert_int_equal(header_of(ctx,
	                           "x,msisdn,operator_id,block_id,y,contract_ref,vanity_tier,notes",
	                           GH_CSV_HEADER_ALLOW_UNKNOWN | GH_CSV_HEADER_ORDERED, idx, &e),
	                 0);
	assert_int_equal(idx[0], 1);
	assert_int_equal(idx[3], 5);
	talloc_free(ctx);
}

/* ---- injection ------------------------------------------------------------------------- */

static void test_injection_rule(void **state)
{
	const char *risky[] = {"=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"};
	for (size_t i = 0; i < sizeof(risky) / sizeof(*risky); i++)
		assert_true(gh_csv_cell_risky(risky[i], strlen(risky[i])));
	assert_true(gh_csv_cell_risky("\0x", 2));
	const char *safe[] = {"", "a=b", " =1", "gold", "1+1", "'=1", "\n=x"};
	for (size_t i = 0; i < sizeof(safe) / sizeof(*safe); i++)
		assert_false(gh_csv_cell_risky(safe[i], strlen(safe[i])));

	void *ctx = talloc_new(NULL);
	transcript_t t = {0};
	(void)t;
	gh_csv_t *p = gh_csv_new(ctx, NULL);
	const char *in = "\n+93701234567,roshan,b,c,GOLD,\"=HYPERLINK(\"\"x\"\")\"\n", *pos = in;
	gh_csv_record_t r;
	assert_int_equal(gh_csv_parse(p, &pos, in + strlen(in), &r), 0);
	gh_csv_error_t e;
	assert_int_equal(gh_csv_check_text(&r, 4, &e), 0);
	assert_int_equal(gh_csv_check_text(&r, 5, &e), -EINVAL);
	assert_int_equal(e.code, GH_CSV_E_INJECTION);
	assert_int_equal(e.line, 2);
	assert_int_equal(e.field, 6);
	assert_int_equal(gh_csv_check_text(&r, 6, &e), -EINVAL);
	assert_int_equal(e.code, GH_CSV_E_FIELD_COUNT);

	gh_err_t err = {0};
	assert_int_equal(gh_csv_check_text(&r, 5, &e), -EINVAL);
	assert_int_equal(gh_csv_error_to_err(&e, &err), -EINVAL);
	assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);
	assert_string_equal(json_string_value(json_object_get(err.details, "csv_code")),
	                    "CSV_INJECTION");
	assert_int_equal(json_integer_value(json_object_get(err.details, "line")), 2);
	assert_int_equal(json_integer_value(json_object_get(err.details, "field")), 6);
	assert_non_null(strstr(err.message, "line 2"));
	gh_err_clear(&err);
	talloc_free(ctx);
}

static void test_error_format(void **state)
{
	char buf[160];
	gh_csv_error_t e = {
	    .code = GH_CSV_E_BARE_QUOTE, .line = 3, .at_line = 4, .column = 7, .field = 2};
	gh_csv_error_format(&e, buf, sizeof(buf));
	assert_string_equal(
	    buf, "line 4, column 7: BARE_QUOTE: '\"' inside an unquoted field (field 2)");
	gh_csv_error_t h = {.code = GH_CSV_E_HEADER_MISSING, .line = 1, .detail = "notes"};
	gh_csv_error_format(&h, buf, sizeof(buf));
	assert_string_equal(buf, "line 1: HEADER_MISSING: missing column \"notes\"");
	assert_string_equal(gh_csv_code_name(GH_CSV_E__COUNT), "UNKNOWN");
	assert_string_equal(gh_csv_code_name(GH_CSV_E_UNTERMINATED), "UNTERMINATED_QUOTE");
}

/* ---- writer ---------------------------------------------------------------------------- */

static void test_writer_quotes_only_when_needed(void **state)
{
	void *ctx = talloc_new(NULL);
	gh_csv_writer_t *w = gh_csv_writer_new(ctx, NULL, NULL, NULL);
	const char *f1[] = {"plain", "a,b", "say \"hi\"", "two\nlines", "cr\r", "", " sp "};
	size_t l1[7];
	for (int i = 0; i < 7; i++)
		l1[i] = strlen(f1[i]);
	assert_int_equal(gh_csv_write_record(w, f1, l1, 7), 0);
	const char *f2[] = {""};
	size_t l2[] = {0};
	assert_int_equal(gh_csv_write_record(w, f2, l2, 1), 0);
	assert_int_equal(gh_csv_write_end(w), -EINVAL);
	size_t n;
	/* fuzz finding: an empty first field before any output */
	gh_csv_writer_t *e = gh_csv_writer_new(ctx, NULL, NULL, NULL);
	assert_int_equal(gh_csv_write_field(e, "", 0), 0);
	assert_int_equal(gh_csv_write_field(e, "", 0), 0);
	assert_int_equal(gh_csv_write_end(e), 0);
	assert_memory_equal(gh_csv_writer_data(e, &n), ",\r\n", 3);
	assert_int_equal(n, 3);
	const char *out = gh_csv_writer_data(w, &n);
	const char *want =
	    "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\r\",, sp \r\n\"\"\r\n";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	assert_int_equal(gh_csv_writer_bytes(w), n);

	/* LF endings, another separator, a leading BOM kept by quoting */
	gh_csv_writer_t *w2 =
	    gh_csv_writer_new(ctx, &(gh_csv_wopts_t){.sep = ';', .lf = true}, NULL, NULL);
	assert_int_equal(gh_csv_write_field(w2, "\xEF\xBB\xBFx", 4), 0);
	assert_int_equal(gh_csv_write_field(w2, "a,b;c", 5), 0);
	assert_int_equal(gh_csv_write_end(w2), 0);
	assert_int_equal(gh_csv_write_field(w2, "\xEF\xBB\xBFx", 4), 0);
	assert_int_equal(gh_csv_write_end(w2), 0);
	out = gh_csv_writer_data(w2, &n);
	want = "\"\xEF\xBB\xBFx\";\"a,b;c\"\n\xEF\xBB\xBFx\n";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);
	talloc_free(ctx);
}

static void test_writer_injection_policies(void **state)
{
	void *ctx = talloc_new(NULL);
	size_t n;
	gh_csv_writer_t *rej = gh_csv_writer_new(ctx, NULL, NULL, NULL);
	assert_int_equal(gh_csv_write_text(rej, "ok", 2), 0);
	assert_int_equal(gh_csv_write_text(rej, "=1+1", 4), -EINVAL);
	assert_int_equal(gh_csv_write_field(rej, "+93701234567", 12), 0);
	assert_int_equal(gh_csv_write_end(rej), 0);
	const char *out = gh_csv_writer_data(rej, &n);
	assert_int_equal(n, 17);
	assert_memory_equal(out, "ok,+93701234567\r\n", n);

	gh_csv_writer_t *neu = gh_csv_writer_new(
	    ctx, &(gh_csv_wopts_t){.injection = GH_CSV_INJ_NEUTRALISE}, NULL, NULL);
	assert_int_equal(gh_csv_write_text(neu, "=HYPERLINK(\"x\")", 15), 0);
	assert_int_equal(gh_csv_write_text(neu, "@a,b", 4), 0);
	assert_int_equal(gh_csv_write_text(neu, "safe", 4), 0);
	assert_int_equal(gh_csv_write_end(neu), 0);
	out = gh_csv_writer_data(neu, &n);
	const char *want = "\"'=HYPERLINK(\"\"x\"\")\",\"'@a,b\",safe\r\n";
	assert_int_equal(n, strlen(want));
	assert_memory_equal(out, want, n);

	gh_csv_writer_t *all =
	    gh_csv_writer_new(ctx, &(gh_csv_wopts_t){.injection = GH_CSV_INJ_ALLOW}, NULL, NULL);
	assert_int_equal(gh_csv_write_text(all, "-1", 2), 0);
	assert_int_equal(gh_csv_write_end(all), 0);
	out = gh_csv_writer_data(all, &n);
	assert_memory_equal(out, "-1\r\n", 4);
	talloc_free(ctx);
}

typedef struct {
	void *ctx;
	char *data;
	size_t len;
	int calls;
	int fail_at;
} sink_t;

static int sink_fn(void *arg, const void *data, size_t len)
{
	sink_t *s = arg;
	if (s->fail_at && ++s->calls == s->fail_at)
		return -EIO;
	s->data = talloc_realloc(s->ctx, s->data, char, s->len + len + 1);
	memcpy(s->data + s->len, data, len);
	s->len += len;
	return 0;
}

static void test_writer_round_trip_and_sink_equals_memory(void **state)
{
	void *ctx = talloc_new(NULL);
	static const char alphabet[] = {'a', 'b', ',',    '"',    '\r',   '\n', '\0',
	                                ' ', ';', '\xEF', '\xBB', '\xBF', '='};
	for (int round = 0; round < 300; round++) {
		void *rc = talloc_new(ctx);
		gh_csv_writer_t *mem = gh_csv_writer_new(rc, NULL, NULL, NULL);
		sink_t sk = {.ctx = rc};
		gh_csv_writer_t *snk = gh_csv_writer_new(rc, NULL, sink_fn, &sk);
		transcript_t want = {.text = talloc_strdup(rc, "")};
		int nrec = 1 + (int)(rnd() % 20);
		for (int r = 0; r < nrec; r++) {
			size_t nf = 1 + rnd() % 6;
			want.text = talloc_asprintf_append(want.text, "#:");
			for (size_t f = 0; f < nf; f++) {
				char buf[40];
				size_t len = rnd() % (round % 3 ? 4 : 40);
				for (size_t i = 0; i < len; i++)
					buf[i] = alphabet[rnd() % sizeof(alphabet)];
				if (r == 0 && f == 0 && round % 5 == 0 && len >= 3)
					memcpy(buf, "\xEF\xBB\xBF", 3);
				want.text = talloc_asprintf_append(want.text, "|");
				tr_bytes(&want, buf, len);
				assert_int_equal(gh_csv_write_field(mem, buf, len), 0);
				assert_int_equal(gh_csv_write_field(snk, buf, len), 0);
			}
			want.text = talloc_asprintf_append(want.text, "\n");
			assert_int_equal(gh_csv_write_end(mem), 0);
			assert_int_equal(gh_csv_write_end(snk), 0);
		}
		assert_int_equal(gh_csv_writer_flush(snk), 0);
		size_t n;
		const char *out = gh_csv_writer_data(mem, &n);
		assert_int_equal(n, sk.len);
		assert_memory_equal(out, sk.data, n);
		assert_int_equal(gh_csv_writer_bytes(snk), n);

		transcript_t got = parse_chunked(rc, NULL, out, n, round % 2 ? -1 : 0, NULL);
		assert_int_equal(got.errors, 0);
		assert_int_equal(got.records, (size_t)nrec);
		/* compare without line numbers (they depend on embedded line ends) */
		char *g = talloc_strdup(rc, ""), *line, *save = NULL;
		for (line = strtok_r(got.text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			g = talloc_asprintf_append(g, "#%s\n", strchr(line, ':'));
		assert_string_equal(g, want.text);
		talloc_free(rc);
	}
	talloc_free(ctx);
}

static void test_writer_sink_errors_and_large_fields(void **state)
{
	void *ctx = talloc_new(NULL);
	sink_t sk = {.ctx = ctx, .fail_at = 1};
	gh_csv_writer_t *w = gh_csv_writer_new(ctx, NULL, sink_fn, &sk);
	assert_int_equal(gh_csv_write_field(w, "a", 1), 0);
	assert_int_equal(gh_csv_write_end(w), 0);
	assert_int_equal(gh_csv_writer_flush(w), -EIO);
	assert_null(gh_csv_writer_data(w, &(size_t){0}));

	/* a field bigger than the buffer goes straight to the sink, in order */
	sink_t ok = {.ctx = ctx};
	gh_csv_writer_t *w2 = gh_csv_writer_new(ctx, NULL, sink_fn, &ok);
	size_t big = 200000;
	char *f = talloc_size(ctx, big);
	memset(f, 'y', big);
	assert_int_equal(gh_csv_write_field(w2, "x", 1), 0);
	assert_int_equal(gh_csv_write_field(w2, f, big), 0);
	assert_int_equal(gh_csv_write_end(w2), 0);
	assert_int_equal(gh_csv_writer_flush(w2), 0);
	assert_int_equal(ok.len, big + 4);
	assert_memory_equal(ok.data, "x,yy", 4);
	assert_memory_equal(ok.data + big + 2, "\r\n", 2);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_records_lf_crlf_and_last_without_newline),
	    cmocka_unit_test(test_lone_cr_ends_a_record),
	    cmocka_unit_test(test_quoted_fields_and_escapes),
	    cmocka_unit_test(test_embedded_newlines_keep_line_numbers),
	    cmocka_unit_test(test_empty_lines),
	    cmocka_unit_test(test_bom_skipped_only_at_start),
	    cmocka_unit_test(test_bare_quote_is_an_error_and_parsing_goes_on),
	    cmocka_unit_test(test_text_after_closing_quote_is_an_error),
	    cmocka_unit_test(test_unterminated_quote_at_eof),
	    cmocka_unit_test(test_lax_mode_takes_stray_quotes_literally),
	    cmocka_unit_test(test_custom_separator),
	    cmocka_unit_test(test_same_width),
	    cmocka_unit_test(test_every_split_position_gives_the_same_records),
	    cmocka_unit_test(test_tricky_input_records),
	    cmocka_unit_test(test_push_api_matches_pull_and_can_stop),
	    cmocka_unit_test(test_reset_starts_a_new_stream),
	    cmocka_unit_test(test_limits_refuse_the_record_with_its_position),
	    cmocka_unit_test(test_first_byte_over_any_limit_is_reported),
	    cmocka_unit_test(test_memory_bounded_by_the_longest_record),
	    cmocka_unit_test(test_bad_options_refused),
	    cmocka_unit_test(test_header_maps_the_import_columns_in_any_order),
	    cmocka_unit_test(test_header_errors),
	    cmocka_unit_test(test_injection_rule),
	    cmocka_unit_test(test_error_format),
	    cmocka_unit_test(test_writer_quotes_only_when_needed),
	    cmocka_unit_test(test_writer_injection_policies),
	    cmocka_unit_test(test_writer_round_trip_and_sink_equals_memory),
	    cmocka_unit_test(test_writer_sink_errors_and_large_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
