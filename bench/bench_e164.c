/* bench_e164: identifier normalisation throughput on one thread, as ValidateLease pays it.
 * Inputs rotate over 4096 MSISDNs written in the four spec forms, and a mix with short codes
 * and alpha ids for the auto-detecting path; every input is valid (a refusal aborts the run, so
 * the error path is never what is measured). Prints one line:
 *   bench_e164 msisdn_per_s=N auto_mixed_per_s=N operator_lookup_per_s=N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e164.h"

#include "benchutil.h"

enum { N_IN = 4096 };

static char inputs[N_IN][24];
static size_t lens[N_IN];

static void fill(int mixed)
{
	uint64_t s = 88172645463325252ULL;
	for (int i = 0; i < N_IN; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		int a = (int)(s % 10), b = (int)(s / 10 % 1000), c = (int)(s / 10000 % 10000);
		if (mixed && i % 4 == 1)
			snprintf(inputs[i], sizeof(inputs[i]), "%d", 100 + b);
		else if (mixed && i % 4 == 3)
			snprintf(inputs[i], sizeof(inputs[i]), "Shop%d Kabul", a);
		else if (i % 4 == 0)
			snprintf(inputs[i], sizeof(inputs[i]), "+93 7%d %03d %04d", a, b, c);
		else if (i % 4 == 1)
			snprintf(inputs[i], sizeof(inputs[i]), "00937%d%03d%04d", a, b, c);
		else if (i % 4 == 2)
			snprintf(inputs[i], sizeof(inputs[i]), "937%d%03d%04d", a, b, c);
		else
			snprintf(inputs[i], sizeof(inputs[i]), "07%d%03d%04d", a, b, c);
		lens[i] = strlen(inputs[i]);
	}
}

/* runs of N_IN normalisations until at least 1 s has passed; returns per second */
static double run(gh_ident_kind_t kind, int lookup, uint64_t *sink)
{
	size_t nops;
	const gh_operator_t *ops = gh_operators_default(&nops);
	uint64_t done = 0;
	double t0 = bench_now_s(), t;
	do {
		for (int i = 0; i < N_IN; i++) {
			gh_ident_t id;
			if (gh_ident_normalize(NULL, kind, inputs[i], lens[i], &id, NULL) == 0) {
				*sink += id.key;
				if (lookup && id.kind == GH_IDENT_MSISDN) {
					const gh_operator_t *op = gh_operator_for_msisdn(
					    ops, nops, id.canonical, 1790000000000LL);
					*sink += op ? (uint64_t)op->mnc[0][1] : 0;
				}
			} else {
				fprintf(stderr, "bench_e164: \"%s\" refused\n", inputs[i]);
				exit(1);
			}
		}
		done += N_IN;
		t = bench_now_s();
	} while (t - t0 < 1.0);
	return (double)done / (t - t0);
}

int main(void)
{
	uint64_t sink = 0;
	fill(0);
	double msisdn = run(GH_IDENT_MSISDN, 0, &sink);
	double lookup = run(GH_IDENT_MSISDN, 1, &sink);
	fill(1);
	double mixed = run(GH_IDENT_AUTO, 0, &sink);
	bench_report("bench_e164",
	             "msisdn_per_s=%.0f auto_mixed_per_s=%.0f operator_lookup_per_s=%.0f sink=%llu",
	             msisdn, mixed, lookup, (unsigned long long)(sink & 0xff));
	return 0;
}
