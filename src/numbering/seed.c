/* seed: demo data for a first start (issue 3, item 6), so that `make run` can be tried with curl
 * right away (README "Try it"). Runs only when the database holds no numbers; everything is
 * deterministic:
 *   - pools: tenant-enterprise, tenant-smb, tenant-government (ACTIVE, quotas by segment);
 *   - MSISDNs round-robin over the operators and their prefixes; the first one of each
 *     (operator, prefix) ends in 1234567, so the very first is +93701234567 (AWCC, +9370);
 *     every 100th is a vanity number (tier 1);
 *   - 50 short codes 3000..3049 over the operators; a few alpha sender ids.
 * Numbers go in batches of 1000 per transaction (one audit row and event each, as any add). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>

#include "service.h"

#define BATCH       1000
#define SHORT_CODES 50

static const char *const alpha_ids[] = {
    "GHASI",     "MyBank",  "AfgTelecom", "Gov Alerts", "ShopNow",
    "Kabul Air", "Weather", "HealthInfo", "Tax Office", "Election",
};

typedef struct {
	const char *tenant;
	const char *segment;
	int msisdn, short_code, alpha, max_reservations, term_days;
	bool vanity, direct;
} demo_pool_t;

static const demo_pool_t pools[] = {
    {NUM_DEMO_TENANT_ENTERPRISE, "enterprise", 1000, 10, 20, 200, 30, true, false},
    {NUM_DEMO_TENANT_SMB, "smb", 50, 1, 3, 20, 30, false, false},
    {NUM_DEMO_TENANT_GOVERNMENT, "government", 500, 20, 10, 100, 365, true, true},
};

static int seed_pools(num_svc_t *s, const num_optab_t *ops, int64_t now, gh_err_t *err)
{
	for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
		const demo_pool_t *p = &pools[i];
		json_t *allowed = json_array();
		for (size_t k = 0; k < ops->n; k++)
			json_array_append_new(allowed, json_string(ops->ops[k].id));
		json_t *body = json_pack(
		    "{ss ss s{si si si} si so s[sss] sb sb si sb}", "status", "ACTIVE", "segment",
		    p->segment, "quotas", "MSISDN", p->msisdn, "SHORT_CODE", p->short_code, "ALPHA",
		    p->alpha, "max_reservations", p->max_reservations, "allowed_operators", allowed,
		    "allowed_kinds", "MSISDN", "SHORT_CODE", "ALPHA", "vanity_allowed", p->vanity,
		    "direct_assign", p->direct, "lease_term_days", p->term_days, "auto_renew", 1);
		if (!body)
			return gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
		json_t *out = NULL;
		int rc =
		    num_repo_pool_put(s->repo, p->tenant, body, -1, "system:seed", now, &out, err);
		json_decref(body);
		json_decref(out);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The i-th demo MSISDN into buf; false when its operator does not own it (nested prefixes of
 * another operator), so it is skipped. */
static bool demo_msisdn(const num_optab_t *t, size_t i, int64_t now, char buf[GH_IDENT_BUFSZ],
                        const char **op_id)
{
	const gh_operator_t *op = &t->ops[i % t->n];
	size_t k = i / t->n, np = 0;
	while (np < GH_OPERATOR_MAX_PREFIXES && op->prefixes[np][0])
		np++;
	if (!np)
		return false;
	const char *prefix = op->prefixes[k % np];
	size_t j = k / np, len = strlen(prefix), width = 12 - len; /* "+93" + 9 digits */
	if (len >= 12)
		return false;
	uint64_t mod = 1;
	for (size_t d = 0; d < width; d++)
		mod *= 10;
	/* 7919 is prime, so coprime with 10^width: j -> suffix is a bijection below mod. */
	uint64_t suffix = (1234567u + (uint64_t)j * 7919u) % mod;
	char full[48];
	int n =
	    snprintf(full, sizeof full, "%s%0*llu", prefix, (int)width, (unsigned long long)suffix);
	if (n < 0 || n >= GH_IDENT_BUFSZ)
		return false;
	memcpy(buf, full, (size_t)n + 1);
	*op_id = op->id;
	return gh_operator_for_msisdn(t->ops, t->n, buf, now) == op;
}

