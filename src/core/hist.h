/* hist: HDR-style log-linear latency histogram.
 *
 * Values (non-negative int64, usually ns) fall into buckets that are linear inside each power
 * of two: 2^GH_HIST_SUB_BITS sub-buckets per octave, so the relative error of any quantile is
 * below 1/2^GH_HIST_SUB_BITS (under 1.6% with 6 bits). The counts live in one fixed array inside
 * the struct: recording is one atomic increment, no allocation, any thread. */
#ifndef GH_HIST_H
#define GH_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define GH_HIST_SUB_BITS 6
#define GH_HIST_SUB      (1 << GH_HIST_SUB_BITS)
/* octaves 0..(63 - SUB_BITS) each with SUB buckets, plus the first linear range */
#define GH_HIST_BUCKETS ((64 - GH_HIST_SUB_BITS) * GH_HIST_SUB)

typedef struct gh_hist_s {
	_Atomic uint64_t counts[GH_HIST_BUCKETS];
	_Atomic uint64_t total;
	_Atomic uint64_t sum; /* wraps after ~584 years of ns; fine for exposition */
	_Atomic int64_t max;
} gh_hist_t;

void gh_hist_reset(gh_hist_t *h);
/* Record one value; negative values count as 0. */
void gh_hist_record(gh_hist_t *h, int64_t v);
uint64_t gh_hist_count(const gh_hist_t *h);
int64_t gh_hist_max(const gh_hist_t *h);
double gh_hist_mean(const gh_hist_t *h);
/* Smallest recorded-bucket upper bound v such that at least q of the values are <= v
 * (q in [0,1]); 0 when empty. */
int64_t gh_hist_quantile(const gh_hist_t *h, double q);
/* Number of recorded values <= v (bucket resolution), for cumulative exposition buckets. */
uint64_t gh_hist_count_le(const gh_hist_t *h, int64_t v);
/* Add the counts of src into dst. */
void gh_hist_merge(gh_hist_t *dst, const gh_hist_t *src);
/* Index of the bucket holding v, and the largest value that maps to bucket i (for tests). */
int gh_hist_bucket(int64_t v);
int64_t gh_hist_bucket_upper(int gh_bucket);

#endif
