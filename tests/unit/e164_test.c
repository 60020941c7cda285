/* e164: accepted and rejected identifier forms of every kind, kind detection, key round trips,
 * configurable rules, the operator table (default E.212 data, longest prefix, effective dates,
 * CSV mirror of the compiled-in table) and that normalisation allocates nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "e164.h"
#include "testutil.h"

/* ---- allocation counter: the executable's malloc family interposes the C library's ---- */

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ALLOC_COUNTER 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ALLOC_COUNTER 0
#endif
#endif
#ifndef HAVE_ALLOC_COUNTER
#define HAVE_ALLOC_COUNTER 1
#endif

static _Thread_local int alloc_counting;
static _Thread_local unsigned long alloc_count;

#if HAVE_ALLOC_COUNTER
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t sz);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);

void *malloc(size_t n)
{
	alloc_count += alloc_counting;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t sz)
{
	alloc_count += alloc_counting;
	return __libc_calloc(n, sz);
}

void *realloc(void *p, size_t n)
{
	alloc_count += alloc_counting;
	return __libc_realloc(p, n);
}

int posix_memalign(void **p, size_t align, size_t n)
{
	alloc_count += alloc_counting;
	*p = __libc_memalign(align, n);
	return *p ? 0 : ENOMEM;
}
#endif

/* ---- helpers --------------------------------------------------------------------------- */

static int norm(gh_ident_kind_t kind, const char *in, gh_ident_t *out, gh_err_t *err)
{
	return gh_ident_normalize(NULL, kind, in, strlen(in), out, err);
}

/* in must fail as kind with INVALID_ARGUMENT and a message containing why */
static void expect_invalid(gh_ident_kind_t kind, const char *in, size_t len, const char *why)
{
	gh_err_t err = {0};
	gh_ident_t id;
	int rc = gh_ident_normalize(NULL, kind, in, len, &id, &err);
	if (rc != -EINVAL || err.code != GH_E_INVALID_ARGUMENT || !strstr(err.message, why))
		fail_msg("%s \"%.*s\": rc %d code %d message \"%s\", wanted \"%s\"",
		         gh_ident_kind_name(kind), (int)len, in, rc, err.code, err.message, why);
	gh_err_clear(&err);
}

static void expect_canonical(gh_ident_kind_t kind, const char *in, gh_ident_kind_t want_kind,
                             const char *canonical)
{
	gh_err_t err = {0};
	gh_ident_t id;
	int rc = norm(kind, in, &id, &err);
	if (rc != 0)
		fail_msg("\"%s\" refused: %s", in, err.message);
	assert_int_equal(id.kind, want_kind);
	assert_string_equal(id.canonical, canonical);
	/* the key decodes back to the canonical form */
	gh_ident_kind_t k;
	char back[GH_IDENT_BUFSZ];
	assert_int_equal(gh_ident_key_format(id.key, &k, back), 0);
	assert_int_equal(k, want_kind);
	assert_string_equal(back, canonical);
	/* normalising is idempotent */
	gh_ident_t again;
	assert_int_equal(norm(want_kind, id.canonical, &again, &err), 0);
	assert_string_equal(again.canonical, canonical);
	assert_true(again.key == id.key);
}

/* ---- kinds ----------------------------------------------------------------------------- */

static void test_kind_names_roundtrip(void **state)
{
	const char *names[] = {"MSISDN", "SHORT_CODE", "ALPHA"};
	for (int k = 0; k < GH_IDENT__COUNT; k++) {
		gh_ident_kind_t back = GH_IDENT_AUTO;
		assert_string_equal(gh_ident_kind_name((gh_ident_kind_t)k), names[k]);
		assert_int_equal(gh_ident_kind_parse(names[k], &back), 0);
		assert_int_equal(back, k);
	}
	gh_ident_kind_t k;
	assert_int_equal(gh_ident_kind_parse("msisdn", &k), -EINVAL);
	assert_int_equal(gh_ident_kind_parse("", &k), -EINVAL);
	assert_int_equal(gh_ident_kind_parse("AUTO", &k), -EINVAL);
	assert_int_equal(gh_ident_kind_parse(NULL, &k), -EINVAL);
	assert_string_equal(gh_ident_kind_name(GH_IDENT_AUTO), "UNKNOWN");
	assert_string_equal(gh_ident_kind_name(GH_IDENT__COUNT), "UNKNOWN");
}

/* ---- MSISDN ---------------------------------------------------------------------------- */

static void test_msisdn_accepts_spec_and_separator_forms(void **state)
{
	const char *forms[] = {/* the spec's table */
	                       "+93 70 123 4567", "0093701234567", "93701234567", "0701234567",
	                       /* separators */
	                       "+93701234567", "+93-70-123-4567", "070.123.4567", "(070) 123 4567",
	                       "+93 (70) 123-4567", "0093 70 123 4567", "  0701234567  ",
	                       "070 - 123 - 4567",
	                       /* the "(0)" trunk-prefix convention of international formatting */
	                       "+93 (0)70 123 4567", "0093 (0) 70 123 4567"};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		expect_canonical(GH_IDENT_MSISDN, forms[i], GH_IDENT_MSISDN, "+93701234567");
		expect_canonical(GH_IDENT_AUTO, forms[i], GH_IDENT_MSISDN, "+93701234567");
		char out[GH_IDENT_BUFSZ];
		gh_err_t err = {0};
		assert_int_equal(gh_e164_normalize(forms[i], out, &err), 0);
		assert_string_equal(out, "+93701234567");
	}
	gh_ident_t id;
	assert_int_equal(norm(GH_IDENT_MSISDN, "0799 000 000", &id, NULL), 0);
	assert_string_equal(id.canonical, "+93799000000");
	assert_string_equal(id.display, "+93799000000");
	uint64_t key;
	assert_int_equal(gh_e164_pack("+93799000000", &key), 0);
	assert_true(key == id.key);
}

