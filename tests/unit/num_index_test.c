/* num_index: ValidateLease rules and reasons, versions and invalidation markers, fixed capacity,
 * tenant pool flips, freshness, and readers racing a writer without ever seeing a torn entry. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <talloc.h>
#include <time.h>

#include "index.h"
#include "testutil.h"

#define NOW 1700000000000LL

/* gh_ident keys: kind + 1 in bits 63-62, then the E.164 digits (core e164.h). */
static uint64_t msisdn_key(uint64_t i) { return (1ULL << 62) | (93700000000ULL + i); }

typedef struct {
	void *ctx;
	num_index_t *ix;
	uint32_t a, b, susp, unknown;
} fix_t;

static int setup(void **state)
{
	fix_t *f = talloc_zero(NULL, fix_t);
	f->ctx = f;
	assert_int_equal(num_index_new(f, 1000, 16, &f->ix), 0);
	assert_int_equal(num_index_tenant_intern(f->ix, "tenant-a", &f->a), 0);
	assert_int_equal(num_index_tenant_intern(f->ix, "tenant-b", &f->b), 0);
	assert_int_equal(num_index_tenant_intern(f->ix, "tenant-s", &f->susp), 0);
	assert_int_equal(num_index_tenant_intern(f->ix, "tenant-u", &f->unknown), 0);
	assert_int_equal(num_index_tenant_set_status(f->ix, f->a, NUM_POOL_ACTIVE), 0);
	assert_int_equal(num_index_tenant_set_status(f->ix, f->b, NUM_POOL_ACTIVE), 0);
	assert_int_equal(num_index_tenant_set_status(f->ix, f->susp, NUM_POOL_SUSPENDED), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	talloc_free(*state);
	return 0;
}

static num_index_entry_t leased(uint64_t key, uint32_t tenant, num_state_t st,
                                num_lease_status_t ls, int64_t ends)
{
	num_index_entry_t e = {.key = key,
	                       .version = 1,
	                       .lease_ends_at_ms = ends,
	                       .tenant = tenant,
	                       .operator_idx = 3,
	                       .state = st,
	                       .lease_status = ls};
	memset(e.lease_id, 0x5a, sizeof(e.lease_id));
	return e;
}

enum { A, B, S, U, NONE };

static void test_validate_rules_and_reasons(void **state)
{
	fix_t *f = *state;
	uint32_t tid[] = {f->a, f->b, f->susp, f->unknown, NUM_TENANT_NONE};
	const int64_t later = NOW + 3600000;
	struct {
		const char *name;
		num_state_t st;
		num_lease_status_t ls;
		int64_t ends;
		int holder, caller;
		int rc;
		num_vreason_t want;
	} c[] = {
	    {"available", NUM_ST_AVAILABLE, NUM_LEASE_NONE, 0, NONE, A, 0, NUM_VR_NOT_LEASED},
	    {"reserved by caller", NUM_ST_RESERVED, NUM_LEASE_NONE, 0, A, A, 0, NUM_VR_NOT_LEASED},
	    {"reserved by other", NUM_ST_RESERVED, NUM_LEASE_NONE, 0, B, A, 0, NUM_VR_NOT_LEASED},
	    {"retired", NUM_ST_RETIRED, NUM_LEASE_NONE, 0, NONE, A, 0, NUM_VR_NOT_LEASED},
	    {"quarantined", NUM_ST_QUARANTINED, NUM_LEASE_ENDED, NOW, NONE, A, 0,
	     NUM_VR_QUARANTINE_ACTIVE},
	    {"allowed", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, A, A, 0, NUM_VR_ALLOWED},
	    {"one ms left", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, NOW + 1, A, A, 0, NUM_VR_ALLOWED},
	    {"ends now", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, NOW, A, A, 0, NUM_VR_LEASE_EXPIRED},
	    {"lease ended", NUM_ST_ASSIGNED, NUM_LEASE_ENDED, later, A, A, 0, NUM_VR_LEASE_EXPIRED},
	    {"other tenant", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, A, B, 0,
	     NUM_VR_WRONG_TENANT},
	    {"tenant unknown to index", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, A, NONE, 0,
	     NUM_VR_WRONG_TENANT},
	    {"other tenant, suspended lease", NUM_ST_SUSPENDED, NUM_LEASE_SUSPENDED, later, A, B, 0,
	     NUM_VR_WRONG_TENANT},
	    {"other tenant's pool suspended", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, S, A, 0,
	     NUM_VR_WRONG_TENANT},
	    {"pool suspended", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, S, S, 0,
	     NUM_VR_TENANT_SUSPENDED},
	    {"pool suspended beats lease", NUM_ST_SUSPENDED, NUM_LEASE_SUSPENDED, NOW - 1, S, S, 0,
	     NUM_VR_TENANT_SUSPENDED},
	    {"number suspended", NUM_ST_SUSPENDED, NUM_LEASE_SUSPENDED, later, A, A, 0,
	     NUM_VR_LEASE_SUSPENDED},
	    {"lease suspended", NUM_ST_ASSIGNED, NUM_LEASE_SUSPENDED, later, A, A, 0,
	     NUM_VR_LEASE_SUSPENDED},
	    {"suspended beats expired", NUM_ST_SUSPENDED, NUM_LEASE_SUSPENDED, NOW - 1, A, A, 0,
	     NUM_VR_LEASE_SUSPENDED},
	    {"assigned without lease", NUM_ST_ASSIGNED, NUM_LEASE_NONE, later, A, A, 0,
	     NUM_VR_NOT_LEASED},
	    {"pool status unknown", NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, later, U, U, -ENOENT, 0},
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint64_t key = msisdn_key(i);
		num_index_entry_t e = leased(key, tid[c[i].holder], c[i].st, c[i].ls, c[i].ends);
		assert_int_equal(num_index_upsert(f->ix, &e), 0);
		num_validate_t v;
		int rc = num_validate(f->ix, key, tid[c[i].caller], NOW, &v);
		if (rc != c[i].rc)
			fail_msg("%s: rc %d want %d", c[i].name, rc, c[i].rc);
		if (rc == 0 && v.reason != c[i].want)
			fail_msg("%s: %s want %s", c[i].name, num_vreason_name(v.reason),
			         num_vreason_name(c[i].want));
		if (rc == 0) {
			assert_int_equal(v.allowed, c[i].want == NUM_VR_ALLOWED);
			assert_int_equal(v.entry.key, key);
			assert_int_equal(v.entry.lease_ends_at_ms, c[i].ends);
			assert_int_equal(v.entry.lease_id[15], 0x5a);
			assert_int_equal(v.entry.operator_idx, 3);
		}
	}
}

static void test_miss_is_not_not_registered(void **state)
{
	fix_t *f = *state;
	num_validate_t v;
	assert_int_equal(num_validate(f->ix, msisdn_key(999), f->a, NOW, &v), -ENOENT);
	assert_int_equal(num_validate_rule(NULL, false, NUM_POOL_ACTIVE, NOW),
	                 NUM_VR_NOT_REGISTERED);
	/* a complete index answers NOT_REGISTERED itself, but never for an invalidated key */
	assert_int_equal(num_index_invalidate(f->ix, msisdn_key(998), 4), 0);
	num_index_set_complete(f->ix, true);
	assert_int_equal(num_validate(f->ix, msisdn_key(999), f->a, NOW, &v), 0);
	assert_int_equal(v.reason, NUM_VR_NOT_REGISTERED);
	assert_false(v.allowed);
	assert_int_equal(num_validate(f->ix, msisdn_key(998), f->a, NOW, &v), -ENOENT);
	num_index_entry_t e;
	assert_int_equal(num_index_get(f->ix, msisdn_key(999), &e), -ENOENT);
	assert_string_equal(num_vreason_name(NUM_VR_QUARANTINE_ACTIVE), "QUARANTINE_ACTIVE");
}

static void test_tenant_suspension_flips_every_number(void **state)
{
	fix_t *f = *state;
	for (uint64_t i = 0; i < 500; i++) {
		num_index_entry_t e = leased(msisdn_key(i), i % 2 ? f->b : f->a, NUM_ST_ASSIGNED,
		                             NUM_LEASE_ACTIVE, NOW + 1000);
		assert_int_equal(num_index_upsert(f->ix, &e), 0);
	}
	assert_int_equal(num_index_tenant_set_status(f->ix, f->a, NUM_POOL_SUSPENDED), 0);
	for (int round = 0; round < 2; round++) {
		for (uint64_t i = 0; i < 500; i++) {
			num_validate_t v;
			uint32_t t = i % 2 ? f->b : f->a;
			assert_int_equal(num_validate(f->ix, msisdn_key(i), t, NOW, &v), 0);
			num_vreason_t want =
			    (i % 2 || round == 1) ? NUM_VR_ALLOWED : NUM_VR_TENANT_SUSPENDED;
			assert_int_equal(v.reason, want);
		}
		assert_int_equal(num_index_tenant_set_status(f->ix, f->a, NUM_POOL_ACTIVE), 0);
	}
	assert_int_equal(num_index_tenant_status(f->ix, f->a), NUM_POOL_ACTIVE);
	assert_int_equal(num_index_tenant_set_status(f->ix, 99, NUM_POOL_ACTIVE), -EINVAL);
	assert_int_equal(num_index_tenant_set_status(f->ix, f->a, NUM_POOL__COUNT), -EINVAL);
}

static void test_versions_and_invalidation_markers(void **state)
{
	fix_t *f = *state;
	uint64_t k = msisdn_key(7);
	num_index_entry_t e = leased(k, f->a, NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, NOW + 1000), got;
	e.version = 5;
	assert_int_equal(num_index_upsert(f->ix, &e), 0);
	e.version = 4;
	assert_int_equal(num_index_upsert(f->ix, &e), -ESTALE);
	e.version = 5; /* a replay with other content changes nothing */
	e.state = NUM_ST_QUARANTINED;
	assert_int_equal(num_index_upsert(f->ix, &e), 0);
	assert_int_equal(num_index_get(f->ix, k, &got), 0);
	assert_int_equal(got.state, NUM_ST_ASSIGNED);
	e.version = 6;
	assert_int_equal(num_index_upsert(f->ix, &e), 0);
	assert_int_equal(num_index_get(f->ix, k, &got), 0);
	assert_int_equal(got.state, NUM_ST_QUARANTINED);
	assert_int_equal(got.version, 6);

	/* another replica announces version 8: a DB fill that read version 7 must not stick */
	assert_int_equal(num_index_invalidate(f->ix, k, 8), 0);
	num_validate_t v;
	assert_int_equal(num_validate(f->ix, k, f->a, NOW, &v), -ENOENT);
	assert_int_equal(num_index_get(f->ix, k, &got), -ENOENT);
	e.version = 7;
	assert_int_equal(num_index_upsert(f->ix, &e), -ESTALE);
	e.version = 8;
	e.state = NUM_ST_ASSIGNED;
	assert_int_equal(num_index_upsert(f->ix, &e), 0);
	assert_int_equal(num_validate(f->ix, k, f->a, NOW, &v), 0);
	assert_int_equal(v.reason, NUM_VR_ALLOWED);
	/* an announcement of what the index already holds is a no-op */
	assert_int_equal(num_index_invalidate(f->ix, k, 8), 0);
	assert_int_equal(num_index_invalidate(f->ix, k, 3), 0);
	assert_int_equal(num_index_get(f->ix, k, &got), 0);

	/* announcement of a key the index never held leaves a marker */
	uint64_t k2 = msisdn_key(8);
	assert_int_equal(num_index_invalidate(f->ix, k2, 3), 0);
	e.key = k2;
	e.version = 2;
	assert_int_equal(num_index_upsert(f->ix, &e), -ESTALE);
	e.version = 3;
	assert_int_equal(num_index_upsert(f->ix, &e), 0);
	assert_int_equal(num_index_get(f->ix, k2, &got), 0);
	assert_int_equal(got.version, 3);
}

static void test_capacity_is_fixed_and_clear(void **state)
{
	void *ctx = talloc_new(NULL);
	num_index_t *ix;
	uint32_t t;
	assert_int_equal(num_index_new(ctx, 100, 2, &ix), 0);
	assert_int_equal(num_index_tenant_intern(ix, "t1", &t), 0);
	num_index_entry_t e[150];
	for (int i = 0; i < 150; i++)
		e[i] = leased(msisdn_key(i), t, NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, NOW + 1);
	num_index_set_complete(ix, true);
	size_t done = 0;
	assert_int_equal(num_index_load(ix, e, 150, &done), -ENOSPC);
	assert_int_equal(done, 100);
	assert_false(num_index_is_complete(ix));
	assert_int_equal(num_index_upsert(ix, &e[120]), -ENOSPC);
	assert_int_equal(num_index_invalidate(ix, e[120].key, 9), -ENOSPC);
	e[5].version = 2; /* known keys still update */
	e[5].state = NUM_ST_SUSPENDED;
	assert_int_equal(num_index_upsert(ix, &e[5]), 0);
	num_index_entry_t got;
	for (int i = 0; i < 100; i++)
		assert_int_equal(num_index_get(ix, e[i].key, &got), 0);
	assert_int_equal(num_index_get(ix, e[5].key, &got), 0);
	assert_int_equal(got.state, NUM_ST_SUSPENDED);
	num_index_stats_t st;
	num_index_stats(ix, &st);
	assert_int_equal(st.numbers, 100);
	assert_int_equal(st.max_numbers, 100);
	assert_int_equal(st.slots, 134);
	assert_int_equal(st.tenants, 1);
	assert_true(st.bytes >= 134 * 64);
	assert_int_equal(num_index_new(ctx, 0, 2, &ix), -EINVAL);
	assert_int_equal(num_index_new(ctx, 10, 0, &ix), -EINVAL);
	talloc_free(ctx);
}

static void test_bad_input_rejected(void **state)
{
	fix_t *f = *state;
	num_index_entry_t e = leased(0, f->a, NUM_ST_ASSIGNED, NUM_LEASE_ACTIVE, NOW);
	assert_int_equal(num_index_upsert(f->ix, &e), -EINVAL);
	e.key = 93700000001ULL; /* no kind tag */
	assert_int_equal(num_index_upsert(f->ix, &e), -EINVAL);
	e.key = msisdn_key(1);
	e.state = NUM_ST__COUNT;
	assert_int_equal(num_index_upsert(f->ix, &e), -EINVAL);
	e.state = NUM_ST_ASSIGNED;
	e.lease_status = NUM_LEASE__COUNT;
	assert_int_equal(num_index_upsert(f->ix, &e), -EINVAL);
	e.lease_status = NUM_LEASE_ACTIVE;
	e.tenant = 77;
	assert_int_equal(num_index_upsert(f->ix, &e), -EINVAL);
	assert_int_equal(num_index_invalidate(f->ix, 0, 1), -EINVAL);
	assert_int_equal(num_index_load(f->ix, &e, 1, NULL), -EINVAL);

	uint32_t t, t2;
	char longid[NUM_TENANT_ID_MAX + 2];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_int_equal(num_index_tenant_intern(f->ix, longid, &t), -EINVAL);
	assert_int_equal(num_index_tenant_intern(f->ix, "", &t), -EINVAL);
	assert_int_equal(num_index_tenant_find(f->ix, "nobody", &t), -ENOENT);
	assert_int_equal(num_index_tenant_intern(f->ix, "tenant-b", &t), 0);
	assert_int_equal(t, f->b);
	assert_int_equal(num_index_tenant_find(f->ix, "tenant-b", &t2), 0);
	assert_int_equal(t2, f->b);
	assert_string_equal(num_index_tenant_id(f->ix, f->b), "tenant-b");
	assert_null(num_index_tenant_id(f->ix, NUM_TENANT_NONE));
	for (int i = 0; i < 12; i++) {
		char id[16];
		snprintf(id, sizeof(id), "more-%d", i);
		assert_int_equal(num_index_tenant_intern(f->ix, id, &t), 0);
	}
	assert_int_equal(num_index_tenant_intern(f->ix, "one-too-many", &t), -ENOSPC);

	assert_int_equal(num_key_kind(msisdn_key(1)), NUM_KIND_MSISDN);
	assert_int_equal(num_key_kind(3ULL << 62 | 5), NUM_KIND_ALPHA);
	assert_int_equal(num_key_kind(5), NUM_KIND__COUNT);
}

static void test_freshness_bound(void **state)
{
	fix_t *f = *state;
	assert_false(num_index_fresh(f->ix, NOW, 5000));
	num_index_touch(f->ix, NOW);
	assert_true(num_index_fresh(f->ix, NOW + 5000, 5000));
	assert_false(num_index_fresh(f->ix, NOW + 5001, 5000));
	num_index_touch(f->ix, NOW - 60000); /* late heartbeat never moves it back */
	assert_true(num_index_fresh(f->ix, NOW + 5000, 5000));
	num_index_touch(f->ix, NOW + 4000);
	assert_true(num_index_fresh(f->ix, NOW + 9000, 5000));
}

/* ---- readers against a writer ---------------------------------------------------------- */

#define RACE_KEYS 64
#define RACE_NEW  2000

typedef struct {
	num_index_t *ix;
	uint32_t t_odd, t_even;
	atomic_bool stop;
	atomic_long reads, hits, torn, backwards, wrong_decision;
} race_t;

/* The entry of key at version v: every field derives from v, so a mix of two versions shows. */
static num_index_entry_t race_entry(const race_t *r, uint64_t key, uint64_t v)
{
	num_index_entry_t e = {.key = key,
	                       .version = v,
	                       .lease_ends_at_ms = (int64_t)v * 1000,
	                       .tenant = v & 1 ? r->t_odd : r->t_even,
	                       .operator_idx = (uint16_t)v,
	                       .state = v & 1 ? NUM_ST_ASSIGNED : NUM_ST_SUSPENDED,
	                       .lease_status = v & 1 ? NUM_LEASE_ACTIVE : NUM_LEASE_SUSPENDED,
	                       .vanity_tier = (uint8_t)(v * 7)};
	memset(e.lease_id, (int)(v & 0xff), sizeof(e.lease_id));
	return e;
}

static bool race_consistent(const race_t *r, const num_index_entry_t *g)
{
	num_index_entry_t w = race_entry(r, g->key, g->version);
	return w.lease_ends_at_ms == g->lease_ends_at_ms && w.tenant == g->tenant &&
	       w.operator_idx == g->operator_idx && w.state == g->state &&
	       w.lease_status == g->lease_status && w.vanity_tier == g->vanity_tier &&
	       memcmp(w.lease_id, g->lease_id, sizeof(w.lease_id)) == 0;
}

static void *race_writer(void *arg)
{
	race_t *r = arg;
	uint64_t v = 2, n_new = 0;
	while (!atomic_load(&r->stop)) {
		for (uint64_t k = 0; k < RACE_KEYS; k++) {
			num_index_entry_t e = race_entry(r, msisdn_key(k), v);
			if (num_index_upsert(r->ix, &e) != 0)
				atomic_fetch_add(&r->torn, 1000000);
		}
		if (n_new < RACE_NEW) { /* inserts race with probes for the same keys */
			num_index_entry_t e = race_entry(r, msisdn_key(1000 + n_new), v);
			num_index_upsert(r->ix, &e);
			n_new++;
		}
		v++;
	}
	return NULL;
}

static void *race_reader(void *arg)
{
	race_t *r = arg;
	uint64_t last[RACE_KEYS] = {0}, x = (uint64_t)(uintptr_t)&last;
	while (!atomic_load(&r->stop)) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		uint64_t pick = (x >> 33) % (RACE_KEYS + 64);
		uint64_t key =
		    pick < RACE_KEYS ? msisdn_key(pick) : msisdn_key(1000 + (x >> 20) % RACE_NEW);
		num_validate_t v;
		atomic_fetch_add_explicit(&r->reads, 1, memory_order_relaxed);
		int rc = num_validate(r->ix, key, r->t_odd, 1, &v);
		if (rc != 0)
			continue;
		atomic_fetch_add_explicit(&r->hits, 1, memory_order_relaxed);
		if (!race_consistent(r, &v.entry))
			atomic_fetch_add(&r->torn, 1);
		num_vreason_t want = v.entry.version & 1 ? NUM_VR_ALLOWED : NUM_VR_WRONG_TENANT;
		if (v.reason != want)
			atomic_fetch_add(&r->wrong_decision, 1);
		if (pick < RACE_KEYS) {
			if (v.entry.version < last[pick])
				atomic_fetch_add(&r->backwards, 1);
			last[pick] = v.entry.version;
		}
	}
	return NULL;
}