static int add_batch(num_svc_t *s, num_new_t *b, size_t n, int64_t now, gh_err_t *err)
{
	return n ? num_repo_add(s->repo, b, n, "system:seed", now, err) : 0;
}

int num_seed_demo(num_svc_t *s, int64_t msisdns, int64_t now_ms, bool *seeded, gh_err_t *err)
{
	if (seeded)
		*seeded = false;
	void *tmp = talloc_new(NULL);
	num_filter_t any = {.kind = -1, .state = -1, .vanity_min = -1};
	num_number_t *rows = NULL;
	size_t n = 0;
	uint64_t next = 0;
	int rc = num_repo_list(s->repo, &any, 0, 1, tmp, &rows, &n, &next, err);
	if (rc < 0 || n > 0)
		goto out;
	const num_optab_t *ops = atomic_load(&s->optab);
	if (!ops->n) {
		rc = gh_err_set(err, GH_E_FAILED_PRECONDITION, NULL, "no operators to seed under");
		goto out;
	}
	int64_t t0 = gh_clock_mono_ns(s->clock);
	if ((rc = seed_pools(s, ops, now_ms, err)) < 0)
		goto out;

	num_new_t *b = talloc_array(tmp, num_new_t, BATCH);
	typedef char ident_buf_t[GH_IDENT_BUFSZ];
	ident_buf_t *ids = talloc_array(tmp, ident_buf_t, BATCH);
	if (!b || !ids) {
		rc = gh_err_set(err, GH_E_INTERNAL, NULL, "out of memory");
		goto out;
	}
	size_t nb = 0, added = 0;
	for (size_t i = 0; added + nb < (size_t)msisdns && i < (size_t)msisdns * 4; i++) {
		const char *op_id;
		if (!demo_msisdn(ops, i, now_ms, ids[nb], &op_id))
			continue;
		b[nb] = (num_new_t){.identifier = ids[nb],
		                    .kind = GH_IDENT_MSISDN,
		                    .operator_id = op_id,
		                    .vanity_tier = (i % 100 == 99) ? 1 : 0};
		if (++nb == BATCH) {
			if ((rc = add_batch(s, b, nb, now_ms, err)) < 0)
				goto out;
			added += nb;
			nb = 0;
		}
	}
	if ((rc = add_batch(s, b, nb, now_ms, err)) < 0)
		goto out;
	added += nb;
	nb = 0;

	for (size_t i = 0; i < SHORT_CODES; i++) {
		snprintf(ids[nb], GH_IDENT_BUFSZ, "%zu", 3000 + i);
		b[nb] = (num_new_t){.identifier = ids[nb],
		                    .kind = GH_IDENT_SHORT_CODE,
		                    .operator_id = ops->ops[i % ops->n].id};
		nb++;
	}
	size_t n_alpha = sizeof alpha_ids / sizeof alpha_ids[0];
	for (size_t i = 0; i < n_alpha; i++)
		b[nb++] = (num_new_t){.identifier = alpha_ids[i], .kind = GH_IDENT_ALPHA};
	if ((rc = add_batch(s, b, nb, now_ms, err)) < 0)
		goto out;

	char c1[24], c2[24], c3[24], c4[24];
	snprintf(c1, sizeof c1, "%zu", added);
	snprintf(c2, sizeof c2, "%d", SHORT_CODES);
	snprintf(c3, sizeof c3, "%zu", n_alpha);
	snprintf(c4, sizeof c4, "%.0f", (double)(gh_clock_mono_ns(s->clock) - t0) / 1e6);
	gh_log(GH_LOG_INFO, "numbering: demo data seeded", "msisdns", c1, "short_codes", c2,
	       "alpha_ids", c3, "pools",
	       NUM_DEMO_TENANT_ENTERPRISE "," NUM_DEMO_TENANT_SMB "," NUM_DEMO_TENANT_GOVERNMENT,
	       "ms", c4, NULL);
	if (seeded)
		*seeded = true;
	rc = 0;
out:
	talloc_free(tmp);
	return rc;
}
