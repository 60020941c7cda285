/* hist: HDR-style log-linear latency histogram.
 *
 * Values (non-negative int64, usually ns) fall into buckets that are linear inside each power
 * of two: values below 2^(GH_HIST_SUB_BITS + 1) have a bucket each, above that every octave
 * [2^k, 2^(k+1)) is cut into 2^GH_HIST_SUB_BITS equal buckets, so a bucket is never wider than
 * 1/2^GH_HIST_SUB_BITS of its lower bound and the relative error of any quantile is below that
 * (under 1.6% with 6 bits). The counts live in one fixed array inside the struct (about 29 KiB):
 * recording is a few integer ops, one relaxed atomic increment of the bucket and one relaxed
 * atomic add to the exact sum (the maximum is a relaxed load, a CAS only on a new maximum); no
 * allocation, any thread. The total count is the sum of the buckets, so a reader always sees a
 * count that agrees with the buckets it read. Readers may run concurrently with writers and see
 * a recent state. */
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
	_Atomic uint64_t sum; /* wraps after ~584 years of ns; fine for exposition */
	_Atomic int64_t max;
} gh_hist_t;

/* Zero the histogram (also the way to initialise one; all-zero memory is a valid empty one).
 * Not atomic as a whole against concurrent writers. */
void gh_hist_reset(gh_hist_t *h);
/* Record one value; negative values count as 0. */
void gh_hist_record(gh_hist_t *h, int64_t v);
/* Number of recorded values (sum over the buckets). */
uint64_t gh_hist_count(const gh_hist_t *h);
/* Exact sum of the recorded values (modulo 2^64). */
uint64_t gh_hist_sum(const gh_hist_t *h);
/* Exact largest recorded value; 0 when empty. */
int64_t gh_hist_max(const gh_hist_t *h);
/* Exact mean (sum / count); 0 when empty. */
double gh_hist_mean(const gh_hist_t *h);
/* Smallest recorded-bucket upper bound v such that at least q of the values are <= v
 * (q in [0,1]; q <= 0 gives the minimum's bucket), capped at the exact maximum; 0 when empty.
 * For a true quantile x the result r satisfies x <= r < x * (1 + 1/GH_HIST_SUB). */
int64_t gh_hist_quantile(const gh_hist_t *h, double q);
/* Number of recorded values <= v at bucket resolution: every bucket up to and including the
 * one holding v, so a value equal to v always counts (durations from ms clocks land exactly on
 * decimal bounds) and values up to the end of v's bucket (less than v/2^GH_HIST_SUB above v)
 * count too. 0 for v < 0; monotone in v. */
uint64_t gh_hist_count_le(const gh_hist_t *h, int64_t v);
/* Add the counts, sum and max of src into dst (atomically per field; src may be live). */
void gh_hist_merge(gh_hist_t *dst, const gh_hist_t *src);
/* Index of the bucket holding v (negative counts as 0), and the largest value that maps to
 * bucket i (i in [0, GH_HIST_BUCKETS); -1 outside). Buckets are contiguous: bucket i + 1 starts
 * at gh_hist_bucket_upper(i) + 1, and the last one ends at INT64_MAX. */
int gh_hist_bucket(int64_t v);
int64_t gh_hist_bucket_upper(int gh_bucket);

#endif
