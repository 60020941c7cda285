/* hist: log-linear latency histogram (see hist.h for the bucket layout and its error bound).
 *
 * Bucket index of v: with shift = max(0, msb(v) - SUB_BITS), index = shift * SUB + (v >> shift).
 * For v < 2 * SUB the shift is 0 and the index is v itself; above, v >> shift lies in
 * [SUB, 2 * SUB), so each octave gets SUB consecutive indices right after the previous one. */
#include "hist.h"

static void max_raise(_Atomic int64_t *max, int64_t v)
{
	int64_t cur = atomic_load_explicit(max, memory_order_relaxed);
	while (v > cur && !atomic_compare_exchange_weak_explicit(max, &cur, v, memory_order_relaxed,
	                                                         memory_order_relaxed))
		;
}

int gh_hist_bucket(int64_t v)
{
	uint64_t u = v < 0 ? 0 : (uint64_t)v;
	int shift = (63 - GH_HIST_SUB_BITS) - __builtin_clzll(u | GH_HIST_SUB);
	return (shift << GH_HIST_SUB_BITS) + (int)(u >> shift);
}

static uint64_t bucket_lower(int i)
{
	int octave = i >> GH_HIST_SUB_BITS;
	if (octave == 0)
		return (uint64_t)i;
	return ((uint64_t)(i & (GH_HIST_SUB - 1)) + GH_HIST_SUB) << (octave - 1);
}

int64_t gh_hist_bucket_upper(int i)
{
	if (i < 0 || i >= GH_HIST_BUCKETS)
		return -1;
	int octave = i >> GH_HIST_SUB_BITS;
	if (octave == 0)
		return i;
	uint64_t sub = (uint64_t)(i & (GH_HIST_SUB - 1)) + GH_HIST_SUB;
	return (int64_t)(((sub + 1) << (octave - 1)) - 1);
}

void gh_hist_reset(gh_hist_t *h)
{
	for (int i = 0; i < GH_HIST_BUCKETS; i++)
		atomic_store_explicit(&h->counts[i], 0, memory_order_relaxed);
	atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
	atomic_store_explicit(&h->max, 0, memory_order_relaxed);
}

void gh_hist_record(gh_hist_t *h, int64_t v)
{
	if (v < 0)
		v = 0;
	atomic_fetch_add_explicit(&h->counts[gh_hist_bucket(v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, (uint64_t)v, memory_order_relaxed);
	if (v > atomic_load_explicit(&h->max, memory_order_relaxed))
		max_raise(&h->max, v);
}

static uint64_t load_count(const gh_hist_t *h, int i)
{
	return atomic_load_explicit(&h->counts[i], memory_order_relaxed);
}

uint64_t gh_hist_count(const gh_hist_t *h)
{
	uint64_t n = 0;
	for (int i = 0; i < GH_HIST_BUCKETS; i++)
		n += load_count(h, i);
	return n;
}

uint64_t gh_hist_sum(const gh_hist_t *h)
{
	return atomic_load_explicit(&h->sum, memory_order_relaxed);
}

int64_t gh_hist_max(const gh_hist_t *h)
{
	return atomic_load_explicit(&h->max, memory_order_relaxed);
}

double gh_hist_mean(const gh_hist_t *h)
{
	uint64_t n = gh_hist_count(h);
	return n ? (double)gh_hist_sum(h) / (double)n : 0.0;
}

/* Rank (1-based) of the q-quantile among n values: ceil(q * n) clamped to [1, n]. The small
 * tolerance keeps 0.07 * 100 (7.000000000000001 in binary) at rank 7. */
static uint64_t quantile_rank(double q, uint64_t n)
{
	if (!(q > 0.0))
		return 1;
	if (q >= 1.0)
		return n;
	double r = q * (double)n;
	uint64_t k = (uint64_t)r;
	if (r - (double)k > 1e-9 * r)
		k++;
	return k < 1 ? 1 : k > n ? n : k;
}

int64_t gh_hist_quantile(const gh_hist_t *h, double q)
{
	uint64_t n = gh_hist_count(h);
	if (n == 0)
		return 0;
	uint64_t rank = quantile_rank(q, n), cum = 0;
	int i, last = 0;
	/* Writers only add, so the second pass reaches rank no later than the first saw it; the
	 * fallback to the last non-empty bucket covers a concurrent reset. */
	for (i = 0; i < GH_HIST_BUCKETS; i++) {
		uint64_t c = load_count(h, i);
		if (!c)
			continue;
		last = i;
		cum += c;
		if (cum >= rank)
			break;
	}
	if (i == GH_HIST_BUCKETS)
		i = last;
	/* The exact maximum tightens the top bucket; a max that lags the bucket counts (it is
	 * written separately) is ignored rather than trusted below the bucket's range. */
	int64_t upper = gh_hist_bucket_upper(i), max = gh_hist_max(h);
	if (max < upper && (uint64_t)max >= bucket_lower(i))
		return max;
	return upper;
}

uint64_t gh_hist_count_le(const gh_hist_t *h, int64_t v)
{
	if (v < 0)
		return 0;
	int last = gh_hist_bucket(v);
	uint64_t n = 0;
	for (int i = 0; i <= last; i++)
		n += load_count(h, i);
	return n;
}

void gh_hist_merge(gh_hist_t *dst, const gh_hist_t *src)
{
	for (int i = 0; i < GH_HIST_BUCKETS; i++) {
		uint64_t c = load_count(src, i);
		if (c)
			atomic_fetch_add_explicit(&dst->counts[i], c, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&dst->sum, gh_hist_sum(src), memory_order_relaxed);
	max_raise(&dst->max, gh_hist_max(src));
}
