/* hist: bucket layout, quantile error bound against exact sorted quantiles, extremes,
 * count_le, concurrent recording, merge. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hist.h"
#include "testutil.h"

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64*: deterministic, good enough to spread values over magnitudes */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static gh_hist_t *hist_new(void)
{
	gh_hist_t *h = calloc(1, sizeof(*h));
	assert_non_null(h);
	return h;
}

static void test_buckets_monotone_contiguous(void **state)
{
	assert_int_equal(gh_hist_bucket(0), 0);
	assert_int_equal(gh_hist_bucket(-5), 0);
	assert_int_equal(gh_hist_bucket_upper(0), 0);
	assert_int_equal(gh_hist_bucket_upper(-1), -1);
	assert_int_equal(gh_hist_bucket_upper(GH_HIST_BUCKETS), -1);
	for (int i = 0; i < GH_HIST_BUCKETS; i++) {
		int64_t up = gh_hist_bucket_upper(i);
		int64_t lo = i ? gh_hist_bucket_upper(i - 1) + 1 : 0;
		assert_true(up >= lo);
		assert_int_equal(gh_hist_bucket(lo), i);
		assert_int_equal(gh_hist_bucket(up), i);
		if (i + 1 < GH_HIST_BUCKETS)
			assert_int_equal(gh_hist_bucket(up + 1), i + 1);
		/* width bound behind the quantile error: below 2*SUB exact, then <= lo/SUB */
		if (i < 2 * GH_HIST_SUB)
			assert_int_equal(up, lo);
		else
			assert_true((uint64_t)(up - lo + 1) * GH_HIST_SUB <= (uint64_t)lo);
	}
	assert_int_equal(gh_hist_bucket_upper(GH_HIST_BUCKETS - 1), INT64_MAX);
	assert_int_equal(gh_hist_bucket(INT64_MAX), GH_HIST_BUCKETS - 1);
}

static void test_quantile_relative_error_random(void **state)
{
	enum { N = 200000 };
	gh_hist_t *h = hist_new();
	int64_t *v = malloc(N * sizeof(*v));
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	assert_non_null(v);
	for (int i = 0; i < N; i++) {
		/* log-uniform-ish: a random 16-bit mantissa shifted by 0..46 bits */
		uint64_t r = rng_next(&seed);
		v[i] = (int64_t)((r & 0xffff) << ((r >> 32) % 47));
		gh_hist_record(h, v[i]);
	}
	qsort(v, N, sizeof(*v), cmp_i64);
	assert_int_equal(gh_hist_count(h), N);
	assert_int_equal(gh_hist_max(h), v[N - 1]);
	for (int k = 1; k <= 1000; k++) {
		/* q = k/1000, rank = ceil(q * N) exactly, as N is a multiple of 1000 */
		int64_t exact = v[(size_t)k * N / 1000 - 1];
		int64_t got = gh_hist_quantile(h, k / 1000.0);
		assert_true(got >= exact);
		assert_true((double)(got - exact) <= (double)exact / GH_HIST_SUB);
	}
	assert_int_equal(gh_hist_quantile(h, 1.0), v[N - 1]);
	assert_int_equal(gh_hist_quantile(h, 0.0), gh_hist_bucket_upper(gh_hist_bucket(v[0])));
	free(v);
	free(h);
}