static void test_msisdn_rejections(void **state)
{
	const gh_ident_kind_t M = GH_IDENT_MSISDN;
	/* wrong country code */
	expect_invalid(M, "+92 300 1234567", 15, "country code is not +93");
	expect_invalid(M, "0044701234567", 13, "country code is not +93");
	expect_invalid(M, "+0093701234567", 14, "country code is not +93");
	/* outside the mobile range (Kabul fixed line 020) */
	expect_invalid(M, "+93 20 123 4567", 15, "not a mobile number");
	expect_invalid(M, "0201234567", 10, "must start with 7");
	expect_invalid(M, "93201234567", 11, "not a mobile number");
	/* too short / too long */
	expect_invalid(M, "+93 70 123 456", 14, "too short");
	expect_invalid(M, "070123456", 9, "too short");
	expect_invalid(M, "+93 70 123 45678", 16, "too long");
	expect_invalid(M, "07012345678", 11, "too long");
	expect_invalid(M, "+930701234567", 13, "too long"); /* trunk 0 kept after +93 */
	expect_invalid(M, "+93 (1)70 123 4567", 18, "too long");
	/* a bare national number is not one of the accepted forms */
	expect_invalid(M, "701234567", 9, "not an MSISDN");
	expect_invalid(M, "9370123456", 10, "not an MSISDN");
	/* letters and other characters */
	expect_invalid(M, "+93 70 ABC 4567", 15, "0x41 at offset 7 is not allowed");
	expect_invalid(M, "0701234567x", 11, "not allowed");
	expect_invalid(M, "070/123/4567", 12, "0x2f");
	expect_invalid(M,
	               "\xef\xbc\x90"
	               "701234567",
	               12, "0xef at offset 0");
	/* empty */
	expect_invalid(M, "", 0, "empty");
	expect_invalid(M, "    ", 4, "empty");
	/* embedded NUL: the length is authoritative, NUL is just a bad character */
	expect_invalid(M,
	               "0701\0"
	               "234567",
	               11, "0x00 at offset 4");
	expect_invalid(M, "0701234567\0", 11, "0x00 at offset 10");
	/* overflow: longer than the input bound, and too many digits inside it */
	char big[GH_IDENT_INPUT_MAX + 2];
	memset(big, '7', sizeof(big));
	expect_invalid(M, big, sizeof(big), "longer than 64 bytes");
	expect_invalid(M, big, GH_IDENT_INPUT_MAX, "too many digits");
	/* separators used in a way no one writes a number */
	expect_invalid(M, "+ 93 70 123 4567", 16, "followed directly by the country code");
	expect_invalid(M, "+", 1, "followed directly");
	expect_invalid(M, "+93+701234567", 13, "only allowed at the start");
	expect_invalid(M, "-0701234567", 11, "must follow a digit");
	expect_invalid(M, "070--1234567", 12, "must follow a digit");
	expect_invalid(M, "0701234567.", 11, "may not end with a separator");
	expect_invalid(M, "(070 123 4567", 13, "unbalanced '('");
	expect_invalid(M, "070) 123 4567", 13, "unbalanced ')'");
	expect_invalid(M, "() 0701234567", 13, "empty parentheses");
	expect_invalid(M, "(070) (123) 4567", 16, "one pair of parentheses");
	/* e164 entry point: NUL-terminated, same rules */
	char out[GH_IDENT_BUFSZ] = "untouched";
	gh_err_t err = {0};
	assert_int_equal(gh_e164_normalize("+93 20 123 4567", out, &err), -EINVAL);
	assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);
	assert_string_equal(out, "untouched");
	assert_int_equal(gh_e164_normalize(NULL, out, &err), -EINVAL);
	assert_int_equal(gh_e164_normalize("MyBank", out, NULL), -EINVAL);
	gh_err_clear(&err);
}

static void test_msisdn_messages_do_not_echo_digits(void **state)
{
	const char *bad[] = {"+92 300 1234567", "+93 20 987 6543", "+93 70 987 654", "706543219"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		gh_err_t err = {0};
		gh_ident_t id;
		assert_int_equal(norm(GH_IDENT_MSISDN, bad[i], &id, &err), -EINVAL);
		assert_null(strstr(err.message, "987"));
		assert_null(strstr(err.message, "1234567"));
		assert_null(strstr(err.message, "6543"));
	}
}

