/* bench_num_index: the in-process ValidateLease index with N numbers loaded.
 *
 *   bench_num_index [numbers] [lookups]     defaults 1000000 and 20000000
 * bench.sh: taskset -c 0
 *
 * Loads N assigned MSISDNs with live leases over 100 tenants (bulk load, timed from creating the
 * index, so page faults count), then runs single-thread validates of random keys that hit,
 * (keys picked in advance, read sequentially), first with the caller's tenant already resolved
 * (what the index costs), then resolving the tenant id string on each call as the HTTP handler
 * does. Prints one line: bench_num_index numbers=N load_ms=... bytes_per_number=...
 * rss_bytes_per_number=... lookups_per_s=... lookups_tenant_str_per_s=... */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include "index.h"

#define TENANTS 100

typedef struct {
	char s[40];
} tenant_id_t;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_bytes(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return rss * sysconf(_SC_PAGESIZE);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	long n_look = argc > 2 ? atol(argv[2]) : 20000000;
	if (n <= 0 || n > 100000000 || n_look <= 0)
		return 2;
	void *ctx = talloc_new(NULL);
	const int64_t now = (int64_t)time(NULL) * 1000;

	/* Input prepared before timing: distinct MSISDNs +937XXXXXXXX spread over the range. */
	num_index_entry_t *in = talloc_array(ctx, num_index_entry_t, n);
	uint32_t *holder = talloc_array(ctx, uint32_t, n);
	tenant_id_t *tenant_ids = talloc_array(ctx, tenant_id_t, TENANTS);
	if (!in || !holder || !tenant_ids)
		return 1;
	const uint64_t span = 100000000ULL / (uint64_t)n; /* 9-digit national numbers 7XXXXXXXX */
	for (long i = 0; i < n; i++) {
		uint64_t digits = 93700000000ULL + (uint64_t)i * span + rnd() % span;
		memset(&in[i], 0, sizeof(in[i]));
		in[i].key = (1ULL << 62) | digits;
		in[i].version = 1;
		in[i].lease_ends_at_ms = now + 30LL * 86400 * 1000;
		uint64_t a = rnd(), b = rnd();
		memcpy(in[i].lease_id, &a, 8);
		memcpy(in[i].lease_id + 8, &b, 8);
		in[i].operator_idx = (uint16_t)(i % 5);
		in[i].state = NUM_ST_ASSIGNED;
		in[i].lease_status = NUM_LEASE_ACTIVE;
	}
	for (int t = 0; t < TENANTS; t++)
		snprintf(tenant_ids[t].s, sizeof(tenant_ids[t].s), "7c2dfc3d-c7de-4573-8000-%012d",
		         t);

	long rss0 = rss_bytes();
	double t0 = now_s();
	num_index_t *ix;
	if (num_index_new(ctx, (size_t)n, 4096, &ix) < 0)
		return 1;
	uint32_t tidx[TENANTS];
	for (int t = 0; t < TENANTS; t++) {
		if (num_index_tenant_intern(ix, tenant_ids[t].s, &tidx[t]) < 0 ||
		    num_index_tenant_set_status(ix, tidx[t], NUM_POOL_ACTIVE) < 0)
			return 1;
	}
	for (long i = 0; i < n; i++) {
		holder[i] = (uint32_t)(rnd() % TENANTS);
		in[i].tenant = tidx[holder[i]];
	}
	size_t done;
	int rc = num_index_load(ix, in, (size_t)n, &done);
	double load_s = now_s() - t0;
	long rss1 = rss_bytes();
	if (rc < 0) {
		fprintf(stderr, "bench_num_index: load: %s after %zu\n", strerror(-rc), done);
		return 1;
	}
	num_index_touch(ix, now);

	/* Random hits: a list of positions, read sequentially while the table is hit randomly. */
	const long batch = 1 << 20;
	typedef struct {
		uint64_t key;
		uint32_t tenant, holder;
	} pick_t;
	pick_t *pick = talloc_array(ctx, pick_t, batch);
	if (!pick)
		return 1;
	for (long i = 0; i < batch; i++) {
		uint32_t p = (uint32_t)(rnd() % (uint64_t)n);
		pick[i] = (pick_t){in[p].key, in[p].tenant, holder[p]};
	}

	long allowed = 0;
	num_validate_t v;
	double t1 = now_s();
	for (long j = 0; j < n_look; j++) {
		const pick_t *p = &pick[j & (batch - 1)];
		if (num_validate(ix, p->key, p->tenant, now, &v) == 0 && v.allowed)
			allowed++;
	}
	double look_s = now_s() - t1;
	if (allowed != n_look) {
		fprintf(stderr, "bench_num_index: %ld of %ld allowed\n", allowed, n_look);
		return 1;
	}

	long n_str = n_look / 4, allowed_str = 0;
	double t2 = now_s();
	for (long j = 0; j < n_str; j++) {
		const pick_t *p = &pick[j & (batch - 1)];
		uint32_t t;
		if (num_index_tenant_find(ix, tenant_ids[p->holder].s, &t) == 0 &&
		    num_validate(ix, p->key, t, now, &v) == 0 && v.allowed)
			allowed_str++;
	}
	double str_s = now_s() - t2;
	if (allowed_str != n_str)
		return 1;

	num_index_stats_t st;
	num_index_stats(ix, &st);
	printf("bench_num_index numbers=%ld load_ms=%.0f bytes_per_number=%.1f "
	       "rss_bytes_per_number=%.1f lookups_per_s=%.0f lookups_tenant_str_per_s=%.0f\n",
	       n, load_s * 1000, st.bytes_per_number, (double)(rss1 - rss0) / (double)n,
	       (double)n_look / look_s, (double)n_str / str_s);
	talloc_free(ctx);
	return 0;
}