static void test_readers_never_see_torn_entries(void **state)
{
	void *ctx = talloc_new(NULL);
	race_t r = {0};
	assert_int_equal(num_index_new(ctx, RACE_KEYS + RACE_NEW, 4, &r.ix), 0);
	assert_int_equal(num_index_tenant_intern(r.ix, "odd", &r.t_odd), 0);
	assert_int_equal(num_index_tenant_intern(r.ix, "even", &r.t_even), 0);
	assert_int_equal(num_index_tenant_set_status(r.ix, r.t_odd, NUM_POOL_ACTIVE), 0);
	assert_int_equal(num_index_tenant_set_status(r.ix, r.t_even, NUM_POOL_ACTIVE), 0);
	for (uint64_t k = 0; k < RACE_KEYS; k++) {
		num_index_entry_t e = race_entry(&r, msisdn_key(k), 1);
		assert_int_equal(num_index_upsert(r.ix, &e), 0);
	}
	pthread_t w, rd[3];
	assert_int_equal(pthread_create(&w, NULL, race_writer, &r), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, race_reader, &r), 0);
	struct timespec ts = {0, 400 * 1000 * 1000};
	nanosleep(&ts, NULL);
	atomic_store(&r.stop, true);
	pthread_join(w, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(rd[i], NULL);
	assert_true(atomic_load(&r.hits) > 1000);
	assert_int_equal(atomic_load(&r.torn), 0);
	assert_int_equal(atomic_load(&r.backwards), 0);
	assert_int_equal(atomic_load(&r.wrong_decision), 0);
	talloc_free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_validate_rules_and_reasons, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_miss_is_not_not_registered, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tenant_suspension_flips_every_number, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_versions_and_invalidation_markers, setup,
	                                    teardown),
	    cmocka_unit_test(test_capacity_is_fixed_and_clear),
	    cmocka_unit_test_setup_teardown(test_bad_input_rejected, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_freshness_bound, setup, teardown),
	    cmocka_unit_test(test_readers_never_see_torn_entries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