static void test_e164_pack(void **state)
{
	uint64_t key = 0;
	assert_int_equal(gh_e164_pack("+93701234567", &key), 0);
	gh_ident_t id;
	assert_int_equal(norm(GH_IDENT_AUTO, "0701234567", &id, NULL), 0);
	assert_true(key == id.key);
	assert_int_equal(gh_e164_pack("+1", &key), 0);
	assert_int_equal(gh_e164_pack("+123456789012345", &key), 0);
	const char *bad[] = {"93701234567", "+0701234567", "+1234567890123456", "+", "",
	                     "+93a",        "+93 70"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(gh_e164_pack(bad[i], &key), -EINVAL);
	assert_int_equal(gh_e164_pack(NULL, &key), -EINVAL);
}

/* ---- short codes and alpha ------------------------------------------------------------- */

static void test_short_code_bounds(void **state)
{
	const gh_ident_kind_t S = GH_IDENT_SHORT_CODE;
	expect_canonical(S, "100", S, "100");
	expect_canonical(S, "123456", S, "123456");
	expect_canonical(S, "0123", S, "0123");
	expect_invalid(S, "12", 2, "3 to 6 digits, not 2");
	expect_invalid(S, "1234567", 7, "3 to 6 digits, not 7");
	expect_invalid(S, "12 34", 5, "0x20 at offset 2");
	expect_invalid(S, "+123", 4, "digits only");
	expect_invalid(S, "", 0, "empty");
	/* leading zeros stay distinct */
	gh_ident_t a, b;
	assert_int_equal(norm(S, "0123", &a, NULL), 0);
	assert_int_equal(norm(S, "123", &b, NULL), 0);
	assert_true(a.key != b.key);

	gh_ident_rules_t r = gh_ident_rules_default;
	r.short_min = 4;
	r.short_max = 5;
	assert_int_equal(gh_ident_rules_check(&r, NULL), 0);
	gh_err_t err = {0};
	assert_int_equal(gh_ident_normalize(&r, S, "123", 3, &a, &err), -EINVAL);
	assert_non_null(strstr(err.message, "4 to 5 digits"));
	assert_int_equal(gh_ident_normalize(&r, S, "1234", 4, &a, NULL), 0);
	assert_int_equal(gh_ident_normalize(&r, S, "12345", 5, &a, NULL), 0);
	assert_int_equal(gh_ident_normalize(&r, S, "123456", 6, &a, NULL), -EINVAL);
}

static void test_alpha_rules_and_case_insensitive_canonical(void **state)
{
	const gh_ident_kind_t A = GH_IDENT_ALPHA;
	gh_ident_t a, b, c;
	assert_int_equal(norm(A, "MyBank", &a, NULL), 0);
	assert_string_equal(a.canonical, "MYBANK");
	assert_string_equal(a.display, "MyBank");
	assert_int_equal(norm(A, "MYBANK", &b, NULL), 0);
	assert_int_equal(norm(A, "mybank", &c, NULL), 0);
	assert_true(a.key == b.key && b.key == c.key);
	assert_string_equal(c.display, "mybank");
	assert_int_equal(norm(A, "MyBanc", &c, NULL), 0);
	assert_true(a.key != c.key);

	expect_canonical(A, "My Bank 24", A, "MY BANK 24");
	expect_canonical(A, "A", A, "A");
	expect_canonical(A, "Z9 Z9 Z9 Z9", A, "Z9 Z9 Z9 Z9");
	expect_canonical(A, "abcdefghijk", A, "ABCDEFGHIJK");
	expect_canonical(A, "1A", A, "1A");
	expect_invalid(A, "abcdefghijkl", 12, "at most 11 characters, not 12");
	expect_invalid(A, "12345678901", 11, "at least one letter");
	expect_invalid(A, "123 456", 7, "at least one letter");
	expect_invalid(A, " MyBank", 7, "start or end with a space");
	expect_invalid(A, "MyBank ", 7, "start or end with a space");
	expect_invalid(A, "My  Bank", 8, "consecutive spaces");
	expect_invalid(A, "My-Bank", 7, "0x2d at offset 2");
	expect_invalid(A, "Caf\xc3\xa9", 5, "0xc3 at offset 3");
	expect_invalid(A, "My\0Bank", 7, "0x00 at offset 2");
	expect_invalid(A, "", 0, "empty");

	gh_ident_rules_t r = gh_ident_rules_default;
	r.alpha_max = 6;
	assert_int_equal(gh_ident_rules_check(&r, NULL), 0);
	assert_int_equal(gh_ident_normalize(&r, A, "MyBank", 6, &a, NULL), 0);
	assert_int_equal(gh_ident_normalize(&r, A, "MyBank1", 7, &a, NULL), -EINVAL);
}

/* ---- auto-detection -------------------------------------------------------------------- */

static void test_auto_detect_kind(void **state)
{
	const gh_ident_kind_t X = GH_IDENT_AUTO;
	expect_canonical(X, "0701234567", GH_IDENT_MSISDN, "+93701234567");
	expect_canonical(X, "93701234567", GH_IDENT_MSISDN, "+93701234567");
	expect_canonical(X, "100", GH_IDENT_SHORT_CODE, "100");
	expect_canonical(X, "123456", GH_IDENT_SHORT_CODE, "123456");
	expect_canonical(X, "MyBank", GH_IDENT_ALPHA, "MYBANK");
	expect_canonical(X, "2020 Sale", GH_IDENT_ALPHA, "2020 SALE");
	/* digits only but too short for anything: read as a short code */
	expect_invalid(X, "12", 2, "short code");
	/* more digits than a short code: MSISDN rules decide */
	expect_invalid(X, "1234567", 7, "not an MSISDN");
	/* separators make it an MSISDN attempt, never a short code */
	expect_invalid(X, "100 200", 7, "not an MSISDN");
	/* a letter makes it alpha, whose rules then refuse MSISDN punctuation */
	expect_invalid(X, "+93 70 ABC 4567", 15, "alphanumeric sender id");
	expect_invalid(X, "", 0, "empty");

	/* the bound is the configured short_max, not a constant */
	gh_ident_rules_t r = gh_ident_rules_default;
	r.short_max = 4;
	gh_ident_t id;
	gh_err_t err = {0};
	assert_int_equal(gh_ident_normalize(&r, X, "1234", 4, &id, NULL), 0);
	assert_int_equal(id.kind, GH_IDENT_SHORT_CODE);
	assert_int_equal(gh_ident_normalize(&r, X, "12345", 5, &id, &err), -EINVAL);
	assert_non_null(strstr(err.message, "not an MSISDN"));
	assert_int_equal(gh_ident_normalize(NULL, (gh_ident_kind_t)7, "100", 3, &id, &err),
	                 -EINVAL);
}

/* ---- keys ------------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Random valid identifiers of every kind: the key decodes to the canonical form, so distinct
 * canonical forms always get distinct keys, and the kinds never share a key. */
static void test_keys_roundtrip_random(void **state)
{
	static const char alnum[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	uint64_t s = 0x9e3779b97f4a7c15ULL;
	for (int i = 0; i < 30000; i++) {
		char in[GH_IDENT_BUFSZ];
		gh_ident_kind_t kind = (gh_ident_kind_t)(i % 3);
		size_t n;
		if (kind == GH_IDENT_MSISDN) {
			n = (size_t)snprintf(in, sizeof(in), "07%08llu",
			                     (unsigned long long)(rng_next(&s) % 100000000));
		} else if (kind == GH_IDENT_SHORT_CODE) {
			n = 3 + rng_next(&s) % 4;
			for (size_t j = 0; j < n; j++)
				in[j] = (char)('0' + rng_next(&s) % 10);
		} else {
			n = 1 + rng_next(&s) % GH_IDENT_ALPHA_MAX;
			for (size_t j = 0; j < n; j++) {
				int sp =
				    j > 0 && j + 1 < n && in[j - 1] != ' ' && rng_next(&s) % 5 == 0;
				in[j] = sp ? ' ' : alnum[rng_next(&s) % (sizeof(alnum) - 1)];
			}
			in[rng_next(&s) % n] = 'q'; /* at least one letter */
		}
		in[n] = '\0';
		gh_ident_t id;
		gh_err_t err = {0};
		if (gh_ident_normalize(NULL, kind, in, n, &id, &err))
			fail_msg("\"%s\" refused: %s", in, err.message);
		assert_true(id.key != 0);
		assert_int_equal((int)(id.key >> 62), kind + 1);
		gh_ident_kind_t k;
		char back[GH_IDENT_BUFSZ];
		assert_int_equal(gh_ident_key_format(id.key, &k, back), 0);
		assert_int_equal(k, kind);
		assert_string_equal(back, id.canonical);
	}
}

/* The one-pass reading of "+<cc><national>" (the hot path) and the general parser agree: on
 * random canonical-looking inputs, valid or not, the answer (refusal, kind, key, canonical,
 * display) is the one the same digits get written with separators, which only the general
 * parser reads. */
static void test_canonical_fast_path_agrees_with_parser(void **state)
{
	uint64_t s = 0x2545f4914f6cdd1dULL;
	static const char digits[] = "0123456789";
	for (int i = 0; i < 50000; i++) {
		char in[24], spaced[40];
		/* mostly "+93" + 9 digits; sometimes another length, country or a stray byte */
		size_t nat = rng_next(&s) % 8 ? 9 : 8 + (size_t)(rng_next(&s) % 3);
		size_t n = (size_t)snprintf(in, sizeof in, "+%s", rng_next(&s) % 10 ? "93" : "94");
		for (size_t j = 0; j < nat; j++)
			in[n++] = digits[j == 0 && rng_next(&s) % 4 ? 7 : rng_next(&s) % 10];
		if (rng_next(&s) % 50 == 0)
			in[1 + rng_next(&s) % (n - 1)] = 'x';
		in[n] = '\0';
		/* the same characters with a space after the country code: general parser only */
		snprintf(spaced, sizeof spaced, "%.3s %s", in, in + 3);
		static const gh_ident_kind_t kinds[] = {GH_IDENT_MSISDN, GH_IDENT_AUTO};
		for (size_t ki = 0; ki < 2; ki++) {
			gh_ident_kind_t kind = kinds[ki];
			gh_ident_t a, b;
			gh_err_t ea = {0}, eb = {0};
			int ra = gh_ident_normalize(NULL, kind, in, n, &a, &ea);
			int rb = gh_ident_normalize(NULL, kind, spaced, strlen(spaced), &b, &eb);
			if (ra != rb)
				fail_msg("\"%s\": %d, spaced %d (%s / %s)", in, ra, rb, ea.message,
				         eb.message);
			if (ra == 0) {
				assert_int_equal(a.kind, b.kind);
				assert_true(a.key == b.key);
				assert_string_equal(a.canonical, b.canonical);
				assert_string_equal(a.display, b.display);
			}
		}
	}
}

static void test_key_format_rejects_foreign_keys(void **state)
{
	gh_ident_kind_t k;
	char out[GH_IDENT_BUFSZ];
	const uint64_t kind_m = 1ULL << 62, kind_s = 2ULL << 62, kind_a = 3ULL << 62;
	const uint64_t bad[] = {
	    0,
	    12345,                        /* kind bits 0 */
	    kind_m,                       /* MSISDN 0 */
	    kind_m | 1000000000000000ULL, /* 16 digits */
	    kind_s | 1234,                /* short code of length 0 */
	    kind_s | (9ULL << 56) | 1,    /* longer than the hard limit */
	    kind_s | (3ULL << 56) | 1000, /* value wider than its length */
	    kind_a,                       /* empty alpha */
	    kind_a | 1,                   /* symbol after the end marker */
	    kind_a | ((1ULL << 58) - 1),  /* beyond 38^11 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (gh_ident_key_format(bad[i], &k, out) != -EINVAL)
			fail_msg("key %zu (0x%016llx) accepted as \"%s\"", i,
			         (unsigned long long)bad[i], out);
	assert_int_equal(gh_ident_key_format(kind_s | (3ULL << 56) | 7, &k, out), 0);
	assert_string_equal(out, "007");
	assert_int_equal(k, GH_IDENT_SHORT_CODE);
}

/* ---- rules ----------------------------------------------------------------------------- */

static void test_rules_check(void **state)
{
	assert_int_equal(gh_ident_rules_check(&gh_ident_rules_default, NULL), 0);
	assert_int_equal(gh_ident_rules_check(NULL, NULL), -EINVAL);
	gh_ident_rules_t r;
	gh_err_t err = {0};
#define BAD(stmt, why)                                                     \
	do {                                                               \
		r = gh_ident_rules_default;                                \
		stmt;                                                      \
		assert_int_equal(gh_ident_rules_check(&r, &err), -EINVAL); \
		assert_int_equal(err.code, GH_E_INVALID_ARGUMENT);         \
		if (!strstr(err.message, why))                             \
			fail_msg("%s: \"%s\"", #stmt, err.message);        \
	} while (0)
	BAD(strcpy(r.country_code, "093"), "country_code");
	BAD(strcpy(r.country_code, ""), "country_code");
	BAD(strcpy(r.country_code, "9a"), "country_code");
	BAD(strcpy(r.intl_prefix, "0a"), "intl_prefix");
	BAD(strcpy(r.trunk_prefix, "00"), "must differ");
	BAD(r.national_len = 3, "national_len");
	BAD(r.national_len = 14, "national_len");
	BAD(r.mobile_prefixes[0][0] = '\0', "at least one mobile prefix");
	BAD(strcpy(r.mobile_prefixes[2], "8"), "without gaps");
	BAD(strcpy(r.mobile_prefixes[1], "7x"), "mobile prefix 1");
	BAD(r.short_min = 0, "short-code digits");
	BAD(r.short_min = 7, "short-code digits");
	BAD(r.short_max = 9, "short-code digits");
	BAD((r.national_len = 6, r.short_max = 6), "max < national_len");
	BAD(r.alpha_max = 0, "alpha_max");
	BAD(r.alpha_max = 12, "alpha_max");
#undef BAD
	gh_err_clear(&err);
}

/* Another country is configuration: United Kingdom, +44, national 10 digits, mobile 7. */
static void test_rules_for_another_country(void **state)
{
	gh_ident_rules_t uk = {
	    .country_code = "44",
	    .intl_prefix = "00",
	    .trunk_prefix = "0",
	    .national_len = 10,
	    .mobile_prefixes = {"71", "72", "73", "74", "75", "77", "78", "79"},
	    .short_min = 5,
	    .short_max = 5,
	    .alpha_max = 11,
	};
	assert_int_equal(gh_ident_rules_check(&uk, NULL), 0);
	const char *forms[] = {"07700 900123", "+44 7700 900123", "+44 (0)7700 900123",
	                       "00447700900123", "447700900123"};
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		gh_ident_t id;
		gh_err_t err = {0};
		if (gh_ident_normalize(&uk, GH_IDENT_AUTO, forms[i], strlen(forms[i]), &id, &err))
			fail_msg("\"%s\": %s", forms[i], err.message);
		assert_int_equal(id.kind, GH_IDENT_MSISDN);
		assert_string_equal(id.canonical, "+447700900123");
	}
	gh_ident_t id;
	gh_err_t err = {0};
	/* 076 is pagers, not in the configured mobile ranges */
	assert_int_equal(gh_ident_normalize(&uk, GH_IDENT_MSISDN, "07600 900123", 12, &id, &err),
	                 -EINVAL);
	assert_non_null(strstr(err.message, "must start with 71, 72, 73"));
	/* the Afghan forms are foreign here */
	assert_int_equal(gh_ident_normalize(&uk, GH_IDENT_MSISDN, "+93701234567", 12, &id, &err),
	                 -EINVAL);
	assert_non_null(strstr(err.message, "country code is not +44"));
	assert_int_equal(gh_ident_normalize(&uk, GH_IDENT_AUTO, "12345", 5, &id, NULL), 0);
	assert_int_equal(id.kind, GH_IDENT_SHORT_CODE);
	gh_err_clear(&err);
}

/* ---- operators ------------------------------------------------------------------------- */

static const char *op_for(const gh_operator_t *ops, size_t n, const char *msisdn, int64_t now)
{
	const gh_operator_t *op = gh_operator_for_msisdn(ops, n, msisdn, now);
	return op ? op->id : "(none)";
}

static void test_default_operators_are_spec_e212(void **state)
{
	size_t n;
	const gh_operator_t *ops = gh_operators_default(&n);
	gh_err_t err = {0};
	assert_int_equal(n, 5);
	if (gh_operator_table_check(ops, n, &err))
		fail_msg("%s", err.message);
	struct {
		const char *id, *mnc0, *mnc1;
		const char *numbers[2];
	} want[] = {
	    {"awcc", "01", "", {"+93701234567", "+93711234567"}},
	    {"roshan", "20", "", {"+93791234567", "+93721234567"}},
	    {"mtn", "40", "", {"+93771234567", "+93761234567"}},
	    {"etisalat", "50", "", {"+93781234567", "+93731234567"}},
	    {"salaam", "80", "88", {"+93741234567", "+93741234567"}},
	};
	int64_t now = 1790000000000LL;
	for (size_t i = 0; i < 5; i++) {
		const gh_operator_t *op = gh_operator_find(ops, n, want[i].id);
		assert_non_null(op);
		assert_string_equal(op->mcc, "412");
		assert_string_equal(op->mnc[0], want[i].mnc0);
		assert_string_equal(op->mnc[1], want[i].mnc1);
		for (int j = 0; j < 2; j++)
			assert_string_equal(op_for(ops, n, want[i].numbers[j], now), want[i].id);
	}
	assert_null(gh_operator_find(ops, n, "mtn-af"));
	assert_null(gh_operator_find(ops, n, NULL));
	/* 075 and fixed lines belong to no default operator */
	assert_string_equal(op_for(ops, n, "+93751234567", now), "(none)");
	assert_string_equal(op_for(ops, n, "+93201234567", now), "(none)");
	assert_string_equal(op_for(ops, n, "+937", now), "(none)");
	assert_null(gh_operator_for_msisdn(ops, n, NULL, now));
}

static void test_operator_longest_prefix_and_effective_dates(void **state)
{
	const int64_t t1 = 1767225600000LL; /* 2026-01-01 */
	const int64_t t2 = 1798761600000LL; /* 2027-01-01 */
	gh_operator_t ops[3] = {
	    {.id = "wide", .name = "Wide", .mcc = "412", .mnc = {"90"}, .prefixes = {"+937"}},
	    {.id = "old",
	     .name = "Old",
	     .mcc = "412",
	     .mnc = {"91"},
	     .prefixes = {"+9379", "+93791"},
	     .valid_from_ms = t1,
	     .valid_to_ms = t2},
	    {.id = "new",
	     .name = "New",
	     .mcc = "412",
	     .mnc = {"92", "920"},
	     .prefixes = {"+9379"},
	     .valid_from_ms = t2},
	};
	gh_err_t err = {0};
	if (gh_operator_table_check(ops, 3, &err))
		fail_msg("%s", err.message);
	assert_string_equal(op_for(ops, 3, "+93791234567", t1 - 1), "wide");
	assert_string_equal(op_for(ops, 3, "+93791234567", t1), "old");
	assert_string_equal(op_for(ops, 3, "+93791234567", t2 - 1), "old");
	assert_string_equal(op_for(ops, 3, "+93791234567", t2), "new"); /* valid_to exclusive */
	assert_string_equal(op_for(ops, 3, "+93701234567", t1), "wide");
	assert_string_equal(op_for(ops, 3, "+93721234567", t2), "wide");
	/* the longest prefix wins, whatever the table order */
	gh_operator_t rev[3] = {ops[2], ops[1], ops[0]};
	assert_string_equal(op_for(rev, 3, "+93791234567", t1 + 1), "old");
	assert_string_equal(op_for(rev, 3, "+93799234567", t2 + 1), "new");

	/* overlapping periods on the same prefix are ambiguous */
	gh_operator_t bad[3];
	memcpy(bad, ops, sizeof(bad));
	bad[1].valid_to_ms = 0;
	assert_int_equal(gh_operator_table_check(bad, 3, &err), -EINVAL);
	assert_non_null(strstr(err.message, "prefix +9379 is also held by old"));
#define BAD_OP(stmt, why)                                                         \
	do {                                                                      \
		memcpy(bad, ops, sizeof(bad));                                    \
		stmt;                                                             \
		assert_int_equal(gh_operator_table_check(bad, 3, &err), -EINVAL); \
		if (!strstr(err.message, why))                                    \
			fail_msg("%s: \"%s\"", #stmt, err.message);               \
	} while (0)
	BAD_OP(strcpy(bad[2].id, "old"), "duplicate id");
	BAD_OP(strcpy(bad[2].id, "New"), "id must be");
	BAD_OP(bad[2].id[0] = '\0', "id must be");
	BAD_OP(bad[0].name[0] = '\0', "name");
	BAD_OP(strcpy(bad[0].mcc, "41"), "mcc");
	BAD_OP(bad[0].mnc[0][0] = '\0', "mnc 0");
	BAD_OP(strcpy(bad[0].mnc[1], "9"), "mnc 1");
	BAD_OP(strcpy(bad[0].mnc[2], "93"), "mnc 2");
	BAD_OP(strcpy(bad[0].prefixes[0], "937"), "prefix 0");
	BAD_OP(strcpy(bad[0].prefixes[0], "+0937"), "prefix 0");
	BAD_OP(bad[0].prefixes[0][0] = '\0', "prefix 0");
	BAD_OP(strcpy(bad[0].prefixes[2], "+938"), "prefix 2");
	BAD_OP(strcpy(bad[1].prefixes[1], "+9379"), "listed twice");
	BAD_OP(bad[1].valid_to_ms = bad[1].valid_from_ms, "valid_to");
	BAD_OP(bad[0].valid_from_ms = -1, "valid_to");
#undef BAD_OP
	gh_err_clear(&err);
}

static int op_equal(const gh_operator_t *a, const gh_operator_t *b)
{
	if (strcmp(a->id, b->id) || strcmp(a->name, b->name) || strcmp(a->mcc, b->mcc) ||
	    a->valid_from_ms != b->valid_from_ms || a->valid_to_ms != b->valid_to_ms)
		return 0;
	for (int i = 0; i < GH_OPERATOR_MAX_MNC; i++)
		if (strcmp(a->mnc[i], b->mnc[i]))
			return 0;
	for (int i = 0; i < GH_OPERATOR_MAX_PREFIXES; i++)
		if (strcmp(a->prefixes[i], b->prefixes[i]))
			return 0;
	return 1;
}

/* config/operators.csv and the compiled-in table must not drift apart. */
static void test_operators_csv_matches_default(void **state)
{
	const char *root = getenv("GH_SOURCE_ROOT");
	assert_non_null(root);
	char path[4096];
	snprintf(path, sizeof(path), "%s/config/operators.csv", root);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	static char text[16384];
	size_t len = fread(text, 1, sizeof(text), f);
	fclose(f);
	assert_true(len > 0 && len < sizeof(text));

	gh_operator_t ops[16];
	size_t n = 0, dn;
	gh_err_t err = {0};
	if (gh_operators_parse_csv(text, len, ops, 16, &n, &err))
		fail_msg("%s: %s", path, err.message);
	const gh_operator_t *def = gh_operators_default(&dn);
	assert_int_equal(n, dn);
	for (size_t i = 0; i < n; i++)
		if (!op_equal(&ops[i], &def[i]))
			fail_msg("operator %zu (%s) differs from the compiled-in table", i,
			         ops[i].id);
}

static void test_operators_csv_parse_and_rejects(void **state)
{
	gh_operator_t ops[4];
	size_t n = 99;
	gh_err_t err = {0};
	const char ok[] = "# comment\r\n\r\n"
	                  "id,name,mcc,mnc,msisdn_prefixes,valid_from,valid_to\r\n"
	                  "a,A Net,412,01  02,+9370 +9371,2026-01-01T00:00:00Z,"
	                  "2027-01-01T00:00:00.000Z\r\n"
	                  "b,B Net,412,03,+9370,2027-01-01T00:00:00Z,\n"
	                  "c,C Net,412,04,+9375,,"; /* no final newline */
	if (gh_operators_parse_csv(ok, sizeof(ok) - 1, ops, 4, &n, &err))
		fail_msg("%s", err.message);
	assert_int_equal(n, 3);
	assert_string_equal(ops[0].mnc[0], "01");
	assert_string_equal(ops[0].mnc[1], "02");
	assert_string_equal(ops[0].mnc[2], "");
	assert_string_equal(ops[0].prefixes[1], "+9371");
	assert_true(ops[0].valid_from_ms == 1767225600000LL);
	assert_true(ops[0].valid_to_ms == 1798761600000LL);
	assert_true(ops[1].valid_from_ms == 1798761600000LL && ops[1].valid_to_ms == 0);
	assert_true(ops[2].valid_from_ms == 0 && ops[2].valid_to_ms == 0);
	assert_string_equal(op_for(ops, n, "+93701234567", 1767225600000LL), "a");
	assert_string_equal(op_for(ops, n, "+93701234567", 1798761600000LL), "b");

	const char *hdr = "id,name,mcc,mnc,msisdn_prefixes,valid_from,valid_to\n";
	struct {
		const char *body, *why;
	} bad[] = {
	    {"a,A,412,01,+9370,,\n", "header must be"},
	    {"", "no header line"},
	    {"#\n", "no header line"},
	    {"@a,A,412,01,+9370,,\n", "id must be"},
	    {"a,A,412,01,+9370,\n", "6 columns, expected 7"},
	    {"a,A,412,01,+9370,,,\n", "more than 7 columns"},
	    {"a,\"A, Inc\",412,01,+9370,,\n", "quotes"},
	    {"a,A,412,01,+9370,yesterday,\n", "valid_from"},
	    {"a,A,412,01,+9370,,1970-01-01T00:00:00Z\n", "valid_to"},
	    {"a,A,412,01 02 03 04 05,+9370,,\n", "mnc is too long"},
	    {"a,A,4120,01,+9370,,\n", "mcc"},
	    {"a,A,412,01,9370,,\n", "prefix 0"},
	    {"a,A,412,,+9370,,\n", "mnc 0"},
	    {"a,A,412,01,+9370,,\nb,B,412,02,+9370,,\n", "also held by a"},
	    {"a,A,412,01,+9370,,\nb,B,412,02,+9371,,\nc,C,412,03,+9372,,\nd,D,412,04,+9373,,\n"
	     "e,E,412,05,+9374,,\n",
	     "line 6: more than 4 operators"},
	    {"a,An operator name that is far too long to fit the field,412,01,+9370,,\n",
	     "name is too long"},
	    {"a,A,412,01,+9370\r\r,,\n", "stray CR"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[512];
		int w = snprintf(text, sizeof(text), "%s%s", i < 3 ? "" : hdr, bad[i].body);
		n = 99;
		int rc = gh_operators_parse_csv(text, (size_t)w, ops, 4, &n, &err);
		if (rc != -EINVAL || !strstr(err.message, bad[i].why))
			fail_msg("case %zu: rc %d \"%s\", wanted \"%s\"", i, rc, err.message,
			         bad[i].why);
		assert_int_equal(n, 0);
	}
	const char nul[] =
	    "id,name,mcc,mnc,msisdn_prefixes,valid_from,valid_to\na,A\0,412,01,+9370,,\n";
	assert_int_equal(gh_operators_parse_csv(nul, sizeof(nul) - 1, ops, 4, &n, &err), -EINVAL);
	gh_err_clear(&err);
}

/* ---- the hot path allocates nothing ------------------------------------------------------ */

static void test_normalize_allocates_nothing(void **state)
{
	if (!HAVE_ALLOC_COUNTER)
		skip(); /* ASan owns malloc; the plain build runs this */
	/* the counter sees allocations made through any path, including shared libraries */
	void *(*volatile mp)(size_t) = malloc;
	alloc_count = 0;
	alloc_counting = 1;
	void *p = mp(16);
	alloc_counting = 0;
	free(p);
	assert_int_equal(alloc_count, 1);

	const char *inputs[] = {"+93 70 123 4567", "0093701234567", "93701234567", "0701234567",
	                        "+93 (0)70 123 4567", "100", "MyBank", "My Bank 24",
	                        /* failures fill err: still nothing allocated */
	                        "+92 300 1234567", "070/123", "12", " MyBank", "abcdefghijkl",
	                        "+93 20 123 4567", ""};
	size_t n;
	const gh_operator_t *ops = gh_operators_default(&n);
	gh_err_t err = {0};
	int ok = 0;
	char out[GH_IDENT_BUFSZ];
	alloc_count = 0;
	alloc_counting = 1;
	for (int round = 0; round < 1000; round++) {
		for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
			gh_ident_t id;
			if (gh_ident_normalize(NULL, GH_IDENT_AUTO, inputs[i], strlen(inputs[i]),
			                       &id, &err) == 0) {
				ok++;
				if (id.kind == GH_IDENT_MSISDN &&
				    gh_operator_for_msisdn(ops, n, id.canonical, 0))
					ok++;
			}
			gh_e164_normalize(inputs[i], out, &err);
		}
	}
	alloc_counting = 0;
	assert_int_equal(alloc_count, 0);
	/* 5 MSISDNs (each also found an operator) and 3 others per round */
	assert_int_equal(ok, 1000 * (5 * 2 + 3));
	gh_err_clear(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kind_names_roundtrip),
	    cmocka_unit_test(test_msisdn_accepts_spec_and_separator_forms),
	    cmocka_unit_test(test_msisdn_rejections),
	    cmocka_unit_test(test_msisdn_messages_do_not_echo_digits),
	    cmocka_unit_test(test_e164_pack),
	    cmocka_unit_test(test_short_code_bounds),
	    cmocka_unit_test(test_alpha_rules_and_case_insensitive_canonical),
	    cmocka_unit_test(test_auto_detect_kind),
	    cmocka_unit_test(test_keys_roundtrip_random),
	    cmocka_unit_test(test_canonical_fast_path_agrees_with_parser),
	    cmocka_unit_test(test_key_format_rejects_foreign_keys),
	    cmocka_unit_test(test_rules_check),
	    cmocka_unit_test(test_rules_for_another_country),
	    cmocka_unit_test(test_default_operators_are_spec_e212),
	    cmocka_unit_test(test_operator_longest_prefix_and_effective_dates),
	    cmocka_unit_test(test_operators_csv_matches_default),
	    cmocka_unit_test(test_operators_csv_parse_and_rejects),
	    cmocka_unit_test(test_normalize_allocates_nothing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