static void test_zero_and_huge_values(void **state)
{
	gh_hist_t *h = hist_new();
	assert_int_equal(gh_hist_quantile(h, 0.5), 0);
	assert_int_equal(gh_hist_count(h), 0);
	assert_true(gh_hist_mean(h) == 0.0);
	gh_hist_record(h, 0);
	gh_hist_record(h, -7);
	gh_hist_record(h, INT64_MAX);
	assert_int_equal(gh_hist_count(h), 3);
	assert_int_equal(gh_hist_max(h), INT64_MAX);
	assert_int_equal(gh_hist_sum(h), (uint64_t)INT64_MAX);
	assert_int_equal(gh_hist_quantile(h, 0.5), 0);
	assert_int_equal(gh_hist_quantile(h, 0.67), INT64_MAX);
	assert_int_equal(gh_hist_quantile(h, 1.0), INT64_MAX);
	assert_int_equal(gh_hist_count_le(h, -1), 0);
	assert_int_equal(gh_hist_count_le(h, 0), 2);
	assert_int_equal(gh_hist_count_le(h, 1), 2);
	assert_int_equal(gh_hist_count_le(h, INT64_MAX - (INT64_MAX >> GH_HIST_SUB_BITS)), 2);
	assert_int_equal(gh_hist_count_le(h, INT64_MAX - 1), 3);
	assert_int_equal(gh_hist_count_le(h, INT64_MAX), 3);
	gh_hist_reset(h);
	assert_int_equal(gh_hist_count(h), 0);
	assert_int_equal(gh_hist_max(h), 0);
	assert_int_equal(gh_hist_sum(h), 0);
	free(h);
}

static void test_count_le_bucket_resolution(void **state)
{
	gh_hist_t *h = hist_new();
	for (int64_t v = 1; v <= 100000; v++)
		gh_hist_record(h, v);
	assert_true(gh_hist_mean(h) == 50000.5);
	uint64_t prev = 0;
	for (int64_t v = 0; v <= 100000; v++) {
		uint64_t n = gh_hist_count_le(h, v);
		/* counts every value <= v, plus at most the rest of v's bucket; monotone */
		assert_true(n >= (uint64_t)v);
		assert_true((double)n <= (double)v + (double)v / GH_HIST_SUB);
		int64_t up = gh_hist_bucket_upper(gh_hist_bucket(v));
		assert_int_equal(n, up < 100000 ? up : 100000);
		assert_true(n >= prev);
		prev = n;
	}
	assert_int_equal(gh_hist_count_le(h, 127), 127);
	free(h);
}

enum { THREADS = 4, PER_THREAD = 250000 };

static void *record_worker(void *arg)
{
	gh_hist_t *h = arg;
	for (int64_t i = 0; i < PER_THREAD; i++)
		gh_hist_record(h, i % 5000);
	return NULL;
}

static void test_concurrent_record_sums(void **state)
{
	gh_hist_t *h = hist_new();
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, record_worker, h), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	/* each thread: 50 rounds of 0..4999 */
	assert_int_equal(gh_hist_count(h), (uint64_t)THREADS * PER_THREAD);
	assert_int_equal(gh_hist_sum(h), (uint64_t)THREADS * 50 * (4999 * 5000 / 2));
	assert_int_equal(gh_hist_max(h), 4999);
	assert_int_equal(gh_hist_count_le(h, 99), (uint64_t)THREADS * 50 * 100);
	free(h);
}

static void test_merge_equals_recording_both(void **state)
{
	gh_hist_t *a = hist_new(), *b = hist_new(), *both = hist_new();
	uint64_t seed = 42;
	for (int i = 0; i < 10000; i++) {
		int64_t v = (int64_t)(rng_next(&seed) % 1000000000);
		gh_hist_record(i % 3 ? a : b, v);
		gh_hist_record(both, v);
	}
	gh_hist_record(b, 5000000000LL);
	gh_hist_record(both, 5000000000LL);
	gh_hist_merge(a, b);
	assert_int_equal(gh_hist_count(a), 10001);
	assert_int_equal(gh_hist_sum(a), gh_hist_sum(both));
	assert_int_equal(gh_hist_max(a), 5000000000LL);
	assert_memory_equal(a->counts, both->counts, sizeof(a->counts));
	for (int k = 0; k <= 100; k++)
		assert_int_equal(gh_hist_quantile(a, k / 100.0), gh_hist_quantile(both, k / 100.0));
	free(a);
	free(b);
	free(both);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_buckets_monotone_contiguous),
	    cmocka_unit_test(test_quantile_relative_error_random),
	    cmocka_unit_test(test_zero_and_huge_values),
	    cmocka_unit_test(test_count_le_bucket_resolution),
	    cmocka_unit_test(test_concurrent_record_sums),
	    cmocka_unit_test(test_merge_equals_recording_both),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
